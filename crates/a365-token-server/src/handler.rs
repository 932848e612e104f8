//! `POST /connect/token`: RFC 6749 §4.4 (client credentials) and §6
//! (refresh), with the configured fault applied.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::body::Body;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;

use crate::state::{Fault, Grant, RecordedRequest, State as ServerState, now_ms};

pub async fn token(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let at_ms = now_ms();
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let field = |name: &str| form.get(name).cloned();
    let (client_id, client_secret) = match basic_auth(&headers) {
        Some((id, secret)) => (Some(id), Some(secret)),
        None => (field("client_id"), field("client_secret")),
    };
    let mut record = RecordedRequest {
        grant_type: field("grant_type").unwrap_or_default(),
        client_id: client_id.clone(),
        secure: field("secure").as_deref() == Some("1"),
        refresh_token: field("refresh_token"),
        scope: field("scope"),
        status: 0,
        at_ms,
    };
    let fault = state.take_fault();
    let response = respond(&state, fault, client_id, client_secret, &form).await;
    record.status = response.status().as_u16();
    state.record(record);
    response
}

async fn respond(
    state: &ServerState,
    fault: Option<Fault>,
    client_id: Option<String>,
    client_secret: Option<String>,
    form: &HashMap<String, String>,
) -> Response {
    match &fault {
        Some(Fault::Delay(d)) => tokio::time::sleep(*d).await,
        Some(Fault::Hang) => std::future::pending::<()>().await,
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, axum::Json(json!({"error": "server_error"}))).into_response();
        }
        Some(Fault::RateLimited { retry_after_secs }) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, retry_after_secs.to_string())],
                axum::Json(json!({"error": "slow_down"})),
            )
                .into_response();
        }
        Some(Fault::Drop) => return cut_off(),
        Some(Fault::MalformedJson) => return json_text(StatusCode::OK, "{\"access_token\": "),
        Some(Fault::MissingAccessToken) => {
            return json_text(
                StatusCode::OK,
                r#"{"token_type":"Bearer","expires_in":3600}"#,
            );
        }
        Some(Fault::InvalidGrant) => {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "injected");
        }
        Some(Fault::InvalidClient) => {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "injected");
        }
        _ => {}
    }
    let (Some(client_id), Some(client_secret)) = (client_id, client_secret) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication is missing",
        );
    };
    if !state.client_ok(&client_id, &client_secret) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        );
    }
    let scope = form.get("scope").map(String::as_str);
    let grant = match form.get("grant_type").map(String::as_str) {
        Some("refresh_token") => {
            let Some(rt) = form.get("refresh_token") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "refresh_token is missing",
                );
            };
            if !state.consume_refresh_token(rt, &client_id) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "the refresh token is not valid",
                );
            }
            state.grant(&client_id, scope, true)
        }
        Some("client_credentials") => state.grant(&client_id, scope, false),
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "not supported here",
            );
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is missing",
            );
        }
    };
    match fault {
        Some(Fault::RotateThenDrop) => cut_off(),
        Some(Fault::MissingExpiresIn) => success(&grant, false),
        _ => success(&grant, true),
    }
}

fn success(grant: &Grant, with_expires_in: bool) -> Response {
    let mut body = json!({
        "access_token": grant.access_token,
        "token_type": "Bearer",
        "scope": grant.scope,
    });
    if with_expires_in {
        body["expires_in"] = json!(grant.expires_in);
    }
    if let Some(rt) = &grant.refresh_token {
        body["refresh_token"] = json!(rt);
    }
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn json_text(status: StatusCode, text: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// Headers go out, then the body fails: the connection is cut mid-response.
fn cut_off() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<axum::body::Bytes, _>(std::io::Error::other("connection dropped on purpose"))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, "1000")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}
