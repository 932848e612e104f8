//! A proxy route: a local HTTP address where the agent forwards requests
//! to an API with a profile's current token. config.toml keeps routes as
//! `[[proxy]]` tables; `a365 proxy add|list|remove` sends them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::WireSecret;

/// The header a client sends the per-route secret in, where the owner of
/// its connection cannot be told (or the route asks for it always).
pub const ROUTE_SECRET_HEADER: &str = "x-a365-route-secret";

/// The APIs `a365 proxy add NAME` knows by name, and their base URLs.
pub const PRESETS: &[(&str, &str)] = &[
    ("nexar", "https://api.nexar.com/graphql/"),
    // An Altium 365 workspace's API: WORKSPACE is its host.
    ("altium", "https://WORKSPACE/svc/napi/gateway/graphql/"),
];

/// The base URL preset `name` stands for, with `workspace` (a host or
/// URL) as its `WORKSPACE`.
pub fn preset(name: &str, workspace: Option<&str>) -> Option<String> {
    let (_, url) = PRESETS.iter().find(|(n, _)| *n == name)?;
    let host = workspace
        .map(|w| {
            let w = w.trim();
            let w = w.strip_prefix("https://").unwrap_or(w);
            w.split('/').next().unwrap_or_default().to_owned()
        })
        .filter(|w| w.contains('.'));
    Some(match host {
        Some(host) => url.replace("WORKSPACE", &host),
        None => (*url).to_owned(),
    })
}

/// One route, as config.toml keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyRoute {
    /// What `proxy list` and the logs call it (a profile-style name).
    pub name: String,
    /// `127.0.0.1:PORT`, `[::1]:PORT`, or `unix:/path/to/socket`.
    pub listen: String,
    /// The API's base URL: a request for `/x?y` goes to `{upstream}x?y`.
    pub upstream: String,
    /// Whose token is added.
    pub profile: String,
    /// An Altium 365 workspace (id, URL or name) of an Altium sign-in:
    /// that workspace's token is added.
    #[serde(default)]
    pub workspace: Option<String>,
    /// Headers added to every forwarded request (not secrets: they are
    /// shown by `proxy list`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Every request must carry [`ROUTE_SECRET_HEADER`], even where the
    /// owner of the connection can be told.
    #[serde(default)]
    pub require_secret: bool,
    /// Browser origins (`https://ide.example`) whose pages may use the
    /// route; a request from any other page (it carries `Origin`) is
    /// refused.
    #[serde(default)]
    pub allow_origins: Vec<String>,
}

/// A route and how it is doing (`proxy list`, `status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteStatus {
    pub route: ProxyRoute,
    /// The URL to give a tool: `http://127.0.0.1:PORT/`, or the socket's
    /// path.
    pub url: String,
    /// Listening, or why not (`None`: listening).
    pub error: Option<String>,
    /// Requests forwarded since the agent started.
    pub served: u64,
    /// Of those, replayed once with a new token.
    pub replays: u64,
    /// Requests refused (another user, no secret, the partition).
    pub refused: u64,
    /// The value of [`ROUTE_SECRET_HEADER`] that a client must send, when
    /// this route needs one (`None`: the owner of a connection is checked
    /// instead).
    pub secret: Option<WireSecret>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets() {
        assert_eq!(
            preset("nexar", None).unwrap(),
            "https://api.nexar.com/graphql/"
        );
        assert_eq!(
            preset("altium", Some("https://acme.365.altium.com/x")).unwrap(),
            "https://acme.365.altium.com/svc/napi/gateway/graphql/"
        );
        assert!(preset("altium", None).unwrap().contains("WORKSPACE"));
        assert!(preset("other", None).is_none());
    }
}
