//! Running under systemd: the agent serves a socket passed by socket
//! activation (`systemd-socket-activate`, which hands it over exactly as
//! systemd does), reports READY=1 and STOPPING=1 on `NOTIFY_SOCKET`, leaves
//! systemd's socket file alone, and logs in a form journald understands.
//!
//! None of this needs systemd as PID 1: `systemd-socket-activate` is a
//! plain program, and the test itself plays the notify socket.

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use a365_token_server::{ServerConfig, TokenServer};

use crate::harness::{Env, bin, set_mode, skip};

/// Debian ships it in /usr/bin, older releases in /usr/lib/systemd. CI
/// installs it (`.ci/run`), so there a missing one fails the test.
fn socket_activate() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("systemd-socket-activate"))
        .chain([PathBuf::from("/usr/lib/systemd/systemd-socket-activate")])
        .find(|p| p.is_file());
    if found.is_none() {
        skip("systemd-socket-activate is not installed (Debian: apt-get install systemd)");
    }
    found
}

/// The next message on the notify socket, or panics after 10 s.
fn next_notification(notify: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = notify
        .recv(&mut buf)
        .expect("a notification from the agent within 10 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn socket_activation_serves_tokens_and_notifies_systemd() {
    let Some(activate) = socket_activate() else {
        return;
    };
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    // systemd makes the directory (DirectoryMode=0700) and the socket.
    let dir = env.socket.parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    set_mode(dir, 0o700);
    let notify_path = env.path("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    // It passes on only the environment named with -E, like a unit's
    // Environment=; the agent starts on the first connection.
    let mut cmd = Command::new(activate);
    cmd.arg("--listen").arg(&env.socket);
    for (name, value) in [
        ("HOME", env.path("home")),
        ("XDG_CONFIG_HOME", env.path("config")),
        ("XDG_STATE_HOME", env.path("state")),
        ("XDG_RUNTIME_DIR", env.path("run")),
        ("NOTIFY_SOCKET", notify_path.clone()),
    ] {
        cmd.arg("-E")
            .arg(format!("{name}={}", value.to_str().unwrap()));
    }
    cmd.arg("-E")
        .arg("RUST_LOG=info")
        .arg(bin("a365-agent"))
        .stdin(Stdio::null());
    let agent = env.spawn_agent_command(cmd);
    assert!(
        crate::harness::wait_until(Duration::from_secs(10), || env.socket.exists()),
        "systemd-socket-activate did not listen; log:\n{}",
        agent.log()
    );
    let inode = std::fs::metadata(&env.socket).unwrap().ino();

    // The first client starts it; `a365 token` is served.
    env.add_refresh("work", &server);
    assert_eq!(next_notification(&notify), "READY=1\n");
    let token = env.token("work");
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    crate::harness::wait_until(std::time::Duration::from_secs(5), || {
        agent
            .log()
            .contains("listening on the socket systemd or launchd passed")
    });
    let log = agent.log();
    assert!(
        log.contains("listening on the socket systemd or launchd passed"),
        "{log}"
    );

    let (status, log) = {
        agent.signal(rustix::process::Signal::TERM);
        let stopping = next_notification(&notify);
        assert_eq!(stopping, "STOPPING=1\n");
        agent.wait(Duration::from_secs(35))
    };
    assert!(status.success(), "{status:?}\n{log}");
    // The socket is systemd's: still there, the very same file.
    let meta = std::fs::metadata(&env.socket).expect("the socket file is left alone");
    assert_eq!(meta.ino(), inode, "the agent re-created systemd's socket");
}

#[test]
fn without_notify_socket_or_passed_socket_it_runs_as_before() {
    let env = Env::new();
    let agent = env.start_agent();
    let (status, log) = agent.terminate();
    assert!(status.success(), "{status:?}\n{log}");
    assert!(!log.contains("systemd"), "{log}");
}

#[test]
fn under_journald_log_lines_carry_syslog_priorities() {
    if std::path::Path::new("/run/systemd/journal/socket").exists() {
        // Then the agent writes to the journal itself and stderr stays empty.
        skip(
            "journald runs here, so the agent logs to it natively; \
             this test covers the <N>-prefix fallback",
        );
        return;
    }
    let env = Env::new();
    let log_path = env.path("journal-stream.log");
    let file = std::fs::File::create(&log_path).unwrap();
    let meta = file.metadata().unwrap();
    let mut cmd = env.command(bin("a365-agent"));
    cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdout(Stdio::null())
        .stderr(file);
    let mut child = cmd.spawn().unwrap();
    let ready =
        crate::harness::wait_until(Duration::from_secs(10), || env.a365(&["status"]).code == 0);
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(ready && status.success(), "{status:?}\n{log}");
    let listening = log
        .lines()
        .find(|l| l.contains("listening"))
        .unwrap_or_default();
    // `<6>` is info; journald stamps the time itself.
    assert!(listening.starts_with("<6>"), "{log}");
    assert!(
        log.lines().any(|l| l.starts_with("<4>")),
        "warnings are <4>: {log}"
    );
    assert!(
        log.lines().all(|l| l.starts_with('<')),
        "every line has a priority: {log}"
    );
}

#[test]
fn a_passed_socket_that_is_not_a_unix_stream_socket_is_refused() {
    let Some(activate) = socket_activate() else {
        return;
    };
    let env = Env::new();
    let dir = env.socket.parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    set_mode(dir, 0o700);
    let mut cmd = Command::new(activate);
    cmd.arg("--datagram")
        .arg("--listen")
        .arg(&env.socket)
        .arg("-E")
        .arg(format!("XDG_CONFIG_HOME={}", env.path("config").display()))
        .arg("-E")
        .arg(format!("XDG_STATE_HOME={}", env.path("state").display()))
        .arg(bin("a365-agent"));
    let agent = env.spawn_agent_command(cmd);
    assert!(
        crate::harness::wait_until(Duration::from_secs(10), || env.socket.exists()),
        "systemd-socket-activate did not listen; log:\n{}",
        agent.log()
    );
    // A datagram starts it.
    UnixDatagram::unbound()
        .unwrap()
        .send_to(b"x", &env.socket)
        .unwrap();
    let (status, log) = agent.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("LISTEN_FDS") && log.contains("unix stream socket"),
        "{log}"
    );
}

/// Native journald logging, against a stand-in for journald's socket: in a
/// private mount namespace (which needs root or CAP_SYS_ADMIN, as CI has)
/// a fresh /run gets our datagram socket at /run/systemd/journal/socket.
#[test]
fn under_journald_it_logs_to_the_journal_natively() {
    let env = Env::new();
    let journal_dir = env.path("journal");
    std::fs::create_dir_all(&journal_dir).unwrap();
    let journal = UnixDatagram::bind(journal_dir.join("socket")).unwrap();
    journal
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Mounts a fresh /run and journald's socket directory in it, then runs "$@".
    let script = "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal \
                  && mount --bind \"$0\" /run/systemd/journal && exec \"$@\"";
    let in_namespace = |cmd: &mut Command| {
        cmd.args(["--mount", "--propagation", "private", "sh", "-c", script])
            .arg(&journal_dir);
    };
    let mut probe = Command::new("unshare");
    in_namespace(&mut probe);
    match probe.arg("true").output() {
        Ok(out) if out.status.success() => {}
        other => {
            skip(&format!(
                "cannot mount in a private mount namespace here \
                 (unshare and mount need root or CAP_SYS_ADMIN): {other:?}"
            ));
            return;
        }
    }
    let stderr_path = env.path("journal-stream.log");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let meta = stderr.metadata().unwrap();
    let mut cmd = env.command("unshare");
    in_namespace(&mut cmd);
    cmd.arg(bin("a365-agent"))
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdout(Stdio::null())
        .stderr(stderr);
    let mut child = cmd.spawn().unwrap();
    let mut buf = vec![0u8; 65536];
    let mut entries = Vec::new();
    while let Ok(n) = journal.recv(&mut buf) {
        let entry = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = entry.contains("profiles loaded");
        entries.push(entry);
        if done {
            break;
        }
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let status = child.wait().unwrap();
    let on_stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(status.success(), "{status:?}\n{on_stderr}");
    let listening = entries
        .iter()
        .find(|e| e.contains("listening"))
        .unwrap_or_else(|| panic!("no 'listening' entry: {entries:?}\n{on_stderr}"));
    // Fields in journald's native protocol: KEY, newline, 8-byte length, value.
    for field in ["SYSLOG_IDENTIFIER", "a365-agent", "PRIORITY", "F_SOCKET"] {
        assert!(listening.contains(field), "{field}: {listening:?}");
    }
    assert!(
        listening.contains("PRIORITY\n\u{1}\0\0\0\0\0\0\x006"),
        "info is priority 6: {listening:?}"
    );
    assert!(on_stderr.is_empty(), "nothing on stderr: {on_stderr}");
}
