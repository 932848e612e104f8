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
    open_config(&paths.config_file)?;
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

/// config.toml is a settings file: more than this is not one.
const MAX_CONFIG: u64 = 16 << 20;

/// Opens config.toml once and checks the file that was opened (`fstat`),
/// so what is read is what was checked: checking the name and then
/// opening it again let a swap in between win. A link at the name
/// (config.toml kept in a dotfiles repository) is followed here, once, and
/// then both the link's directory and the file's must be safe, or whoever
/// can write either could re-point it; the file is opened without
/// following a link (`O_NOFOLLOW`). `None` when there is no config file.
#[cfg(unix)]
pub fn open_config(path: &Path) -> Result<Option<std::fs::File>, StrictError> {
    use std::os::unix::fs::OpenOptionsExt;

    use a365_proto::path::check_dir;
    let io = |at: &Path, source| StrictError::Io {
        path: at.to_owned(),
        source,
    };
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(StrictError::File {
            path: path.to_owned(),
            reason: "it is not a file name".into(),
        });
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Some(dir) = existing(dir)? else {
        return Ok(None);
    };
    check_dir(&dir)?;
    let at = dir.join(name);
    let target = match std::fs::symlink_metadata(&at) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io(&at, source)),
        Ok(meta) if meta.file_type().is_symlink() => {
            let Some(real) = existing(&at)? else {
                return Ok(None);
            };
            if let Some(real_dir) = real.parent() {
                check_dir(real_dir)?;
            }
            real
        }
        Ok(_) => at,
    };
    // Non-blocking: a FIFO put there must be refused, not waited on.
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(&target)
        .map_err(|e| io(&target, e))?;
    check_file_meta(&target, &file.metadata().map_err(|e| io(&target, e))?)?;
    Ok(Some(file))
}

/// The text of config.toml, read from the file [`open_config`] checked;
/// `None` when there is none.
pub fn read_config(path: &Path) -> Result<Option<String>, StrictError> {
    #[cfg(unix)]
    let file = open_config(path)?;
    #[cfg(not(unix))]
    let file = match std::fs::File::open(path) {
        Ok(file) => Some(file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(StrictError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let Some(file) = file else {
        return Ok(None);
    };
    read_checked(path, file).map(Some)
}

/// Reads what was opened and checked, at most [`MAX_CONFIG`] bytes.
fn read_checked(path: &Path, file: std::fs::File) -> Result<String, StrictError> {
    use std::io::Read;
    let mut text = String::new();
    file.take(MAX_CONFIG + 1)
        .read_to_string(&mut text)
        .map_err(|source| StrictError::Io {
            path: path.to_owned(),
            source,
        })?;
    if text.len() as u64 > MAX_CONFIG {
        return Err(StrictError::File {
            path: path.to_owned(),
            reason: format!("it is larger than {} MiB", MAX_CONFIG >> 20),
        });
    }
    Ok(text)
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

    /// A config.toml that is a link (dotfiles) is fine only if the
    /// directory holding the link is safe too: in a directory others can
    /// write, they could re-point the link at a config of theirs.
    #[test]
    fn a_linked_config_in_a_directory_others_can_write_is_refused() {
        let top = tempfile::tempdir().unwrap();
        let paths = paths(top.path());
        let dir = paths.config_file.parent().unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let dotfiles = top.path().join("dotfiles");
        std::fs::create_dir_all(&dotfiles).unwrap();
        let real = dotfiles.join("a365.toml");
        std::fs::write(&real, "").unwrap();
        std::os::unix::fs::symlink(&real, &paths.config_file).unwrap();
        check_paths(&paths).unwrap();
        chmod(dir, 0o777);
        let err = check_paths(&paths).unwrap_err().to_string();
        assert!(err.contains("writable by others (mode 777)"), "{err}");
        chmod(dir, 0o700);
        chmod(&dotfiles, 0o777);
        let err = check_paths(&paths).unwrap_err().to_string();
        assert!(err.contains("writable by others (mode 777)"), "{err}");
    }

    /// Open once, check the open file, read that file: a swap of the name
    /// after the check (the race that let 5 of 300 starts load another
    /// user's config) changes nothing that is read.
    #[test]
    fn the_config_is_read_from_the_file_that_was_checked() {
        let top = tempfile::tempdir().unwrap();
        let paths = paths(top.path());
        std::fs::create_dir_all(paths.config_file.parent().unwrap()).unwrap();
        std::fs::write(&paths.config_file, "# mine\n").unwrap();
        let checked = open_config(&paths.config_file).unwrap().unwrap();
        let theirs = top.path().join("theirs.toml");
        std::fs::write(&theirs, "on_event = \"evil\"\n").unwrap();
        std::fs::rename(&theirs, &paths.config_file).unwrap();
        let text = read_checked(&paths.config_file, checked).unwrap();
        assert_eq!(text, "# mine\n");
        // A FIFO (or anything not a regular file) is refused, not waited on.
        std::fs::remove_file(&paths.config_file).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &paths.config_file,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let err = read_config(&paths.config_file).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
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
