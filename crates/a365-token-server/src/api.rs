//! A mock API behind the tokens this server issues, for proxy routes:
//!
//! - `/nexar/…` answers as Nexar's GraphQL API: a token it does not know,
//!   or one marked expired, gets status 200 with a GraphQL error whose
//!   `extensions.code` is `AuthInvalidToken` or `AuthExpiredToken`;
//! - `/altium/…` answers such a token with 401, as Altium 365's API;
//! - `/redirect` sends the client to another host name (`localhost`);
//!
//! and otherwise echoes what it got (method, path, query, body length,
//! the `Authorization` headers it saw, but never their values).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::state::State as ServerState;

/// What the mock API remembers.
#[derive(Debug, Default)]
pub struct Api {
    calls: AtomicUsize,
    expired: Mutex<HashSet<String>>,
}

impl ServerState {
    /// Every access token issued so far is refused from now on as
    /// expired (tokens issued later are good).
    pub fn expire_access_tokens(&self) {
        let issued = self.issued_access_tokens();
        if let Ok(mut expired) = self.api.expired.lock() {
            expired.extend(issued);
        }
    }

    /// Requests the mock API got.
    pub fn api_calls(&self) -> usize {
        self.api.calls.load(Ordering::Relaxed)
    }
}

enum Verdict {
    Good,
    Expired,
    Invalid,
}

fn verdict(state: &ServerState, headers: &HeaderMap) -> Verdict {
    let mut bearer = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok()?.strip_prefix("Bearer "));
    let (Some(token), None) = (bearer.next(), bearer.next()) else {
        return Verdict::Invalid;
    };
    if state.api.expired.lock().is_ok_and(|e| e.contains(token)) {
        return Verdict::Expired;
    }
    match state.issued(token) {
        true => Verdict::Good,
        false => Verdict::Invalid,
    }
}

fn echo(method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Response {
    let value = serde_json::json!({
        "data": {
            "method": method.as_str(),
            "path": uri.path(),
            "query": uri.query(),
            "body_len": body.len(),
            "authorization_headers": headers.get_all(header::AUTHORIZATION).iter().count(),
            "host": headers.get(header::HOST).and_then(|v| v.to_str().ok()),
            "x_extra": headers.get("x-extra").and_then(|v| v.to_str().ok()),
            "secret_header": headers.contains_key("x-a365-route-secret"),
        }
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// `/nexar/…`: Nexar's GraphQL API.
pub async fn nexar(
    State(state): State<Arc<ServerState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.api.calls.fetch_add(1, Ordering::Relaxed);
    let code = match verdict(&state, &headers) {
        Verdict::Good => return echo(&method, &uri, &headers, &body),
        Verdict::Expired => "AuthExpiredToken",
        Verdict::Invalid => "AuthInvalidToken",
    };
    let error = serde_json::json!({
        "errors": [{
            "message": "The access token is not valid.",
            "extensions": { "code": code }
        }],
        "data": null
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        error.to_string(),
    )
        .into_response()
}

/// `/altium/…`: Altium 365's API, which answers a bad token with 401.
pub async fn altium(
    State(state): State<Arc<ServerState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.api.calls.fetch_add(1, Ordering::Relaxed);
    match verdict(&state, &headers) {
        Verdict::Good => echo(&method, &uri, &headers, &body),
        Verdict::Expired | Verdict::Invalid => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
            "the token is not valid",
        )
            .into_response(),
    }
}

/// `/redirect`: 302 to the same server under another host name.
pub async fn redirect(State(state): State<Arc<ServerState>>) -> Response {
    state.api.calls.fetch_add(1, Ordering::Relaxed);
    let port = state
        .issuer
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    (
        StatusCode::FOUND,
        [(
            header::LOCATION,
            format!("http://localhost:{port}/altium/landed"),
        )],
    )
        .into_response()
}
