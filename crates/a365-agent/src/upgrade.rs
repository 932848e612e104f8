//! Notices, on every platform, that an upgrade replaced the agent's own
//! binary while it runs: dpkg renames a new file over it, Homebrew
//! relinks it to a new version, and on Windows the running file is
//! renamed away and the new one copied in its place. Every
//! `--upgrade-check` seconds (30, on the refreshers' ticks, so no extra
//! wake-up) the path the agent started from is compared with what it was at start
//! (size and modification time, and on Unix the inode); when it changed,
//! the agent stops once nothing would be lost
//! ([`Agent::restart_for_upgrade`]), and launchd, systemd or the next
//! command's autostart starts the new binary. A stat per interval, nothing
//! on the hot path. (On Linux `a365` also notices at once, after a command.)

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::agent::Agent;

/// What tells one file at a path from its replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64),
}

impl Identity {
    fn of(path: &Path) -> Option<Identity> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Identity {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            inode: {
                use std::os::unix::fs::MetadataExt;
                (meta.dev(), meta.ino())
            },
        })
    }
}

/// The binary the agent runs: its path and what it was at start.
#[derive(Debug, Clone)]
pub(crate) struct Binary {
    path: std::path::PathBuf,
    started: Identity,
}

impl Binary {
    /// Now, before any upgrade: Linux names a replaced binary "… (deleted)".
    pub(crate) fn current() -> Option<Binary> {
        let path = std::env::current_exe().ok()?;
        let started = Identity::of(&path)?;
        Some(Binary { path, started })
    }

    /// A file is at the path again (mid-upgrade it may be missing) and it
    /// is not the one the agent started from.
    pub(crate) fn replaced(&self) -> bool {
        Identity::of(&self.path).is_some_and(|now| now != self.started)
    }
}

/// Looks at the agent's binary every `every` until the agent stops. On
/// the tick, the tick thread itself looks (a `stat`), so an idle agent's
/// runtime is woken only when the binary was replaced.
pub fn watch(agent: Arc<Agent>, every: Duration, mut stop: watch::Receiver<bool>) {
    let Some(binary) = agent.binary().cloned() else {
        tracing::info!("the agent's binary cannot be read: upgrades are not noticed");
        return;
    };
    let shared = agent.shared();
    let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
    let on_tick = every_ms >= shared.tick_ms;
    let (clock, tick_ms) = (Arc::clone(&shared.clock), shared.tick_ms);
    let looked = std::sync::atomic::AtomicI64::new(0);
    // At most every `every`, on the tick (the refreshers' wake-up).
    let mut tick = shared.tick.probing(Box::new(move || {
        let now = clock.now_ms();
        // A clock set back looks at once.
        let since = now.saturating_sub(looked.load(Ordering::Relaxed));
        if (0..every_ms - tick_ms / 2).contains(&since) {
            return false;
        }
        looked.store(now, Ordering::Relaxed);
        binary.replaced()
    }));
    tokio::spawn(async move {
        let mut refused = false;
        loop {
            let wait = async {
                match on_tick {
                    true => tick.until_probed().await,
                    false => tokio::time::sleep(crate::schedule::until_aligned_now(every)).await,
                }
            };
            tokio::select! {
                () = wait => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            if !agent.binary().is_some_and(Binary::replaced) {
                continue;
            }
            match agent.restart_for_upgrade() {
                Ok(_) => return,
                // Said once; asked again at every look, until it can be done.
                Err(reply) if !refused => {
                    tracing::warn!("{}", reply.message);
                    refused = true;
                }
                Err(_) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_renamed_over_the_path_is_a_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a365-agent");
        std::fs::write(&path, b"old binary").unwrap();
        let binary = Binary {
            started: Identity::of(&path).unwrap(),
            path: path.clone(),
        };
        assert!(!binary.replaced());
        std::fs::remove_file(&path).unwrap();
        assert!(!binary.replaced(), "missing mid-upgrade");
        let staged = dir.path().join("a365-agent.new");
        std::fs::write(&staged, b"new binary").unwrap();
        std::fs::rename(&staged, &path).unwrap();
        assert!(binary.replaced());
    }
}
