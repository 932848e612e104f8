//! Where a365 keeps secrets between agent runs: one record per profile,
//! loaded at start, saved after every change.
//!
//! The API is blocking (the agent calls it from `spawn_blocking`); a save
//! is durable when it returns, so a rotated refresh token is never lost.

mod credential;
mod file;
mod keyring;
mod memory;

use std::path::PathBuf;

pub use credential::Credential;
pub use file::{FileStore, create_private_dir, write_atomic};
pub use keyring::KeyringStore;
pub use memory::MemoryStore;

/// A place secrets live.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// `keyring`, `file` or `memory`: shown to the user.
    fn kind(&self) -> &'static str;
    fn load(&self, profile: &str) -> Result<Option<Credential>, StoreError>;
    /// Durable when it returns.
    fn save(&self, profile: &str, credential: &Credential) -> Result<(), StoreError>;
    /// Like `save`, when the stored record is dead (the server rotated its
    /// refresh token): a store may then favour surviving a crash of the
    /// agent at once over keeping the old record through a power loss.
    fn save_replacing_dead(
        &self,
        profile: &str,
        credential: &Credential,
    ) -> Result<(), StoreError> {
        self.save(profile, credential)
    }
    /// True if something was deleted.
    fn delete(&self, profile: &str) -> Result<bool, StoreError>;
}

/// Errors name paths and reasons, never contents.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid profile name '{0}'")]
    InvalidName(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt ({reason}): remove it and add the profile again")]
    Corrupt { path: PathBuf, reason: String },
    /// Not corrupt: a newer a365 wrote it, and deleting it would lose secrets.
    #[error(
        "{path} has record version {version}, which this a365 cannot read (written by a newer one?)"
    )]
    Unsupported { path: PathBuf, version: u32 },
    #[error("keyring: {0}")]
    Keyring(String),
}

/// Profile names become file names: no separators, no dot files.
pub(crate) fn check_name(name: &str) -> Result<(), StoreError> {
    if a365_proto::is_valid_profile_name(name) {
        Ok(())
    } else {
        Err(StoreError::InvalidName(name.escape_default().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["work", "a.b-c_d", "X"] {
            check_name(ok).unwrap();
        }
        for bad in ["", ".hidden", "../x", "a/b", "a\\b", "a b", &"x".repeat(65)] {
            assert!(
                matches!(check_name(bad), Err(StoreError::InvalidName(_))),
                "{bad}"
            );
        }
    }
}
