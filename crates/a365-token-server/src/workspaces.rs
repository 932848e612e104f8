//! The mock of Altium's workspace list (altium-auth SPEC §7): `POST
//! /api/graphql` with a token this server issued answers the user's
//! workspaces as `desWorkspaceInfos`, whatever the query.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::state::State as ServerState;

pub async fn list(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !bearer.is_some_and(|token| state.issued(token)) {
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
