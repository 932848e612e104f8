//! Secrets in private files: `<dir>/credentials/<profile>.json`, 0600 in a
//! 0700 directory, replaced atomically and durably.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Credential, Store, StoreError, check_name};

#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// Opens (creating, 0700) `<state_dir>/credentials`.
    pub fn open(state_dir: PathBuf) -> Result<FileStore, StoreError> {
        let dir = state_dir.join("credentials");
        create_private_dir(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        // Temp files of a save interrupted by a crash: never the only copy.
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().contains(".tmp-") {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(FileStore { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, profile: &str) -> Result<PathBuf, StoreError> {
        check_name(profile)?;
        Ok(self.dir.join(format!("{profile}.json")))
    }
}

impl Store for FileStore {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn load(&self, profile: &str) -> Result<Option<Credential>, StoreError> {
        let path = self.path(profile)?;
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let bytes = match fs::read(&path) {
            Ok(bytes) => zeroize::Zeroizing::new(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        tighten_mode(&path);
        Credential::from_json(&bytes)
            .map(Some)
            .map_err(|reason| StoreError::Corrupt {
                path: path.clone(),
                reason,
            })
    }

    fn save(&self, profile: &str, credential: &Credential) -> Result<(), StoreError> {
        let path = self.path(profile)?;
        write_atomic(&path, &credential.to_json()).map_err(|source| StoreError::Io { path, source })
    }

    fn delete(&self, profile: &str) -> Result<bool, StoreError> {
        let path = self.path(profile)?;
        match fs::remove_file(&path) {
            Ok(()) => {
                sync_dir(&self.dir).map_err(|source| StoreError::Io {
                    path: self.dir.clone(),
                    source,
                })?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }
}

/// Replaces `path` with `bytes` so that a crash at any moment leaves either
/// the old or the new content, complete: a private temp file beside it,
/// fsync, rename over, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("not a file path"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = private_file(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn private_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir)?;
        // An existing directory keeps its mode otherwise.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    builder.create(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// A secrets file others can read is fixed, and said so.
fn tighten_mode(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "secrets file had mode {mode:o}; set to 600");
                let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o600));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use secrecy::ExposeSecret;

    use super::*;
    use crate::credential::sample;

    #[track_caller]
    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn round_trip_private_and_atomic() {
        let state = tempfile::tempdir().unwrap();
        let store = FileStore::open(state.path().join("a365")).unwrap();
        assert!(store.load("work").unwrap().is_none());
        store.save("work", &sample()).unwrap();
        let mut newer = sample();
        newer.refresh_token = Some("rt-NEWER".into());
        store.save("work", &newer).unwrap();
        let loaded = store.load("work").unwrap().unwrap();
        assert_eq!(loaded.refresh_token.unwrap().expose_secret(), "rt-NEWER");
        assert_eq!(mode(store.dir()), 0o700);
        assert_eq!(mode(&store.dir().join("work.json")), 0o600);
        let names: Vec<_> = fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["work.json"], "no temp files left");
        assert!(store.delete("work").unwrap());
        assert!(!store.delete("work").unwrap());
        assert!(store.load("work").unwrap().is_none());
    }

    #[test]
    fn a_crashed_save_leaves_the_old_record_working() {
        let state = tempfile::tempdir().unwrap();
        let store = FileStore::open(state.path().to_owned()).unwrap();
        store.save("work", &sample()).unwrap();
        // A save that died before its rename.
        fs::write(
            store.dir().join(".work.json.tmp-1-0"),
            b"{\"version\":1,\"refr",
        )
        .unwrap();
        let reopened = FileStore::open(state.path().to_owned()).unwrap();
        assert!(reopened.load("work").unwrap().is_some());
        assert!(!reopened.dir().join(".work.json.tmp-1-0").exists());
    }

    #[test]
    fn corrupt_files_are_named_not_quoted() {
        let state = tempfile::tempdir().unwrap();
        let store = FileStore::open(state.path().to_owned()).unwrap();
        fs::write(
            store.dir().join("work.json"),
            b"{\"refresh_token\": \"SECRET-xyz\"",
        )
        .unwrap();
        let err = store.load("work").unwrap_err().to_string();
        assert!(
            err.contains("work.json") && err.contains("corrupt"),
            "{err}"
        );
        assert!(!err.contains("SECRET"), "{err}");
    }

    #[test]
    fn loose_modes_are_tightened() {
        let state = tempfile::tempdir().unwrap();
        let store = FileStore::open(state.path().to_owned()).unwrap();
        store.save("work", &sample()).unwrap();
        let path = store.dir().join("work.json");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(store.dir(), fs::Permissions::from_mode(0o755)).unwrap();
        store.load("work").unwrap();
        assert_eq!(mode(&path), 0o600);
        FileStore::open(state.path().to_owned()).unwrap();
        assert_eq!(mode(store.dir()), 0o700);
    }

    #[test]
    fn invalid_names_never_touch_the_disk() {
        let state = tempfile::tempdir().unwrap();
        let store = FileStore::open(state.path().to_owned()).unwrap();
        for bad in ["../x", "a/b", ".hidden", ""] {
            assert!(matches!(
                store.save(bad, &sample()),
                Err(StoreError::InvalidName(_))
            ));
        }
    }
}
