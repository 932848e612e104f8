//! Test fixtures: temporary XDG directories and socket, the real binaries,
//! and helpers that read like a user session.

#[path = "require.rs"]
mod require;
pub use require::skip;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use a365_proto::{Client, Request, Response};
use a365_token_server::TokenServer;

/// Builds the binaries once per test run and returns their directory.
/// `CARGO_BIN_EXE_*` only exists for binaries of this package, and ours
/// live in their own crates. `A365_E2E_BIN_DIR` runs the suite against
/// binaries built elsewhere (an older release, to see a test fail).
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("A365_E2E_BIN_DIR") {
            return PathBuf::from(dir);
        }
        // target/<profile>/deps/e2e-… → target/<profile>
        let exe = std::env::current_exe().expect("current_exe");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .to_path_buf();
        // The binaries in the same profile as this test ("debug" is "dev").
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_owned(),
            Some(other) => other.to_owned(),
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "--bins",
            "-p",
            "a365-agent",
            "-p",
            "a365-cli",
            "-p",
            "a365-token-server",
        ])
        .arg("--profile")
        .arg(&profile)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building the binaries failed");
        dir
    })
}

pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn from(output: Output) -> Out {
        Out {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn ok(self) -> Out {
        assert_eq!(self.code, 0, "command failed: {self:#?}");
        self
    }

    #[track_caller]
    pub fn code(self, code: i32) -> Out {
        assert_eq!(self.code, code, "unexpected exit code: {self:#?}");
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }
}

/// A user's world: private XDG directories and a socket path.
pub struct Env {
    /// Declared first so it stops before the directories go.
    pub keyring: Option<Keyring>,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    /// RUST_LOG for every process started here.
    pub rust_log: String,
    /// The user (uid, gid) every process runs as; `None`: the test's own.
    user: Option<(u32, u32)>,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("a365-e2e-")
            .tempdir()
            .expect("tempdir");
        let runtime = dir.path().join("run");
        for sub in ["config", "state", "home"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        std::fs::create_dir_all(&runtime).expect("mkdir");
        set_mode(&runtime, 0o700);
        let socket = runtime.join("a365").join("agent.sock");
        Env {
            keyring: None,
            dir,
            socket,
            rust_log: "info".into(),
            user: None,
        }
    }

    /// A user with a real, unlocked Secret Service on a private session
    /// bus; `None` where the tools are missing (see [`skip`]).
    pub fn with_keyring() -> Option<Env> {
        let mut env = Env::new();
        match Keyring::start(&env) {
            Ok(keyring) => {
                env.keyring = Some(keyring);
                Some(env)
            }
            Err(why) => {
                skip(&format!(
                    "no Secret Service to test against ({why}); install dbus-daemon, dbus-bin, \
                     gnome-keyring and libsecret-tools"
                ));
                None
            }
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn config_file(&self) -> PathBuf {
        self.path("config/a365/config.toml")
    }

    pub fn credential_file(&self, profile: &str) -> PathBuf {
        self.path(&format!("state/a365/credentials/{profile}.json"))
    }

    /// Hands this world to `user`: its directories become theirs, and
    /// every process started here runs as them (tests run as root, and a
    /// normal user sees less of `/proc`).
    pub fn hand_to(&mut self, user: &OtherUser) {
        let owner = format!("{}:{}", user.uid, user.gid);
        let status = Command::new("chown")
            .args(["-R", &owner])
            .arg(self.dir.path())
            .status()
            .expect("run chown");
        assert!(status.success());
        self.user = Some((user.uid, user.gid));
    }

    /// The environment every process of this user gets.
    pub fn apply(&self, cmd: &mut Command) {
        if let Some((uid, gid)) = self.user {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        // Tests start their agents themselves; `autostart` tests opt in.
        cmd.env_remove("A365_PROFILE")
            .env("A365_NO_AUTOSTART", "1")
            .env("HOME", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_STATE_HOME", self.path("state"))
            .env("XDG_RUNTIME_DIR", self.path("run"))
            .env("A365_AGENT_SOCK", &self.socket)
            .env("RUST_LOG", &self.rust_log)
            .stdin(Stdio::null());
        // Never the developer's own keyring: a private bus or none at all
        // (and $XDG_RUNTIME_DIR/bus does not exist in the test's run dir).
        match &self.keyring {
            Some(keyring) => cmd.env("DBUS_SESSION_BUS_ADDRESS", &keyring.bus),
            None => cmd.env_remove("DBUS_SESSION_BUS_ADDRESS"),
        };
    }

    /// The secret `secret-tool` finds for `profile` in this user's keyring.
    pub fn keyring_item(&self, profile: &str) -> Option<String> {
        let out = self
            .command("secret-tool")
            .args(["lookup", "service", "a365", "username", profile])
            .output()
            .expect("run secret-tool");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        self.apply(&mut cmd);
        cmd
    }

    /// `a365 refresh PROFILE` in the background, its output discarded:
    /// for tests that act while a refresh is at the token server.
    pub fn refresh_in_background(&self, profile: &str) -> std::process::Child {
        self.command(bin("a365"))
            .args(["refresh", profile])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("a365 refresh")
    }

    /// A raw connection to the agent's socket (10 s read timeout): for
    /// tests that speak bytes rather than messages.
    pub fn connect_raw(&self) -> std::os::unix::net::UnixStream {
        let stream = std::os::unix::net::UnixStream::connect(&self.socket).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        stream
    }

    /// `a365 ARGS…`
    pub fn a365(&self, args: &[&str]) -> Out {
        Out::from(
            self.command(bin("a365"))
                .args(args)
                .output()
                .expect("run a365"),
        )
    }

    /// `a365 ARGS…` with `input` on its standard input.
    pub fn a365_with_stdin(&self, args: &[&str], input: &[u8]) -> Out {
        use std::io::Write;
        let mut child = self
            .command(bin("a365"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn a365");
        // `a365` may refuse before it reads its input (settings are checked
        // before secrets): a broken pipe then is its answer, not ours.
        match child.stdin.take().expect("stdin").write_all(input) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("write stdin: {e}"),
            _ => {}
        }
        Out::from(child.wait_with_output().expect("wait a365"))
    }

    /// Starts `a365-agent` in the foreground and waits until it answers.
    pub fn start_agent(&self) -> Agent {
        let agent = self.spawn_agent(&[]);
        agent.wait_ready(&self.socket);
        agent
    }

    /// Starts `a365-agent ARGS…` without waiting.
    pub fn spawn_agent(&self, args: &[&str]) -> Agent {
        let mut cmd = self.command(bin("a365-agent"));
        cmd.args(args);
        self.spawn_agent_command(cmd)
    }

    /// Starts a prepared `a365-agent` command, capturing its log.
    pub fn spawn_agent_command(&self, mut cmd: Command) -> Agent {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        // A binary copied by this test may still be open for writing in a
        // child another test forked meanwhile (ETXTBSY): try again.
        let mut tries = 0;
        let mut child = loop {
            match cmd.spawn() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                spawned => break spawned.expect("spawn a365-agent"),
            }
        };
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut log) = sink.lock() {
                    log.extend_from_slice(&buf[..n]);
                }
            }
        });
        Agent {
            child,
            log,
            reader: Some(reader),
        }
    }

    /// Adds a refresh profile against `server` with a freshly minted
    /// refresh token (returned), and checks that it worked.
    pub fn add_refresh(&self, name: &str, server: &TokenServer) -> String {
        let (rt, out) = self.try_add_refresh(name, server, &[]);
        out.ok();
        rt
    }

    /// `a365 add NAME --kind refresh …` against `server` with a freshly
    /// minted refresh token and `extra` flags; the token and what `add` said.
    pub fn try_add_refresh(
        &self,
        name: &str,
        server: &TokenServer,
        extra: &[&str],
    ) -> (String, Out) {
        self.try_add_refresh_at(name, server, &server.token_url(), extra)
    }

    /// [`Env::try_add_refresh`] with `token_url` naming `server` another way.
    pub fn try_add_refresh_at(
        &self,
        name: &str,
        server: &TokenServer,
        token_url: &str,
        extra: &[&str],
    ) -> (String, Out) {
        self.try_add_refresh_with(name, server, ("test-secret", token_url), extra)
    }

    /// [`Env::try_add_refresh`] for a client whose secret is `secret`
    /// (registered so with `server`), at `token_url`.
    pub fn try_add_refresh_with(
        &self,
        name: &str,
        server: &TokenServer,
        (secret, token_url): (&str, &str),
        extra: &[&str],
    ) -> (String, Out) {
        let rt = server.issue_refresh_token("test-client");
        let secrets =
            serde_json::json!({ "client_secret": secret, "refresh_token": rt }).to_string();
        let mut args = vec![
            "add",
            name,
            "--kind",
            "refresh",
            "--token-url",
            token_url,
            "--client-id",
            "test-client",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--secrets-from", "-"]);
        let out = self.a365_with_stdin(&args, secrets.as_bytes());
        (rt, out)
    }

    /// `a365 token PROFILE --min-valid 0s`, the token only.
    pub fn token(&self, profile: &str) -> String {
        self.a365(&["token", profile, "--min-valid", "0s"])
            .ok()
            .stdout
            .trim_end()
            .to_owned()
    }

    /// The refresh token the file store holds for `profile`.
    pub fn stored_refresh_token(&self, profile: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.credential_file(profile)).ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        value["refresh_token"].as_str().map(str::to_owned)
    }
}

/// A private D-Bus session bus with gnome-keyring's Secret Service on it,
/// unlocked with a throwaway password; both killed when dropped.
pub struct Keyring {
    pub bus: String,
    bus_daemon: Child,
    keyring_daemon: Option<Child>,
}

impl Keyring {
    fn start(env: &Env) -> Result<Keyring, String> {
        use std::io::{BufRead, Write};
        let mut bus_daemon = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("dbus-daemon: {e}"))?;
        let mut line = String::new();
        let stdout = bus_daemon.stdout.take().ok_or("dbus-daemon: no stdout")?;
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("dbus-daemon: {e}"))?;
        let mut keyring = Keyring {
            bus: line.trim().to_owned(),
            bus_daemon,
            keyring_daemon: None,
        };
        if keyring.bus.is_empty() {
            return Err("dbus-daemon printed no address".into());
        }
        let mut daemon = Command::new("gnome-keyring-daemon")
            .args(["--unlock", "--components=secrets", "--foreground"])
            .env("DBUS_SESSION_BUS_ADDRESS", &keyring.bus)
            .env("HOME", env.path("home"))
            .env("XDG_DATA_HOME", env.path("home/data"))
            .env("XDG_RUNTIME_DIR", env.path("run"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("gnome-keyring-daemon: {e}"))?;
        // The login keyring's password, then EOF.
        if let Some(mut stdin) = daemon.stdin.take() {
            let _ = stdin.write_all(b"test-keyring-password");
        }
        keyring.keyring_daemon = Some(daemon);
        let owned = || {
            Command::new("dbus-send")
                .args([
                    "--session",
                    "--print-reply",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.NameHasOwner",
                    "string:org.freedesktop.secrets",
                ])
                .env("DBUS_SESSION_BUS_ADDRESS", &keyring.bus)
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("boolean true"))
        };
        if !wait_until(Duration::from_secs(10), owned) {
            return Err("gnome-keyring-daemon did not take org.freedesktop.secrets".into());
        }
        Ok(keyring)
    }
}

impl Drop for Keyring {
    fn drop(&mut self) {
        for child in self.keyring_daemon.iter_mut().chain([&mut self.bus_daemon]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running agent; killed when dropped.
pub struct Agent {
    pub child: Child,
    log: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Agent {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    #[track_caller]
    pub fn wait_ready(&self, socket: &Path) {
        let ready = wait_until(Duration::from_secs(10), || {
            Client::connect(socket)
                .and_then(|mut c| c.call(&Request::Ping))
                .is_ok_and(|r| matches!(r, Response::Pong { .. }))
        });
        assert!(ready, "the agent did not come up; its log:\n{}", self.log());
    }

    /// Everything it wrote to stderr so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().map(|l| l.clone()).unwrap_or_default())
            .into_owned()
    }

    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).expect("pid");
        rustix::process::kill_process(pid, signal).expect("kill");
    }

    /// Waits for it to exit (at most `timeout`); its status and full log.
    pub fn wait(mut self, timeout: Duration) -> (ExitStatus, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                start.elapsed() < timeout,
                "the agent did not exit; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        (status, self.log())
    }

    /// SIGTERM, then wait: what systemd does.
    pub fn terminate(self) -> (ExitStatus, String) {
        self.signal(rustix::process::Signal::TERM);
        self.wait(Duration::from_secs(35))
    }

    /// SIGKILL: a crash.
    pub fn kill(self) -> String {
        self.signal(rustix::process::Signal::KILL);
        self.wait(Duration::from_secs(10)).1
    }

    /// Resident memory in KiB, from /proc.
    #[allow(dead_code)] // used by tests/alone
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// As many open files as the hard limit allows (thousands of connections).
pub fn raise_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
}

/// Polls `f` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Waits until the JWT `token` has expired by its `exp` (10 s at most).
pub fn wait_past_exp(token: &str) {
    let exp = jwt_payload(token)["exp"].as_f64().unwrap();
    assert!(wait_until(Duration::from_secs(10), || now_secs() > exp));
}

/// The JWT payload of `token`, decoded.
pub fn jwt_payload(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON payload")
}

/// Now, in UTC epoch seconds (fractional).
/// A free loopback port, for a redirect URI or a listener registered in
/// advance.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The profile names of a `status --json` answer, in its order.
pub fn names(status: &serde_json::Value) -> Vec<&str> {
    status
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect()
}

pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// The usual start of a test: a token server, a user's world, an agent, and
/// a refresh profile `work` with a token already obtained. Fields drop in
/// reverse: the agent stops before its directories and the server go.
pub struct Session {
    pub server: TokenServer,
    pub env: Env,
    pub agent: Agent,
}

impl Session {
    pub fn start(config: a365_token_server::ServerConfig) -> Session {
        Session::start_with(config, &[])
    }

    /// The same, with `a365-agent AGENT_ARGS…`.
    pub fn start_with(config: a365_token_server::ServerConfig, agent_args: &[&str]) -> Session {
        let server = TokenServer::start(config).expect("token server");
        let env = Env::new();
        let agent = env.spawn_agent(agent_args);
        agent.wait_ready(&env.socket);
        env.add_refresh("work", &server);
        Session { server, env, agent }
    }
}

/// Whether this test may do what needs root (switch users, chown); if
/// not, it is skipped by [`skip`]'s rule.
pub fn require_root(what: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    skip(&format!("{what} needs root (CI runs as root)"));
    false
}

/// Another local user, the attacker of the security tests: made with
/// `useradd -M` for this test and removed (`userdel`) when dropped.
pub struct OtherUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl OtherUser {
    /// Call only after [`require_root`].
    pub fn create() -> OtherUser {
        let name = format!("a365t{}", fastrand::u32(100_000..999_999));
        let status = Command::new("useradd")
            .args(["-M", "-U", "-s", "/usr/sbin/nologin", &name])
            .status()
            .expect("run useradd (Debian package passwd)");
        assert!(status.success(), "useradd {name} failed");
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, &name]).output().expect("id");
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("a numeric id")
        };
        let (uid, gid) = (id("-u"), id("-g"));
        OtherUser { name, uid, gid }
    }

    /// `program` run as this user.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(program);
        cmd.uid(self.uid).gid(self.gid);
        cmd.env_clear().env("PATH", "/usr/bin:/bin");
        cmd
    }
}

/// A listener of another user's: counts the bytes it receives, answers
/// nothing. See [`OtherUser::squat`].
const SQUATTER: &str = r#"
import os, socket, sys
path, record = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
os.chmod(path, 0o777)
s.listen(16)
open(record + ".ready", "w").close()
got = 0
while True:
    c, _ = s.accept()
    c.settimeout(2)
    try:
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            got += len(chunk)
    except OSError:
        pass
    c.close()
    with open(record, "w") as f:
        f.write(str(got))
"#;

/// Another user's socket, in a directory of theirs the victim can reach.
pub struct Squatter {
    pub socket: PathBuf,
    record: PathBuf,
    child: Child,
}

impl Squatter {
    /// Bytes received by the squatter over all connections so far.
    pub fn received(&self) -> u64 {
        std::fs::read_to_string(&self.record)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OtherUser {
    /// Listens, as this user, on a socket in a directory of theirs inside
    /// `env` (opened up so the victim can reach it).
    pub fn squat(&self, env: &Env) -> Squatter {
        set_mode(env.dir.path(), 0o755);
        let trap = env.path("trap");
        std::fs::create_dir(&trap).expect("mkdir trap");
        std::os::unix::fs::chown(&trap, Some(self.uid), Some(self.gid)).expect("chown");
        set_mode(&trap, 0o755);
        let socket = trap.join("agent.sock");
        let record = trap.join("received");
        let child = self
            .command("python3")
            .args(["-c", SQUATTER])
            .arg(&socket)
            .arg(&record)
            .spawn()
            .expect("python3");
        assert!(
            wait_until(Duration::from_secs(10), || trap
                .join("received.ready")
                .exists()),
            "the squatter did not start"
        );
        Squatter {
            socket,
            record,
            child,
        }
    }
}

impl Drop for OtherUser {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-u", &self.name])
            .status();
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}
