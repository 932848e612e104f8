//! Only the agent's own user gets anything from it, even if someone
//! loosened the permissions of its socket.

use std::os::unix::process::CommandExt;

use a365_token_server::ServerConfig;

use a365_proto::{Encoding, Request, Response};

use crate::harness::{OtherUser, Out, Session, bin, set_mode};

/// `nobody` on Debian and most distributions.
const OTHER_UID: u32 = 65534;

/// What another user's process reads from the agent when it sends `request`
/// (a ping frame, or a JSON line): the raw answer, as text.
const PEEK: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(bytes.fromhex(sys.argv[2]))
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.hex())
"#;

#[test]
fn another_user_is_refused_in_its_encoding_and_the_owner_is_still_served() {
    if !crate::harness::require_root("switch to another user") {
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
    let other = OtherUser::create();
    let peek = |bytes: &[u8]| -> Vec<u8> {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let out = other
            .command("python3")
            .args(["-c", PEEK, env.socket.to_str().unwrap(), &hex])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    };
    let ping = a365_proto::codec::encode_request(&Request::Ping, Encoding::Binary).unwrap();
    let answer = peek(&ping);
    match a365_proto::codec::decode_response(&answer[4..], Encoding::Binary).unwrap() {
        Response::Error(e) => {
            assert_eq!(e.kind, a365_proto::ErrorKind::PermissionDenied);
            assert!(e.message.contains("only its own user"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    // A JSON client is refused in JSON, which it can read.
    let answer = peek(b"{\"version\":1,\"request\":{\"token\":{\"profile\":\"work\"}}}\n");
    let text = String::from_utf8(answer).unwrap();
    assert!(
        text.starts_with('{') && text.contains("permission_denied"),
        "{text}"
    );
    assert!(!text.contains("access_token") && !text.contains("\"token\":{\"profile\""));
    let logged = crate::harness::wait_until(std::time::Duration::from_secs(5), || {
        agent.log().contains("refused a connection")
    });
    assert!(logged, "{}", agent.log());
    // Their `a365` refuses our agent before sending anything, as ours
    // would refuse theirs.
    let out = Out::from(
        other
            .command(bin("a365"))
            .args(["token", "work"])
            .env("A365_AGENT_SOCK", &env.socket)
            .env("A365_NO_AUTOSTART", "1")
            .output()
            .unwrap(),
    )
    .code(9);
    assert!(out.stdout.is_empty(), "nothing but an error");
    assert!(out.stderr.contains("runs as uid 0"), "{}", out.stderr);
    // The owner is still served.
    env.a365(&["token", "work"]).ok();
}

/// A listener of another user's, at the path the victim's client uses (a
/// shared place, or a name it created first): it receives not one byte,
/// the client says whose it is (exit 9) and starts no agent over it.
#[test]
fn a_socket_another_user_created_first_receives_nothing() {
    if !crate::harness::require_root("switch to another user") {
        return;
    }
    let server = a365_token_server::TokenServer::start(ServerConfig::default()).unwrap();
    let env = crate::harness::Env::new();
    let other = OtherUser::create();
    let squatter = other.squat(&env);
    let socket = squatter.socket.clone();
    let secrets = r#"{"client_secret":"squat-secret-1","refresh_token":"squat-refresh-2"}"#;
    let token_url = server.token_url();
    let run = |args: &[&str], input: &[u8]| {
        use std::io::Write;
        let mut cmd = env.command(bin("a365"));
        cmd.args(args)
            .env("A365_AGENT_SOCK", &socket)
            // Autostart allowed: it must not happen over another's socket.
            .env_remove("A365_NO_AUTOSTART")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        // It may refuse before it reads a secret (a broken pipe here).
        let _ = child.stdin.take().unwrap().write_all(input);
        Out::from(child.wait_with_output().unwrap())
    };
    let add = run(
        &[
            "add",
            "work",
            "--kind",
            "refresh",
            "--token-url",
            &token_url,
            "--client-id",
            "c",
            "--secrets-from",
            "-",
        ],
        secrets.as_bytes(),
    )
    .code(9);
    assert!(
        add.stderr.contains(&socket.display().to_string())
            && add.stderr.contains(&format!("runs as uid {}", other.uid)),
        "{}",
        add.stderr
    );
    for args in [&["token", "work"][..], &["login", "work"], &["status"]] {
        let out = run(args, b"").code(9);
        assert!(out.stdout.is_empty(), "{args:?}: {out:#?}");
        assert!(!out.stderr.contains("started a365-agent"), "{out:#?}");
    }
    assert_eq!(squatter.received(), 0, "the squatter received bytes");
    assert_eq!(server.requests(), 0);
}

/// The example clients plugin authors copy check too: each refuses
/// (exit 9, or an error in Lua) and the squatter gets nothing.
#[test]
fn the_example_clients_refuse_a_socket_of_another_user() {
    if !crate::harness::require_root("switch to another user") {
        return;
    }
    let env = crate::harness::Env::new();
    let other = OtherUser::create();
    let squatter = other.squat(&env);
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/examples");
    for (program, script) in [("python3", "a365_token.py"), ("node", "a365_token.js")] {
        let out = Out::from(
            env.command(program)
                .arg(format!("{examples}/{script}"))
                .arg("work")
                .env("A365_AGENT_SOCK", &squatter.socket)
                .output()
                .unwrap(),
        )
        .code(9);
        assert!(out.stdout.is_empty(), "{out:#?}");
        assert!(
            out.stderr.contains("nothing was sent"),
            "{script}: {}",
            out.stderr
        );
    }
    if let Some(lines) = crate::json_mode::run_lua(&env, &[("A365_AGENT_SOCK", &squatter.socket)]) {
        assert!(
            lines[0].starts_with("nil ") && lines[0].contains("nothing was sent"),
            "{lines:?}"
        );
    }
    assert_eq!(squatter.received(), 0, "the squatter received bytes");
}

#[test]
fn a_socket_directory_owned_by_another_user_is_refused() {
    if !crate::harness::require_root("chown to another uid") {
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
    if !crate::harness::require_root("run the agent as another uid") {
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
            // returns. The second one is the crash, once the handler is
            // gone (`SigCgt` in /proc no longer has SIGSEGV, bit 10).
            let caught = || {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
                let mask = status
                    .lines()
                    .find_map(|l| l.strip_prefix("SigCgt:"))
                    .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
                    .unwrap();
                mask & (1 << 10) != 0
            };
            assert!(crate::harness::wait_until(
                std::time::Duration::from_secs(5),
                || !caught()
            ));
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

/// A config file others can write would run their `on_event` command and
/// send our secrets to their `token_url`: the agent refuses to start on
/// it, says which file and how to fix it, and starts once it is fixed.
#[test]
fn a_config_file_others_can_write_stops_the_agent() {
    let env = crate::harness::Env::new();
    std::fs::create_dir_all(env.config_file().parent().unwrap()).unwrap();
    std::fs::write(env.config_file(), "on_event = \"touch /tmp/owned\"\n").unwrap();
    set_mode(&env.config_file(), 0o666);
    let (status, log) = env
        .spawn_agent(&[])
        .wait(std::time::Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&env.config_file().display().to_string())
            && log.contains("writable by others (mode 666)")
            && log.contains("chmod 600"),
        "{log}"
    );
    assert!(!env.socket.exists(), "it never listened");
    set_mode(&env.config_file(), 0o600);
    let _agent = env.start_agent();
    env.a365(&["status"]).ok();
}
