//! Designer Cloud's v4 API token endpoints, as far as renewal needs them:
//! `POST /v4/apiAccessTokens` (authenticated with a live token) creates a
//! token; `DELETE /v4/apiAccessTokens/{id}` deletes one.

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
    #[allow(dead_code)]
    description: Option<String>,
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
    let Some(token) = bearer(&headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    match state.renew_designer_token(token, body.lifetime_seconds) {
        None => StatusCode::UNAUTHORIZED.into_response(),
        Some((value, id, expiry)) => {
            let expired_at = expiry.map(|ms| {
                jiff::Timestamp::from_millisecond(ms)
                    .map(|t| t.to_string())
                    .unwrap_or_default()
            });
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
