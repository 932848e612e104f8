//! Token endpoints are HTTPS with the platform's trust store: an untrusted
//! certificate is a clear error, and nothing is sent to that server.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{Env, wait_until};

#[test]
fn an_untrusted_certificate_is_a_clear_error_and_nothing_is_sent() {
    let env = Env::new();
    let (cert, key) = (env.path("cert.pem"), env.path("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl (Debian: apt-get install openssl)");
    assert!(made.success());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("openssl")
        .args(["s_server", "-www", "-accept", &format!("127.0.0.1:{port}")])
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || TcpStream::connect(
        ("127.0.0.1", port)
    )
    .is_ok()));

    let _agent = env.start_agent();
    let secrets = br#"{"client_secret":"tls-test-secret","refresh_token":"tls-test-rt"}"#;
    let url = format!("https://127.0.0.1:{port}/connect/token");
    let out = env.a365_with_stdin(
        &[
            "add",
            "work",
            "--kind",
            "refresh",
            "--token-url",
            &url,
            "--client-id",
            "c",
            "--secrets-from",
            "-",
        ],
        secrets,
    );
    assert!(out.stderr.contains("certificate"), "{out:?}");
    let out = env.a365(&["token", "work"]).code(6);
    assert!(
        out.stderr.contains("certificate") && out.stderr.contains("ca_file"),
        "{out:?}"
    );

    let _ = server.kill();
    let mut seen = String::new();
    server
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut seen)
        .unwrap();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut seen)
        .unwrap();
    let _ = server.wait();
    assert!(
        !seen.contains("POST") && !seen.contains("tls-test"),
        "nothing was sent: {seen}"
    );
}
