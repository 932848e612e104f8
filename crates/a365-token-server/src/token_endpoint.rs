//! What the endpoints that take a token from an authenticated client share
//! (RFC 7009 revocation, RFC 7662 introspection): the client's
//! authentication (Basic or form), the request's record, the `status` and
//! `hang` faults, and the checks before the answer.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use crate::fault::Fault;
use crate::handler::{Refusal, authenticate, client_basic, oauth_error};
use crate::state::{RecordedRequest, State as ServerState, now_ms};

/// Records the request as `kind`, applies a `status` or `hang` fault, and
/// otherwise answers with `answer(state, client_id, token)` once the
/// client authenticated and named a token.
pub async fn serve(
    state: Arc<ServerState>,
    headers: HeaderMap,
    form: HashMap<String, String>,
    kind: &str,
    answer: impl FnOnce(&ServerState, &str, &str) -> Response,
) -> Response {
    let basic = client_basic(&state, &headers);
    let used_basic = basic.is_some();
    let (client_id, secret) = match basic {
        Some((id, secret)) => (Some(id), Some(secret)),
        None => (
            form.get("client_id").cloned(),
            form.get("client_secret").cloned(),
        ),
    };
    let index = state.begin(RecordedRequest {
        path: match kind {
            "introspection" => "/connect/introspect".into(),
            other => format!("/connect/{other}"),
        },
        basic_pair: crate::handler::basic_pair(&headers),
        form: form.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        grant_type: kind.into(),
        client_id: client_id.clone(),
        secure: false,
        refresh_token: form.get("token").cloned(),
        scope: None,
        basic: used_basic,
        other: Default::default(),
        status: 0,
        at_ms: now_ms(),
    });
    let response = match state.take_fault() {
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            oauth_error(status, "server_error", "injected")
        }
        Some(Fault::Hang) => {
            state.finish(index, 0);
            return std::future::pending().await;
        }
        Some(answer @ Fault::Answer(..)) => crate::handler::canned(&answer)
            .unwrap_or_else(|| axum::response::IntoResponse::into_response(StatusCode::OK)),
        _ => match checked(&state, client_id, secret, &form) {
            Ok((client_id, token)) => answer(&state, &client_id, &token),
            Err((status, code, why)) => oauth_error(status, code, why),
        },
    };
    state.finish(index, response.status().as_u16());
    response
}

/// The authenticated client and the token it names, or the refusal.
fn checked(
    state: &ServerState,
    client_id: Option<String>,
    secret: Option<String>,
    form: &HashMap<String, String>,
) -> Result<(String, String), Refusal> {
    let client_id = authenticate(state, client_id, secret)?;
    let Some(token) = form.get("token").filter(|t| !t.is_empty()) else {
        return Err((
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "token is missing",
        ));
    };
    Ok((client_id, token.clone()))
}
