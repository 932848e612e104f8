//! The `a365-token-server` binary, as the demo script runs it.
// Test helpers outside #[test] fns: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod http;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_a365-token-server");

/// Starts the binary and reads its `token_url=` line.
fn spawn(args: &[&str]) -> (Child, String, SocketAddr) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("token_url=")
        .unwrap_or_else(|| panic!("first line: {line:?}"))
        .to_owned();
    let addr = url
        .strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix("/connect/token"))
        .unwrap()
        .parse()
        .unwrap();
    (child, url, addr)
}

/// Stops it the way a user does, and returns what it logged.
fn stop(mut child: Child) -> String {
    #[cfg(unix)]
    {
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(child.wait().unwrap().success(), "SIGTERM is a clean exit");
    }
    #[cfg(not(unix))]
    {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    log
}

#[test]
fn demo_setup_writes_private_secrets_that_work() {
    let dir = tempfile::tempdir().unwrap();
    let secrets_path = dir.path().join("secrets.json");
    let (child, url, addr) = spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--lifetime",
        "10s",
        "--client-id",
        "demo",
        "--write-secrets",
        secrets_path.to_str().unwrap(),
    ]);
    assert!(url.starts_with("http://127.0.0.1:"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secrets_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let secrets: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&secrets_path).unwrap()).unwrap();
    let secret = secrets["client_secret"].as_str().unwrap();
    let rt = secrets["refresh_token"].as_str().unwrap();
    assert!(secret.len() >= 40 && rt.len() >= 40);

    let reply = http::post(
        addr,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", "demo"),
            ("client_secret", secret),
        ],
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    let body = reply.json();
    assert_eq!(body["expires_in"], 10);
    let access = body["access_token"].as_str().unwrap().to_owned();
    let new_rt = body["refresh_token"].as_str().unwrap().to_owned();
    let reply = http::post(
        addr,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", "demo"),
            ("client_secret", secret),
        ],
    );
    assert_eq!(reply.error(), "invalid_grant", "rotated by default");

    let log = stop(child);
    assert_eq!(log.matches("status=200").count(), 1, "{log}");
    assert_eq!(log.matches("status=400").count(), 1, "{log}");
    for value in [secret, rt, &access, &new_rt] {
        assert!(!log.contains(value), "a secret in the log: {log}");
    }
}

#[test]
fn faults_and_no_rotate_from_flags() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "s3cret\n").unwrap();
    let secrets_path = dir.path().join("out.json");
    let (child, _, addr) = spawn(&[
        "--no-rotate",
        "--client-secret-file",
        secret_file.to_str().unwrap(),
        "--write-secrets",
        secrets_path.to_str().unwrap(),
        "--fault",
        "status:503",
        "--fault-times",
        "1",
    ]);
    let secrets: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&secrets_path).unwrap()).unwrap();
    assert_eq!(secrets["client_secret"], "s3cret");
    let rt = secrets["refresh_token"].as_str().unwrap();
    let fields = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt),
        ("client_id", "demo"),
        ("client_secret", "s3cret"),
    ];
    assert_eq!(http::post(addr, &fields).status, 503);
    for _ in 0..2 {
        let reply = http::post(addr, &fields);
        assert_eq!(reply.status, 200, "{reply:?}");
        assert!(reply.json().get("refresh_token").is_none());
    }
    stop(child);
}

#[test]
fn refuses_non_loopback_and_bad_flags() {
    let out = Command::new(BIN)
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    assert!(out.stdout.is_empty());

    for bad in [["--lifetime", "soon"], ["--fault", "explode"]] {
        let out = Command::new(BIN).args(bad).output().unwrap();
        assert!(!out.status.success(), "{bad:?}");
    }
}
