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

use crate::state::State as ServerState;

pub async fn introspect(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    crate::token_endpoint::serve(
        state,
        headers,
        form,
        "introspection",
        |state, client, token| {
            let active = state.refresh_token_active(token, client);
            (
                StatusCode::OK,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                format!("{{\"active\":{active}}}"),
            )
                .into_response()
        },
    )
    .await
}
