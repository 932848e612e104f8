//! Opt-in memory-only storage: nothing survives a restart.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::{Credential, Store, StoreError, check_name};

#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Mutex<HashMap<String, Credential>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn load(&self, profile: &str) -> Result<Option<Credential>, StoreError> {
        check_name(profile)?;
        Ok(self
            .records
            .lock()
            .map(|r| r.get(profile).cloned())
            .unwrap_or(None))
    }

    fn save(&self, profile: &str, credential: &Credential) -> Result<(), StoreError> {
        check_name(profile)?;
        if let Ok(mut records) = self.records.lock() {
            records.insert(profile.to_owned(), credential.clone());
        }
        Ok(())
    }

    fn delete(&self, profile: &str) -> Result<bool, StoreError> {
        check_name(profile)?;
        Ok(self
            .records
            .lock()
            .map(|mut r| r.remove(profile).is_some())
            .unwrap_or(false))
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
        assert!(store.save("../a", &crate::credential::sample()).is_err());
    }
}
