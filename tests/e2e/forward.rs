//! The token-only socket (`--token-socket`, `token_socket` in the config):
//! what it answers and refuses, and forwarding it to another "machine"
//! with a real `ssh -R` through a real `sshd` on loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use a365_token_server::{ServerConfig, TokenServer};

use crate::harness::{Env, Out, Session, bin, require_root, set_mode, skip, wait_until};

/// `a365 ARGS…` pointed at `socket` instead of the agent's own.
fn a365_at(env: &Env, socket: &Path, args: &[&str]) -> Out {
    Out::from(
        env.command(bin("a365"))
            .env("A365_AGENT_SOCK", socket)
            .args(args)
            .output()
            .unwrap(),
    )
}

fn token_socket(env: &Env) -> PathBuf {
    env.path("run").join("a365").join("token.sock")
}

/// Everything that changes the agent or carries a secret in is refused
/// (exit 9) and logged; tokens, status and ping are served.
fn check_token_only(session: &Session, socket: &Path) {
    let env = &session.env;
    let token = env.token("work");
    assert_eq!(
        a365_at(env, socket, &["token", "work"]).ok().stdout.trim(),
        token
    );
    let status = a365_at(env, socket, &["status", "--json"]).ok().json();
    assert_eq!(status[0]["name"], "work");
    a365_at(env, socket, &["ping"]).ok();
    for args in [
        &["remove", "work"][..],
        &["refresh", "work"],
        &["store", "migrate", "--to", "memory"],
        &["login", "work"],
    ] {
        let out = a365_at(env, socket, args).code(9);
        assert!(
            out.stderr.contains("serves tokens only"),
            "{args:?}: {}",
            out.stderr
        );
    }
    let secrets = r#"{"refresh_token":"rt-from-afar"}"#;
    let out = Out::from({
        use std::io::Write;
        let mut child = env
            .command(bin("a365"))
            .env("A365_AGENT_SOCK", socket)
            .args(["add", "evil", "--kind", "refresh", "--token-url"])
            .arg(session.server.token_url())
            .args(["--client-id", "test-client", "--secrets-from", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Refused before it reads the secrets: a broken pipe is fine.
        let _ = child.stdin.take().unwrap().write_all(secrets.as_bytes());
        child.wait_with_output().unwrap()
    })
    .code(9);
    assert!(out.stderr.contains("a365 add"), "{}", out.stderr);
    let out = Out::from(
        env.command(bin("a365-agent"))
            .args(["--kill", "--socket"])
            .arg(socket)
            .output()
            .unwrap(),
    );
    assert_ne!(out.code, 0, "--kill over the token socket: {}", out.stderr);
    // Still running, still one profile, and each refusal was logged.
    env.a365(&["ping"]).ok();
    assert_eq!(
        env.a365(&["status", "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(
        wait_until(Duration::from_secs(5), || session
            .agent
            .log()
            .matches("refused on the token-only socket")
            .count()
            >= 6),
        "{}",
        session.agent.log()
    );
}

/// A session whose agent also listens on a token socket: given with
/// `--token-socket`, or with `token_socket` in config.toml.
fn session_with_token_socket(by_flag: bool) -> (Session, PathBuf) {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let socket = token_socket(&env);
    let agent = if by_flag {
        env.spawn_agent(&["--token-socket", socket.to_str().unwrap()])
    } else {
        let config = env.config_file();
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        std::fs::write(
            &config,
            format!("token_socket = {:?}\n", socket.to_str().unwrap()),
        )
        .unwrap();
        env.spawn_agent(&[])
    };
    agent.wait_ready(&env.socket);
    env.add_refresh("work", &server);
    (Session { server, env, agent }, socket)
}

#[test]
fn the_token_socket_serves_tokens_and_refuses_everything_else() {
    let (session, socket) = session_with_token_socket(true);
    check_token_only(&session, &socket);
    // The same directory rules as the agent's socket.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Gone when the agent stops.
    let Session { agent, .. } = session;
    let (status, log) = agent.terminate();
    assert!(status.success(), "{log}");
    assert!(!socket.exists());
}

#[test]
fn the_token_socket_can_be_set_in_the_config() {
    let (session, socket) = session_with_token_socket(false);
    check_token_only(&session, &socket);
}

/// A real `sshd` on a loopback port, for this test only: its own host key,
/// one authorized key, no password logins; stopped when dropped.
struct Sshd {
    child: Child,
    port: u16,
    key: PathBuf,
}

impl Sshd {
    fn start(dir: &Path) -> Option<Sshd> {
        let sshd = Path::new("/usr/sbin/sshd");
        if !sshd.exists() {
            skip("no /usr/sbin/sshd (Debian: openssh-server)");
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        // sshd insists on its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let keygen = |path: &Path| {
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path)
                .status()
                .unwrap();
            assert!(ok.success());
        };
        keygen(&dir.join("host_key"));
        keygen(&dir.join("user_key"));
        std::fs::copy(dir.join("user_key.pub"), dir.join("authorized_keys")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\n\
                 AuthorizedKeysFile {dir}/authorized_keys\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes no\nPidFile {dir}/sshd.pid\nAllowStreamLocalForwarding yes\n\
                 StreamLocalBindUnlink yes\nStreamLocalBindMask 0177\n",
                dir = dir.display()
            ),
        )
        .unwrap();
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        let up = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            up,
            "sshd did not start: {:?}",
            std::fs::read_to_string(dir.join("sshd.log"))
        );
        Some(Sshd {
            child,
            port,
            key: dir.join("user_key"),
        })
    }

    /// `ssh -N -R REMOTE:LOCAL` to this sshd, as this user.
    fn forward(&self, remote: &Path, local: &Path) -> Child {
        Command::new("ssh")
            .args(["-F", "/dev/null", "-N", "-i"])
            .arg(&self.key)
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "ExitOnForwardFailure=yes",
                "-o",
                "LogLevel=ERROR",
                "-p",
                &self.port.to_string(),
                "-R",
            ])
            .arg(format!("{}:{}", remote.display(), local.display()))
            .arg(format!("{}@127.0.0.1", whoami()))
            .stdin(Stdio::null())
            .spawn()
            .unwrap()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The recipe in the README: `ssh -R /remote/path:TOKEN_SOCKET host`, then
/// `A365_AGENT_SOCK=/remote/path a365 token` on the other side. Tokens
/// come through; nothing that changes the agent does.
#[test]
fn the_token_socket_forwarded_with_ssh_serves_tokens_on_the_other_side() {
    if !require_root("run sshd on loopback") {
        return;
    }
    let (session, socket) = session_with_token_socket(true);
    let Some(sshd) = Sshd::start(&session.env.path("sshd")) else {
        return;
    };
    let remote_dir = session.env.path("remote");
    std::fs::create_dir_all(&remote_dir).unwrap();
    set_mode(&remote_dir, 0o700);
    let remote = remote_dir.join("agent.sock");
    let mut ssh = sshd.forward(&remote, &socket);
    let forwarded = wait_until(Duration::from_secs(15), || remote.exists());
    assert!(
        forwarded,
        "ssh -R made no socket: {:?}",
        std::fs::read_to_string(session.env.path("sshd/sshd.log"))
    );
    let token = session.env.token("work");
    let env = &session.env;
    assert_eq!(
        a365_at(env, &remote, &["token", "work"]).ok().stdout.trim(),
        token
    );
    a365_at(env, &remote, &["status"]).ok();
    let out = a365_at(env, &remote, &["remove", "work"]).code(9);
    assert!(out.stderr.contains("serves tokens only"), "{}", out.stderr);
    env.a365(&["token", "work"]).ok();
    let _ = ssh.kill();
    let _ = ssh.wait();
}

/// A client asking for a `--min-valid` just under the tokens' lifetime
/// would start a token request on every call (each spends a rotating
/// refresh token, and Nexar counts them). On the token socket such a
/// request starts no refresh before the profile's normal refresh time; on
/// the agent's own socket, at most one per 10 s.
#[test]
fn demands_just_under_the_lifetime_cannot_force_refreshes() {
    let server = TokenServer::start(ServerConfig {
        lifetime: Duration::from_secs(60),
        rotate: true,
        ..ServerConfig::default()
    })
    .unwrap();
    let env = Env::new();
    let socket = token_socket(&env);
    let agent = env.spawn_agent(&["--token-socket", socket.to_str().unwrap()]);
    agent.wait_ready(&env.socket);
    env.add_refresh("work", &server);
    // The tokens' `exp` is whole seconds: they live between 59 and 60 s.
    // Wait until at most 58.5 s are left.
    let exp = crate::harness::jwt_payload(&env.token("work"))["exp"]
        .as_f64()
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || {
        crate::harness::now_secs() >= exp - 58.5
    }));
    let before = server.requests();
    let just_under = ["token", "work", "--min-valid", "58s 500ms"];
    for _ in 0..20 {
        let out = a365_at(&env, &socket, &just_under);
        assert_eq!(out.code, 6, "{} {}", out.stdout, out.stderr);
        assert!(out.stderr.contains("normal refresh time"), "{}", out.stderr);
    }
    assert_eq!(
        server.requests(),
        before,
        "the token socket forced a refresh"
    );
    for _ in 0..20 {
        let _ = env.a365(&just_under);
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent = server.requests() - before;
    assert!(sent <= 1, "{sent} refreshes on demand within 3 s");
    let out = env.a365(&just_under);
    if out.code != 0 {
        assert!(out.stderr.contains("refreshed on demand"), "{}", out.stderr);
    }
    assert_eq!(server.replays(), 0);
    drop(agent);
}

/// `--token-socket-profile`: a forwarded socket serves only the profiles
/// named for it, and its `status` carries no error text (a token server's
/// words stay on the agent's machine).
#[test]
fn a_token_socket_serves_only_its_profiles_and_no_error_text() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let socket = token_socket(&env);
    let agent = env.spawn_agent(&[
        "--token-socket",
        socket.to_str().unwrap(),
        "--token-socket-profile",
        "work",
    ]);
    agent.wait_ready(&env.socket);
    env.add_refresh("work", &server);
    env.add_refresh("private", &server);
    a365_at(&env, &socket, &["token", "work"]).ok();
    let out = a365_at(&env, &socket, &["token", "private"]).code(4);
    assert!(out.stderr.contains("does not serve"), "{}", out.stderr);
    server.set_fault(a365_token_server::Fault::Status(500), Some(1));
    let _ = env.a365(&["refresh", "work"]);
    let own = env.a365(&["status", "--json"]).ok().json();
    assert!(
        own.as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "work" && p["last_error"].is_string()),
        "{own}"
    );
    let forwarded = a365_at(&env, &socket, &["status", "--json"]).ok().json();
    let names = crate::harness::names(&forwarded);
    assert_eq!(names, ["work"], "{forwarded}");
    assert!(forwarded[0]["last_error"].is_null(), "{forwarded}");
    drop(agent);
}
