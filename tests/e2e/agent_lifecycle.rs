//! Starting, stopping, crashing and backgrounding the agent.

use std::time::Duration;

use a365_proto::{Client, Request, Response};

use crate::harness::{Env, Session, bin, set_mode};

#[test]
fn a_second_agent_on_the_same_socket_refuses_to_start() {
    let env = Env::new();
    let _first = env.start_agent();
    let (status, log) = env.spawn_agent(&[]).wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(3), "{log}");
    assert!(log.contains("already running"), "{log}");
    // The first one still serves.
    env.a365(&["status"]).ok();
}

#[test]
fn a_stale_socket_file_is_cleaned_up() {
    let env = Env::new();
    let agent = env.start_agent();
    agent.kill();
    assert!(env.socket.exists(), "a crash leaves the socket file behind");
    let agent = env.start_agent();
    env.a365(&["status"]).ok();
    assert!(agent.log().contains("stale socket"), "{}", agent.log());
}

#[test]
fn sigterm_stops_cleanly_and_removes_the_socket() {
    let env = Env::new();
    let agent = env.start_agent();
    let (status, log) = agent.terminate();
    assert!(status.success(), "{status:?}\n{log}");
    assert!(!env.socket.exists());
    let out = env.a365(&["token"]).code(3);
    assert!(
        out.stderr.contains("a365-agent"),
        "tells how to start one: {out:?}"
    );
}

#[test]
fn the_socket_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let _agent = env.start_agent();
    let dir = env.socket.parent().unwrap();
    assert_eq!(
        std::fs::metadata(dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::metadata(&env.socket).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn a_socket_directory_others_can_write_is_refused() {
    let env = Env::new();
    let dir = env.socket.parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    set_mode(dir, 0o777);
    let (status, log) = env.spawn_agent(&[]).wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("writable by others") && log.contains(&dir.display().to_string()),
        "{log}"
    );
}

#[test]
fn daemon_mode_prints_shell_lines_and_serves() {
    let env = Env::new();
    let out = env
        .command(bin("a365-agent"))
        .arg("--daemon")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let expected = format!(
        "A365_AGENT_SOCK='{}'; export A365_AGENT_SOCK;\n",
        env.socket.display()
    );
    assert!(stdout.starts_with(&expected), "{stdout}");
    env.a365(&["status"]).ok();
    // It answers a shutdown request and goes away, with its socket.
    let mut client = Client::connect(&env.socket).unwrap();
    assert!(matches!(
        client.call(&Request::Shutdown).unwrap(),
        Response::Done { .. }
    ));
    assert!(crate::harness::wait_until(Duration::from_secs(10), || !env
        .socket
        .exists()));
}

#[test]
fn sigterm_lets_a_refresh_in_flight_finish_and_keeps_its_refresh_token() {
    use a365_token_server::{Fault, ServerConfig};
    let Session { server, env, agent } = Session::start(ServerConfig::default());
    server.set_fault(Fault::Delay(Duration::from_millis(1500)), Some(1));
    let refresh = env
        .command(bin("a365"))
        .args(["refresh", "work"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The token server has the request (and will rotate) when we stop.
    assert!(crate::harness::wait_until(Duration::from_secs(10), || {
        server.requests() >= 2
    }));
    let (status, log) = agent.terminate();
    assert!(status.success(), "{log}");
    let out = refresh.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the request in flight was answered: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.requests(), 2);
    let stored = env.stored_refresh_token("work").unwrap();
    assert!(
        server.is_refresh_token_valid(&stored),
        "the rotated refresh token was saved before exiting"
    );
    // And the next agent serves the new token without asking.
    let _agent = env.start_agent();
    assert_eq!(env.token("work"), server.last_access_token().unwrap());
    assert_eq!(server.requests(), 2);
}

/// An agent idle past `--idle-release` gives its code pages back: its RSS
/// drops by megabytes, and the next request is answered as before.
#[cfg(target_os = "linux")]
#[test]
fn an_idle_agent_gives_its_code_pages_back_and_serves_on() {
    let server =
        a365_token_server::TokenServer::start(a365_token_server::ServerConfig::default()).unwrap();
    let env = Env::new();
    let agent = env.spawn_agent(&["--idle-release", "1"]);
    agent.wait_ready(&env.socket);
    env.add_refresh("work", &server);
    let token = env.token("work");
    env.a365(&["status"]).ok();
    let busy = agent.rss_kib();
    assert!(
        crate::harness::wait_until(Duration::from_secs(10), || agent.rss_kib() + 2048 < busy),
        "RSS stayed at {} KiB (busy: {busy} KiB)",
        agent.rss_kib()
    );
    assert_eq!(env.token("work"), token);
    let (status, log) = agent.terminate();
    assert!(status.success(), "{log}");
}
