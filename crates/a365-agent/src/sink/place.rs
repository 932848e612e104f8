//! Where a sink may write, and the write itself. A file in a directory
//! another user can write is theirs to swap (a link to a file of their
//! choosing, a rename of ours), so such a place is refused, and checked
//! again before every write.
//!
//! - Unix: the file's directory and each directory above it belong to
//!   this user or root, and only the sticky ones (`/tmp`) may be writable
//!   by others above the file's own; links on the way likewise.
//! - Windows: the file's folder must be inside the user's profile folder
//!   (`%USERPROFILE%`, which only the user, SYSTEM and administrators can
//!   write), and the file gets an access list of the user alone.

use std::path::PathBuf;

use a365_proto::FileSink;

#[cfg(unix)]
use unix as platform;
#[cfg(windows)]
use windows as platform;

/// A checked place to write a sink's file.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    path: PathBuf,
    /// The group that may read the file (mode 0640; Unix).
    gid: Option<u32>,
}

impl Place {
    /// Where `sink` writes, if it may.
    pub(crate) fn check(sink: &FileSink) -> Result<Place, String> {
        let place = Place {
            path: PathBuf::from(&sink.path),
            gid: sink.group.as_deref().map(platform::group).transpose()?,
        };
        place.check_dirs()?;
        Ok(place)
    }

    /// Replaces the file with `bytes` atomically: a reader sees the old
    /// file or the new one, whole, never a part.
    pub(super) fn write(&self, bytes: &[u8]) -> Result<(), String> {
        use std::io::Write;
        self.check_dirs()?;
        let path = &self.path;
        let at = |e: std::io::Error| format!("writing {}: {e}", path.display());
        let dir = path
            .parent()
            .ok_or_else(|| format!("{} names no file", path.display()))?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        // A new file, created exclusively, readable by its owner only.
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(at)?;
        platform::restrict(tmp.as_file(), tmp.path(), self.gid)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        tmp.write_all(bytes).map_err(at)?;
        tmp.as_file().sync_all().map_err(at)?;
        // rename(2); on Windows MoveFileEx with MOVEFILE_REPLACE_EXISTING.
        tmp.persist(path).map_err(|e| at(e.error))?;
        platform::sync_dir(dir).map_err(at)
    }

    fn check_dirs(&self) -> Result<(), String> {
        platform::check(&self.path)
    }
}

#[cfg(windows)]
mod windows {
    use std::path::Path;

    /// A group that may read the file: Unix only.
    pub(super) fn group(_: &str) -> Result<u32, String> {
        Err("--group is for Unix: here the file is readable by you alone".into())
    }

    pub(super) fn check(path: &Path) -> Result<(), String> {
        if !path.is_absolute() {
            return Err(format!(
                "{} is not an absolute path (the agent's working directory is not yours)",
                path.display()
            ));
        }
        let (Some(dir), Some(_)) = (path.parent(), path.file_name()) else {
            return Err(format!("{} names no file", path.display()));
        };
        let real = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let home = std::env::var_os("USERPROFILE")
            .map(std::fs::canonicalize)
            .ok_or("USERPROFILE is not set: where your profile folder is cannot be told")?
            .map_err(|e| format!("your profile folder: {e}"))?;
        if !real.starts_with(&home) {
            return Err(format!(
                "{} is outside your profile folder ({}): on Windows a sink's file must be \
                 inside it, which only you, SYSTEM and administrators can write",
                path.display(),
                home.display()
            ));
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => Err(format!("{} is a directory", path.display())),
            _ => Ok(()),
        }
    }

    /// The file becomes the user's alone before it holds anything (the
    /// access list inherited from the folder may admit others).
    pub(super) fn restrict(_: &std::fs::File, path: &Path, _: Option<u32>) -> Result<(), String> {
        a365_proto::peer::make_private(path).map_err(|e| e.to_string())
    }

    /// A rename on Windows needs no directory flush.
    pub(super) fn sync_dir(_: &Path) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(unix)]
mod unix {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    /// A group by name (or number).
    pub(super) fn group(name: &str) -> Result<u32, String> {
        if let Some(group) = uzers::get_group_by_name(name) {
            return Ok(group.gid());
        }
        name.parse()
            .map_err(|_| format!("there is no group named '{}'", name.escape_default()))
    }

    pub(super) fn check(path: &Path) -> Result<(), String> {
        if !path.is_absolute() {
            return Err(format!(
                "{} is not an absolute path (the agent's working directory is not yours)",
                path.display()
            ));
        }
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(format!("{} names no file", path.display()));
        };
        if name == ".." || name == "." {
            return Err(format!("{} names no file", path.display()));
        }
        let me = rustix::process::geteuid().as_raw();
        links(dir, me)?;
        let real = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (i, ancestor) in real.ancestors().enumerate() {
            let meta =
                std::fs::metadata(ancestor).map_err(|e| format!("{}: {e}", ancestor.display()))?;
            if !meta.is_dir() {
                return Err(format!("{} is not a directory", ancestor.display()));
            }
            if meta.uid() != me && meta.uid() != 0 {
                return Err(format!(
                    "{} belongs to uid {}, not to you or root: that user could replace the \
                     file; pick a directory of yours",
                    ancestor.display(),
                    meta.uid()
                ));
            }
            let others_write = meta.mode() & 0o022 != 0;
            let sticky = meta.mode() & 0o1000 != 0;
            if others_write && (i == 0 || !sticky) {
                return Err(format!(
                    "{} can be written by other users (mode {:o}): they could replace the \
                     file; pick a directory only you can write",
                    ancestor.display(),
                    meta.mode() & 0o7777
                ));
            }
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => Err(format!("{} is a directory", path.display())),
            _ => Ok(()),
        }
    }

    /// Each link on the way to `dir` is followed by every write and every
    /// reader: it must belong to this user or root, in a directory where
    /// nobody else can replace it (or a sticky one: `/tmp`).
    fn links(dir: &Path, me: u32) -> Result<(), String> {
        let mut prefix = std::path::PathBuf::new();
        for component in dir.components() {
            prefix.push(component);
            let meta = std::fs::symlink_metadata(&prefix)
                .map_err(|e| format!("{}: {e}", prefix.display()))?;
            if !meta.file_type().is_symlink() {
                continue;
            }
            let holder = prefix.parent().unwrap_or(Path::new("/"));
            let held_in =
                std::fs::metadata(holder).map_err(|e| format!("{}: {e}", holder.display()))?;
            let others_write = held_in.mode() & 0o022 != 0 && held_in.mode() & 0o1000 == 0;
            let owners = [meta.uid(), held_in.uid()];
            if owners.iter().any(|uid| *uid != me && *uid != 0) || others_write {
                return Err(format!(
                    "{} is a link that another user could change (it or its directory is not \
                     yours or root's, or others can write there): give the path without it",
                    prefix.display()
                ));
            }
        }
        Ok(())
    }

    /// Made 0600 by tempfile; with a group, given to it and made 0640
    /// only once it is ours and before it holds anything.
    pub(super) fn restrict(file: &std::fs::File, _: &Path, gid: Option<u32>) -> Result<(), String> {
        let Some(gid) = gid else {
            return Ok(());
        };
        rustix::fs::fchown(file, None, Some(rustix::fs::Gid::from_raw(gid))).map_err(|e| {
            format!("giving it to group {gid}: {e} (the agent's user must be a member of it)")
        })?;
        file.set_permissions(std::fs::Permissions::from_mode(0o640))
            .map_err(|e| e.to_string())
    }

    /// The rename itself is durable only once the directory is.
    pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
        std::fs::File::open(dir).and_then(|d| d.sync_all())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sink(path: &std::path::Path) -> FileSink {
        FileSink {
            name: "s".into(),
            path: path.to_string_lossy().into_owned(),
            profile: "p".into(),
            workspace: None,
            format: a365_proto::SinkFormat::Raw,
            newline: true,
            var: None,
            group: None,
            command: None,
        }
    }

    #[test]
    fn writes_whole_files_0600() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let path = dir.path().join("token");
        let place = Place::check(&sink(&path)).unwrap();
        place.write(b"one\n").unwrap();
        place.write(b"two\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn refuses_what_others_could_replace() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = Place::check(&sink(&open.join("t"))).unwrap_err();
        assert!(err.contains("other users"), "{err}");
        // Sticky above is fine, not as the file's own directory.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(Place::check(&sink(&open.join("t"))).is_err());
        let mine = open.join("mine");
        std::fs::create_dir(&mine).unwrap();
        std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(Place::check(&sink(&mine.join("t"))).is_ok());
        // A link on the way that another user could change.
        let theirs = open.join("link");
        std::os::unix::fs::symlink(&mine, &theirs).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = Place::check(&sink(&theirs.join("t"))).unwrap_err();
        assert!(err.contains("link"), "{err}");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(Place::check(&sink(&theirs.join("t"))).is_ok());
        // Relative paths, directories, missing directories.
        assert!(Place::check(&sink(std::path::Path::new("t"))).is_err());
        assert!(Place::check(&sink(&mine)).is_err());
        assert!(Place::check(&sink(&mine.join("no/t"))).is_err());
        let mut grouped = sink(&mine.join("t"));
        grouped.group = Some("no-such-group-a365".into());
        assert!(Place::check(&grouped).unwrap_err().contains("no group"));
    }
}
