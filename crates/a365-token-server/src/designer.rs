//! Designer Cloud's v4 API token endpoints, as far as renewal needs them:
//! `POST /v4/apiAccessTokens` (authenticated with a live token, or for
//! the first token with the test user's name and password as HTTP Basic)
//! creates a token; `GET /v4/apiAccessTokens` lists the user's tokens (the
//! shape of the v4 API reference); `DELETE /v4/apiAccessTokens/{id}`
//! deletes one. Every create is recorded with its description and
//! workspace header.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::state::State as ServerState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Create {
    lifetime_seconds: u64,
    description: Option<String>,
}

/// The user whose name and password create a first token.
pub const DESIGNER_USER: (&str, &str) = ("designer-user", "designer-password");

/// One `POST /v4/apiAccessTokens` as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesignerCreate {
    pub description: Option<String>,
    /// `x-alteryx-workspace-gid`, a header some deployments want.
    pub workspace_gid: Option<String>,
    /// Authenticated with the user's name and password (Basic).
    pub basic: bool,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

pub async fn create(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Json(body): Json<Create>,
) -> Response {
    let basic = crate::handler::basic_auth(&headers);
    state.note_designer_create(DesignerCreate {
        description: body.description.clone(),
        workspace_gid: headers
            .get("x-alteryx-workspace-gid")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        basic: basic.is_some(),
    });
    let created = match (basic, bearer(&headers)) {
        (Some((user, password)), _) => (user == DESIGNER_USER.0 && password == DESIGNER_USER.1)
            .then(|| state.create_designer_token(body.lifetime_seconds)),
        (None, Some(token)) => state.renew_designer_token(token, body.lifetime_seconds),
        (None, None) => None,
    };
    match created {
        None => StatusCode::UNAUTHORIZED.into_response(),
        Some((value, id, expiry)) => {
            if let Some(description) = &body.description {
                state.describe_designer_token(&id, description);
            }
            if state.holding_designer_creates() {
                // Created, but the answer never comes.
                return std::future::pending().await;
            }
            let expired_at = expiry.map(timestamp);
            (
                StatusCode::CREATED,
                Json(json!({
                    "tokenValue": value,
                    "tokenInfo": { "tokenId": id, "expiredAt": expired_at },
                })),
            )
                .into_response()
        }
    }
}

pub async fn delete(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(token) = bearer(&headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    match state.delete_designer_token(token, &id) {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => StatusCode::NOT_FOUND.into_response(),
        Err(true) => std::future::pending().await,
        Err(false) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn timestamp(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

pub async fn list(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    if let Some(status) = state.designer_listing_fails_with() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, "Route doesn't exist").into_response();
    }
    let Some(listed) = bearer(&headers).and_then(|token| state.list_designer_tokens(token)) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let data: Vec<_> = listed
        .into_iter()
        .map(|(id, description, expiry)| {
            json!({
                "tokenId": id,
                "description": description,
                "expiredAt": expiry.map(timestamp),
                "lastUsed": null,
            })
        })
        .collect();
    Json(json!({ "data": data })).into_response()
}
