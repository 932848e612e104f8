//! The systemd units and the LaunchAgent that ship in the repository:
//! systemd accepts them, the installer fills them in, and they agree with
//! the code about the label, the program, its arguments and the socket.

#![cfg(unix)]
// In tests a panic is a failed test with its message: unwrap freely.
#![allow(clippy::unwrap_used)]

#[path = "../../../tests/e2e/require.rs"]
mod require;

use std::path::{Path, PathBuf};
use std::process::Command;

use a365_agent::install;

const AGENT: &str = env!("CARGO_BIN_EXE_a365-agent");

/// A tool the test needs. CI installs it (`.ci/run`), so there a missing
/// one fails the test; elsewhere the test says why it skips.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        require::skip(&format!(
            "{name} is not installed (Debian: apt-get install systemd / python3)"
        ));
    }
    found
}

/// `systemd-analyze --user verify`: exit 0 and no complaint about our
/// files (it only warns about unknown keys and bad values).
fn verify_units(dir: &Path) {
    let Some(analyze) = tool("systemd-analyze") else {
        return;
    };
    // It resolves %t, so a user manager needs a runtime directory; no
    // running systemd is needed.
    let runtime = dir.join("run");
    std::fs::create_dir_all(&runtime).unwrap();
    let out = Command::new(analyze)
        .arg("--user")
        .arg("verify")
        .arg(dir.join(install::SYSTEMD_SOCKET_NAME))
        .arg(dir.join(install::SYSTEMD_SERVICE_NAME))
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    let complaints: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains("a365-agent"))
        .collect();
    assert!(complaints.is_empty(), "systemd-analyze verify: {stderr}");
}

#[test]
fn systemd_analyze_accepts_the_units_with_the_binary_filled_in() {
    let dir = tempfile::tempdir().unwrap();
    let report = install::install_systemd(dir.path(), Path::new(AGENT), true).unwrap();
    assert_eq!(report.changed.len(), 2);
    verify_units(dir.path());
}

#[test]
fn systemd_analyze_notices_a_bad_key() {
    // Proves the check above can fail.
    let Some(_) = tool("systemd-analyze") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    install::install_systemd(dir.path(), Path::new(AGENT), true).unwrap();
    let service = dir.path().join(install::SYSTEMD_SERVICE_NAME);
    let text = std::fs::read_to_string(&service)
        .unwrap()
        .replace("NoNewPrivileges=yes", "NoNewPrivileges=yes\nNoSuchKey=yes");
    std::fs::write(&service, text).unwrap();
    let result = std::panic::catch_unwind(|| verify_units(dir.path()));
    assert!(result.is_err(), "an unknown key went unnoticed");
}

#[test]
fn install_service_writes_the_units_for_this_user_and_uninstall_removes_them() {
    if cfg!(target_os = "macos") {
        eprintln!("SKIPPED: on macOS --install-service writes a LaunchAgent");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config");
    // A session with a user manager (its private socket is there), and
    // one without (WSL, containers): each is told what works there.
    let (with, without) = (
        home.path().join("run-with"),
        home.path().join("run-without"),
    );
    std::fs::create_dir_all(with.join("systemd")).unwrap();
    std::fs::create_dir_all(&without).unwrap();
    let _manager = std::os::unix::net::UnixListener::bind(with.join("systemd/private")).unwrap();
    let run_in = |flag: &str, runtime: &Path| {
        let out = Command::new(AGENT)
            .arg(flag)
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", &config)
            .env("XDG_RUNTIME_DIR", runtime)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let run = |flag: &str| run_in(flag, &with);
    let printed = run_in("--install-service", &without);
    assert!(
        printed.contains("No systemd user manager runs in this session")
            && printed.contains("eval \"$(a365-agent --daemon)\"")
            && !printed.contains("systemctl --user enable"),
        "{printed}"
    );
    let printed = run("--install-service");
    let unit_dir = config.join("systemd/user");
    let service = unit_dir.join(install::SYSTEMD_SERVICE_NAME);
    let socket = unit_dir.join(install::SYSTEMD_SOCKET_NAME);
    assert!(
        printed.contains(&service.display().to_string()),
        "{printed}"
    );
    assert!(printed.contains(&socket.display().to_string()), "{printed}");
    assert!(
        printed.contains("systemctl --user enable --now a365-agent.socket"),
        "{printed}"
    );
    let exe = std::fs::canonicalize(AGENT).unwrap();
    let text = std::fs::read_to_string(&service).unwrap();
    assert!(
        text.lines()
            .any(|l| l == format!("ExecStart={}", exe.display())),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(&socket).unwrap(),
        install::SYSTEMD_SOCKET
    );
    verify_units(&unit_dir);

    // What `systemctl --user enable` would have linked.
    let wants = unit_dir.join("sockets.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(&socket, wants.join(install::SYSTEMD_SOCKET_NAME)).unwrap();
    let printed = run("--uninstall-service");
    assert!(printed.contains("systemctl --user stop"), "{printed}");
    assert!(!service.exists() && !socket.exists());
    assert!(
        std::fs::symlink_metadata(wants.join(install::SYSTEMD_SOCKET_NAME)).is_err(),
        "the enable link is gone too"
    );
    let printed = run("--uninstall-service");
    assert!(printed.contains("Nothing to remove"), "{printed}");
}

/// The plist as Python's plistlib reads it (what launchd reads), as JSON.
fn parse_plist(text: &str) -> Option<serde_json::Value> {
    let python = tool("python3")?;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.plist");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(python)
        .args([
            "-c",
            "import json, plistlib, sys; print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))))",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "plistlib: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn the_launch_agent_agrees_with_the_code() {
    // The template as shipped.
    let Some(template) = parse_plist(install::LAUNCHD_PLIST) else {
        return;
    };
    assert_eq!(template["Label"], install::LAUNCHD_LABEL);
    assert_eq!(
        template["ProgramArguments"],
        serde_json::json!(["@A365_AGENT@", "--socket", "@SOCKET@"])
    );

    // As installed: this binary, the socket clients look for, a log file.
    let socket = a365_proto::path::default_socket_path().unwrap();
    let log = Path::new("/Users/someone/Library/Logs/a365-agent.log");
    let rendered = install::launchd_plist(Path::new(AGENT), &socket, log).unwrap();
    let plist = parse_plist(&rendered).unwrap();
    assert_eq!(plist["Label"], install::LAUNCHD_LABEL);
    let args: Vec<String> = serde_json::from_value(plist["ProgramArguments"].clone()).unwrap();
    assert_eq!(
        args,
        [AGENT, "--socket", socket.to_str().unwrap()],
        "{rendered}"
    );
    assert_eq!(plist["StandardErrorPath"], log.to_str().unwrap());
    assert_eq!(plist["RunAtLoad"], true);
    // launchd holds the socket (0600) under the name the agent asks for
    // (`launchd::SOCKET_NAME`, compiled on macOS only).
    let listener = &plist["Sockets"]["Listener"];
    assert_eq!(listener["SockPathName"], socket.to_str().unwrap());
    assert_eq!(listener["SockPathMode"], 0o600);
    assert_eq!(plist["KeepAlive"]["SuccessfulExit"], false);
    assert_eq!(plist["HardResourceLimits"]["Core"], 0);

    // The agent accepts exactly those arguments.
    let out = Command::new(&args[0])
        .args(&args[1..])
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}
