//! One rule for every test that cannot run on this machine: it says why
//! and is skipped, except where every test must run (`.ci/run` sets
//! `A365_REQUIRE_ALL=1`, CI services set `CI=true`), which installs every
//! tool a test needs: there a skip would look like a pass, so it fails.
//! Skips are listed once more when the test binary exits, after cargo's
//! summary, where they cannot be missed.

use std::sync::Mutex;

/// The skipped tests, and why.
static SKIPPED: Mutex<Vec<String>> = Mutex::new(Vec::new());

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
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let mut skipped = SKIPPED.lock().unwrap_or_else(|e| e.into_inner());
    if skipped.is_empty() {
        // SAFETY: `summary` is a plain function that lives as long as the
        // process; registering it has no other effect.
        #[allow(unsafe_code)]
        unsafe {
            libc::atexit(summary);
        }
    }
    skipped.push(format!("{test}: {why}"));
}

/// At exit, after cargo's own summary: what did not run, and why.
extern "C" fn summary() {
    let skipped = SKIPPED.lock().unwrap_or_else(|e| e.into_inner());
    let mut text = format!(
        "\nSKIPPED {} test(s): their tools are missing on this machine (.ci/run installs them; \
         with A365_REQUIRE_ALL=1 a skip fails):\n",
        skipped.len()
    );
    for line in skipped.iter() {
        text.push_str(&format!("  {line}\n"));
    }
    use std::io::Write;
    let _ = std::io::stderr().write_all(text.as_bytes());
}
