//! Secrets in the OS keyring: Secret Service on Linux, Keychain on macOS,
//! Credential Manager on Windows. One item per profile, holding the same
//! JSON record the file store writes.
//!
//! The `keyring` crate is blocking and, on Linux, needs a session bus with a
//! Secret Service on it; [`KeyringStore::probe`] tells whether one answers.

use std::collections::HashMap;

use zeroize::Zeroizing;

use crate::credential::ParseError;
use crate::{Credential, Store, StoreError, check_name};

/// Items are named `service` / `profile`; `service` keeps agents with
/// different configurations apart.
#[derive(Debug)]
pub struct KeyringStore {
    service: String,
}

impl KeyringStore {
    /// Connects to the platform keyring and checks that it answers a
    /// lookup. The error says why not, for the log and for `a365 add`.
    pub fn probe(service: &str) -> Result<KeyringStore, StoreError> {
        if service.is_empty() {
            return Err(StoreError::Keyring(
                "the keyring service name is empty".into(),
            ));
        }
        if let Err(e) = keyring::Entry::store_status() {
            return Err(keyring_error(e));
        }
        let store = KeyringStore {
            service: service.to_owned(),
        };
        match store.entry(".probe")?.get_secret() {
            Ok(_) | Err(keyring_core::Error::NoEntry) => Ok(store),
            Err(e) => Err(keyring_error(&e)),
        }
    }

    /// The service name items are stored under.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Built through keyring-core to set a label people recognise in their
    /// keyring manager; `keyring::Entry::store_status` installed the store.
    fn entry(&self, user: &str) -> Result<keyring_core::Entry, StoreError> {
        let label = format!("a365 profile '{user}' ({})", self.service);
        let result = if cfg!(any(
            target_os = "linux",
            target_os = "freebsd",
            target_os = "openbsd"
        )) {
            let modifiers = HashMap::from([("label", label.as_str())]);
            keyring_core::Entry::new_with_modifiers(&self.service, user, &modifiers)
        } else if cfg!(windows) {
            // This machine only: an Enterprise (roaming) item would follow a
            // roaming profile to another machine, where a second agent would
            // replay the same one-time refresh token.
            let modifiers = HashMap::from([("persistence", "Local")]);
            keyring_core::Entry::new_with_modifiers(&self.service, user, &modifiers)
        } else {
            keyring_core::Entry::new(&self.service, user)
        };
        result.map_err(|e| keyring_error(&e))
    }
}

impl Store for KeyringStore {
    fn kind(&self) -> &'static str {
        "keyring"
    }

    fn load(&self, profile: &str) -> Result<Option<Credential>, StoreError> {
        check_name(profile)?;
        let bytes = match self.entry(profile)?.get_secret() {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(keyring_core::Error::NoEntry) => return Ok(None),
            Err(e) => return Err(keyring_error(&e)),
        };
        let place = || format!("keyring item {}/{profile}", self.service).into();
        match Credential::from_json(&bytes) {
            Ok(credential) => Ok(Some(credential)),
            Err(ParseError::Corrupt(reason)) => Err(StoreError::Corrupt {
                path: place(),
                reason,
            }),
            Err(ParseError::Version(version)) => Err(StoreError::Unsupported {
                path: place(),
                version,
            }),
        }
    }

    /// The Secret Service writes its keyring file before it answers.
    fn save(&self, profile: &str, credential: &Credential) -> Result<(), StoreError> {
        check_name(profile)?;
        let json = credential
            .to_json()
            .map_err(|e| StoreError::Keyring(e.to_string()))?;
        if cfg!(windows) {
            fits_credential_manager(json.len())?;
        }
        self.entry(profile)?
            .set_secret(&json)
            .map_err(|e| keyring_error(&e))
    }

    fn delete(&self, profile: &str) -> Result<bool, StoreError> {
        check_name(profile)?;
        match self.entry(profile)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring_core::Error::NoEntry) => Ok(false),
            Err(e) => Err(keyring_error(&e)),
        }
    }
}

/// Credential Manager holds at most 2,560 bytes an item
/// (`CRED_MAX_CREDENTIAL_BLOB_SIZE`): a record over it is refused with
/// what to do, never truncated.
pub const CREDENTIAL_MANAGER_MAX: usize = 5 * 512;

fn fits_credential_manager(len: usize) -> Result<(), StoreError> {
    if len > CREDENTIAL_MANAGER_MAX {
        return Err(StoreError::Keyring(format!(
            "the profile's secrets and cached token take {len} bytes, over Credential Manager's \
             limit of {CREDENTIAL_MANAGER_MAX} bytes an item: keep this profile in the file store \
             (`--store file`, or `a365 store migrate --to file`)"
        )));
    }
    Ok(())
}

/// keyring's messages name the platform failure, never the secret (we use
/// the byte API, so `BadEncoding`, which carries data, cannot occur).
fn keyring_error(e: &keyring_core::Error) -> StoreError {
    let reason = match e {
        keyring_core::Error::NoDefaultStore => {
            "no keyring is available (on Linux: no Secret Service on the session bus)".to_owned()
        }
        keyring_core::Error::NoStorageAccess(inner) => {
            format!("the keyring refused access (is it locked?): {inner}")
        }
        keyring_core::Error::BadEncoding(_) => "the keyring item is not valid data".to_owned(),
        other => other.to_string(),
    };
    StoreError::Keyring(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_over_credential_managers_limit_is_refused_not_truncated() {
        assert!(fits_credential_manager(2_560).is_ok());
        let err = fits_credential_manager(2_561).unwrap_err().to_string();
        assert!(
            err.contains("2561 bytes") && err.contains("--store file"),
            "{err}"
        );
    }
}
