//! What a token server may answer, and the JWTs it hands out.
//!
//! Input: a first line `<status>[ <Retry-After value>]`, then the body, as
//! the seeds in corpus/token_response/ show; an input without such a line is
//! a whole body answered with 200. The body is also read as a JWT, and
//! wrapped as the payload of one (so the fuzzer mutates the claims as plain
//! JSON), which is then served as an `access_token` without `expires_in`.
//!
//! Invariants checked, besides "never panics":
//! - a token comes back only for a 2xx; `Dead` and `Rejected` only for
//!   others; a `Retry-After` is kept only for 429 and 5xx;
//! - the token and rotated refresh token are exactly the body's, and the
//!   token is an RFC 6750 b64token (anything else is refused for what it is);
//! - `expires_in` > 0 gives an expiry after now; any expiry is one the
//!   agent can subtract now from (it does, unchecked);
//! - error messages are printable, short, and do not change when the
//!   secrets in the body do: they never quote a token, nor a secret the
//!   request carried (an `error_description` may quote it);
//! - a JWT's claims come from exactly three parts and give a usable expiry.
#![no_main]

use std::time::Duration;

use a365_token::designer_cloud::{parse_created, parse_listed};
use a365_token::jwt;
use a365_token::oauth::{Grant, parse_retry_after, parse_token_response};
use a365_token::{Fresh, ProviderError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::Value;

/// The time of the request: 2027-01-15, UTC epoch ms.
const NOW: i64 = 1_800_000_000_000;
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// The secrets the request carried: no message may show them.
const SENT: &[&str] = &["fuzz-client-secret", "fuzz-refresh-token"];

fuzz_target!(|data: &[u8]| {
    let (status, wait, body) = split(data);

    check_token_response(status, wait, body);
    check_created(status, wait, body);
    check_listed(status, wait, body);

    if let Ok(text) = std::str::from_utf8(body) {
        check_claims(text.trim());
    }
    let token = format!("eyJhbGciOiJSUzI1NiJ9.{}.c2ln", URL_SAFE_NO_PAD.encode(body));
    check_claims(&token);
    let answer = serde_json::json!({ "access_token": token }).to_string();
    check_token_response(200, None, answer.as_bytes());
});

/// `<status>[ <Retry-After>]\n<body>`, or a bare body answered with 200.
fn split(data: &[u8]) -> (u16, Option<Duration>, &[u8]) {
    let Some(newline) = data.iter().position(|&b| b == b'\n') else {
        return (200, None, data);
    };
    let Ok(line) = std::str::from_utf8(&data[..newline]) else {
        return (200, None, data);
    };
    let (code, retry) = match line.split_once(' ') {
        Some((code, retry)) => (code, Some(retry)),
        None => (line, None),
    };
    let Ok(status) = code.parse::<u16>() else {
        return (200, None, data);
    };
    let wait = retry.and_then(|value| {
        let wait = parse_retry_after(value, NOW);
        if let Ok(secs) = value.trim().parse::<u64>() {
            assert_eq!(wait, Some(Duration::from_secs(secs)));
        }
        wait
    });
    (status, wait, &data[newline + 1..])
}

fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// What the request presented only changes the words of an `invalid_grant`;
/// the status picks one, so that the fuzzer reaches all three.
fn grant(status: u16) -> Grant {
    [
        Grant::RefreshToken,
        Grant::AuthorizationCode,
        Grant::ClientCredentials,
    ][usize::from(status) % 3]
}

fn check_token_response(status: u16, wait: Option<Duration>, body: &[u8]) {
    let grant = grant(status);
    let got = parse_token_response(grant, status, wait, body, NOW, DEFAULT_LIFETIME, SENT);
    match &got {
        Ok(fresh) => check_fresh(fresh, status, body),
        Err(e) => {
            check_error(e, status, wait);
            if let ProviderError::Dead(_) | ProviderError::Rejected(_) = e {
                assert!(!is_success(status), "{status} refused: {e}");
            }
            // An unusable 200 keeps the rotated refresh token it carried.
            if let ProviderError::Unusable { refresh_token, .. } = e {
                assert!(is_success(status), "unusable {status}: {e}");
                let sent = serde_json::from_slice::<Expected>(body)
                    .ok()
                    .and_then(|v| v.refresh_token);
                assert_eq!(refresh_token.as_ref().map(|t| t.expose_secret().to_owned()), sent);
            }
        }
    }
    // The outcome must not depend on the secrets' values, except through
    // the JWT claims of the access token: an `exp` in the past makes the
    // answer unusable. Messages never depend on them.
    if let Some((plain, redacted)) = redact(body, &["access_token", "refresh_token"]) {
        let a = parse_token_response(grant, status, wait, &plain, NOW, DEFAULT_LIFETIME, SENT);
        let b = parse_token_response(grant, status, wait, &redacted, NOW, DEFAULT_LIFETIME, SENT);
        let has_exp = serde_json::from_slice::<Expected>(&plain)
            .ok()
            .and_then(|v| v.access_token)
            .and_then(|t| jwt::claims(&t))
            .is_some_and(|c| c.exp_ms().is_some());
        match (&a, &b) {
            (Err(x), Err(y)) if has_exp => {
                assert_eq!(x.to_string(), y.to_string(), "a message quotes a secret")
            }
            _ if has_exp => {}
            _ => same_outcome(&a, &b),
        }
    }
}

/// The fields of a token response, read independently of the parser (and,
/// like it, skipping other fields unchecked: serde_json does not validate
/// UTF-8 in strings it skips, so `Value` would refuse some bodies it takes).
#[derive(Deserialize)]
struct Expected {
    access_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<Value>,
    scope: Option<String>,
}

/// The same for a Designer Cloud answer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExpectedCreated {
    token_value: Option<String>,
}

fn check_fresh(fresh: &Fresh, status: u16, body: &[u8]) {
    assert!(is_success(status), "a token from an HTTP {status}");
    let v: Expected = serde_json::from_slice(body).expect("a token came from JSON");
    assert_eq!(
        Some(fresh.access_token.expose_secret()),
        v.access_token.as_deref()
    );
    assert!(a365_token::is_b64token(fresh.access_token.expose_secret()));
    assert_eq!(
        fresh.refresh_token.as_ref().map(|t| t.expose_secret()),
        v.refresh_token.as_deref()
    );
    if v.expires_in.is_some() {
        assert!(fresh.expires_at_ms > NOW, "expires_in > 0 is in the future");
    }
    // profile.rs and agent.rs compute `expires_at_ms - now` unchecked.
    assert!(
        fresh.expires_at_ms.checked_sub(NOW).is_some(),
        "expiry {} cannot be compared with now",
        fresh.expires_at_ms
    );
    if let Some(scope) = v.scope.as_deref() {
        // Every well-formed scope token the server sent, in order; the
        // rest (control characters, quotes) dropped.
        let sent: Vec<_> = scope
            .split_ascii_whitespace()
            .filter(|s| jwt::is_scope_token(s))
            .collect();
        assert_eq!(fresh.scopes, sent);
    }
}

fn check_created(status: u16, wait: Option<Duration>, body: &[u8]) {
    match parse_created(status, wait, body) {
        Ok(renewed) => {
            assert!(is_success(status), "a token from an HTTP {status}");
            assert!(!renewed.token_id.is_empty());
            let v: ExpectedCreated = serde_json::from_slice(body).expect("a token came from JSON");
            assert_eq!(
                Some(renewed.token.expose_secret()),
                v.token_value.as_deref()
            );
            assert!(a365_token::is_b64token(renewed.token.expose_secret()));
        }
        Err(e) => {
            check_error(&e, status, wait);
            if let ProviderError::Dead(_) = e {
                assert_eq!(status, 401);
            }
            if let ProviderError::Rejected(_) = e {
                assert!(!is_success(status));
            }
        }
    }
    if let Some((plain, redacted)) = redact(body, &["tokenValue"]) {
        same_outcome(
            &parse_created(status, wait, &plain),
            &parse_created(status, wait, &redacted),
        );
    }
}

/// A listing names only ids that can go into a DELETE's path, and only
/// those described exactly as asked.
fn check_listed(status: u16, wait: Option<Duration>, body: &[u8]) {
    match parse_listed(status, wait, body, "a365:dc #7") {
        Ok(ids) => {
            assert!(is_success(status), "a listing from an HTTP {status}");
            for id in ids {
                assert!(!id.is_empty() && id != "." && id != "..");
                assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)));
            }
        }
        Err(e) => check_error(&e, status, wait),
    }
}

/// What every classified error must be: printable, short, honest about
/// `Retry-After`.
fn check_error(e: &ProviderError, status: u16, wait: Option<Duration>) {
    let text = e.to_string();
    assert!(
        !text.chars().any(char::is_control),
        "control character in {text:?}"
    );
    for secret in SENT {
        assert!(!text.contains(secret), "{text:?} shows a secret the request carried");
    }
    assert!(
        text.chars().count() <= 600,
        "{} chars",
        text.chars().count()
    );
    if let ProviderError::Transient {
        retry_after: Some(after),
        ..
    } = e
    {
        // 408 too: a server that timed out reading the request may say
        // when to send it again, and waiting longer costs nothing.
        assert!(status == 408 || status == 429 || (500..=599).contains(&status));
        assert_eq!(Some(*after), wait);
    }
}

/// The body re-serialized, and again with `fields` (when strings) replaced:
/// `None` when the body is not a JSON object with such a field.
fn redact(body: &[u8], fields: &[&str]) -> Option<(Vec<u8>, Vec<u8>)> {
    let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    let plain = serde_json::to_vec(&map).ok()?;
    let mut any = false;
    for field in fields {
        if let Some(value @ Value::String(_)) = map.get_mut(*field) {
            // A token with characters no bearer token has is refused for
            // them: that outcome rightly depends on the value.
            if value.as_str().is_some_and(|v| !a365_token::is_b64token(v)) {
                return None;
            }
            *value = Value::String(format!("redacted-{field}"));
            any = true;
        }
    }
    any.then(|| (plain, serde_json::to_vec(&map).expect("a map serializes")))
}

fn same_outcome<A, B>(a: &Result<A, ProviderError>, b: &Result<B, ProviderError>) {
    match (a, b) {
        (Ok(_), Ok(_)) => {}
        (Err(a), Err(b)) => {
            assert_eq!(a.to_string(), b.to_string(), "a message quotes a secret");
            assert_eq!(
                std::mem::discriminant(a),
                std::mem::discriminant(b),
                "the secret's value changed the outcome"
            );
        }
        (a, b) => panic!(
            "the secret's value changed the outcome: {:?} / {:?}",
            a.as_ref().err(),
            b.as_ref().err()
        ),
    }
}

fn check_claims(token: &str) {
    let Some(claims) = jwt::claims(token) else {
        return;
    };
    assert_eq!(token.split('.').count(), 3, "claims from a non-JWT");
    if let Some(ms) = claims.exp_ms() {
        // The agent computes a static token's lifetime and remaining time
        // from it, unchecked.
        assert!(
            ms.checked_sub(NOW).is_some(),
            "JWT exp {:?} gives an unusable expiry {ms}",
            claims.exp
        );
    }
}
