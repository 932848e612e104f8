//! The newest generation of each shared record this member has seen, kept
//! in its state directory: a record older than that is a rollback (an old
//! sealed refresh token put back by whoever can write to etcd, or a
//! restored backup) and is refused, so a spent refresh token is never
//! sent again and an old access token is never served again.
//!
//! A generation is noted only after the record was opened or its
//! signature checked: a forged record with a huge generation cannot lock
//! the genuine ones out.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use super::FleetError;

#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// `None`: kept in memory only (tests of the records).
    path: Option<PathBuf>,
    newest: Mutex<BTreeMap<String, u64>>,
}

impl Seen {
    /// Reads what an earlier run saw; a missing file is an empty one, an
    /// unreadable one is an error (silently starting afresh would accept
    /// any rollback).
    pub(crate) fn load(path: PathBuf) -> Result<Seen, FleetError> {
        let newest = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|_| {
                FleetError::Config(format!(
                    "{} is not readable; it records the newest fleet records this member saw \
                     (remove it only if you trust etcd's current records)",
                    path.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(FleetError::Config(format!("{}: {e}", path.display()))),
        };
        Ok(Seen {
            path: Some(path),
            newest: Mutex::new(newest),
        })
    }

    /// Refuses `generation` of `name` when a newer one was seen.
    pub(crate) fn check(&self, name: &str, generation: u64) -> Result<(), FleetError> {
        let seen = self
            .newest
            .lock()
            .ok()
            .and_then(|m| m.get(name).copied())
            .unwrap_or(0);
        match generation < seen {
            true => Err(FleetError::Rollback {
                name: name.to_owned(),
                got: generation,
                seen,
            }),
            false => Ok(()),
        }
    }

    /// Records `generation` of `name` if it is the newest yet.
    pub(crate) fn note(&self, name: &str, generation: u64) {
        let Ok(mut newest) = self.newest.lock() else {
            return;
        };
        let entry = newest.entry(name.to_owned()).or_insert(0);
        if generation <= *entry {
            return;
        }
        *entry = generation;
        if let Some(path) = &self.path
            && let Err(e) = write_atomic(path, &newest)
        {
            tracing::warn!(
                "could not record the newest fleet record seen in {}: {e}",
                path.display()
            );
        }
    }

    /// Forgets `name`: it left the fleet (a new profile of that name
    /// starts at a generation of its own time).
    pub(crate) fn forget(&self, name: &str) {
        let Ok(mut newest) = self.newest.lock() else {
            return;
        };
        if newest.remove(name).is_some()
            && let Some(path) = &self.path
            && let Err(e) = write_atomic(path, &newest)
        {
            tracing::warn!("{}: {e}", path.display());
        }
    }
}

/// Temp file, fsync, rename: a crash leaves the old map or the new one.
fn write_atomic(path: &std::path::Path, map: &BTreeMap<String, u64>) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(&serde_json::to_vec(map).unwrap_or_default())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_generations_are_refused_and_the_newest_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet-seen.json");
        let seen = Seen::load(path.clone()).unwrap();
        seen.check("work", 0).unwrap();
        seen.note("work", 10);
        seen.note("work", 7);
        seen.check("work", 10).unwrap();
        assert!(matches!(
            seen.check("work", 9),
            Err(FleetError::Rollback {
                got: 9,
                seen: 10,
                ..
            })
        ));
        seen.check("other", 1).unwrap();
        let again = Seen::load(path.clone()).unwrap();
        assert!(again.check("work", 9).is_err());
        again.forget("work");
        assert!(Seen::load(path.clone()).unwrap().check("work", 1).is_ok());
        std::fs::write(&path, b"garbage").unwrap();
        assert!(Seen::load(path).is_err());
    }
}
