//! Where the agent listens, and the rules its directory must meet: the one
//! definition the agent and every client use.

#[cfg(unix)]
use std::path::Path;
use std::path::PathBuf;

/// Overrides the socket path, like `SSH_AUTH_SOCK`.
pub const SOCKET_ENV: &str = "A365_AGENT_SOCK";

/// Neither a runtime nor a home directory to put the socket in.
#[derive(Debug, thiserror::Error)]
#[error(
    "there is no runtime directory ($XDG_RUNTIME_DIR) and no home directory for the agent's \
     socket: set {SOCKET_ENV} to a path in a directory only you can write"
)]
pub struct NoSocketPath;

/// The socket path: `$A365_AGENT_SOCK` if set and non-empty, else
/// [`default_socket_path`].
pub fn socket_path() -> Result<PathBuf, NoSocketPath> {
    match std::env::var_os(SOCKET_ENV) {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => default_socket_path(),
    }
}

/// `$XDG_RUNTIME_DIR/a365/agent.sock`. Without that variable (cron, `su -`,
/// `sudo -iu`, `docker exec`, SSH without pam_systemd) the login session's
/// runtime directory `/run/user/{uid}` if it exists and is ours, so those
/// shells find the agent that systemd started; else a directory in the
/// user's own state directory (`~/.local/state/a365/` on Linux,
/// `~/Library/Application Support/a365/` on macOS). Never a shared,
/// predictable place such as `/tmp`, where another user could create the
/// directory first.
#[cfg(unix)]
pub fn default_socket_path() -> Result<PathBuf, NoSocketPath> {
    let base = directories::BaseDirs::new();
    if let Some(run) = base.as_ref().and_then(|b| b.runtime_dir()) {
        return Ok(run.join("a365").join("agent.sock"));
    }
    let session = PathBuf::from(format!("/run/user/{}", rustix::process::geteuid().as_raw()));
    if cfg!(target_os = "linux") && check_dir(&session).is_ok() {
        return Ok(session.join("a365").join("agent.sock"));
    }
    let own = base
        .as_ref()
        .map(|b| b.state_dir().unwrap_or_else(|| b.data_local_dir()))
        .ok_or(NoSocketPath)?;
    Ok(own.join("a365").join("agent.sock"))
}

/// `\\.\pipe\a365-agent-{user}-{random}`: see [`crate::pipe`].
#[cfg(windows)]
pub fn default_socket_path() -> Result<PathBuf, NoSocketPath> {
    crate::pipe::default_path().ok_or(NoSocketPath)
}

/// The interprocess name for `path`. On Unix a file path (never the Linux
/// abstract namespace, which has no permissions).
pub fn socket_name(
    path: &std::path::Path,
) -> std::io::Result<interprocess::local_socket::Name<'_>> {
    use interprocess::local_socket::{GenericFilePath, ToFsName};
    path.to_fs_name::<GenericFilePath>()
}

/// A directory that another user could control.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error(
        "refusing to use {path}: {reason}. It must be a real directory (not a link) that belongs \
         to you and that only you can write (e.g. `chmod 700 {path}`)"
    )]
    Unsafe { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Creates `dir` (mode 0700, missing parents too) and checks it with
/// [`check_dir`].
#[cfg(unix)]
pub fn private_dir(dir: &Path) -> Result<(), DirError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| DirError::Io {
            path: dir.to_owned(),
            source,
        })?;
    check_dir(dir)
}

/// The checks ssh's StrictModes makes: `dir` itself is a directory, not a
/// symbolic link (checked with `lstat`, so a link cannot be re-pointed
/// after the check), belongs to this user and is writable by nobody else;
/// every directory above it belongs to this user or root and is writable
/// by nobody else unless sticky (`/tmp`), so nobody can rename it away and
/// put another in its place.
#[cfg(unix)]
pub fn check_dir(dir: &Path) -> Result<(), DirError> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    let unsafe_dir = |path: &Path, reason: String| DirError::Unsafe {
        path: path.to_owned(),
        reason,
    };
    let io = |path: &Path, source| DirError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::symlink_metadata(dir).map_err(|e| io(dir, e))?;
    if meta.file_type().is_symlink() {
        return Err(unsafe_dir(dir, "it is a symbolic link".into()));
    }
    if !meta.is_dir() {
        return Err(unsafe_dir(dir, "it is not a directory".into()));
    }
    if meta.uid() != me {
        return Err(unsafe_dir(
            dir,
            format!("it belongs to uid {}, not to you (uid {me})", meta.uid()),
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_dir(
            dir,
            format!("it is writable by others (mode {:o})", meta.mode() & 0o7777),
        ));
    }
    let real = std::fs::canonicalize(dir).map_err(|e| io(dir, e))?;
    for above in real.ancestors().skip(1) {
        let meta = std::fs::symlink_metadata(above).map_err(|e| io(above, e))?;
        if meta.uid() != me && meta.uid() != 0 {
            return Err(unsafe_dir(
                dir,
                format!(
                    "{} above it belongs to uid {}, who could replace it",
                    above.display(),
                    meta.uid()
                ),
            ));
        }
        if meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0 {
            return Err(unsafe_dir(
                dir,
                format!(
                    "{} above it is writable by others (mode {:o}) and not sticky",
                    above.display(),
                    meta.mode() & 0o7777
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn default_ends_in_agent_sock_under_a365() {
        let p = default_socket_path().unwrap();
        assert!(p.ends_with("a365/agent.sock"), "{}", p.display());
        assert!(!p.starts_with(std::env::temp_dir()), "{}", p.display());
    }

    fn private_tempdir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("a365-path-")
            .tempdir()
            .unwrap()
    }

    fn chmod(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_new_directory_is_made_private() {
        use std::os::unix::fs::MetadataExt;
        let top = private_tempdir();
        let dir = top.path().join("a/b/a365");
        private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn a_symbolic_link_is_refused_even_to_a_good_directory() {
        let top = private_tempdir();
        let real = top.path().join("real");
        private_dir(&real).unwrap();
        let link = top.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = private_dir(&link).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(err.contains(&link.display().to_string()), "{err}");
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        let top = private_tempdir();
        let dir = top.path().join("a365");
        private_dir(&dir).unwrap();
        chmod(&dir, 0o770);
        let err = check_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("writable by others (mode 770)"), "{err}");
    }

    #[test]
    fn a_parent_others_can_write_is_refused_unless_sticky() {
        let top = private_tempdir();
        let parent = top.path().join("shared");
        let dir = parent.join("a365");
        private_dir(&dir).unwrap();
        chmod(&parent, 0o777);
        let err = check_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("above it is writable by others"), "{err}");
        chmod(&parent, 0o1777);
        check_dir(&dir).unwrap();
    }

    #[test]
    fn a_file_is_not_a_directory() {
        let top = private_tempdir();
        let file = top.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let err = check_dir(&file).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
    }
}
