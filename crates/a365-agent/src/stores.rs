//! Which store holds each profile's secrets, and the agent's default.
//!
//! A profile records its store in `config.toml` when it is added, so a
//! keyring that stops answering (or a changed default) never makes the
//! agent look for secrets in the wrong place and believe them gone.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use a365_proto::StoreKind;
use a365_store::{FileStore, KeyringStore, MemoryStore, Store};
use tokio::sync::OnceCell;

/// The keyring service name every item is stored under.
pub const KEYRING_SERVICE: &str = "a365";
/// A Secret Service that does not answer in this long is not there.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Stores {
    state_dir: PathBuf,
    file: Mutex<Option<Arc<FileStore>>>,
    keyring: OnceCell<Result<Arc<KeyringStore>, String>>,
    memory: Arc<MemoryStore>,
    /// Where new profiles go.
    default: Mutex<StoreKind>,
}

impl Stores {
    /// Resolves the default store: the configured one, else the keyring if
    /// one answers, else the file store (and says so in the log).
    pub async fn open(state_dir: PathBuf, configured: Option<StoreKind>) -> Stores {
        let stores = Stores {
            state_dir,
            file: Mutex::new(None),
            keyring: OnceCell::new(),
            memory: Arc::new(MemoryStore::new()),
            default: Mutex::new(configured.unwrap_or(StoreKind::File)),
        };
        if configured.is_none() {
            match stores.keyring().await {
                Ok(_) => stores.set_default(StoreKind::Keyring),
                Err(reason) => tracing::warn!(
                    "no OS keyring answered ({reason}); new profiles keep their secrets in files under {}",
                    stores.state_dir.join("credentials").display()
                ),
            }
        }
        tracing::info!(store = %stores.default(), "default store for new profiles");
        stores
    }

    pub fn default(&self) -> StoreKind {
        *self.default.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_default(&self, kind: StoreKind) {
        *self.default.lock().unwrap_or_else(|e| e.into_inner()) = kind;
    }

    /// The store of `kind`, opened on first use.
    pub async fn get(&self, kind: StoreKind) -> Result<Arc<dyn Store>, String> {
        match kind {
            StoreKind::Keyring => Ok(self.keyring().await? as Arc<dyn Store>),
            StoreKind::File => Ok(self.file()? as Arc<dyn Store>),
            StoreKind::Memory => Ok(Arc::clone(&self.memory) as Arc<dyn Store>),
        }
    }

    /// Where secrets in `kind` live, in words for `a365 add`.
    pub fn describe(&self, kind: StoreKind) -> String {
        match kind {
            StoreKind::Keyring => format!(
                "in the OS keyring ({}, service '{KEYRING_SERVICE}')",
                platform_keyring()
            ),
            StoreKind::File => format!(
                "in the file store ({})",
                self.state_dir.join("credentials").display()
            ),
            StoreKind::Memory => "in memory only (lost when the agent stops)".into(),
        }
    }

    fn file(&self) -> Result<Arc<FileStore>, String> {
        let mut slot = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = &*slot {
            return Ok(Arc::clone(store));
        }
        let store = Arc::new(FileStore::open(self.state_dir.clone()).map_err(|e| e.to_string())?);
        *slot = Some(Arc::clone(&store));
        Ok(store)
    }

    /// Probed once: keyring 4 settles its platform store once per process.
    async fn keyring(&self) -> Result<Arc<KeyringStore>, String> {
        self.keyring
            .get_or_init(|| async {
                let probe = tokio::task::spawn_blocking(|| KeyringStore::probe(KEYRING_SERVICE));
                match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
                    Ok(Ok(Ok(store))) => Ok(Arc::new(store)),
                    Ok(Ok(Err(e))) => Err(e.to_string()),
                    Ok(Err(e)) => Err(format!("keyring probe failed: {e}")),
                    Err(_) => Err(format!(
                        "the keyring did not answer within {} s",
                        PROBE_TIMEOUT.as_secs()
                    )),
                }
            })
            .await
            .clone()
    }
}

fn platform_keyring() -> &'static str {
    if cfg!(target_os = "macos") {
        "Keychain"
    } else if cfg!(windows) {
        "Credential Manager"
    } else {
        "Secret Service"
    }
}
