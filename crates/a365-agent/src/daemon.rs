//! `--daemon`: start the agent in the background and print the shell
//! lines that point clients at it, like `eval "$(ssh-agent)"`.
//!
//! Rather than fork a process that may already hold threads, re-run our own
//! binary in a new process group with the same arguments minus `--daemon`,
//! and wait until it answers on its socket.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use a365_proto::{Client, Request, Response};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot start the agent: {0}")]
    Spawn(std::io::Error),
    #[error("cannot start the agent: {0}")]
    Log(#[from] crate::strict::StrictError),
    #[error("the agent exited at start-up ({status}){why}; its log is {log}")]
    Exited {
        status: std::process::ExitStatus,
        /// ": " and the error it said last, if its log has one.
        why: String,
        log: String,
    },
    #[error("the agent did not answer on {0} within 10 s")]
    Timeout(String),
}

/// The variable `a365 exec` hands its command: an agent started from
/// inside `a365 exec` (autostart) must not keep a token in its environment.
pub const TOKEN_ENV: &str = "A365_TOKEN";

/// Starts the background agent; returns its pid once it answers.
pub fn spawn(socket: &Path, args: &[std::ffi::OsString], log: &Path) -> Result<u32, DaemonError> {
    let exe = std::env::current_exe().map_err(DaemonError::Spawn)?;
    #[cfg(unix)]
    if let Some(dir) = log.parent() {
        a365_proto::path::private_dir(dir).map_err(crate::strict::StrictError::from)?;
    }
    // A new account has no %LOCALAPPDATA%\a365\data yet.
    #[cfg(not(unix))]
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(|source| crate::strict::StrictError::Io {
            path: dir.to_owned(),
            source,
        })?;
    }
    let log_file = crate::strict::open_log(log)?;
    let mut command = Command::new(exe);
    command
        .args(child_args(args))
        .env_remove(TOKEN_ENV)
        .arg("--socket")
        .arg(socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Out of the terminal's process group: Ctrl-C there must not stop it.
        command.process_group(0);
    }
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt;
        a365_proto::handles::keep_std_handles();
        // No console (none opens, and closing the one we were started from
        // does not end it), and Ctrl-C there does not reach it.
        use windows_sys::Win32::System::Threading::{CREATE_NEW_PROCESS_GROUP, DETACHED_PROCESS};
        command.creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP);
    }
    let mut child = command.spawn().map_err(DaemonError::Spawn)?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(DaemonError::Exited {
                status,
                why: last_error(log)
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default(),
                log: log.display().to_string(),
            });
        }
        if let Ok(mut client) = Client::connect(socket)
            && let Ok(Response::Pong { pid, .. }) = client.call(&Request::Ping)
        {
            return Ok(pid);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(DaemonError::Timeout(socket.display().to_string()))
}

/// The last fatal error an agent wrote to `log` (a line `a365-agent: …`
/// near its end), control characters shown escaped.
fn last_error(log: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(log).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).ok()?;
    let text = String::from_utf8_lossy(&tail);
    let line = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("a365-agent: "))?;
    Some(
        line.chars()
            .map(|c| match c.is_control() {
                true => c.escape_default().to_string(),
                false => c.to_string(),
            })
            .collect(),
    )
}

/// Our arguments minus `--daemon` and any `--socket` (given explicitly).
fn child_args(args: &[std::ffi::OsString]) -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for arg in args {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        match arg.to_str() {
            Some("--daemon" | "-d") => {}
            Some("--socket") => skip_value = true,
            Some(a) if a.starts_with("--socket=") => {}
            _ => out.push(arg.clone()),
        }
    }
    out
}

/// Why `--kill` did not stop an agent.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error(transparent)]
    Client(#[from] a365_proto::ClientError),
    /// The agent answered, and refused (a token-only socket, say).
    #[error("the agent at {path} did not stop: {message}")]
    Refused { path: String, message: String },
}

/// Asks the agent at `socket` to stop (`--kill`).
pub fn stop(socket: &Path) -> Result<(), StopError> {
    match Client::connect(socket)?.call(&Request::Shutdown)? {
        Response::Error(e) => Err(StopError::Refused {
            path: socket.display().to_string(),
            message: e.message,
        }),
        _ => Ok(()),
    }
}

/// `A365_AGENT_SOCK=…; export A365_AGENT_SOCK;` quoted for POSIX shells.
pub fn shell_lines(socket: &Path, pid: u32) -> String {
    let quoted = format!("'{}'", socket.display().to_string().replace('\'', r"'\''"));
    format!(
        "{var}={quoted}; export {var};\necho Agent pid {pid};\n",
        var = a365_proto::path::SOCKET_ENV
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_gets_the_socket_once() {
        let args: Vec<std::ffi::OsString> = [
            "--daemon",
            "--socket",
            "/a",
            "--log-level",
            "debug",
            "--socket=/b",
        ]
        .into_iter()
        .map(Into::into)
        .collect();
        assert_eq!(child_args(&args), ["--log-level", "debug"]);
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(
            shell_lines(Path::new("/run/user/1/a365/agent.sock"), 7),
            "A365_AGENT_SOCK='/run/user/1/a365/agent.sock'; export A365_AGENT_SOCK;\necho Agent pid 7;\n"
        );
        assert!(
            shell_lines(Path::new("/tmp/it's"), 1).starts_with(r"A365_AGENT_SOCK='/tmp/it'\''s';")
        );
    }
}
