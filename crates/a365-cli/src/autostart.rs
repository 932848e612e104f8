//! Starting an agent when none answers, the way gpg-agent and rbw do, so a
//! script's first `a365 token` after login just works. Clients that race
//! to do it take turns on a lock file next to the socket: the first starts
//! the agent, the others find it answering.
//!
//! Not done when `A365_NO_AUTOSTART=1`, nor for `ping`, whose job is to say
//! whether an agent runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use a365_proto::{Client, ClientError};

use crate::exit::Error;

/// The agent this process talked to (0: none yet), for
/// [`restart_if_upgraded`].
static AGENT_PID: AtomicU32 = AtomicU32::new(0);

/// Connects, starting an agent first if none answers.
pub fn connect(socket: &Path) -> Result<Client, Error> {
    let client = match Client::connect(socket) {
        Ok(client) => client,
        // Only when nothing listens: a socket of another user's is refused
        // (`NotOurs`) and never replaced by an agent of ours.
        Err(ClientError::Unreachable { .. }) if enabled() => {
            start(socket)?;
            Client::connect(socket)?
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(pid) = client.agent_pid() {
        AGENT_PID.store(pid, Ordering::Relaxed);
    }
    Ok(client)
}

/// After a command: if the agent it talked to may run a binary that has
/// since been replaced on disk (a package upgrade), ask it to check and,
/// if so, to stop once nothing would be lost, so that the service manager
/// or the next command starts the new one. The agent is not dumpable, so
/// its `/proc/PID/exe` is closed to its own user: the sign is the binary
/// its command line names (else the one next to `a365`) changed after the
/// agent started, and the agent itself decides. Two small reads of
/// `/proc` and a stat on the hot path; nothing at all elsewhere.
pub fn restart_if_upgraded(socket: &Path) {
    #[cfg(target_os = "linux")]
    {
        let pid = AGENT_PID.load(Ordering::Relaxed);
        if pid == 0 || !changed_since_start(pid) {
            return;
        }
        let answer = Client::connect(socket).and_then(|mut c| {
            if c.agent_pid() != Some(pid) {
                return Ok(None); // another agent answers by now
            }
            c.call(&a365_proto::Request::Restart).map(Some)
        });
        match answer {
            Ok(Some(a365_proto::Response::Done { message })) => {
                eprintln!(
                    "a365: a365-agent was upgraded: {}",
                    crate::output::clean(&message, false)
                );
            }
            // `bad_request`: the agent found its binary unchanged (another
            // one was installed next to `a365`): nothing to say.
            Ok(Some(a365_proto::Response::Error(reply)))
                if reply.kind != a365_proto::ErrorKind::BadRequest =>
            {
                eprintln!(
                    "a365: a365-agent was upgraded: {}",
                    crate::output::clean(&reply.message, false)
                );
            }
            _ => {}
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (socket, &AGENT_PID);
}

/// Whether the agent's binary on disk changed (written or renamed into
/// place: dpkg keeps a file's mtime from the package, the ctime is new)
/// after process `pid` started.
#[cfg(target_os = "linux")]
fn changed_since_start(pid: u32) -> bool {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let Some(started) = started_at(pid) else {
        return false;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let binary = match argv0.first() {
        Some(b'/') => PathBuf::from(std::ffi::OsStr::from_bytes(argv0)),
        _ => agent_binary(),
    };
    let Ok(meta) = std::fs::metadata(&binary) else {
        return false;
    };
    let at = |secs: i64, nanos: i64| {
        std::time::Duration::new(
            u64::try_from(secs).unwrap_or(0),
            u32::try_from(nanos).unwrap_or(0),
        )
    };
    let changed = at(meta.ctime(), meta.ctime_nsec()).max(at(meta.mtime(), meta.mtime_nsec()));
    // The start is known to a clock tick (10 ms): a change just before it
    // must not look like one after.
    std::time::UNIX_EPOCH + changed > started + std::time::Duration::from_millis(50)
}

/// When process `pid` started (wall clock): its start in clock ticks
/// since boot (`/proc/PID/stat`, readable for any process), against the
/// time since boot now.
#[cfg(target_os = "linux")]
fn started_at(pid: u32) -> Option<std::time::SystemTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses (which may hold spaces): the
    // 3rd field on; the start time is the 22nd in all.
    let rest = &stat[stat.rfind(')')? + 2..];
    let ticks: u64 = rest.split(' ').nth(19)?.parse().ok()?;
    let per_sec = rustix::param::clock_ticks_per_second();
    let since_boot = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let now_since_boot = std::time::Duration::new(
        u64::try_from(since_boot.tv_sec).ok()?,
        u32::try_from(since_boot.tv_nsec).ok()?,
    );
    let started_since_boot =
        std::time::Duration::from_millis(ticks.checked_mul(1000)? / per_sec.max(1));
    std::time::SystemTime::now().checked_sub(now_since_boot.checked_sub(started_since_boot)?)
}

fn enabled() -> bool {
    std::env::var_os("A365_NO_AUTOSTART").is_none_or(|v| v.is_empty() || v == "0")
}

fn failed(what: &str, e: &dyn std::fmt::Display) -> Error {
    Error::Other(anyhow::anyhow!("starting an agent: {what}: {e}"))
}

fn start(socket: &Path) -> Result<(), Error> {
    // Held until dropped (closed) at the end of this function.
    let lock = take_turn(socket)?;
    if Client::connect(socket).is_ok() {
        return Ok(()); // another client started it while we waited
    }
    let agent = agent_binary();
    // `--daemon` returns once the agent answers on its socket.
    let mut command = Command::new(&agent);
    command
        .arg("--daemon")
        .arg("--socket")
        .arg(socket)
        // Started from inside `a365 exec`: the agent has no use for it.
        .env_remove("A365_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Nor may it hold our caller's pipes (`t=$(a365 token)` would wait
    // for the agent to exit).
    a365_proto::handles::keep_std_handles();
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt;
        // No console window flashes up for it.
        const CREATE_NO_WINDOW: u32 = 0x0800_0000;
        command.creation_flags(CREATE_NO_WINDOW);
    }
    let output = command
        .output()
        .map_err(|e| failed(&agent.display().to_string(), &e))?;
    if !output.status.success() {
        return Err(Error::Other(anyhow::anyhow!(
            "no agent was running and starting {} failed: {}",
            agent.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    eprintln!(
        "a365: started a365-agent at {} (set A365_NO_AUTOSTART=1 to never do this)",
        socket.display()
    );
    drop(lock);
    Ok(())
}

/// Clients that race to start an agent take turns on a lock file next to
/// the socket, in a directory that must be ours.
#[cfg(unix)]
fn take_turn(socket: &Path) -> Result<std::fs::File, Error> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let dir = socket.parent().unwrap_or(Path::new("."));
    // The same rules as the agent's: a directory of ours, not a link.
    a365_proto::path::private_dir(dir).map_err(|e| Error::Other(anyhow::anyhow!("{e}")))?;
    let lock_path = dir.join(".autostart.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&lock_path)
        .map_err(|e| failed(&lock_path.display().to_string(), &e))?;
    let meta = lock
        .metadata()
        .map_err(|e| failed(&lock_path.display().to_string(), &e))?;
    if !meta.is_file() || meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(failed(
            &lock_path.display().to_string(),
            &"not a regular file of yours: remove it",
        ));
    }
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| failed("locking", &e))?;
    Ok(lock)
}

/// A pipe has no directory: the lock file is in `%LOCALAPPDATA%\a365`,
/// which only the user (and administrators) can write.
#[cfg(windows)]
fn take_turn(_socket: &Path) -> Result<std::fs::File, Error> {
    let base = std::env::var_os("LOCALAPPDATA")
        .map(PathBuf::from)
        .ok_or_else(|| failed("finding %LOCALAPPDATA%", &"it is not set"))?;
    let dir = base.join("a365");
    std::fs::create_dir_all(&dir).map_err(|e| failed(&dir.display().to_string(), &e))?;
    let lock_path = dir.join("autostart.lock");
    // Opened with no sharing: while one client holds it, the others'
    // opens fail with a sharing violation, and they wait their turn.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        use std::os::windows::fs::OpenOptionsExt;
        const ERROR_SHARING_VIOLATION: i32 = 32;
        match std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .share_mode(0)
            .open(&lock_path)
        {
            Ok(lock) => return Ok(lock),
            Err(e)
                if e.raw_os_error() == Some(ERROR_SHARING_VIOLATION)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => return Err(failed(&lock_path.display().to_string(), &e)),
        }
    }
}

/// `a365-agent` next to this binary (how both are installed), else `PATH`.
fn agent_binary() -> PathBuf {
    let name = format!("a365-agent{}", std::env::consts::EXE_SUFFIX);
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(&name)))
        .filter(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}
