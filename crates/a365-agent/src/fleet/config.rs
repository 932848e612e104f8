//! The `[fleet]` settings, checked, and the fleet opened from them: its
//! endpoints, keys, credentials for etcd and the member's name. Nothing
//! here contacts etcd.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::etcd::Etcd;
use super::seal::{FleetKey, Verifier};
use super::seen::Seen;
use super::{Fleet, FleetError, Role};

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
    /// Consumers: the fleet's public key (`a365-agent --fleet-public-key`
    /// on a refresher prints it); only records it verifies are served.
    pub public_key: Option<String>,
    /// The public key before the last rotation of the fleet key.
    pub previous_public_key: Option<String>,
    /// Plain HTTP to an etcd on this machine: its password (and every
    /// record) goes to whoever listens on that port first. Off unless set.
    #[serde(default)]
    pub insecure_loopback: bool,
    /// CA that signs the etcd members' certificates (PEM); it replaces the
    /// system's roots for etcd.
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
    /// How often the list of shared profiles is read again while no etcd
    /// watch is up (with one, it is read at each change).
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

impl Fleet {
    /// Checks the settings and reads the keys; contacts no one. `seen` is
    /// where the newest records seen are kept (the state directory's
    /// `fleet-seen.json`); `None` keeps them in memory.
    pub fn open(config: &FleetConfig, seen: Option<PathBuf>) -> Result<Fleet, FleetError> {
        let endpoints = endpoints(config)?;
        let (key, previous_key, verifiers) = keys(config)?;
        let bad = |m: String| FleetError::Config(m);
        let seen = match seen {
            Some(path) => Seen::load(path)?,
            None => Seen::default(),
        };
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
            verifiers,
            seen,
            lease_secs: config.lease_secs,
            sync_secs: config.sync_secs,
            prefix,
        })
    }
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
        // etcd's own CA only: a public CA has no say over who is etcd.
        builder = builder.tls_certs_only(certs);
    }
    match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => {
            let cert_pem = read("cert", cert)?;
            if config.user.is_some()
                && let Some(cn) = common_name(&cert_pem)
            {
                return Err(bad(format!(
                    "cert {} names CN={cn}: with authentication on, etcd's JSON gateway refuses \
                     every request from a client certificate with a CommonName (it cannot name \
                     the user there). Give the member a certificate without one (e.g. \
                     `-subj /O=a365`): user and password_file name the user",
                    cert.display()
                )));
            }
            let mut pem = Zeroizing::new(cert_pem);
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

/// The CommonName of the first certificate in `pem`, if it has one.
fn common_name(pem: &[u8]) -> Option<String> {
    use base64::Engine as _;
    use x509_cert::der::Decode;
    let text = std::str::from_utf8(pem).ok()?;
    let body = text
        .split("-----BEGIN CERTIFICATE-----")
        .nth(1)?
        .split("-----END CERTIFICATE-----")
        .next()?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let cert = x509_cert::Certificate::from_der(&der).ok()?;
    let cn = cert.tbs_certificate().subject().common_name().ok()??;
    Some(cn.value().into_owned()).filter(|cn| !cn.is_empty())
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
pub(super) fn read_private(what: &str, path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
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

/// The etcd endpoints: https, or plain http where the settings accept it.
fn endpoints(config: &FleetConfig) -> Result<Vec<reqwest::Url>, FleetError> {
    let bad = |m: String| FleetError::Config(m);
    if config.etcd.is_empty() {
        return Err(bad("etcd lists no endpoint".into()));
    }
    let endpoints = config
        .etcd
        .iter()
        .map(|e| crate::endpoint::parse_url("etcd endpoint", e).map_err(|e| bad(e.0)))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(plain) = endpoints.iter().find(|u| u.scheme() == "http")
        && !config.insecure_loopback
    {
        return Err(bad(format!(
            "etcd endpoint {plain} is plain HTTP: any local user who listens on that port \
             first receives the etcd password and every record. Use https (ca, cert, key), \
             or set insecure_loopback = true to accept that on this machine"
        )));
    }
    Ok(endpoints)
}

/// The fleet key (a refresher's), the previous one, and the public keys
/// records are checked with.
type Keys = (Option<FleetKey>, Option<FleetKey>, Vec<Verifier>);

/// Reads the keys the settings name; a refresher needs the fleet key, a
/// consumer must not have it and needs the public key.
fn keys(config: &FleetConfig) -> Result<Keys, FleetError> {
    let bad = |m: String| FleetError::Config(m);
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
    let mut verifiers: Vec<Verifier> = [&key, &previous_key]
        .into_iter()
        .flatten()
        .map(FleetKey::verifier)
        .collect();
    for text in [&config.public_key, &config.previous_public_key]
        .into_iter()
        .flatten()
    {
        verifiers.push(Verifier::parse(text)?);
    }
    if verifiers.is_empty() {
        return Err(bad(
            "a consumer needs public_key: the fleet's public key, which \
             `a365-agent --fleet-public-key` prints on a refresher"
                .into(),
        ));
    }
    Ok((key, previous_key, verifiers))
}
