//! RFC 6749 token endpoint calls shared by the OAuth providers: POST a form,
//! read a bounded body into zeroized memory, sort the outcome (§5.1, §5.2).

use std::time::Duration;

use reqwest::StatusCode;
use secrecy::SecretString;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{Fresh, ProviderError};
use crate::jwt;

/// A token response is a few KiB; anything larger is not one.
const MAX_BODY: usize = 256 * 1024;

/// Context for one token request.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub http: &'a reqwest::Client,
    pub token_url: &'a reqwest::Url,
    pub now_ms: i64,
    pub default_lifetime: Duration,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<SecretString>,
    expires_in: Option<serde_json::Number>,
    refresh_token: Option<SecretString>,
    scope: Option<String>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: Option<String>,
    error_description: Option<String>,
}

/// POSTs `form` (which holds secrets, hence the zeroized pairs) and sorts
/// the answer. Never retried here: a replayed one-time refresh token is dead.
pub async fn post_form(call: Call<'_>, form: &[(&str, &str)]) -> Result<Fresh, ProviderError> {
    let body = Zeroizing::new(form_urlencode(form));
    let response = call
        .http
        .post(call.token_url.clone())
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(reqwest::header::ACCEPT, "application/json")
        .body(body.as_bytes().to_vec())
        .send()
        .await
        .map_err(|e| ProviderError::transient(describe_send_error(&e, call.token_url)))?;
    let status = response.status();
    let retry_after = retry_after(response.headers(), call.now_ms);
    let body = read_body(response).await?;
    tracing::debug!(status = status.as_u16(), "token response received");
    sort_response(status, retry_after, &body, call)
}

/// `application/x-www-form-urlencoded`, built in a buffer we can zeroize.
fn form_urlencode(form: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::with_capacity(256))
        .extend_pairs(form)
        .finish()
}

pub(crate) fn describe_send_error(e: &reqwest::Error, url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("?");
    // The innermost causes (hyper, rustls) name what went wrong; they hold
    // no secret (the URL has no credentials, the form is not in errors).
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    let chain = causes.join(": ");
    if chain.contains("certificate") {
        format!(
            "the TLS certificate of the token server {host} is not trusted ({}); if a corporate CA \
             signs it, point SSL_CERT_FILE at that CA",
            // The reason's name, without its byte-level details.
            causes
                .last()
                .and_then(|c| c.split(" {").next())
                .unwrap_or("")
        )
    } else if is_tls_failure(&chain) {
        format!(
            "the TLS handshake with the token server {host} failed ({}): is it an https server?",
            causes
                .last()
                .and_then(|c| c.split(" {").next())
                .unwrap_or("")
        )
    } else if e.is_timeout() {
        format!("the token server {host} did not answer in time")
    } else if chain.contains("closed before message completed")
        || chain.contains("connection reset")
        || chain.contains("IncompleteMessage")
    {
        format!("the token server {host} closed the connection without answering")
    } else if e.is_connect() {
        format!("cannot connect to the token server {host}")
    } else {
        format!("the request to the token server {host} failed")
    }
}

/// rustls and hyper-rustls name handshake failures in a few ways.
fn is_tls_failure(chain: &str) -> bool {
    let chain = chain.to_ascii_lowercase();
    [
        "corrupt message",
        "invalidcontenttype",
        "handshake",
        "tls",
        "alert",
    ]
    .iter()
    .any(|w| chain.contains(w))
}

pub(crate) async fn read_body(
    mut response: reqwest::Response,
) -> Result<Zeroizing<Vec<u8>>, ProviderError> {
    let mut body = Zeroizing::new(Vec::with_capacity(2048));
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(ProviderError::transient(
                        "the token server sent an oversized response",
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                let what = if e.is_timeout() {
                    "timed out"
                } else {
                    "was cut off"
                };
                return Err(ProviderError::transient(format!(
                    "the token server's response {what}"
                )));
            }
        }
    }
}

fn sort_response(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
    call: Call<'_>,
) -> Result<Fresh, ProviderError> {
    parse_token_response(
        status.as_u16(),
        retry_after,
        body,
        call.now_ms,
        call.default_lifetime,
    )
}

/// Sorts what a token endpoint answered — its HTTP `status`, the wait its
/// `Retry-After` asked for (see [`parse_retry_after`]) and its `body` — into
/// a token (§5.1) or a classified error (§5.2). Pure: no I/O, no clock
/// (`now_ms` is the time of the request, UTC epoch ms), so tests and the
/// fuzz target call it directly. `default_lifetime` applies when neither
/// `expires_in` nor a JWT `exp` says when the token expires.
pub fn parse_token_response(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    now_ms: i64,
    default_lifetime: Duration,
) -> Result<Fresh, ProviderError> {
    if (200..300).contains(&status) {
        return parse_success(body, now_ms, default_lifetime);
    }
    let oauth: Option<ErrorResponse> = serde_json::from_slice(body).ok();
    let code = oauth
        .as_ref()
        .and_then(|e| e.error.as_deref())
        .unwrap_or("");
    let description = oauth
        .as_ref()
        .and_then(|e| e.error_description.as_deref())
        .map(|d| format!(" ({})", sanitize(d)))
        .unwrap_or_default();
    match (status, code) {
        (_, "invalid_grant") => Err(ProviderError::Dead(format!(
            "the token server rejected the refresh token (invalid_grant{description}): it was revoked, \
             expired or already used"
        ))),
        (_, "invalid_client" | "unauthorized_client") | (401, "") => {
            Err(ProviderError::Dead(format!(
                "the token server rejected the client id or secret ({}{description})",
                if code.is_empty() { "HTTP 401" } else { code }
            )))
        }
        (429, _) => Err(ProviderError::Transient {
            message: "the token server is rate limiting (HTTP 429)".into(),
            retry_after,
        }),
        (500..=599, _) => Err(ProviderError::Transient {
            message: format!("the token server failed (HTTP {status})"),
            retry_after,
        }),
        (_, "") => Err(ProviderError::Rejected(format!(
            "the token server refused the request (HTTP {status})"
        ))),
        (_, code) => Err(ProviderError::Rejected(format!(
            "the token server refused the request ({}{description})",
            sanitize(code)
        ))),
    }
}

fn parse_success(
    body: &[u8],
    now_ms: i64,
    default_lifetime: Duration,
) -> Result<Fresh, ProviderError> {
    let response: TokenResponse = serde_json::from_slice(body).map_err(|_| {
        ProviderError::transient(
            "the token server answered 200 with a body that is not a token response",
        )
    })?;
    let access_token = response.access_token.ok_or_else(|| {
        ProviderError::transient("the token server answered 200 without an access_token")
    })?;
    let claims = jwt::claims(secrecy::ExposeSecret::expose_secret(&access_token));
    let expires_in = response
        .expires_in
        .and_then(|n| n.as_f64())
        .map(|s| (s * 1000.0) as i64);
    let expires_at_ms = match (expires_in, claims.as_ref().and_then(|c| c.exp)) {
        (Some(ms), _) if ms > 0 => now_ms.saturating_add(ms),
        (Some(_), _) => {
            return Err(ProviderError::transient(
                "the token server answered with an expires_in of zero or less",
            ));
        }
        (None, Some(exp)) => exp.saturating_mul(1000),
        (None, None) => {
            now_ms.saturating_add(i64::try_from(default_lifetime.as_millis()).unwrap_or(i64::MAX))
        }
    };
    let scopes = match response.scope {
        Some(text) => jwt::split_scopes(&text),
        None => claims.map(|c| c.scopes).unwrap_or_default(),
    };
    Ok(Fresh {
        access_token,
        expires_at_ms,
        scopes,
        refresh_token: response.refresh_token,
    })
}

/// Keeps server-chosen text printable and short, for logs and `status`.
pub(crate) fn sanitize(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// `Retry-After` in seconds or as an HTTP date.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap, now_ms: i64) -> Option<Duration> {
    parse_retry_after(
        headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?,
        now_ms,
    )
}

/// The wait a `Retry-After` header value asks for, in seconds or as an HTTP
/// date (a date in the past is no wait); `None` when it is neither.
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    let ms = at.as_millisecond().saturating_sub(now_ms);
    Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_urlencode(&[("grant_type", "refresh_token"), ("x", "a b&c=d/é")]),
            "grant_type=refresh_token&x=a+b%26c%3Dd%2F%C3%A9"
        );
    }

    #[test]
    fn retry_after_forms() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h, 0), Some(Duration::from_secs(7)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        let now = jiff::Timestamp::from_second(1_445_412_470)
            .unwrap()
            .as_millisecond();
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(10)));
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h, 0), None);
    }

    fn call_at<'a>(http: &'a reqwest::Client, url: &'a reqwest::Url) -> Call<'a> {
        Call {
            http,
            token_url: url,
            now_ms: 1_000_000,
            default_lifetime: Duration::from_secs(60),
        }
    }

    #[test]
    fn sorting() {
        let http = reqwest::Client::new();
        let url = reqwest::Url::parse("https://t.example/token").unwrap();
        let call = call_at(&http, &url);
        let ok = sort_response(
            StatusCode::OK,
            None,
            br#"{"access_token":"opaque","expires_in":30,"refresh_token":"r2","scope":"a b"}"#,
            call,
        )
        .unwrap();
        assert_eq!(ok.expires_at_ms, 1_030_000);
        assert_eq!(ok.scopes, ["a", "b"]);
        assert!(ok.refresh_token.is_some());
        let no_exp =
            sort_response(StatusCode::OK, None, br#"{"access_token":"opaque"}"#, call).unwrap();
        assert_eq!(
            no_exp.expires_at_ms, 1_060_000,
            "falls back to the default lifetime"
        );
        let dead = sort_response(
            StatusCode::BAD_REQUEST,
            None,
            br#"{"error":"invalid_grant"}"#,
            call,
        );
        assert!(matches!(dead, Err(ProviderError::Dead(_))));
        let client = sort_response(StatusCode::UNAUTHORIZED, None, b"", call);
        assert!(matches!(client, Err(ProviderError::Dead(_))));
        let busy = sort_response(
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(3)),
            b"",
            call,
        );
        assert!(matches!(
            busy,
            Err(ProviderError::Transient {
                retry_after: Some(_),
                ..
            })
        ));
        let down = sort_response(StatusCode::BAD_GATEWAY, None, b"<html>", call);
        assert!(matches!(down, Err(ProviderError::Transient { .. })));
        for bad in [
            &b"{\"access_token\": "[..],
            b"{}",
            b"{\"access_token\":\"x\",\"expires_in\":0}",
        ] {
            assert!(matches!(
                sort_response(StatusCode::OK, None, bad, call),
                Err(ProviderError::Transient { .. })
            ));
        }
        let scope = sort_response(
            StatusCode::BAD_REQUEST,
            None,
            br#"{"error":"invalid_scope"}"#,
            call,
        );
        assert!(matches!(scope, Err(ProviderError::Rejected(_))));
    }

    /// Regression: a JWT `exp` of -1e300 and no `expires_in` gave an expiry
    /// of `i64::MIN`, which the agent's `expires_at_ms - now` overflowed.
    #[test]
    fn an_absurd_jwt_exp_gives_a_usable_expiry() {
        use base64::Engine;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"exp":-1e300}"#);
        let body = format!(r#"{{"access_token":"e30.{payload}.c2ln"}}"#);
        let now_ms = 1_800_000_000_000;
        let fresh =
            parse_token_response(200, None, body.as_bytes(), now_ms, Duration::from_secs(60))
                .unwrap();
        let left = fresh.expires_at_ms.checked_sub(now_ms);
        assert!(
            left.is_some_and(|left| left < 0),
            "{left:?}: already expired"
        );
    }

    #[test]
    fn errors_never_quote_the_body() {
        let http = reqwest::Client::new();
        let url = reqwest::Url::parse("https://t.example/token").unwrap();
        let body = br#"{"access_token": "sekrit-token", "expires_in": "x"}"#;
        let err = sort_response(StatusCode::OK, None, body, call_at(&http, &url)).unwrap_err();
        assert!(!err.to_string().contains("sekrit"));
    }
}
