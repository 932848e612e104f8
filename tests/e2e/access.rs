//! Only the agent's own user gets anything from it, even if someone
//! loosened the permissions of its socket.

use std::os::unix::process::CommandExt;

use a365_token_server::ServerConfig;

use crate::harness::{Session, bin, set_mode};

/// `nobody` on Debian and most distributions.
const OTHER_UID: u32 = 65534;

#[test]
fn another_user_is_refused_and_the_owner_is_still_served() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: switching to another uid needs root (CI runs as root)");
        return;
    }
    let Session {
        server: _server,
        env,
        agent,
    } = Session::start(ServerConfig::default());
    // Open every door the filesystem has: the directories, the socket.
    set_mode(env.dir.path(), 0o755);
    set_mode(&env.path("run"), 0o755);
    set_mode(env.socket.parent().unwrap(), 0o755);
    set_mode(&env.socket, 0o666);

    let out = env
        .command(bin("a365"))
        .args(["token", "work"])
        .uid(OTHER_UID)
        .gid(OTHER_UID)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(9), "permission denied: {stderr}");
    assert!(out.stdout.is_empty(), "nothing but an error");
    assert!(stderr.contains("only its own user"), "{stderr}");
    let logged = crate::harness::wait_until(std::time::Duration::from_secs(5), || {
        agent.log().contains("refused a connection")
    });
    assert!(logged, "{}", agent.log());
    // The owner is still served.
    env.a365(&["token", "work"]).ok();
}

#[test]
fn a_socket_directory_owned_by_another_user_is_refused() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: chown to another uid needs root (CI runs as root)");
        return;
    }
    let env = crate::harness::Env::new();
    let dir = env.socket.parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::os::unix::fs::chown(dir, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    let (status, log) = env
        .spawn_agent(&[])
        .wait(std::time::Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("belongs to uid 65534") && log.contains(&dir.display().to_string()),
        "{log}"
    );
}

#[test]
fn a_socket_in_a_world_writable_directory_is_refused() {
    let env = crate::harness::Env::new();
    let shared = env.path("shared");
    std::fs::create_dir_all(&shared).unwrap();
    set_mode(&shared, 0o1777); // like /tmp
    let socket = shared.join("agent.sock");
    let (status, log) = env
        .spawn_agent(&["--socket", socket.to_str().unwrap()])
        .wait(std::time::Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("writable by others") && log.contains("choose another --socket"),
        "{log}"
    );
    assert!(!socket.exists());
}

#[test]
fn the_agent_is_not_dumpable_and_a_crash_leaves_no_core() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: running the agent as another uid needs root (CI runs as root)");
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let env = crate::harness::Env::new();
    // The agent runs as `nobody` in a world it owns.
    set_mode(env.dir.path(), 0o755);
    for entry in ["", "config", "state", "home", "run"] {
        std::os::unix::fs::chown(env.path(entry), Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    }
    use rustix::process::Signal;
    for signal in [Signal::ABORT, Signal::SEGV] {
        // The crashed agent's socket stays behind; wait for the new one.
        let _ = std::fs::remove_file(&env.socket);
        let mut cmd = env.command(bin("a365-agent"));
        cmd.current_dir(env.path("home"))
            .uid(OTHER_UID)
            .gid(OTHER_UID);
        let agent = env.spawn_agent_command(cmd);
        let pid = agent.pid();
        let proc_owner = || std::fs::metadata(format!("/proc/{pid}/environ")).map(|m| m.uid());
        assert!(
            crate::harness::wait_until(std::time::Duration::from_secs(10), || {
                env.socket.exists()
            }),
            "the agent did not start"
        );
        // A dumpable process's /proc files belong to its user; a non-dumpable
        // one's to root, so other processes of the user cannot ptrace it or
        // read its memory or environment.
        assert_eq!(proc_owner().unwrap(), 0, "the agent is not dumpable");
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let core = limits
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .unwrap();
        assert_eq!(core.split_whitespace().nth(4), Some("0"), "{core}");

        agent.signal(signal);
        if signal == Signal::SEGV {
            // Rust's runtime takes a SIGSEGV that no fault caused as a
            // stack-overflow probe: it restores the default action and
            // returns. The second one is the crash.
            std::thread::sleep(std::time::Duration::from_millis(200));
            agent.signal(signal);
        }
        let (status, log) = agent.wait(std::time::Duration::from_secs(10));
        // Not root, and a finite RLIMIT_MEMLOCK: locking is skipped, and said.
        if rustix::process::getrlimit(rustix::process::Resource::Memlock)
            .current
            .is_some()
        {
            assert!(
                log.contains("memory not locked (RLIMIT_MEMLOCK is"),
                "{log}"
            );
        }
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(signal.as_raw()), "{status:?}");
        assert!(!status.core_dumped(), "no core dump after {signal:?}");
        let cores: Vec<_> = std::fs::read_dir(env.path("home"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("core"))
            .collect();
        assert!(cores.is_empty(), "{cores:?}");
    }
}
