//! Opt-in memory-only storage: nothing survives a restart.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::{Credential, Store, StoreError, check_name};

#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Mutex<HashMap<String, Credential>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A panic elsewhere cannot leave a map insert half done, so a poisoned
    /// lock is still good: refusing it would silently drop a rotated token.
    fn records(&self) -> MutexGuard<'_, HashMap<String, Credential>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn load(&self, profile: &str) -> Result<Option<Credential>, StoreError> {
        check_name(profile)?;
        Ok(self.records().get(profile).cloned())
    }

    fn save(&self, profile: &str, credential: &Credential) -> Result<(), StoreError> {
        check_name(profile)?;
        self.records()
            .insert(profile.to_owned(), credential.clone());
        Ok(())
    }

    fn delete(&self, profile: &str) -> Result<bool, StoreError> {
        check_name(profile)?;
        Ok(self.records().remove(profile).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let store = MemoryStore::new();
        assert!(store.load("a").unwrap().is_none());
        store.save("a", &crate::credential::sample()).unwrap();
        assert_eq!(
            store.load("a").unwrap().unwrap().updated_at_ms,
            1_899_999_000_000
        );
        assert!(store.delete("a").unwrap());
        assert!(!store.delete("a").unwrap());
        for bad in ["../x", "a/b", ".hidden", "", &"x".repeat(65)] {
            let invalid = |r| matches!(r, Err(StoreError::InvalidName(_)));
            assert!(invalid(
                store.save(bad, &crate::credential::sample()).map(|_| ())
            ));
            assert!(invalid(store.load(bad).map(|_| ())));
            assert!(invalid(store.delete(bad).map(|_| ())));
        }
        assert_eq!(store.kind(), "memory");
    }

    #[test]
    fn survives_a_poisoned_lock() {
        let store = std::sync::Arc::new(MemoryStore::new());
        let poisoner = store.clone();
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.records.lock();
            panic!("poison");
        })
        .join();
        store.save("a", &crate::credential::sample()).unwrap();
        assert!(store.load("a").unwrap().is_some());
    }
}
