//! `POST /connect/revocation`: RFC 7009 token revocation. The client
//! authenticates as at the token endpoint; a revoked refresh token is
//! dead at once (its next use gets `invalid_grant`). Recorded like token
//! requests (`grant_type` "revocation"), and the configured fault applies.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::state::State as ServerState;

pub async fn revoke(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    crate::token_endpoint::serve(
        state,
        headers,
        form,
        "revocation",
        |state, client, token| {
            // §2.2: an unknown or already revoked token is answered 200 too.
            state.revoke_refresh_token(token, client);
            StatusCode::OK.into_response()
        },
    )
    .await
}
