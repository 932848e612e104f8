//! The Python package (`clients/python`) against real agents: its pytest
//! suite, in the virtualenv `.ci/run` installs it into (tests/dot/.venv,
//! with clients/python/tests/requirements.txt), starts its own token
//! server and agent from this run's binaries: `a365.token`, `a365.watch`,
//! the httpx and requests auth classes retrying once on a 401 from a
//! loopback API, the keyring backend through `keyring.get_password`, the
//! refusal of a socket that another user listens on (as root), and
//! `mypy --strict`.

use std::path::Path;
use std::process::Command;

use crate::harness::{bin_dir, skip};

/// How many tests clients/python/tests holds: fewer passed means some
/// did not run.
const PYTHON_TESTS: usize = 48;

#[test]
fn the_python_package_passes_its_tests_against_a_real_agent() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("tests/dot/.venv/bin/python");
    let install = "python3 -m venv tests/dot/.venv && tests/dot/.venv/bin/pip install \
                   -r clients/python/tests/requirements.txt ./clients/python";
    if !python.exists() {
        skip(&format!("the test virtualenv is missing ({install})"));
        return;
    }
    let probe = Command::new(&python)
        .args(["-c", "import pytest, a365"])
        .output()
        .expect("run the virtualenv's python");
    if !probe.status.success() {
        skip(&format!(
            "pytest or the a365 package is not installed in tests/dot/.venv ({install})"
        ));
        return;
    }
    let out = Command::new(&python)
        .args([
            "-m",
            "pytest",
            "clients/python/tests",
            "-q",
            "-p",
            "no:cacheprovider",
        ])
        .current_dir(root)
        .env("A365_E2E_BIN_DIR", bin_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pytest failed:\n{stdout}\n{stderr}");
    // The summary: "35 passed in 9.56s", or "34 passed, 1 skipped in …".
    let summary = stdout
        .lines()
        .rev()
        .find(|line| line.contains(" passed"))
        .unwrap_or_else(|| panic!("no pytest summary:\n{stdout}\n{stderr}"));
    let passed: usize = summary
        .split(" passed")
        .next()
        .and_then(|head| head.rsplit(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of passed tests in {summary:?}"));
    assert!(
        passed >= PYTHON_TESTS,
        "{passed} Python tests passed, {PYTHON_TESTS} expected:\n{stdout}"
    );
    let every_test_must_run = std::env::var_os("A365_REQUIRE_ALL").is_some_and(|v| v == "1")
        || std::env::var_os("CI").is_some_and(|v| v == "true");
    if every_test_must_run {
        assert!(
            !summary.contains("skipped"),
            "Python tests were skipped where every test must run:\n{stdout}"
        );
    } else if summary.contains("skipped") {
        skip(&format!("some Python tests were skipped: {summary}"));
    }
}
