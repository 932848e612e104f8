//! `POST /connect/introspect`: RFC 7662 token introspection, for refresh
//! tokens. The client authenticates as at the token endpoint; the answer
//! is `{"active": true|false}` (a token of another client is inactive, as
//! §2.2 allows). Recorded like token requests (`grant_type`
//! "introspection"); a `status` or `hang` fault applies.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::fault::Fault;
use crate::handler::{basic_auth, oauth_error};
use crate::state::{RecordedRequest, State as ServerState, now_ms};

pub async fn introspect(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let basic = basic_auth(&headers);
    let used_basic = basic.is_some();
    let (client_id, secret) = match basic {
        Some((id, secret)) => (Some(id), Some(secret)),
        None => (
            form.get("client_id").cloned(),
            form.get("client_secret").cloned(),
        ),
    };
    let index = state.begin(RecordedRequest {
        grant_type: "introspection".into(),
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
        _ => answer(&state, client_id, secret, &form),
    };
    state.finish(index, response.status().as_u16());
    response
}

fn answer(
    state: &ServerState,
    client_id: Option<String>,
    secret: Option<String>,
    form: &HashMap<String, String>,
) -> Response {
    let (Some(client_id), Some(secret)) = (client_id, secret) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication is missing",
        );
    };
    if !state.client_ok(&client_id, &secret) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        );
    }
    let Some(token) = form.get("token").filter(|t| !t.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "token is missing",
        );
    };
    let active = state.refresh_token_active(token, &client_id);
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        format!("{{\"active\":{active}}}"),
    )
        .into_response()
}
