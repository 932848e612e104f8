//! Which store holds each profile's secrets, and the agent's default.
//!
//! A profile records its store in `config.toml` when it is added, so a
//! keyring that stops answering (or a changed default) never makes the
//! agent look for secrets in the wrong place and believe them gone.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use a365_proto::StoreKind;
use a365_store::{Credential, FileStore, KeyringStore, MemoryStore, Store};
use tokio::sync::OnceCell;

/// Why a store could not be used; shown to the user, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be opened (a keyring that does not answer, a state
    /// directory that cannot be made).
    #[error("the {kind} store is not available: {reason}")]
    Unavailable { kind: StoreKind, reason: String },
    /// A load, save or delete failed.
    #[error("{0}")]
    Failed(String),
}

impl From<a365_store::StoreError> for StoreError {
    fn from(e: a365_store::StoreError) -> StoreError {
        StoreError::Failed(e.to_string())
    }
}

/// The store that holds a profile's secrets, or why it cannot be used;
/// every operation runs on the blocking pool, so the thread that serves
/// clients never waits on a disk or a keyring. The one place the agent
/// touches a store: shaped so that a remote, conditional store can take
/// its place.
#[derive(Debug, Clone)]
pub struct Placed {
    pub kind: StoreKind,
    pub store: Result<Arc<dyn Store>, StoreError>,
}

impl Placed {
    fn store(&self) -> Result<Arc<dyn Store>, StoreError> {
        self.store.clone()
    }

    /// The profile's record; `None` when the store holds none.
    pub async fn load(&self, name: &str) -> Result<Option<Credential>, StoreError> {
        let store = self.store()?;
        let name = name.to_owned();
        blocking(move || store.load(&name)).await
    }

    /// Durable when it returns. `replacing_dead`: the stored refresh token
    /// was just rotated away (see `Store::save_replacing_dead`).
    pub async fn save(
        &self,
        name: &str,
        credential: &Credential,
        replacing_dead: bool,
    ) -> Result<(), StoreError> {
        let store = self.store()?;
        let (name, credential) = (name.to_owned(), credential.clone());
        blocking(move || match replacing_dead {
            true => store.save_replacing_dead(&name, &credential),
            false => store.save(&name, &credential),
        })
        .await
    }

    /// Deletes the profile's record; true if there was one.
    pub async fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let store = self.store()?;
        let name = name.to_owned();
        blocking(move || store.delete(&name)).await
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, a365_store::StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(StoreError::from),
        Err(e) => Err(StoreError::Failed(format!("the store's task failed: {e}"))),
    }
}

/// The keyring service name every item is stored under.
pub const KEYRING_SERVICE: &str = "a365";
/// A Secret Service that does not answer in this long is not there.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Stores {
    state_dir: PathBuf,
    file: Mutex<Option<Arc<FileStore>>>,
    keyring: OnceCell<Result<Arc<KeyringStore>, StoreError>>,
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
                Err(StoreError::Unavailable { reason, .. } | StoreError::Failed(reason)) => {
                    tracing::warn!(
                        "no OS keyring answered ({reason}); new profiles keep their secrets in files under {}",
                        stores.state_dir.join("credentials").display()
                    )
                }
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
    pub async fn get(&self, kind: StoreKind) -> Result<Arc<dyn Store>, StoreError> {
        match kind {
            StoreKind::Keyring => Ok(self.keyring().await? as Arc<dyn Store>),
            StoreKind::File => Ok(self.file()? as Arc<dyn Store>),
            StoreKind::Memory => Ok(Arc::clone(&self.memory) as Arc<dyn Store>),
        }
    }

    /// The store of `kind` for a profile, or why it cannot be used.
    pub async fn place(&self, kind: StoreKind) -> Placed {
        Placed {
            kind,
            store: self.get(kind).await,
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
                "in a plain file readable by your user only, not encrypted ({}){}",
                self.state_dir.join("credentials").display(),
                match self.keyring.get() {
                    Some(Err(_)) => ": no OS keyring answered when the agent started",
                    _ => "",
                }
            ),
            StoreKind::Memory => "in memory only (lost when the agent stops)".into(),
        }
    }

    fn file(&self) -> Result<Arc<FileStore>, StoreError> {
        let mut slot = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = &*slot {
            return Ok(Arc::clone(store));
        }
        let store = Arc::new(FileStore::open(self.state_dir.clone()).map_err(|e| {
            StoreError::Unavailable {
                kind: StoreKind::File,
                reason: e.to_string(),
            }
        })?);
        *slot = Some(Arc::clone(&store));
        Ok(store)
    }

    /// Probed once: keyring 4 settles its platform store once per process.
    async fn keyring(&self) -> Result<Arc<KeyringStore>, StoreError> {
        self.keyring
            .get_or_init(|| async {
                let probe = tokio::task::spawn_blocking(|| KeyringStore::probe(KEYRING_SERVICE));
                let reason = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
                    Ok(Ok(Ok(store))) => return Ok(Arc::new(store)),
                    Ok(Ok(Err(e))) => e.to_string(),
                    Ok(Err(e)) => format!("keyring probe failed: {e}"),
                    Err(_) => format!(
                        "the keyring did not answer within {} s",
                        PROBE_TIMEOUT.as_secs()
                    ),
                };
                Err(StoreError::Unavailable {
                    kind: StoreKind::Keyring,
                    reason,
                })
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
