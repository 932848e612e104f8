//! ssh's StrictModes for everything the agent reads or writes: a config
//! file another user can edit runs their `on_event` command and sends our
//! secrets to their `token_url`; a state directory they control receives
//! the file store and the log. Each is checked before it is used, and
//! refused with its path and the fix.

use std::path::{Path, PathBuf};

use a365_proto::path::DirError;

use crate::config::Paths;

#[derive(Debug, thiserror::Error)]
pub enum StrictError {
    #[error(transparent)]
    Dir(#[from] DirError),
    #[error(
        "refusing to use {path}: {reason}. It must belong to you and be writable only by you \
         (e.g. `chmod 600 {path}`)"
    )]
    File { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Checks the config file (if there is one) and its directory, creates the
/// state directory 0700 and checks it and its credentials directory.
#[cfg(unix)]
pub fn check_paths(paths: &Paths) -> Result<(), StrictError> {
    use a365_proto::path::{check_dir, private_dir};
    if let Some(real) = existing(&paths.config_file)? {
        // A config.toml linked from a dotfiles repository is fine: what
        // counts is the file it points to and the directories above it.
        check_file(&real)?;
        if let Some(dir) = real.parent() {
            check_dir(dir)?;
        }
    } else if let Some(dir) = paths.config_file.parent()
        && existing(dir)?.is_some()
    {
        check_dir(dir)?;
    }
    private_dir(&paths.state_dir)?;
    let credentials = paths.state_dir.join("credentials");
    if existing(&credentials)?.is_some() {
        check_dir(&credentials)?;
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn check_paths(_paths: &Paths) -> Result<(), StrictError> {
    Ok(())
}

/// The canonical path of `path`, `None` when it does not exist.
#[cfg(unix)]
fn existing(path: &Path) -> Result<Option<PathBuf>, StrictError> {
    match std::fs::canonicalize(path) {
        Ok(real) => Ok(Some(real)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StrictError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// A regular file of ours that nobody else can write.
#[cfg(unix)]
fn check_file(path: &Path) -> Result<(), StrictError> {
    let meta = std::fs::symlink_metadata(path).map_err(|source| StrictError::Io {
        path: path.to_owned(),
        source,
    })?;
    check_file_meta(path, &meta)
}

#[cfg(unix)]
fn check_file_meta(path: &Path, meta: &std::fs::Metadata) -> Result<(), StrictError> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    let refuse = |reason: String| StrictError::File {
        path: path.to_owned(),
        reason,
    };
    if !meta.is_file() {
        return Err(refuse("it is not a regular file".into()));
    }
    if meta.uid() != me {
        return Err(refuse(format!(
            "it belongs to uid {}, not to you (uid {me})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "it is writable by others (mode {:o})",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Opens the daemon's log for appending without following a link at its
/// name, then checks what was opened (`fstat`), so nobody can point it at
/// a file of theirs or of ours elsewhere.
pub fn open_log(path: &Path) -> Result<std::fs::File, StrictError> {
    let io = |source| StrictError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    let file = options.open(path).map_err(io)?;
    #[cfg(unix)]
    check_file_meta(path, &file.metadata().map_err(io)?)?;
    Ok(file)
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn paths(dir: &Path) -> Paths {
        Paths {
            config_file: dir.join("config/a365/config.toml"),
            state_dir: dir.join("state/a365"),
        }
    }

    fn chmod(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_fresh_home_passes_and_gets_a_private_state_directory() {
        use std::os::unix::fs::MetadataExt;
        let top = tempfile::tempdir().unwrap();
        let paths = paths(top.path());
        check_paths(&paths).unwrap();
        assert_eq!(
            std::fs::metadata(&paths.state_dir).unwrap().mode() & 0o777,
            0o700
        );
    }

    #[test]
    fn a_config_file_others_can_write_is_refused() {
        let top = tempfile::tempdir().unwrap();
        let paths = paths(top.path());
        std::fs::create_dir_all(paths.config_file.parent().unwrap()).unwrap();
        std::fs::write(&paths.config_file, "").unwrap();
        chmod(&paths.config_file, 0o666);
        let err = check_paths(&paths).unwrap_err().to_string();
        assert!(
            err.contains("config.toml") && err.contains("writable by others (mode 666)"),
            "{err}"
        );
        assert!(err.contains("chmod 600"), "{err}");
        chmod(&paths.config_file, 0o644);
        check_paths(&paths).unwrap();
    }

    #[test]
    fn a_config_directory_others_can_write_is_refused() {
        let top = tempfile::tempdir().unwrap();
        let paths = paths(top.path());
        let dir = paths.config_file.parent().unwrap();
        std::fs::create_dir_all(dir).unwrap();
        chmod(dir, 0o777);
        let err = check_paths(&paths).unwrap_err().to_string();
        assert!(err.contains("writable by others (mode 777)"), "{err}");
    }

    #[test]
    fn a_linked_state_directory_is_refused() {
        let top = tempfile::tempdir().unwrap();
        let paths = paths(top.path());
        let elsewhere = top.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::create_dir_all(paths.state_dir.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &paths.state_dir).unwrap();
        let err = check_paths(&paths).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
    }

    #[test]
    fn the_log_is_never_opened_through_a_link() {
        let top = tempfile::tempdir().unwrap();
        let target = top.path().join("target");
        std::fs::write(&target, "").unwrap();
        let log = top.path().join("agent.log");
        std::os::unix::fs::symlink(&target, &log).unwrap();
        let err = open_log(&log).unwrap_err().to_string();
        assert!(err.contains("agent.log"), "{err}");
        let real = top.path().join("real.log");
        open_log(&real).unwrap();
    }
}
