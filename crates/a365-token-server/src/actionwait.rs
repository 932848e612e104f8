//! The mock of Altium's ActionWait (altium-auth SPEC §4): `POST /await`
//! with `{"token"}` is held until the sign-in with that state reaches
//! `GET /api/AuthComplete` (the page Altium's authorize endpoint redirects
//! a desktop sign-in to), then answers `{"data": {"code", "state"}}`; a
//! hold that runs out answers 408, as the real service does.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::state::State as ServerState;

/// How long a poll is held before 408: short, so that the tests see
/// reconnects.
const HOLD: Duration = Duration::from_secs(2);

pub async fn poll(State(state): State<Arc<ServerState>>, body: axum::body::Bytes) -> Response {
    let token = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("token")?.as_str().map(str::to_owned));
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return (StatusCode::BAD_REQUEST, "a JSON body with a token").into_response();
    };
    match state.actionwait.poll(&token, HOLD).await {
        Ok(code) => json(
            StatusCode::OK,
            serde_json::json!({ "data": { "code": code, "state": token } }).to_string(),
        ),
        Err((status, body)) => json(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
        ),
    }
}

pub async fn complete(
    State(state): State<Arc<ServerState>>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = crate::authorize::query_map(query);
    match (query.get("code"), query.get("state")) {
        (Some(code), Some(wait_token)) => {
            state.actionwait.complete(wait_token, code);
            (
                [(header::CONTENT_TYPE, "text/html")],
                "<p>Signed in: return to your application.</p>",
            )
                .into_response()
        }
        _ => (StatusCode::BAD_REQUEST, "the sign-in did not complete").into_response(),
    }
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
