//! `GET /connect/authorize`: the browser half of RFC 6749 §4.1 with PKCE
//! (RFC 7636). There is no user to ask: a well-formed request is approved
//! at once and redirected to the loopback `redirect_uri` with a code.
//! As OpenID Connect Core §11 says (and node-oidc-provider does),
//! `offline_access` is granted only with `prompt=consent`: without it, no
//! refresh token. Like servers that OpenID Connect Core allows to, it
//! wants a `nonce` with every `openid` request (`invalid_request`, "nonce
//! required", otherwise).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::state::{PendingCode, State as ServerState};

pub async fn authorize(
    State(state): State<Arc<ServerState>>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query_map(query);
    let field = |name: &str| query.get(name).map(String::as_str).unwrap_or("");
    let redirect_uri = field("redirect_uri");
    // Without a usable redirect there is nowhere to send errors (§4.1.2.1).
    if !is_loopback_redirect(redirect_uri) {
        return (StatusCode::BAD_REQUEST, "invalid redirect_uri").into_response();
    }
    if !state.client_known(field("client_id")) {
        return (StatusCode::BAD_REQUEST, "unknown client_id").into_response();
    }
    let openid = field("scope").split_whitespace().any(|s| s == "openid");
    let (error, description) = if field("response_type") != "code" {
        (Some("unsupported_response_type"), None)
    } else if field("code_challenge_method") != "S256" || field("code_challenge").len() < 43 {
        (Some("invalid_request"), None)
    } else if openid && field("nonce").is_empty() {
        (Some("invalid_request"), Some("nonce required"))
    } else if field("login_hint") == "refuse-me" {
        // A user who declines, for the tests of a refused login.
        (Some("access_denied"), Some("the user declined\u{1b}[31m"))
    } else {
        (None, None)
    };
    let code = error.is_none().then(|| {
        state.issue_code(PendingCode {
            client_id: field("client_id").to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            challenge: field("code_challenge").to_owned(),
            scope: granted_scope(field("scope"), field("prompt")),
        })
    });
    let mut pairs = form_urlencoded::Serializer::new(String::new());
    match (&code, error) {
        (Some(code), _) => pairs.append_pair("code", code),
        (None, error) => pairs.append_pair("error", error.unwrap_or("server_error")),
    };
    if let Some(description) = description {
        pairs.append_pair("error_description", description);
    }
    pairs.append_pair("state", field("state"));
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    let location = format!("{redirect_uri}{separator}{}", pairs.finish());
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// The scope asked for, less `offline_access` unless consent was prompted.
fn granted_scope(scope: &str, prompt: &str) -> String {
    let consent = prompt.split_whitespace().any(|p| p == "consent");
    scope
        .split_whitespace()
        .filter(|s| consent || *s != "offline_access")
        .collect::<Vec<_>>()
        .join(" ")
}

/// A request's query string as a map (the last of a repeated name wins).
pub(crate) fn query_map(query: Option<String>) -> HashMap<String, String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// Loopback `http` redirects only, as RFC 8252 §7.3 registers them.
fn is_loopback_redirect(text: &str) -> bool {
    ["http://localhost:", "http://127.0.0.1:", "http://[::1]:"]
        .iter()
        .any(|prefix| text.starts_with(prefix))
        && !text.contains('#')
}
