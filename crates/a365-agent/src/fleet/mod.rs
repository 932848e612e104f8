//! Fleet mode: agents on several machines share profiles through etcd, so
//! that one rotating refresh token serves them all and is spent by one of
//! them at a time.
//!
//! Per shared profile, three keys under the fleet's prefix:
//!
//! - `public/NAME`: the profile's settings and its current access token,
//!   who refreshed it, and whether the credential is dead. Consumers may
//!   read this prefix and nothing else (etcd RBAC).
//! - `secret/NAME`: the credential sealed with the fleet key ([`seal`]),
//!   and the marker of a refresh in flight. Refreshers only.
//! - `lock/NAME`: who is refreshing, bound to that member's lease.
//!
//! Every change of the credential is a transaction that compares
//! `secret/NAME`'s `mod_revision` ([`Fleet::commit`]): a member that
//! stalled past its lease can never overwrite a newer refresh token. The
//! refresh itself is [`crate::profile`]'s `fleet` loop.

pub mod etcd;
mod seal;

use std::path::{Path, PathBuf};
use std::time::Duration;

use a365_proto::ProfileSpec;
use a365_store::Credential;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use etcd::{Compare, Etcd, EtcdError, Op};
pub use seal::{FleetKey, SealError};

/// `[fleet]` in config.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// Client URLs of the etcd members: https, or http to loopback only.
    pub etcd: Vec<String>,
    /// This machine's name in the fleet; the host name by default.
    pub member: Option<String>,
    #[serde(default)]
    pub role: Role,
    /// Refreshers only: 32 random bytes, mode 0600, never in etcd.
    pub key_file: Option<PathBuf>,
    /// The key before the last rotation: records it sealed are still
    /// opened, and sealed with `key_file` at their next refresh.
    pub previous_key_file: Option<PathBuf>,
    /// CA that signs the etcd members' certificates (PEM).
    pub ca: Option<PathBuf>,
    /// Client certificate and key (PEM) when etcd asks for one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// etcd user, when the cluster has authentication on; its password is
    /// read from `password_file` (mode 0600), never from this file.
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    /// The refresh lock's lease: much longer than a token request.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
    /// One etcd request, per member tried.
    #[serde(default = "default_etcd_timeout_ms")]
    pub etcd_timeout_ms: u64,
    /// Where the fleet's keys live in etcd.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// How often the list of shared profiles is read again.
    #[serde(default = "default_sync_secs")]
    pub sync_secs: u64,
}

fn default_sync_secs() -> u64 {
    30
}

fn default_lease_secs() -> u64 {
    60
}

fn default_etcd_timeout_ms() -> u64 {
    5_000
}

fn default_prefix() -> String {
    "a365/".into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Holds the fleet key; refreshes shared profiles when they are due.
    #[default]
    Refresher,
    /// Serves the shared access tokens; never holds or sends a refresh token.
    Consumer,
}

/// Why the fleet cannot be used; never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    #[error("[fleet]: {0}")]
    Config(String),
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("shared record of '{0}' in etcd is not readable ({1})")]
    Record(String, String),
}

/// What every member may read about a shared profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Public {
    pub spec: ProfileSpec,
    #[serde(default)]
    pub access_token: Option<SecretString>,
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub obtained_at_ms: i64,
    /// The member that wrote the token (or the record).
    pub refreshed_by: String,
    /// Why the credential is dead; every member then sends nothing.
    #[serde(default)]
    pub dead: Option<String>,
    #[serde(default)]
    pub rotates: Option<bool>,
}

/// The written form of [`Public`]: the access token exposed into a wiped
/// buffer only.
#[derive(Serialize)]
struct PublicOut<'a> {
    spec: &'a ProfileSpec,
    access_token: Option<&'a str>,
    expires_at_ms: Option<i64>,
    scopes: &'a [String],
    obtained_at_ms: i64,
    refreshed_by: &'a str,
    dead: Option<&'a str>,
    rotates: Option<bool>,
}

impl Public {
    /// The record of a token `member` just obtained: (token, expiry, scopes).
    pub fn issued(
        spec: ProfileSpec,
        (access_token, expires_at_ms, scopes): (SecretString, Option<i64>, Vec<String>),
        now_ms: i64,
        member: &str,
        rotates: Option<bool>,
    ) -> Public {
        Public {
            spec,
            access_token: Some(access_token),
            expires_at_ms,
            scopes,
            obtained_at_ms: now_ms,
            refreshed_by: member.to_owned(),
            dead: None,
            rotates,
        }
    }

    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let out = PublicOut {
            spec: &self.spec,
            access_token: self.access_token.as_ref().map(|t| t.expose_secret()),
            expires_at_ms: self.expires_at_ms,
            scopes: &self.scopes,
            obtained_at_ms: self.obtained_at_ms,
            refreshed_by: &self.refreshed_by,
            dead: self.dead.as_deref(),
            rotates: self.rotates,
        };
        let size = self
            .access_token
            .as_ref()
            .map_or(0, |t| t.expose_secret().len());
        let mut buf = Zeroizing::new(Vec::with_capacity(2 * size + 4096));
        // Strings and numbers only: cannot fail.
        let _ = serde_json::to_writer(&mut *buf, &out);
        buf
    }
}

/// The refreshers' record: the sealed credential.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    /// [`Credential::encode`], sealed with the fleet key.
    pub sealed: String,
    /// Which fleet key sealed it.
    pub key_id: String,
    /// A refresh request sent and not yet committed: if its member dies
    /// or stalls, its answer is lost, and with a rotating provider the
    /// refresh token it sent is spent. Never replayed.
    #[serde(default)]
    pub inflight: Option<Inflight>,
    #[serde(default)]
    pub dead: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inflight {
    pub member: String,
    pub at_ms: i64,
}

/// The refresh lock, held through a lease.
#[derive(Debug)]
pub struct Lock {
    lease: i64,
}

/// This agent's link to its fleet.
#[derive(Debug)]
pub struct Fleet {
    etcd: Etcd,
    pub member: String,
    pub role: Role,
    key: Option<FleetKey>,
    previous_key: Option<FleetKey>,
    pub lease_secs: u64,
    pub sync_secs: u64,
    prefix: String,
}

impl Fleet {
    /// Checks the settings and reads the keys; contacts no one.
    pub fn open(config: &FleetConfig) -> Result<Fleet, FleetError> {
        let bad = |m: String| FleetError::Config(m);
        if config.etcd.is_empty() {
            return Err(bad("etcd lists no endpoint".into()));
        }
        let endpoints = config
            .etcd
            .iter()
            .map(|e| crate::endpoint::parse_url("etcd endpoint", e).map_err(|e| bad(e.0)))
            .collect::<Result<Vec<_>, _>>()?;
        let key = match (config.role, &config.key_file) {
            (Role::Refresher, Some(path)) => Some(FleetKey::read(path)?),
            (Role::Refresher, None) => {
                return Err(bad(
                    "a refresher needs key_file (32 random bytes: head -c 32 /dev/urandom)".into(),
                ));
            }
            (Role::Consumer, Some(_)) => {
                return Err(bad(
                    "a consumer never holds the fleet key: remove key_file, or set role = \"refresher\""
                        .into(),
                ));
            }
            (Role::Consumer, None) => None,
        };
        let previous_key = config
            .previous_key_file
            .as_deref()
            .map(FleetKey::read)
            .transpose()?;
        if config.lease_secs < 2 {
            return Err(bad("lease_secs must be at least 2".into()));
        }
        let user = match (&config.user, &config.password_file) {
            (Some(user), Some(file)) => Some((user.clone(), read_password(file)?)),
            (Some(_), None) => return Err(bad("user needs password_file".into())),
            (None, Some(_)) => return Err(bad("password_file needs user".into())),
            (None, None) => None,
        };
        let http = etcd_client(config)?;
        let member = match &config.member {
            Some(m) if !m.trim().is_empty() => m.trim().to_owned(),
            _ => host_name(),
        };
        let mut prefix = config.prefix.clone();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(Fleet {
            etcd: Etcd::new(http, endpoints, user),
            member,
            role: config.role,
            key,
            previous_key,
            lease_secs: config.lease_secs,
            sync_secs: config.sync_secs,
            prefix,
        })
    }

    fn public_key(&self, name: &str) -> String {
        format!("{}public/{name}", self.prefix)
    }

    fn secret_key(&self, name: &str) -> String {
        format!("{}secret/{name}", self.prefix)
    }

    fn lock_key(&self, name: &str) -> String {
        format!("{}lock/{name}", self.prefix)
    }

    /// Every shared profile, by name.
    pub async fn profiles(&self) -> Result<Vec<(String, Public)>, FleetError> {
        let prefix = format!("{}public/", self.prefix);
        let mut out = Vec::new();
        for kv in self.etcd.list(&prefix).await? {
            let name = kv.key[prefix.len()..].to_owned();
            if !a365_proto::is_valid_profile_name(&name) {
                tracing::warn!(key = %kv.key.escape_default(), "ignoring a fleet key that names no valid profile");
                continue;
            }
            match decode::<Public>(&name, &kv.value) {
                Ok(public) => out.push((name, public)),
                Err(e) => tracing::warn!("{e}"),
            }
        }
        Ok(out)
    }

    pub async fn read_public(&self, name: &str) -> Result<Option<Public>, FleetError> {
        match self.etcd.get(&self.public_key(name)).await? {
            Some(kv) => Ok(Some(decode(name, &kv.value)?)),
            None => Ok(None),
        }
    }

    /// The sealed credential and the revision a commit must compare.
    pub async fn read_secret(&self, name: &str) -> Result<Option<(Secret, i64)>, FleetError> {
        match self.etcd.get(&self.secret_key(name)).await? {
            Some(kv) => Ok(Some((decode(name, &kv.value)?, kv.mod_revision))),
            None => Ok(None),
        }
    }

    /// Takes the refresh lock of `name`, or `None` when another member
    /// holds it.
    pub async fn lock(&self, name: &str) -> Result<Option<Lock>, FleetError> {
        let lease = self.etcd.grant(self.lease_secs).await?;
        let key = self.lock_key(name);
        let put = Op::Put {
            key: key.clone(),
            value: self.member.as_bytes().to_vec(),
            lease: Some(lease),
        };
        match self.etcd.txn(&[Compare::Absent(key)], &[put]).await {
            Ok(Some(_)) => Ok(Some(Lock { lease })),
            other => {
                let _ = self.etcd.revoke(lease).await;
                other.map(|_| None).map_err(FleetError::from)
            }
        }
    }

    /// Renews the lock's lease: the seconds it now has, 0 if it was lost.
    pub async fn renew(&self, lock: &Lock) -> Result<i64, FleetError> {
        Ok(self.etcd.keep_alive(lock.lease).await?)
    }

    pub async fn unlock(&self, lock: Lock) {
        if let Err(e) = self.etcd.revoke(lock.lease).await {
            tracing::warn!("could not release the fleet lock (it ends with its lease): {e}");
        }
    }

    /// Writes `secret` (and `public`, when given) if `secret/NAME` is still
    /// at revision `rev`; the new revision, or `None` if another member
    /// changed it first (nothing written).
    pub async fn commit(
        &self,
        name: &str,
        rev: i64,
        secret: &Secret,
        public: Option<&Public>,
    ) -> Result<Option<i64>, FleetError> {
        let mut ops = vec![Op::Put {
            key: self.secret_key(name),
            value: encode_secret(secret),
            lease: None,
        }];
        if let Some(public) = public {
            ops.push(Op::Put {
                key: self.public_key(name),
                value: public.encode().to_vec(),
                lease: None,
            });
        }
        let compare = [Compare::ModRevision(self.secret_key(name), rev)];
        Ok(self.etcd.txn(&compare, &ops).await?)
    }

    /// Puts a new shared profile (or, with `replace`, a new credential for
    /// one) in the fleet; false when the name is taken.
    pub async fn create(
        &self,
        name: &str,
        public: &Public,
        secret: &Secret,
        replace: bool,
    ) -> Result<bool, FleetError> {
        let ops = [
            Op::Put {
                key: self.public_key(name),
                value: public.encode().to_vec(),
                lease: None,
            },
            Op::Put {
                key: self.secret_key(name),
                value: encode_secret(secret),
                lease: None,
            },
        ];
        let compare = match replace {
            true => Vec::new(),
            false => vec![Compare::Absent(self.public_key(name))],
        };
        Ok(self.etcd.txn(&compare, &ops).await?.is_some())
    }

    /// Takes `name` out of the fleet; false if it was not in it.
    pub async fn delete(&self, name: &str) -> Result<bool, FleetError> {
        let exists = self.etcd.get(&self.public_key(name)).await?.is_some();
        let ops = [
            Op::Delete(self.public_key(name)),
            Op::Delete(self.secret_key(name)),
        ];
        self.etcd.txn(&[], &ops).await?;
        Ok(exists)
    }

    /// `credential` sealed for `name` with the current key.
    pub fn seal(&self, name: &str, credential: &Credential) -> Result<Secret, FleetError> {
        let key = self.key.as_ref().ok_or_else(|| {
            FleetError::Config("a consumer holds no fleet key and cannot seal".into())
        })?;
        let plain = credential
            .encode()
            .map_err(|e| FleetError::Record(name.into(), e.to_string()))?;
        Ok(Secret {
            sealed: key.seal(name, &plain)?,
            key_id: key.id.clone(),
            inflight: None,
            dead: None,
        })
    }

    /// Opens the credential with whichever of our keys sealed it.
    pub fn open_credential(&self, name: &str, secret: &Secret) -> Result<Credential, FleetError> {
        let key = [&self.key, &self.previous_key]
            .into_iter()
            .flatten()
            .find(|k| k.id == secret.key_id)
            .ok_or_else(|| SealError::OtherKey {
                sealed_with: secret.key_id.clone(),
                held: self.key.as_ref().map_or("none".into(), |k| k.id.clone()),
            })?;
        let plain = key.open(name, &secret.sealed)?;
        Credential::decode(&plain).map_err(|why| FleetError::Record(name.into(), why))
    }
}

fn decode<T: for<'de> Deserialize<'de>>(name: &str, bytes: &[u8]) -> Result<T, FleetError> {
    serde_json::from_slice(bytes).map_err(|e| {
        FleetError::Record(
            name.into(),
            format!("{:?} error at column {}", e.classify(), e.column()),
        )
    })
}

fn encode_secret(secret: &Secret) -> Vec<u8> {
    // Strings and numbers only: cannot fail. Sealed already.
    serde_json::to_vec(secret).unwrap_or_default()
}

/// The etcd client: the agent's HTTP settings, etcd's own CA and client
/// certificate, and a short timeout so that a member without quorum is
/// passed over quickly.
fn etcd_client(config: &FleetConfig) -> Result<reqwest::Client, FleetError> {
    let bad = |m: String| FleetError::Config(m);
    let read = |what: &str, path: &Path| {
        std::fs::read(path).map_err(|e| bad(format!("{what} {}: {e}", path.display())))
    };
    let timeout = Duration::from_millis(config.etcd_timeout_ms.max(100));
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout.min(Duration::from_secs(3)))
        .timeout(timeout)
        .no_proxy()
        .user_agent(concat!("a365-agent/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &config.ca {
        let pem = read("ca", ca)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| bad(format!("ca {}: {e}", ca.display())))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => {
            let mut pem = Zeroizing::new(read("cert", cert)?);
            pem.extend_from_slice(b"\n");
            pem.extend_from_slice(&Zeroizing::new(read("key", key)?));
            let identity =
                reqwest::Identity::from_pem(&pem).map_err(|e| bad(format!("cert and key: {e}")))?;
            builder = builder.identity(identity);
        }
        (None, None) => {}
        _ => return Err(bad("cert and key go together".into())),
    }
    builder
        .build()
        .map_err(|e| bad(format!("HTTP client: {e}")))
}

fn read_password(path: &Path) -> Result<SecretString, FleetError> {
    let bytes = read_private("password_file", path).map_err(FleetError::Config)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        FleetError::Config(format!("password_file {} is not UTF-8", path.display()))
    })?;
    Ok(SecretString::from(
        text.trim_end_matches(['\r', '\n']).to_owned(),
    ))
}

/// The contents of a file that holds a secret (the fleet key, the etcd
/// password), refused when other users may read it (Unix modes).
fn read_private(what: &str, path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    let shown = path.display();
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| format!("{what} {shown}: {e}"))?
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "{what} {shown} is readable by other users (mode {:o}): chmod 600 it",
                mode & 0o777
            ));
        }
    }
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| format!("{what} {shown}: {e}"))
}

/// The machine's name: the default member name.
fn host_name() -> String {
    #[cfg(unix)]
    {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME").unwrap_or_else(|_| "unnamed".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> FleetConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn settings_are_checked_before_anything_is_contacted() {
        let err = |text: &str| Fleet::open(&config(text)).unwrap_err().to_string();
        assert!(err("etcd = []").contains("no endpoint"));
        assert!(
            err("etcd = [\"http://etcd.example:2379\"]\nrole = \"consumer\"")
                .contains("plain http")
        );
        assert!(err("etcd = [\"http://127.0.0.1:2379\"]").contains("needs key_file"));
        assert!(
            err("etcd = [\"http://127.0.0.1:2379\"]\nrole = \"consumer\"\nkey_file = \"/k\"")
                .contains("never holds the fleet key")
        );
        assert!(
            err("etcd = [\"http://127.0.0.1:2379\"]\nrole = \"consumer\"\nuser = \"u\"")
                .contains("password_file")
        );
        let fleet = Fleet::open(&config(
            "etcd = [\"http://127.0.0.1:2379\"]\nrole = \"consumer\"\nmember = \"m1\"\nprefix = \"x\"",
        ))
        .unwrap();
        assert_eq!(
            (fleet.member.as_str(), fleet.public_key("p")),
            ("m1", "x/public/p".into())
        );
        assert!(toml::from_str::<FleetConfig>("etcd = []\nrole = \"boss\"").is_err());
    }

    #[test]
    fn a_public_record_round_trips_and_debug_hides_the_token() {
        let public = Public {
            spec: ProfileSpec::default(),
            access_token: Some(SecretString::from("at-123")),
            expires_at_ms: Some(5),
            scopes: vec!["s".into()],
            obtained_at_ms: 1,
            refreshed_by: "m".into(),
            dead: None,
            rotates: Some(true),
        };
        let bytes = public.encode();
        let back: Public = decode("p", &bytes).unwrap();
        assert_eq!(back.access_token.unwrap().expose_secret(), "at-123");
        assert!(!format!("{public:?}").contains("at-123"));
        let err = decode::<Public>("p", b"{\"spec\": 5, \"x\": \"at-123\"}").unwrap_err();
        assert!(!err.to_string().contains("at-123"), "{err}");
    }
}
