//! The listening socket: a private directory, a private socket, and the
//! ssh-agent rules for a socket file that is already there.

use std::io;
use std::path::{Path, PathBuf};

use interprocess::local_socket::ListenerOptions;
use interprocess::local_socket::tokio::Listener;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another a365-agent is already running at {0}")]
    AlreadyRunning(PathBuf),
    #[error("{path} exists and is not a socket: remove it or choose another --socket")]
    NotASocket { path: PathBuf },
    #[error(
        "refusing to use {path}: {reason}. The socket directory must be a real directory (not a \
         link) that belongs to you and that only you can write (e.g. `chmod 700 {path}`), or \
         choose another --socket"
    )]
    UnsafeDirectory { path: PathBuf, reason: String },
    #[error("cannot listen at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "the pipe {path} is held by another process that is not an agent of yours (another \
         user's, or one that took the name first): refusing to share it; stop it, or choose \
         another --socket"
    )]
    PipeTaken { path: PathBuf },
    #[error("the socket passed by the service manager (LISTEN_FDS) is unusable: {0}")]
    Inherited(String),
}

/// A listening socket handed over by systemd (`LISTEN_FDS`) or
/// `systemd-socket-activate`. Its file belongs to the service manager: the
/// agent neither binds nor removes it.
#[derive(Debug)]
pub struct Inherited {
    #[cfg(unix)]
    listener: std::os::unix::net::UnixListener,
}

/// The socket launchd holds for the LaunchAgent, if it started us.
#[cfg(target_os = "macos")]
fn from_launchd() -> Result<Option<Inherited>, SocketError> {
    let fds = crate::launchd::activated_sockets()
        .map_err(|e| SocketError::Inherited(format!("launch_activate_socket: {e}")))?;
    let Some(mut fds) = fds else {
        return Ok(None);
    };
    if fds.len() != 1 {
        return Err(SocketError::Inherited(format!(
            "launchd passed {} sockets, expected one",
            fds.len()
        )));
    }
    let fd = fds.remove(0);
    let listener = std::os::unix::net::UnixListener::from(fd);
    Ok(Some(Inherited { listener }))
}

/// Takes the socket that systemd passed, if `LISTEN_PID` names this process.
///
/// Call it before any thread starts: it removes `LISTEN_PID` and
/// `LISTEN_FDS` from the environment, so that programs the agent runs do
/// not believe the socket is theirs.
pub fn inherited() -> Result<Option<Inherited>, SocketError> {
    #[cfg(target_os = "macos")]
    if let Some(inherited) = from_launchd()? {
        return Ok(Some(inherited));
    }
    #[cfg(unix)]
    {
        // listenfd also accepts a missing LISTEN_PID; the protocol doesn't.
        let for_us = std::env::var("LISTEN_PID")
            .ok()
            .and_then(|pid| pid.parse::<u32>().ok())
            == Some(std::process::id());
        if !for_us {
            return Ok(None);
        }
        let mut fds = listenfd::ListenFd::from_env();
        if fds.len() != 1 {
            return Err(SocketError::Inherited(format!(
                "expected one socket, got {}",
                fds.len()
            )));
        }
        // Checks that it is an AF_UNIX SOCK_STREAM socket, sets CLOEXEC.
        let listener = fds
            .take_unix_listener(0)
            .map_err(|e| SocketError::Inherited(e.to_string()))?
            .ok_or_else(|| SocketError::Inherited("no socket at fd 3".into()))?;
        // SO_ACCEPTCONN exists on Linux only; launchd passes listening
        // sockets by construction.
        #[cfg(target_os = "linux")]
        if !rustix::net::sockopt::socket_acceptconn(&listener)
            .map_err(|e| SocketError::Inherited(e.to_string()))?
        {
            return Err(SocketError::Inherited(
                "it is a Unix stream socket but not listening".into(),
            ));
        }
        Ok(Some(Inherited { listener }))
    }
    #[cfg(not(unix))]
    {
        Ok(None)
    }
}

impl Inherited {
    /// A socket its caller bound and listens on (an in-process test, so
    /// that no one waits for a socket file): served as systemd's is.
    #[cfg(unix)]
    pub fn bound(listener: std::os::unix::net::UnixListener) -> Inherited {
        Inherited { listener }
    }

    /// Registers the socket with tokio (needs a running runtime).
    pub fn into_listener(self) -> Result<Listener, SocketError> {
        #[cfg(unix)]
        {
            use interprocess::os::unix::uds_local_socket::tokio::Listener as UdsListener;
            let fail = |e: io::Error| SocketError::Inherited(e.to_string());
            // No name reclamation: dropping it never unlinks systemd's file.
            let fd = std::os::fd::OwnedFd::from(self.listener);
            Ok(Listener::from(UdsListener::try_from(fd).map_err(fail)?))
        }
        #[cfg(not(unix))]
        {
            let _ = self;
            Err(SocketError::Inherited("not supported here".into()))
        }
    }

    /// Where it listens, for the log.
    pub fn path(&self) -> Option<PathBuf> {
        #[cfg(unix)]
        {
            self.listener
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(Path::to_owned))
        }
        #[cfg(not(unix))]
        {
            None
        }
    }
}

/// Before binding: the directory (0700), and a leftover socket file removed
/// if no agent answers on it.
#[cfg(unix)]
async fn clear_the_way(path: &Path) -> Result<(), SocketError> {
    let io = |source| SocketError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    prepare_dir(dir)?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(SocketError::NotASocket {
                    path: path.to_owned(),
                });
            }
            if is_live(path).await {
                return Err(SocketError::AlreadyRunning(path.to_owned()));
            }
            tracing::info!(path = %path.display(), "removing a stale socket left by an agent that died");
            std::fs::remove_file(path).map_err(io)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(e)),
    }
}

/// The pipe's security descriptor: a protected DACL granting only our
/// user's SID.
#[cfg(windows)]
fn private_pipe_descriptor()
-> io::Result<interprocess::os::windows::security_descriptor::SecurityDescriptor> {
    use interprocess::os::windows::security_descriptor::SecurityDescriptor;
    let sddl = a365_proto::peer::private_pipe_sddl()?;
    let wide = widestring::U16CString::from_str(&sddl).map_err(io::Error::other)?;
    SecurityDescriptor::deserialize(&wide)
}

/// Creates the directory (0700), deals with a leftover socket file and binds.
pub async fn bind(path: &Path) -> Result<Listener, SocketError> {
    let io = |source| SocketError::Io {
        path: path.to_owned(),
        source,
    };
    #[cfg(unix)]
    clear_the_way(path).await?;
    // A pipe name another agent answers on is taken (Wine does not enforce
    // FILE_FLAG_FIRST_PIPE_INSTANCE, so ask first).
    #[cfg(windows)]
    if is_live(path).await {
        return Err(SocketError::AlreadyRunning(path.to_owned()));
    }
    let name = a365_proto::path::socket_name(path).map_err(io)?;
    let options = ListenerOptions::new().name(name).reclaim_name(true);
    // interprocess creates the first pipe instance with
    // FILE_FLAG_FIRST_PIPE_INSTANCE (a squatter's pipe makes this fail) and
    // rejects remote clients; the access list is ours to give.
    #[cfg(windows)]
    let options = {
        use interprocess::os::windows::local_socket::ListenerOptionsExt as _;
        options.security_descriptor(private_pipe_descriptor().map_err(io)?)
    };
    let listener = options.create_tokio().map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse => SocketError::AlreadyRunning(path.to_owned()),
        // FILE_FLAG_FIRST_PIPE_INSTANCE: the name is held by a pipe that
        // does not answer as an agent of ours (another user's, a squatter).
        io::ErrorKind::PermissionDenied if cfg!(windows) => SocketError::PipeTaken {
            path: path.to_owned(),
        },
        _ => io(e),
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // umask 077 already made it private; say so explicitly anyway.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    Ok(listener)
}

/// An answered connect means a live agent; refused means a stale file.
/// On Windows as an identification-only client, as `a365` connects.
#[cfg(windows)]
pub async fn is_live(path: &Path) -> bool {
    let path = path.to_owned();
    let probe = tokio::task::spawn_blocking(move || a365_proto::pipe::connect(&path).is_ok());
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(6), probe).await,
        Ok(Ok(true))
    )
}

/// An answered connect means a live agent; refused means a stale file.
#[cfg(not(windows))]
pub async fn is_live(path: &Path) -> bool {
    use interprocess::local_socket::traits::tokio::Stream as _;
    let Ok(name) = a365_proto::path::socket_name(path) else {
        return false;
    };
    matches!(
        tokio::time::timeout(
            std::time::Duration::from_secs(2),
            interprocess::local_socket::tokio::Stream::connect(name)
        )
        .await,
        Ok(Ok(_))
    )
}

/// The directory must be ours and closed to others, as ssh insists.
#[cfg(unix)]
fn prepare_dir(dir: &Path) -> Result<(), SocketError> {
    use a365_proto::path::DirError;
    a365_proto::path::private_dir(dir).map_err(|e| match e {
        DirError::Unsafe { path, reason } => SocketError::UnsafeDirectory { path, reason },
        DirError::Io { path, source } => SocketError::Io { path, source },
    })
}
