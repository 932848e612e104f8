//! `POST /connect/token`: RFC 6749 §4.1 (authorization code, with PKCE),
//! §4.4 (client credentials) and §6 (refresh), with the configured fault
//! applied.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;

use crate::conn::Cut;
use crate::fault::Fault;
use crate::state::{Grant, RecordedRequest, State as ServerState, now_ms};

/// What `respond` decided: a response, or cut the connection without one.
enum Outcome {
    Respond(Response),
    Cut,
}

pub async fn token(
    State(state): State<Arc<ServerState>>,
    ConnectInfo(cut): ConnectInfo<Cut>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let at_ms = now_ms();
    let (form, form_ok) = match form {
        Ok(Form(form)) => (form, true),
        Err(_) => (HashMap::new(), false),
    };
    let field = |name: &str| form.get(name).cloned();
    let basic = client_basic(&state, &headers);
    let used_basic = basic.is_some();
    let (client_id, client_secret) = match basic {
        Some((id, secret)) => (Some(id), Some(secret)),
        None => (field("client_id"), field("client_secret")),
    };
    let index = state.begin(RecordedRequest {
        path: "/connect/token".into(),
        basic_pair: basic_pair(&headers),
        form: form.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        grant_type: field("grant_type").unwrap_or_default(),
        client_id: client_id.clone(),
        secure: field("secure").as_deref() == Some("1"),
        refresh_token: field("refresh_token"),
        scope: field("scope"),
        basic: used_basic,
        other: other_fields(&form),
        status: 0,
        at_ms,
    });
    let fault = state.take_fault();
    if fault == Some(Fault::Hang) {
        state.finish(index, 0);
        return std::future::pending().await;
    }
    if let Some(Fault::Delay(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    let outcome = if used_basic && form.contains_key("client_secret") {
        // RFC 6749 §2.3: one authentication method per request.
        Outcome::Respond(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "more than one client authentication method",
        ))
    } else if state.require_basic() && !used_basic && fault.is_none() {
        Outcome::Respond(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "this client must authenticate with HTTP Basic",
        ))
    } else if form_ok || fault.is_some() {
        respond(&state, fault, client_id, client_secret, &form)
    } else {
        Outcome::Respond(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected an application/x-www-form-urlencoded body",
        ))
    };
    match outcome {
        Outcome::Respond(response) => {
            state.finish(index, response.status().as_u16());
            response
        }
        Outcome::Cut => {
            state.finish(index, 0);
            cut.cut();
            // Never reaches the client: every write on this connection fails.
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The answer to one request, the fault (but not its delay) applied.
fn respond(
    state: &ServerState,
    fault: Option<Fault>,
    client_id: Option<String>,
    client_secret: Option<String>,
    form: &HashMap<String, String>,
) -> Outcome {
    if let Some(response) = fault.as_ref().and_then(canned) {
        return Outcome::Respond(response);
    }
    if fault == Some(Fault::Drop) {
        return Outcome::Cut;
    }
    if fault == Some(Fault::QuotingInvalidGrant) {
        let description = quoting(client_id.as_deref(), client_secret.as_deref(), form);
        return Outcome::Respond(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            &description,
        ));
    }
    let grant = match exchange(state, client_id, client_secret, form) {
        Ok(grant) => grant,
        Err((status, error, description)) => {
            return Outcome::Respond(oauth_error(status, error, description));
        }
    };
    let mut grant = grant;
    match fault {
        Some(Fault::RotateThenDrop) => Outcome::Cut,
        Some(Fault::MissingExpiresIn) => Outcome::Respond(success(&grant, false)),
        Some(Fault::ExpiresIn(secs)) => {
            let mut response = success_json(&grant, true);
            response["expires_in"] = json!(secs);
            Outcome::Respond(json_response(&response))
        }
        Some(fault @ (Fault::OpaqueToken | Fault::OpaqueNoExpiry)) => {
            grant.access_token = format!("opaque-{}", crate::state::random_token(24));
            state.note_access_token(&grant.access_token);
            Outcome::Respond(success(&grant, fault == Fault::OpaqueToken))
        }
        Some(Fault::HostileToken) => {
            grant.access_token = format!(
                "{}\x1b]0;pwned\x07\r\nX-Evil: 1",
                crate::state::random_token(24)
            );
            state.note_access_token(&grant.access_token);
            Outcome::Respond(success(&grant, true))
        }
        Some(Fault::Trickle(every)) => Outcome::Respond(streamed(&grant, Some(every))),
        Some(Fault::CutMidBody) => Outcome::Respond(streamed(&grant, None)),
        _ => Outcome::Respond(success(&grant, true)),
    }
}

/// The answer of a fault that ignores the request, if it is one.
pub(crate) fn canned(fault: &Fault) -> Option<Response> {
    Some(match fault {
        Fault::Status(code) => server_error(*code),
        Fault::RateLimited { retry_after_secs } => slow_down(retry_after_secs.to_string()),
        Fault::MalformedJson => json_text(StatusCode::OK, "{\"access_token\": "),
        Fault::MissingAccessToken => json_text(
            StatusCode::OK,
            r#"{"token_type":"Bearer","expires_in":3600}"#,
        ),
        Fault::InvalidGrant => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "injected"),
        Fault::InvalidClient => oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "injected"),
        Fault::InvalidScope => oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", "injected"),
        Fault::RateLimitedUntil { secs } => slow_down(http_date_in(*secs)),
        Fault::Bare(code) => StatusCode::from_u16(*code)
            .unwrap_or(StatusCode::BAD_REQUEST)
            .into_response(),
        Fault::Answer(code, body) => (
            StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [(header::CONTENT_TYPE, "application/json")],
            body.clone(),
        )
            .into_response(),
        Fault::Delay(_)
        | Fault::Hang
        | Fault::Drop
        | Fault::RotateThenDrop
        | Fault::MissingExpiresIn
        | Fault::ExpiresIn(_)
        | Fault::OpaqueToken
        | Fault::OpaqueNoExpiry
        | Fault::Trickle(_)
        | Fault::CutMidBody
        | Fault::HostileToken
        | Fault::QuotingInvalidGrant => return None,
    })
}

/// `status:CODE`: that status whatever the request (500 if CODE is not one).
fn server_error(code: u16) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(json!({"error": "server_error"}))).into_response()
}

/// A 429 with `Retry-After`, in either of its forms (seconds or a date).
fn slow_down(retry_after: String) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, retry_after)],
        axum::Json(json!({"error": "slow_down"})),
    )
        .into_response()
}

/// The IMF-fixdate `secs` from now, as `Retry-After` may carry it.
fn http_date_in(secs: u64) -> String {
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs as i64);
    at.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// What a careless server puts in an `error_description`: the request,
/// secrets and all, in the forms they travelled in, around a useful reason.
fn quoting(
    client_id: Option<&str>,
    client_secret: Option<&str>,
    form: &HashMap<String, String>,
) -> String {
    use base64::Engine;
    let secret = client_secret.unwrap_or("");
    let encoded: String = secret
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                char::from(b).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{secret}", client_id.unwrap_or("")));
    let refresh_token = form.get("refresh_token").map(String::as_str).unwrap_or("");
    format!(
        "grant revoked by an administrator; request was client_secret={secret} \
         (form {encoded}, basic {basic}) refresh_token={refresh_token}"
    )
}

/// An RFC 6749 §5.2 error: status, `error`, `error_description`.
pub(crate) type Refusal = (StatusCode, &'static str, &'static str);

/// The client, if it authenticated (§2.3.1): its id.
pub(crate) fn authenticate(
    state: &ServerState,
    client_id: Option<String>,
    client_secret: Option<String>,
) -> Result<String, Refusal> {
    if let (Some(id), None) = (&client_id, &client_secret)
        && state.is_public(id)
    {
        return Ok(id.clone());
    }
    let (Some(client_id), Some(client_secret)) = (client_id, client_secret) else {
        return Err((
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication is missing",
        ));
    };
    if !state.client_ok(&client_id, &client_secret) {
        return Err((
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        ));
    }
    Ok(client_id)
}

/// RFC 6749 proper: authenticate the client, check the grant, issue.
/// A refresh token is consumed here, so only on the way to a success.
fn exchange(
    state: &ServerState,
    client_id: Option<String>,
    client_secret: Option<String>,
    form: &HashMap<String, String>,
) -> Result<Grant, Refusal> {
    let client_id = authenticate(state, client_id, client_secret)?;
    let scope = form.get("scope").map(String::as_str);
    match form.get("grant_type").map(String::as_str) {
        Some("refresh_token") => {
            let Some(rt) = form.get("refresh_token").filter(|rt| !rt.is_empty()) else {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "refresh_token is missing",
                ));
            };
            let kept = state.scope_of(rt);
            if !state.consume_refresh_token(rt, &client_id) {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "the refresh token is unknown, used or not this client's",
                ));
            }
            let scope = scope.or(kept.as_deref());
            let grant = state.grant(&client_id, scope, true);
            if let (Some(new), Some(scope)) = (&grant.refresh_token, scope) {
                state.keep_scope(new, scope);
            }
            Ok(grant)
        }
        Some(TOKEN_EXCHANGE) => token_exchange(state, &client_id, form),
        Some("client_credentials") => Ok(state.grant(&client_id, scope, false)),
        Some("authorization_code") => {
            let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
            let Some(pending) = state.redeem_code(
                field("code"),
                &client_id,
                field("redirect_uri"),
                field("code_verifier"),
            ) else {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "the code is unknown or used, or the redirect_uri or code_verifier does not match",
                ));
            };
            let offline = pending
                .scope
                .split_whitespace()
                .any(|s| s == "offline_access");
            Ok(state.grant_login(&client_id, &pending.scope, offline))
        }
        Some("") | None => Err((
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is missing",
        )),
        Some(_) => Err((
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only refresh_token, client_credentials and authorization_code are supported",
        )),
    }
}

/// RFC 8693's grant type.
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// As Altium Identity (SPEC §5.2, §6): a signed-in access token for one
/// scoped to a workspace of its cloud; `access_denied` across clouds.
fn token_exchange(
    state: &ServerState,
    client_id: &str,
    form: &HashMap<String, String>,
) -> Result<Grant, Refusal> {
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    if field("subject_token").is_empty()
        || field("subject_token_type") != "urn:ietf:params:oauth:token-type:access_token"
    {
        return Err((
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "subject_token and an access_token subject_token_type are needed",
        ));
    }
    let scope = field("scope");
    let Some(id) = scope
        .split_whitespace()
        .find_map(|s| s.strip_prefix("a365:workspace:"))
    else {
        return Err((
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "no a365:workspace: scope",
        ));
    };
    state
        .may_exchange(id, field("secure") == "1")
        .map_err(|why| (StatusCode::BAD_REQUEST, "access_denied", why))?;
    let offline = scope.split_whitespace().any(|s| s == "offline_access");
    Ok(state.grant_login(client_id, scope, offline))
}

fn success(grant: &Grant, with_expires_in: bool) -> Response {
    json_response(&success_json(grant, with_expires_in))
}

fn json_response(body: &serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body.clone()),
    )
        .into_response()
}

/// A success body sent one byte every `every`, or (`None`) cut halfway.
fn streamed(grant: &Grant, every: Option<std::time::Duration>) -> Response {
    let body = success_json(grant, true).to_string().into_bytes();
    let half = body.len() / 2;
    let stream = futures_util::stream::unfold(0usize, move |i| {
        let body = body.clone();
        async move {
            match every {
                Some(every) if i < body.len() => {
                    tokio::time::sleep(every).await;
                    Some((Ok(vec![body[i]]), i + 1))
                }
                Some(_) => None,
                None if i == 0 => Some((Ok(body[..half].to_vec()), 1)),
                None if i == 1 => {
                    // Let the first half reach the client before the cut.
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    Some((Err(std::io::Error::other("cut mid-body")), 2))
                }
                None => None,
            }
        }
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

fn success_json(grant: &Grant, with_expires_in: bool) -> serde_json::Value {
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
    body
}

pub(crate) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn json_text(status: StatusCode, text: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

pub(crate) fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let (id, secret) = basic_pair(headers)?;
    Some((form_decode(&id)?, form_decode(&secret)?))
}

/// A client's HTTP Basic credentials, form-decoded unless the server is
/// configured as one of the many that do not decode them.
pub(crate) fn client_basic(state: &ServerState, headers: &HeaderMap) -> Option<(String, String)> {
    match state.basic_raw() {
        true => basic_pair(headers),
        false => basic_auth(headers),
    }
}

/// `Authorization: Basic`'s two halves, as they are.
pub(crate) fn basic_pair(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// RFC 6749 §2.3.1: Basic credentials are form-urlencoded first.
fn form_decode(text: &str) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'+' => b' ',
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?
            }
            b => b,
        });
    }
    String::from_utf8(out).ok()
}

/// The fields of a token request that RFC 6749 and PKCE do not define.
fn other_fields(form: &HashMap<String, String>) -> std::collections::BTreeMap<String, String> {
    const STANDARD: &[&str] = &[
        "grant_type",
        "client_id",
        "client_secret",
        "refresh_token",
        "scope",
        "secure",
        "code",
        "code_verifier",
        "redirect_uri",
    ];
    form.iter()
        .filter(|(k, _)| !STANDARD.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
