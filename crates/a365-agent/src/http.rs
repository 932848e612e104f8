//! The agent's HTTP clients. One for every request, and one per CA
//! bundle named by `ca_file` (global, or a profile's) with that bundle's
//! CAs added to the platform's. The bundle is looked at (its size and
//! time) before each request that uses it, so a CA put in place or
//! replaced needs no restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use sha2::Digest;

use crate::RunError;
use crate::config::Config;

/// The most different CA bundles one agent builds a client for: each
/// costs a client for the agent's life (requests borrow it).
const MAX_BUNDLES: usize = 16;

/// The largest CA bundle read (a system bundle is about 220 KiB).
const MAX_BUNDLE_BYTES: u64 = 4 << 20;

pub struct Clients {
    base: reqwest::Client,
    proxies: Vec<reqwest::Proxy>,
    timeout: Duration,
    /// The global `ca_file`: for profiles without one of their own.
    global_ca: Option<PathBuf>,
    /// What each bundle's path held when last looked at.
    seen: Mutex<HashMap<PathBuf, Seen>>,
    /// A client per bundle content, kept for the agent's life.
    built: Mutex<HashMap<[u8; 32], &'static reqwest::Client>>,
    /// Proxy routes' clients, by the bundle path they trust (`None`: the
    /// platform's roots alone), with what the file held when built.
    routes: Mutex<HashMap<Option<PathBuf>, (Stamp, reqwest::Client)>>,
}

struct Seen {
    stamp: Stamp,
    client: Option<&'static reqwest::Client>,
}

/// A file's length, modification time and (Unix) inode and change time:
/// a change of any is a change of the file (`cp -p` keeps the first two).
type Stamp = (u64, Option<SystemTime>, u64, i64);

fn stamp(path: &Path) -> Stamp {
    let Ok(meta) = std::fs::metadata(path) else {
        return (u64::MAX, None, 0, 0);
    };
    #[cfg(unix)]
    let (ino, ctime) = {
        use std::os::unix::fs::MetadataExt;
        (meta.ino(), meta.ctime_nsec() + meta.ctime() * 1_000_000_000)
    };
    #[cfg(not(unix))]
    let (ino, ctime) = (0, 0);
    (meta.len(), meta.modified().ok(), ino, ctime)
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients")
            .field("global_ca", &self.global_ca)
            .finish_non_exhaustive()
    }
}

impl Clients {
    pub fn new(config: &Config, timeout: Duration) -> Result<Clients, RunError> {
        let proxies = proxies(config)?;
        let base =
            build(&proxies, timeout, Vec::new()).map_err(|e| RunError::Http(e.to_string()))?;
        Ok(Clients {
            base,
            proxies,
            timeout,
            global_ca: config.ca_file.clone(),
            seen: Mutex::default(),
            built: Mutex::default(),
            routes: Mutex::default(),
        })
    }

    /// The client without extra CAs (doctor's reachability checks).
    pub fn base(&self) -> &reqwest::Client {
        &self.base
    }

    /// The client for a request of a profile whose `ca_file` is `own`
    /// (else the global one). A bundle that cannot be used is logged, once
    /// per change of the file, and the platform's roots alone are used:
    /// the request then fails on the certificate and says so.
    pub fn client(&self, own: Option<&Path>) -> &reqwest::Client {
        let Some(path) = own.or(self.global_ca.as_deref()) else {
            return &self.base;
        };
        let stamp = stamp(path);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = seen.get(path).filter(|s| s.stamp == stamp) {
            return known.client.unwrap_or(&self.base);
        }
        let client = match self.with_bundle(path) {
            Ok(client) => {
                tracing::info!(ca_file = %path.display(), "using the CAs of ca_file");
                Some(client)
            }
            Err(e) => {
                tracing::error!(ca_file = %path.display(), "ca_file cannot be used: {e}");
                None
            }
        };
        seen.insert(path.to_owned(), Seen { stamp, client });
        client.unwrap_or(&self.base)
    }

    /// Why the bundle at `path` cannot be used now, if it cannot (said
    /// when `ca_file` is set, so that a mistake shows before a request).
    pub fn check(&self, path: &Path) -> Result<(), String> {
        self.with_bundle(path).map(|_| ())
    }

    /// The client for the bundle now at `path`.
    fn with_bundle(&self, path: &Path) -> Result<&'static reqwest::Client, String> {
        let (certs, digest) = read_bundle(path)?;
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = built.get(&digest) {
            return Ok(client);
        }
        if built.len() >= MAX_BUNDLES {
            return Err(format!(
                "{MAX_BUNDLES} different CA bundles were used since the agent started: restart it"
            ));
        }
        let client = build(&self.proxies, self.timeout, certs).map_err(|e| e.to_string())?;
        let client: &'static reqwest::Client = Box::leak(Box::new(client));
        built.insert(digest, client);
        Ok(client)
    }

    /// The client for a proxy route's request of a profile whose `ca_file`
    /// is `own` (else the global one): unlike token requests, its
    /// connections are kept for reuse, and an answer may stream for as
    /// long as data keeps coming. The same HTTP proxies; a bundle that
    /// changed on disk makes a new client (its connections, new ones).
    pub(crate) fn for_route(&self, own: Option<&Path>) -> Result<reqwest::Client, String> {
        let path = own.or(self.global_ca.as_deref());
        let now = path.map_or((0, None, 0, 0), stamp);
        let key = path.map(Path::to_path_buf);
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, client)) = routes.get(&key)
            && *seen == now
        {
            return Ok(client.clone());
        }
        let client = self.route_client(path)?;
        routes.insert(key, (now, client.clone()));
        Ok(client)
    }

    fn route_client(&self, path: Option<&Path>) -> Result<reqwest::Client, String> {
        let certs = match path {
            Some(path) => {
                read_bundle(path)
                    .map_err(|e| format!("ca_file {}: {e}", path.display()))?
                    .0
            }
            None => Vec::new(),
        };
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(ROUTE_READ_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(8)
            .tcp_nodelay(true)
            .no_proxy();
        for proxy in &self.proxies {
            builder = builder.proxy(proxy.clone());
        }
        if !certs.is_empty() {
            builder = builder.tls_certs_merge(certs);
        }
        builder.build().map_err(|e| e.to_string())
    }
}

/// A route's upstream that sends nothing for this long has failed.
const ROUTE_READ_TIMEOUT: Duration = Duration::from_secs(120);

/// The certificates of the bundle now at `path`, checked, and its digest.
fn read_bundle(path: &Path) -> Result<(Vec<reqwest::Certificate>, [u8; 32]), String> {
    use std::io::Read;
    if !path.is_absolute() {
        return Err("it must be an absolute path".into());
    }
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    trusted(path, &file)?;
    let mut pem = Vec::new();
    file.take(MAX_BUNDLE_BYTES + 1)
        .read_to_end(&mut pem)
        .map_err(|e| e.to_string())?;
    if pem.len() as u64 > MAX_BUNDLE_BYTES {
        return Err(format!("larger than {} MiB", MAX_BUNDLE_BYTES >> 20));
    }
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("not a PEM bundle of certificates: {e}"))?;
    if certs.is_empty() {
        return Err("it holds no PEM certificate".into());
    }
    let digest: [u8; 32] = sha2::Sha256::digest(&pem).into();
    Ok((certs, digest))
}

/// Whoever can write a CA bundle can have the agent trust their
/// certificate and read its token requests: the file (as opened) and every
/// directory above it must belong to this user or root and be writable by
/// no one else (a root-owned sticky directory such as /tmp is fine).
#[cfg(unix)]
fn trusted(path: &Path, file: &std::fs::File) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "it belongs to uid {}, neither you nor root",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "others can write it (mode {:o})",
            meta.mode() & 0o777
        ));
    }
    let real = std::fs::canonicalize(path).map_err(|e| e.to_string())?;
    for dir in real.ancestors().skip(1) {
        let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let sticky_root = meta.uid() == 0 && meta.mode() & 0o1000 != 0;
        if (meta.uid() != me && meta.uid() != 0) || (meta.mode() & 0o022 != 0 && !sticky_root) {
            return Err(format!(
                "others can replace it: {} belongs to uid {} with mode {:o}",
                dir.display(),
                meta.uid(),
                meta.mode() & 0o7777
            ));
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn trusted(_path: &Path, _file: &std::fs::File) -> Result<(), String> {
    Ok(())
}

/// A client: rustls with the platform's roots (and `extra` CAs), no
/// redirects (a 307 would re-send the secret form to another host),
/// bounded waits.
fn build(
    proxies: &[reqwest::Proxy],
    timeout: Duration,
    extra: Vec<reqwest::Certificate>,
) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5).min(timeout))
        .timeout(timeout)
        // A sent refresh token's answer is waited for as long as the
        // connection lives (`provider::oauth::ANSWER_WAIT`): probes tell a
        // dead peer from a slow one.
        .tcp_keepalive(Duration::from_secs(15))
        // Every token request on a new connection: one sent on a kept-alive
        // connection that the server (or a load balancer) was closing meanwhile
        // is lost with no way to tell whether the server saw it, and a
        // refresh token may not be sent twice. Token requests are minutes
        // apart; a handshake each costs nothing a client waits for.
        .pool_max_idle_per_host(0)
        .user_agent(concat!("a365-agent/", env!("CARGO_PKG_VERSION")))
        // The server's certificate, for `a365 doctor`'s expiry check.
        .tls_info(true)
        // reqwest's own reading of the environment would send loopback
        // requests through the proxy too: the proxies are set below.
        .no_proxy();
    for proxy in proxies {
        builder = builder.proxy(proxy.clone());
    }
    if !extra.is_empty() {
        builder = builder.tls_certs_merge(extra);
    }
    builder.build()
}

/// Loopback destinations never go through a proxy: a plain-HTTP token URL
/// on this machine would carry the client secret in clear text to it.
const NEVER_PROXIED: &str = "localhost,127.0.0.0/8,::1";

/// `proxy` from the config, else the usual variables (`HTTPS_PROXY`,
/// `HTTP_PROXY`, `ALL_PROXY`, lower case too), each with `NO_PROXY` plus
/// the loopback.
fn proxies(config: &Config) -> Result<Vec<reqwest::Proxy>, RunError> {
    let var = |name: &str| {
        std::env::var(name)
            .or_else(|_| std::env::var(name.to_ascii_lowercase()))
            .ok()
            .filter(|v| !v.trim().is_empty())
    };
    let bad = |e: reqwest::Error| RunError::Http(format!("proxy: {e}"));
    let mut proxies = Vec::new();
    if let Some(url) = &config.https_proxy {
        proxies.push(reqwest::Proxy::all(url).map_err(bad)?);
    } else {
        if let Some(url) = var("HTTPS_PROXY") {
            proxies.push(reqwest::Proxy::https(url).map_err(bad)?);
        }
        if let Some(url) = var("HTTP_PROXY") {
            proxies.push(reqwest::Proxy::http(url).map_err(bad)?);
        }
        if let Some(url) = var("ALL_PROXY") {
            proxies.push(reqwest::Proxy::all(url).map_err(bad)?);
        }
    }
    let exempt = format!("{NEVER_PROXIED},{}", var("NO_PROXY").unwrap_or_default());
    Ok(proxies
        .into_iter()
        .map(|p| p.no_proxy(reqwest::NoProxy::from_string(&exempt)))
        .collect())
}
