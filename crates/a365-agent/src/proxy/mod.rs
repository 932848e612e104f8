//! Proxy routes: local HTTP addresses where the agent forwards requests
//! to an API with a profile's current token, so that a tool configured
//! with a fixed URL never holds a token that expires. One file per
//! concern:
//!
//! - [`listen`]: the local address and its connections;
//! - [`owner`]: whose connection it is (only the agent's user is served);
//! - [`forward`]: one request: headers, token, replay after a refusal;
//! - [`body`]: bodies kept for a replay, or streamed;
//! - [`refused`]: answers that refuse a token; the Gov Cloud partition;
//! - [`secret`]: the per-route secret, where the owner cannot be told.

mod body;
mod forward;
mod listen;
mod owner;
mod refused;
mod secret;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use a365_proto::{ProxyRoute, RouteStatus};
use http::{HeaderMap, HeaderName, HeaderValue};
use secrecy::SecretString;

use crate::agent::Agent;

pub(crate) use listen::Address;

/// Counts of one route, since the agent started.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    served: AtomicU64,
    replays: AtomicU64,
    refused: AtomicU64,
}

/// A route being served: what each request needs.
pub(crate) struct Route {
    name: String,
    profile: String,
    workspace: Option<String>,
    /// The upstream base URL, ending in `/`.
    base: reqwest::Url,
    gov_upstream: bool,
    /// Added to every request.
    headers: HeaderMap,
    require_secret: bool,
    secret: Option<SecretString>,
    /// The `Host` values a request may carry (a TCP route: its own
    /// address; another is a DNS-rebinding page), empty for a socket.
    hosts: Vec<String>,
    /// Browser origins whose pages may use the route.
    allow_origins: Vec<String>,
    agent: Weak<Agent>,
    stats: Arc<Stats>,
    /// Per profile: one forced refresh at a time, and when the last was.
    renewing: Arc<Renewing>,
}

/// Per profile, the lock its forced refreshes take, holding when the last
/// one was made.
pub(crate) type Renewing = Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Instant>>>>>;

/// The most connections all routes serve at once; more wait to be
/// accepted (well below the agent's open-file limit).
const MAX_CONNECTIONS: usize = 512;

/// A route as the agent keeps it: running, or why not.
struct Running {
    route: ProxyRoute,
    url: String,
    error: Option<String>,
    stats: Arc<Stats>,
    secret: Option<SecretString>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Ends the route's open connections.
    stop: Option<tokio::sync::watch::Sender<bool>>,
    socket: Option<PathBuf>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = &self.stop {
            let _ = stop.send(true);
        }
        if let Some(task) = &self.task {
            task.abort();
        }
        if let Some(path) = &self.socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Every route of an agent.
pub struct Routes {
    running: Mutex<BTreeMap<String, Running>>,
    renewing: Arc<Renewing>,
    connections: Arc<tokio::sync::Semaphore>,
}

impl Default for Routes {
    fn default() -> Routes {
        Routes {
            running: Mutex::default(),
            renewing: Arc::default(),
            connections: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
        }
    }
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes").finish_non_exhaustive()
    }
}

impl Routes {
    /// Starts `route` (in place of any of its name). An error says why it
    /// cannot serve, and keeps nothing. Returns the route as bound (the
    /// port chosen for port 0).
    pub(crate) async fn start(
        &self,
        agent: &Arc<Agent>,
        mut route: ProxyRoute,
        state_dir: &Path,
    ) -> Result<ProxyRoute, String> {
        let (served, bound) = prepare(agent, &route, state_dir).await?;
        let address = bound.address();
        let socket = match &address {
            Address::Unix(path) => Some(path.clone()),
            Address::Tcp(addr) => {
                route.listen = addr.to_string();
                None
            }
        };
        let url = address.url();
        let secret = served.secret.clone();
        let stats = Arc::clone(&served.stats);
        let served = Arc::new(Route {
            renewing: Arc::clone(&self.renewing),
            ..served
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let limit = Arc::clone(&self.connections);
        let task = tokio::spawn(bound.serve(served, limit, stopped));
        tracing::info!(route = %route.name, %url, upstream = %route.upstream, profile = %route.profile, "proxy route listening");
        let mut running = Running {
            route: route.clone(),
            url,
            error: None,
            stats,
            secret,
            task: Some(task),
            stop: Some(stop),
            socket,
        };
        if let Ok(mut all) = self.running.lock() {
            // The one it replaces stops (and its socket file goes) first.
            if let Some(old) = all.remove(&route.name) {
                drop(old);
            }
            all.insert(route.name.clone(), running);
        } else {
            running.task.take();
        }
        Ok(route)
    }

    /// Lists `route`, configured but not served, with why.
    pub(crate) fn failed(&self, route: ProxyRoute, why: String) {
        tracing::error!(route = %route.name, "proxy route not served: {why}");
        let url = Address::parse(&route.listen)
            .map(|a| a.url())
            .unwrap_or_default();
        if let Ok(mut all) = self.running.lock() {
            all.insert(
                route.name.clone(),
                Running {
                    route,
                    url,
                    error: Some(why),
                    stats: Arc::default(),
                    secret: None,
                    task: None,
                    stop: None,
                    socket: None,
                },
            );
        }
    }

    /// Stops the route `name` (its address is free once this returns, its
    /// open connections end after the request under way); its definition,
    /// if it had one.
    pub(crate) async fn stop(&self, name: &str) -> Option<ProxyRoute> {
        let mut running = self.running.lock().ok()?.remove(name)?;
        let route = running.route.clone();
        if let Some(stop) = running.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(task) = running.task.take() {
            task.abort();
            let _ = task.await;
        }
        drop(running);
        Some(route)
    }

    /// The route `name`'s definition.
    pub(crate) fn get(&self, name: &str) -> Option<ProxyRoute> {
        let all = self.running.lock().ok()?;
        all.get(name).map(|r| r.route.clone())
    }

    /// Every route and how it does.
    pub(crate) fn list(&self) -> Vec<RouteStatus> {
        let Ok(all) = self.running.lock() else {
            return Vec::new();
        };
        all.values()
            .map(|r| RouteStatus {
                route: r.route.clone(),
                url: r.url.clone(),
                error: r.error.clone(),
                served: r.stats.served.load(Ordering::Relaxed),
                replays: r.stats.replays.load(Ordering::Relaxed),
                refused: r.stats.refused.load(Ordering::Relaxed),
                secret: r.secret.clone().map(a365_proto::WireSecret::from),
            })
            .collect()
    }
}

/// Checks `route` and binds its address: everything but the serving.
async fn prepare(
    agent: &Arc<Agent>,
    route: &ProxyRoute,
    state_dir: &Path,
) -> Result<(Route, listen::Bound), String> {
    if !a365_proto::is_valid_profile_name(&route.name) {
        return Err(format!(
            "invalid route name '{}': use 1 to 64 letters, digits, '.', '_' or '-'",
            route.name.escape_default()
        ));
    }
    let (base, gov_upstream) = upstream(&route.upstream)?;
    let headers = extra_headers(&route.headers)?;
    let address = Address::parse(&route.listen)?;
    if let Some(spec) = agent.spec_of(&route.profile)
        && route.workspace.is_none()
        && let Some(gov) = profile_is_gov(&spec)
        && gov != gov_upstream
    {
        return Err(format!(
            "profile '{}' gets its tokens from Altium's {} and the upstream {} is {}: its \
             token is never sent there",
            route.profile,
            if gov {
                "Gov Cloud"
            } else {
                "commercial cloud (not Gov)"
            },
            base.host_str().unwrap_or_default(),
            if gov_upstream {
                "in the Gov Cloud"
            } else {
                "not in the Gov Cloud"
            },
        ));
    }
    // The CAs are checked now, so that a bundle that cannot be used is
    // said at `add`; each request looks again (the file may change).
    let ca = agent
        .spec_of(&route.profile)
        .and_then(|s| s.ca_file.clone())
        .map(PathBuf::from);
    agent.shared().http.for_route(ca.as_deref())?;
    // A socket route is peer-checked; a TCP route needs its secret where
    // the owner of a connection cannot be told.
    let secret = match (&address, route.require_secret) {
        (Address::Unix(_), false) => None,
        _ => Some(secret::load_or_make(state_dir, &route.name)?),
    };
    let bound = listen::Bound::bind(&address).await?;
    let hosts = match bound.address() {
        Address::Tcp(addr) => {
            let port = addr.port();
            vec![
                addr.to_string(),
                format!("localhost:{port}"),
                format!("127.0.0.1:{port}"),
                format!("[::1]:{port}"),
            ]
        }
        Address::Unix(_) => Vec::new(),
    };
    let allow_origins = route
        .allow_origins
        .iter()
        .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
        .collect();
    Ok((
        Route {
            name: route.name.clone(),
            profile: route.profile.clone(),
            workspace: route.workspace.clone(),
            base,
            gov_upstream,
            headers,
            require_secret: route.require_secret,
            secret,
            hosts,
            allow_origins,
            agent: Arc::downgrade(agent),
            stats: Arc::default(),
            renewing: Arc::default(),
        },
        bound,
    ))
}

/// The upstream's base URL (ending in `/`) and whether it is in Altium's
/// Gov Cloud. HTTPS, or plain HTTP to a loopback host (tests, local
/// servers), as token URLs.
pub(crate) fn upstream(text: &str) -> Result<(reqwest::Url, bool), String> {
    let bad = |why: &str| Err(format!("upstream = \"{}\": {why}", text.escape_default()));
    let Ok(mut url) = reqwest::Url::parse(text) else {
        return bad("not a URL (give the API's base, such as https://api.nexar.com/graphql/)");
    };
    let Some(host) = url.host_str().map(str::to_owned) else {
        return bad("it names no host");
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => return bad("plain http is for loopback hosts only: use https"),
        _ => return bad("use an https URL"),
    }
    if text.contains("WORKSPACE") {
        return bad(
            "name the workspace: --workspace HOST (as in its URL, e.g. acme.365.altium.com)",
        );
    }
    if !url.username().is_empty() || url.password().is_some() {
        return bad("credentials in the URL are not forwarded: use the route's profile");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return bad("a base URL has no query or fragment");
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    let gov = refused::is_gov_host(&host);
    Ok((url, gov))
}

/// The route's own headers, checked: no credential headers (the profile's
/// token is the one sent), nothing a request's framing depends on.
fn extra_headers(given: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in given {
        let header = HeaderName::try_from(name.as_str())
            .map_err(|_| format!("header name '{}' is not valid", name.escape_default()))?;
        if [
            http::header::AUTHORIZATION,
            http::header::HOST,
            http::header::CONTENT_LENGTH,
            http::header::TRANSFER_ENCODING,
            http::header::CONNECTION,
        ]
        .contains(&header)
        {
            return Err(format!("header {header} is set by the route itself"));
        }
        let value = HeaderValue::try_from(value.as_str())
            .map_err(|_| format!("the value of header {header} is not valid in a header"))?;
        headers.insert(header, value);
    }
    Ok(headers)
}

/// Whether `spec`'s tokens come from Altium's Gov Cloud (`None`: the
/// profile's endpoint cannot be told).
fn profile_is_gov(spec: &a365_proto::ProfileSpec) -> Option<bool> {
    let endpoint = crate::provider::endpoint(spec).ok().flatten()?;
    Some(
        endpoint.secure
            || endpoint
                .token_url
                .host_str()
                .is_some_and(refused::is_gov_host),
    )
}

/// Forgets the secret of the removed route `name`.
pub(crate) fn forget_secret(state_dir: &Path, name: &str) {
    secret::remove(state_dir, name);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams() {
        let (url, gov) = upstream("https://api.nexar.com/graphql").unwrap();
        assert_eq!(url.as_str(), "https://api.nexar.com/graphql/");
        assert!(!gov);
        assert!(upstream("https://acme.365-gov.altium.com/").unwrap().1);
        assert!(upstream("http://127.0.0.1:9/api/").is_ok());
        for bad in [
            "http://api.nexar.com/",
            "ftp://x/",
            "https://u:p@x/",
            "https://x/?a=1",
            "x",
            "https://WORKSPACE/svc/",
        ] {
            assert!(upstream(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn extra_headers_are_checked() {
        let ok = [("x-api-version".to_owned(), "2".to_owned())].into();
        assert_eq!(extra_headers(&ok).unwrap().len(), 1);
        let bad = [("Authorization".to_owned(), "Bearer x".to_owned())].into();
        assert!(extra_headers(&bad).is_err());
        let bad = [("x".to_owned(), "a\nb".to_owned())].into();
        assert!(extra_headers(&bad).is_err());
    }
}
