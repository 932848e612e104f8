//! One rule for every test that cannot run on this machine: it says why
//! and is skipped, except where every test must run (`.ci/run` sets
//! `A365_REQUIRE_ALL=1`, CI services set `CI=true`), which installs every
//! tool a test needs: there a skip would look like a pass, so it fails.

/// Whether every test must run here.
fn every_test_must_run() -> bool {
    std::env::var_os("A365_REQUIRE_ALL").is_some_and(|v| v == "1")
        || std::env::var_os("CI").is_some_and(|v| v == "true")
}

/// Says why the calling test is skipped (the caller returns), or fails
/// where every test must run.
pub fn skip(why: &str) {
    assert!(
        !every_test_must_run(),
        "every test must run here (A365_REQUIRE_ALL=1 or CI=true), but {why}"
    );
    eprintln!("SKIPPED: {why}");
}
