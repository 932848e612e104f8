//! Secrets in private files: `<dir>/credentials/<profile>.json`, 0600 in a
//! 0700 directory, replaced atomically and durably.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use zeroize::Zeroizing;

use crate::credential::ParseError;
use crate::{Credential, Store, StoreError, check_name};

/// Far above any real record; a bigger file is not ours, so don't slurp it.
const MAX_RECORD: u64 = 1 << 20;

#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// Opens `<state_dir>/credentials`, creating both directories 0700
    /// (and tightening them if they exist looser).
    pub fn open(state_dir: PathBuf) -> Result<FileStore, StoreError> {
        let dir = state_dir.join("credentials");
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io { path, source }
        };
        create_private_dir(&state_dir).map_err(io(&state_dir))?;
        create_private_dir(&dir).map_err(io(&dir))?;
        // The directories themselves must survive a crash for a save to.
        if let Some(parent) = state_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = sync_dir(parent); // not ours: best effort
        }
        sync_dir(&state_dir).map_err(io(&state_dir))?;
        // Temp files of a save interrupted by a crash: never the only copy.
        // They start with '.', which profile names cannot.
        for entry in fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
            if is_temp_name(&entry.file_name().to_string_lossy()) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(FileStore { dir })
    }

    /// `<state_dir>/credentials`.
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
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let len = file.metadata().map_err(io)?.len();
        if len > MAX_RECORD {
            return Err(StoreError::Corrupt {
                path,
                reason: format!("{len} bytes, more than a record can be"),
            });
        }
        tighten_mode(&file, &path);
        // Sized up front so no reallocation leaves an unzeroized copy.
        let mut bytes = Zeroizing::new(Vec::with_capacity(len as usize + 1));
        file.take(MAX_RECORD + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        Credential::from_json(&bytes)
            .map(Some)
            .map_err(|e| match e {
                ParseError::Corrupt(reason) => StoreError::Corrupt { path, reason },
                ParseError::Version(version) => StoreError::Unsupported { path, version },
            })
    }

    fn save(&self, profile: &str, credential: &Credential) -> Result<(), StoreError> {
        let path = self.path(profile)?;
        credential
            .to_json()
            .and_then(|json| write_atomic(&path, &json))
            .map_err(|source| StoreError::Io { path, source })
    }

    /// The old record is worthless (its refresh token is dead): put the new
    /// one in place first, so a crash of the agent a microsecond later
    /// already finds it, then make it durable.
    fn save_replacing_dead(
        &self,
        profile: &str,
        credential: &Credential,
    ) -> Result<(), StoreError> {
        let path = self.path(profile)?;
        credential
            .to_json()
            .and_then(|json| write_replacing(&path, &json, Order::RenameFirst))
            .map_err(|source| StoreError::Io { path, source })
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
/// the old or the new content, complete: a private (0600) temp file beside
/// it, fsync, rename over, fsync the directory. Used for config files too.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_replacing(path, bytes, Order::SyncFirst)
}

/// When the new content is synced relative to the rename.
#[derive(Clone, Copy, PartialEq)]
enum Order {
    /// fsync, then rename: power loss leaves the old or the new content.
    SyncFirst,
    /// rename, then fsync: a process crash leaves the new content at once;
    /// power loss before the fsync may leave an empty file, which is only
    /// acceptable when the old content is dead anyway.
    RenameFirst,
}

fn write_replacing(path: &Path, bytes: &[u8], order: Order) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("not a file path"))?;
    // A crashed process with our pid may have left one: try the next name.
    let (tmp, mut file) = (0..100)
        .map(|_| {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let tmp = dir.join(format!(
                ".{}{TEMP_MARK}{}-{n}",
                name.to_string_lossy(),
                std::process::id()
            ));
            private_file(&tmp).map(|file| (tmp, file))
        })
        .find(|r| !matches!(r, Err(e) if e.kind() == io::ErrorKind::AlreadyExists))
        .unwrap_or_else(|| Err(io::ErrorKind::AlreadyExists.into()))?;
    let result = (|| {
        file.write_all(bytes)?;
        if order == Order::SyncFirst {
            file.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if order == Order::RenameFirst {
            file.sync_all()?;
        }
        drop(file);
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

const TEMP_MARK: &str = ".tmp-";

fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARK)
}

/// Exactly 0600 whatever the umask: created so, then set so.
fn private_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let file = options.open(path)?;
        if let Err(e) = file.set_permissions(fs::Permissions::from_mode(0o600)) {
            let _ = fs::remove_file(path);
            return Err(e);
        }
        Ok(file)
    }
    #[cfg(windows)]
    {
        let file = options.open(path)?;
        if let Err(e) = a365_proto::peer::make_private(path) {
            drop(file);
            let _ = fs::remove_file(path);
            return Err(e);
        }
        Ok(file)
    }
    #[cfg(not(any(unix, windows)))]
    options.open(path)
}

/// Exactly 0700 whatever the umask, also when it already existed (on
/// Windows: an access list of the user alone).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
    }
    #[cfg(windows)]
    {
        builder.create(dir)?;
        a365_proto::peer::make_private(dir)
    }
    #[cfg(not(any(unix, windows)))]
    builder.create(dir)
}

/// Makes renames and removals in `dir` durable.
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
fn tighten_mode(file: &File, path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = file.metadata() {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "secrets file had mode {mode:o}; set to 600");
                let _ = file.set_permissions(fs::Permissions::from_mode(0o600));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (file, path);
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
        assert_eq!(mode(&state.path().join("a365")), 0o700);
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
        for bad in ["../x", "a/b", ".hidden", "", &"x".repeat(65)] {
            let invalid = |r| matches!(r, Err(StoreError::InvalidName(_)));
            assert!(invalid(store.save(bad, &sample())), "{bad}");
            assert!(invalid(store.load(bad).map(|_| ())), "{bad}");
            assert!(invalid(store.delete(bad).map(|_| ())), "{bad}");
        }
        assert_eq!(fs::read_dir(store.dir()).unwrap().count(), 0);
        assert!(!state.path().join("x.json").exists());
    }

    #[test]
    fn profile_names_that_look_like_temp_files_are_kept() {
        let state = tempfile::tempdir().unwrap();
        let store = FileStore::open(state.path().to_owned()).unwrap();
        store.save("a.tmp-1", &sample()).unwrap();
        let reopened = FileStore::open(state.path().to_owned()).unwrap();
        assert!(reopened.load("a.tmp-1").unwrap().is_some());
    }

    /// Every failure a caller can see, none quoting a secret.
    #[test]
    fn errors_never_hold_a_secret() {
        let state = tempfile::tempdir().unwrap();
        let store = FileStore::open(state.path().to_owned()).unwrap();
        let mut errors = Vec::new();

        // A save that fails at the rename: no temp file stays behind.
        let blocked = store.dir().join("work.json");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("x"), b"").unwrap();
        errors.push(store.save("work", &sample()).unwrap_err());
        assert!(matches!(errors[0], StoreError::Io { .. }));
        assert_eq!(fs::read_dir(store.dir()).unwrap().count(), 1);

        // Newer, not corrupt: reported as such and left in place.
        let newer = store.dir().join("newer.json");
        fs::write(&newer, br#"{"version":7,"refresh_token":"rt-SECRET-2"}"#).unwrap();
        errors.push(store.load("newer").unwrap_err());
        assert!(matches!(
            errors[1],
            StoreError::Unsupported { version: 7, .. }
        ));
        assert!(newer.exists());

        for junk in [
            &br#"{"version":1,"refresh_token":"rt-SECRET-2","updated_at_ms":0,"x":"cs-SECRET-1"}"#
                [..],
            br#"{"version":1,"refresh_token":["rt-SECRET-2"],"updated_at_ms":0}"#,
            b"rt-SECRET-2",
            &[b' '; MAX_RECORD as usize + 1],
        ] {
            fs::write(store.dir().join("bad.json"), junk).unwrap();
            let err = store.load("bad").unwrap_err();
            assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
            errors.push(err);
        }
        for err in &errors {
            let text = format!("{err} {err:?}");
            assert!(!text.contains("SECRET"), "{text}");
        }
    }
}
