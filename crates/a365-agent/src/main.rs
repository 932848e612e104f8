//! `a365-agent`: see the crate docs of `a365_agent`.

use std::path::PathBuf;
use std::process::ExitCode;

use a365_agent::{Options, RunError, config::Paths, daemon, server::Limits, socket::SocketError};
use clap::Parser;

/// Exit codes: 0 stopped cleanly, 1 error, 2 usage, 3 another agent runs.
const EXIT_ALREADY_RUNNING: u8 = 3;

/// Holds API credentials and keeps every profile's access token fresh.
#[derive(Debug, Parser)]
#[command(
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("A365_COMMIT"), ")"),
    after_help = "Fleet mode: a [fleet] section in config.toml shares profiles with the agents of other \
machines through etcd: etcd (the members' URLs), member, role (refresher or consumer), key_file \
(refreshers) or public_key (consumers), ca, cert and key, user and password_file, \
insecure_loopback, lease_secs, sync_secs, etcd_timeout_ms and prefix. See the README, \
\"One credential for many machines\".

Exit codes: 0 stopped cleanly, 1 error, 2 usage, 3 another agent is running on the socket."
)]
struct Args {
    /// Socket to listen on.
    #[arg(long, env = a365_proto::path::SOCKET_ENV, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Also listen here for token requests only (token, status, ping,
    /// watch): the socket to forward with `ssh -R` or mount into a container.
    #[arg(long, value_name = "PATH")]
    token_socket: Option<PathBuf>,
    /// Serve only this profile on the token socket (repeatable; default:
    /// every profile).
    #[arg(long, value_name = "NAME", requires = "token_socket")]
    token_socket_profile: Vec<String>,
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: String,
    /// Run in the background and print shell commands that set A365_AGENT_SOCK.
    #[arg(short, long, conflicts_with = "kill")]
    daemon: bool,
    /// Stop the agent listening on the socket (like `ssh-agent -k`).
    #[arg(short, long)]
    kill: bool,
    /// Write the systemd user units (Linux) or the LaunchAgent (macOS) for
    /// this user, with this binary's path, and print what to run next.
    #[arg(long, conflicts_with_all = ["daemon", "kill", "uninstall_service"])]
    install_service: bool,
    /// Remove what --install-service wrote.
    #[arg(long, conflicts_with_all = ["daemon", "kill"])]
    uninstall_service: bool,
    /// Most client connections served at once.
    #[arg(long, default_value_t = Limits::default().max_connections, value_name = "N")]
    max_connections: usize,
    /// Close a connection that sends nothing for this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().idle_timeout.as_secs())]
    idle_timeout: u64,
    /// Close a connection whose message does not arrive whole within this
    /// many seconds of its first byte (slow or stalled clients).
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().read_timeout.as_secs())]
    read_timeout: u64,
    /// Give up on a token request (connect, send, the whole answer) after
    /// this many seconds; it is retried with back-off. A sent refresh
    /// token's answer is waited for longer (--answer-wait).
    #[arg(long, value_name = "SECS", default_value_t = a365_agent::Timeouts::default().http.as_secs())]
    http_timeout: u64,
    /// How long to wait for the answer to a request that carries a
    /// refresh token, once sent (at least --http-timeout): the provider
    /// may have rotated it, so it is never sent again blindly.
    #[arg(long, value_name = "SECS", default_value_t = a365_agent::Timeouts::default().answer_wait.as_secs())]
    answer_wait: u64,
    /// Look this often whether an upgrade replaced this binary on disk,
    /// and then stop once nothing would be lost, to be started on the new
    /// one (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    upgrade_check: u64,
    /// After this many seconds without a request or a refresh, give the
    /// agent's code pages back to the page cache: an idle agent's RSS
    /// drops by about 5 MiB, and the next request maps back what it runs
    /// (Linux; 0: never).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    idle_release: u64,
    /// Print the manual page (roff) and exit: what packages install.
    #[arg(long, exclusive = true)]
    man: bool,
    /// Print the fleet's public key (from `key_file` of `[fleet]` in
    /// config.toml) as the `public_key` line a consumer's `[fleet]` needs,
    /// and exit.
    #[arg(long, conflicts_with_all = ["daemon", "kill", "install_service", "uninstall_service"])]
    fleet_public_key: bool,
}

fn main() -> ExitCode {
    if let Err(e) = scrub_environment() {
        return fail(&e);
    }
    let args = Args::parse();
    if args.man {
        return man();
    }
    if args.fleet_public_key {
        return fleet_public_key();
    }
    if args.install_service || args.uninstall_service {
        return service(args.install_service);
    }
    let memory = harden();
    // Before any thread exists: this edits the environment.
    let inherited = match a365_agent::socket::inherited() {
        Ok(inherited) => inherited,
        Err(e) => return fail(&e),
    };
    let socket = match args
        .socket
        .clone()
        .map_or_else(a365_proto::path::socket_path, Ok)
    {
        Ok(socket) => socket,
        Err(e) => return fail(&e),
    };
    let paths = match Paths::from_env() {
        Ok(paths) => paths,
        Err(e) => return fail(&e),
    };
    if args.kill {
        return match daemon::stop(&socket) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        };
    }
    if args.daemon {
        let raw: Vec<_> = std::env::args_os().skip(1).collect();
        let log = paths.state_dir.join("agent.log");
        return match daemon::spawn(&socket, &raw, &log) {
            Ok(pid) => {
                print!("{}", daemon::shell_lines(&socket, pid));
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        };
    }
    a365_agent::logging::init(&args.log_level);
    match memory {
        Ok(how) => tracing::info!("memory locked ({how}): secrets never reach swap"),
        Err(why) => tracing::info!(
            "memory not locked ({why}); secrets could reach swap: use encrypted swap, or run \
             with an unlimited RLIMIT_MEMLOCK (LimitMEMLOCK=infinity)"
        ),
    }
    serve(options(&args, socket, paths), inherited)
}

/// The agent's options from its flags (numbers clamped to sane ranges).
fn options(args: &Args, socket: std::path::PathBuf, paths: Paths) -> Options {
    Options {
        socket,
        token_socket: args.token_socket.clone(),
        token_socket_profiles: args.token_socket_profile.clone(),
        paths,
        limits: Limits {
            max_connections: args.max_connections,
            idle_timeout: std::time::Duration::from_secs(args.idle_timeout.max(1)),
            read_timeout: std::time::Duration::from_secs(args.read_timeout.max(1)),
        },
        timeouts: a365_agent::Timeouts {
            http: std::time::Duration::from_secs(args.http_timeout.clamp(1, 3600)),
            answer_wait: std::time::Duration::from_secs(args.answer_wait.clamp(1, 3600)),
            release_code: (args.idle_release > 0)
                .then(|| std::time::Duration::from_secs(args.idle_release.min(86_400))),
            upgrade_check: (args.upgrade_check > 0)
                .then(|| std::time::Duration::from_secs(args.upgrade_check.min(86_400))),
            ..a365_agent::Timeouts::default()
        },
    }
}

/// Runs the agent in the foreground until a signal or a `shutdown`.
fn serve(options: Options, inherited: Option<a365_agent::socket::Inherited>) -> ExitCode {
    // One thread serves every connection and refresher: a request is a
    // map lookup and a write, and hand-offs between worker threads cost
    // more than the work (see docs/performance.md). Blocking work (stores,
    // config edits, hooks) goes to tokio's blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&e),
    };
    let clock = std::sync::Arc::new(a365_agent::clock::SystemClock);
    let running = runtime.block_on(async {
        let shutdown = a365_agent::signals()?;
        a365_agent::run(options, inherited, clock, shutdown).await
    });
    match running {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ RunError::Socket(SocketError::AlreadyRunning(_))) => {
            eprintln!("a365-agent: {e}");
            ExitCode::from(EXIT_ALREADY_RUNNING)
        }
        Err(e) => fail(&e),
    }
}

/// `--man`: the page for `a365-agent`, made from the flags above.
fn man() -> ExitCode {
    use clap::CommandFactory;
    match clap_mangen::Man::new(Args::command()).render(&mut std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("writing the man page: {e}")),
    }
}

/// `--fleet-public-key`.
fn fleet_public_key() -> ExitCode {
    let key = Paths::from_env()
        .map_err(|e| e.to_string())
        .and_then(|paths| {
            let config =
                a365_agent::config::Config::load(&paths.config_file).map_err(|e| e.to_string())?;
            let file = config.fleet.and_then(|f| f.key_file).ok_or_else(|| {
                format!("{} has no [fleet] key_file", paths.config_file.display())
            })?;
            a365_agent::fleet::FleetKey::read(&file).map_err(|e| e.to_string())
        });
    match key {
        Ok(key) => {
            println!("public_key = \"{}\"", key.public_key());
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// `--install-service` / `--uninstall-service`.
fn service(install: bool) -> ExitCode {
    let (done, result) = if install {
        ("Wrote", a365_agent::install::install())
    } else {
        ("Removed", a365_agent::install::uninstall())
    };
    match result {
        Ok(report) if report.changed.is_empty() => {
            println!("Nothing to remove.\n{}", report.next);
            ExitCode::SUCCESS
        }
        Ok(report) => {
            print!("{done}:\n{report}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// An agent started from inside `a365 exec` inherits `A365_TOKEN`.
/// Removing it from our own copy of the environment would leave it in the
/// block the kernel shows in `/proc/PID/environ`, so start afresh on the
/// same binary and pid without it.
fn scrub_environment() -> Result<(), String> {
    #[cfg(unix)]
    if std::env::var_os(daemon::TOKEN_ENV).is_some() {
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
        let mut args = std::env::args_os();
        let mut command = std::process::Command::new(exe);
        if let Some(arg0) = args.next() {
            command.arg0(arg0);
        }
        let e = command.args(args).env_remove(daemon::TOKEN_ENV).exec();
        return Err(format!(
            "{} is set and could not be cleared by starting afresh: {e}",
            daemon::TOKEN_ENV
        ));
    }
    Ok(())
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("a365-agent: {e}");
    ExitCode::FAILURE
}

/// Private files, no core dumps, no ptrace by other processes of the user,
/// enough file descriptors for many idle clients, and memory locked where
/// that is safe. Returns how the memory lock went, to be logged.
fn harden() -> Result<&'static str, String> {
    #[cfg(unix)]
    {
        use rustix::fs::Mode;
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit, umask};
        umask(Mode::from_raw_mode(0o077));
        let _ = setrlimit(
            Resource::Core,
            Rlimit {
                current: Some(0),
                maximum: Some(0),
            },
        );
        let files = getrlimit(Resource::Nofile);
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: files.maximum,
                maximum: files.maximum,
            },
        );
    }
    #[cfg(target_os = "linux")]
    {
        let _ =
            rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
        lock_memory()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err("not supported on this platform".into())
    }
}

/// `mlockall` only when nothing can make it fail later: with a finite
/// RLIMIT_MEMLOCK, every later mapping (thread stacks, malloc arenas) counts
/// against it and an allocation past it aborts the agent. Root has
/// CAP_IPC_LOCK, for which the limit does not apply. `ONFAULT` locks pages
/// as they are touched, so reserved-but-unused memory costs nothing.
#[cfg(target_os = "linux")]
fn lock_memory() -> Result<&'static str, String> {
    use rustix::mm::{MlockAllFlags, mlockall};
    use rustix::process::{Resource, getrlimit};
    let limit = getrlimit(Resource::Memlock).current;
    let how = match (limit, rustix::process::geteuid().is_root()) {
        (None, _) => "RLIMIT_MEMLOCK is unlimited",
        (Some(_), true) => "running as root",
        (Some(bytes), false) => {
            return Err(format!(
                "RLIMIT_MEMLOCK is {} KiB, too low to lock the whole agent safely",
                bytes / 1024
            ));
        }
    };
    mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE | MlockAllFlags::ONFAULT)
        .map(|()| how)
        .map_err(|e| format!("mlockall: {e}"))
}
