//! The mock of Altium's workspace list (altium-auth SPEC §7): `POST
//! /api/graphql` with a token this server issued answers the user's
//! workspaces as `desWorkspaceInfos`, whatever the query; and its
//! userinfo endpoint, with the claims of Altium's schema.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::state::State as ServerState;

/// Whether the request carries a token this server issued.
fn authorized(state: &ServerState, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| state.issued(token))
}

/// `GET /connect/userinfo`: the claims of Altium's userinfo schema.
pub async fn userinfo(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        return (StatusCode::UNAUTHORIZED, "a token of this server is needed").into_response();
    }
    let claims = serde_json::json!({
        "sub": "8f14e45f-ceea-467f-a8f2-0b5d2c3f1a77",
        "username": "ann.designer",
        "email": "ann@example.com",
        "given_name": "Ann",
        "family_name": "Designer",
        "organization_id": "org-1",
        "picture": "https://example.com/ann.png",
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        claims.to_string(),
    )
        .into_response()
}

pub async fn list(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        return (StatusCode::UNAUTHORIZED, "a token of this server is needed").into_response();
    }
    let items: Vec<serde_json::Value> = state
        .workspaces()
        .iter()
        .map(|w| {
            let host = if w.gov { "365-gov" } else { "365" };
            serde_json::json!({
                "authId": w.id,
                "name": w.name,
                "url": format!("https://{}.{host}.altium.com", w.name.to_ascii_lowercase()),
                "location": { "name": if w.gov { "US GovCloud" } else { "US East" } },
            })
        })
        .collect();
    let body = serde_json::json!({ "data": { "desWorkspaceInfos": items } });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
