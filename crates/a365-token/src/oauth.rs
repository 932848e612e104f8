//! What an RFC 6749 token endpoint answers: a token (§5.1) or an error
//! (§5.2), sorted into [`Fresh`] or a [`ProviderError`]; and the wait a
//! `Retry-After` header asks for.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::{Fresh, ProviderError, jwt};

/// What the request presented to the token endpoint, so that an
/// `invalid_grant` names the thing the server rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// `grant_type=refresh_token`.
    RefreshToken,
    /// `grant_type=authorization_code`: the code a browser login returned.
    AuthorizationCode,
    /// `grant_type=client_credentials`: the client id and secret alone.
    ClientCredentials,
    /// RFC 8693 token exchange: a signed-in token for one with another
    /// scope (an Altium workspace's).
    TokenExchange,
}

impl Grant {
    /// Why an `invalid_grant` for this grant, in words; `details` is the
    /// server's code and description, e.g. `invalid_grant (expired)`.
    fn rejected(self, details: &str) -> String {
        match self {
            Grant::RefreshToken => format!(
                "the token server rejected the refresh token ({details}): it was revoked, expired \
                 or already used"
            ),
            Grant::AuthorizationCode => format!(
                "the token server rejected the login's authorization code ({details}): it expired, \
                 was already used, or does not match the login's code_verifier or redirect_uri"
            ),
            Grant::ClientCredentials => format!(
                "the token server rejected the client credentials grant ({details}): the client \
                 or its secret was revoked or expired, or it may not use this grant"
            ),
            Grant::TokenExchange => format!(
                "the token server rejected the signed-in token offered in exchange ({details}): \
                 it expired or was revoked; sign in again"
            ),
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<SecretString>,
    expires_in: Option<serde_json::Number>,
    refresh_token: Option<SecretString>,
    scope: Option<String>,
    id_token: Option<SecretString>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: Option<String>,
    error_description: Option<String>,
}

/// How much of a server's `error_description` is shown, in characters.
const MAX_DESCRIPTION: usize = 200;
/// An `error` code is one word (RFC 6749 §5.2); a longer one is cut.
pub const MAX_CODE: usize = 64;

/// What a refusal without an OAuth error body said: a line of its text
/// (secrets it quotes hidden), or what kind of body it was. JSON is never
/// quoted: it may hold tokens of the server's own (an `access_token`)
/// that no list of what was sent can hide.
fn said(status: u16, body: &[u8], sent: &[&str]) -> String {
    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        return ", with a JSON body that is no OAuth error".into();
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]);
    let text = text.trim();
    let page = text.starts_with('<');
    let hint = match (status, page) {
        (404 | 405, _) | (_, true) => {
            "; is this the token endpoint? A token URL usually ends in /token or /connect/token"
        }
        _ => "",
    };
    if text.is_empty() {
        return format!(", with an empty body{hint}");
    }
    if page {
        return format!(", with an HTML page{hint}");
    }
    let line = text.lines().next().unwrap_or_default();
    format!(
        ": \"{}\"{hint}",
        crate::scrub::describe(line, sent, MAX_DESCRIPTION)
    )
}

/// How the message of a bare 400 (no OAuth error code) starts.
pub const BARE_400: &str = "the token server refused the request (HTTP 400";

/// How a refused client authentication's message starts.
pub const CLIENT_REJECTED: &str = "the token server rejected the client id or secret";

/// Sorts what a token endpoint answered — its HTTP `status`, the wait its
/// `Retry-After` asked for (see [`parse_retry_after`]) and its `body` — into
/// a token (§5.1) or a classified error (§5.2). `grant` is what the request
/// presented, for the message of an `invalid_grant`. Pure: no I/O, no clock
/// (`now_ms` is the time of the request, UTC epoch ms), so tests and the
/// fuzz target call it directly. `default_lifetime` applies when neither
/// `expires_in` nor a JWT `exp` says when the token expires. `sent` holds
/// the secrets the request carried (client secret, refresh token, code,
/// code_verifier, password): an `error_description` that quotes them is
/// shown without them ([`scrub::describe`](crate::scrub::describe)).
pub fn parse_token_response(
    grant: Grant,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    now_ms: i64,
    default_lifetime: Duration,
    sent: &[&str],
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
        .map(|d| format!(" ({})", crate::scrub::describe(d, sent, MAX_DESCRIPTION)))
        .unwrap_or_default();
    match (status, code) {
        (_, "invalid_grant") => Err(ProviderError::Dead(
            grant.rejected(&format!("invalid_grant{description}")),
        )),
        // No retry changes a refusal of the user or client itself (Altium
        // Identity answers a token exchange across its clouds so).
        // Altium Identity: a token exchanged on another environment than
        // the one that issued it (Dev for production, …).
        (_, "invalid_token") | (_, "invalid_request")
            if grant == Grant::TokenExchange
                && (code == "invalid_token" || description.contains("invalid_token")) =>
        {
            Err(ProviderError::Dead(format!(
                "the token server refused the exchange ({code}{description}): the signed-in \
                 token is from another environment; sign in on the one this profile names"
            )))
        }
        (_, "access_denied") => Err(ProviderError::Dead(format!(
            "the token server denied access (access_denied{description}): the account or the \
             client may not have this token"
        ))),
        (_, "invalid_client" | "unauthorized_client") | (401, "") => {
            Err(ProviderError::Dead(format!(
                "{CLIENT_REJECTED} ({}{description})",
                if code.is_empty() { "HTTP 401" } else { code }
            )))
        }
        (429, _) => Err(ProviderError::Transient {
            message: "the token server is rate limiting (HTTP 429)".into(),
            retry_after,
        }),
        (408, _) => Err(ProviderError::Transient {
            message: "the token server timed out reading the request (HTTP 408)".into(),
            retry_after,
        }),
        (500..=599, _) => Err(ProviderError::Transient {
            message: format!("the token server failed (HTTP {status})"),
            retry_after,
        }),
        // RFC 6749 §5.2: any other 4xx is about the request, the client or
        // the grant, not the moment; what the server said is shown.
        (_, "") => Err(ProviderError::Rejected(format!(
            "the token server refused the request (HTTP {status}{})",
            said(status, body, sent)
        ))),
        (_, code) => Err(ProviderError::Rejected(format!(
            "the token server refused the request ({}{description})",
            crate::scrub::describe(code, sent, MAX_CODE)
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
    let TokenResponse {
        access_token,
        expires_in,
        refresh_token,
        scope,
        id_token,
    } = response;
    // Whatever is wrong with the access token, a rotated refresh token
    // that came with it must not be dropped.
    let unusable = |message: &str| ProviderError::Unusable {
        message: message.into(),
        refresh_token: refresh_token.clone(),
    };
    let access_token = access_token
        .ok_or_else(|| unusable("the token server answered 200 without an access_token"))?;
    if !crate::is_b64token(secrecy::ExposeSecret::expose_secret(&access_token)) {
        return Err(unusable(&format!(
            "the token server sent an access token with {}: refused",
            crate::NOT_B64TOKEN
        )));
    }
    let claims = jwt::claims(secrecy::ExposeSecret::expose_secret(&access_token));
    let expires_in = expires_in
        .and_then(|n| n.as_f64())
        .map(|s| (s * 1000.0) as i64);
    let exp_ms = claims.as_ref().and_then(jwt::Claims::exp_ms);
    let assumed_lifetime_s =
        (expires_in.is_none() && exp_ms.is_none()).then_some(default_lifetime.as_secs());
    let expires_at_ms = match (expires_in, exp_ms) {
        (Some(ms), exp_ms) if ms > 0 => earliest_expiry(now_ms.saturating_add(ms), exp_ms),
        (Some(_), _) => {
            return Err(unusable(
                "the token server answered with an expires_in of zero or less",
            ));
        }
        // Without expires_in, an exp in the past is a server (or this
        // machine's) clock that is off: asking again at once would only
        // burn the server's rate limit.
        (None, Some(exp_ms)) if exp_ms <= now_ms => {
            return Err(unusable(
                "the token server sent a token that had already expired (its exp is in the \
                 past and it gave no expires_in): check this machine's clock",
            ));
        }
        (None, Some(exp_ms)) => exp_ms,
        (None, None) => {
            now_ms.saturating_add(i64::try_from(default_lifetime.as_millis()).unwrap_or(i64::MAX))
        }
    };
    let scopes = match scope {
        Some(text) => jwt::split_scopes(&text),
        None => claims.map(|c| c.scopes).unwrap_or_default(),
    };
    Ok(Fresh {
        access_token,
        expires_at_ms,
        scopes,
        refresh_token,
        id_token: id_token.and_then(|t| jwt::claims(secrecy::ExposeSecret::expose_secret(&t))),
        assumed_lifetime_s,
    })
}

/// How far a JWT's `exp` may fall before the expiry `expires_in` gives and
/// still count: `exp` is whole seconds (so up to a second early) and the
/// answer took time to arrive. Further off, the two clocks disagree, and
/// `expires_in` (relative, so immune to that) is the truth.
const EXP_ROUNDING_MS: i64 = 60_000;

/// The earlier of `expires_in` at receipt and the token's own `exp`, so
/// that a token served as valid for five more seconds is, by its `exp`.
fn earliest_expiry(by_expires_in: i64, exp_ms: Option<i64>) -> i64 {
    match exp_ms {
        Some(exp) if exp < by_expires_in && by_expires_in - exp <= EXP_ROUNDING_MS => exp,
        _ => by_expires_in,
    }
}

/// Keeps server-chosen text printable and short, for logs and `status`.
pub fn sanitize(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// The wait a `Retry-After` header value asks for, in seconds or as an HTTP
/// date (a date in the past is no wait); `None` when it is neither.
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let ms = parse_http_date(value)?.saturating_sub(now_ms);
    Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

/// An HTTP date (`Date`, `Retry-After`: RFC 9110 §5.6.7) as UTC epoch
/// milliseconds.
pub fn parse_http_date(value: &str) -> Option<i64> {
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value.trim())
        .ok()?;
    Some(at.as_millisecond())
}

#[cfg(test)]
mod tests {
    /// A refusal's body is quoted only as plain text, secrets sent hidden;
    /// a JSON body (it may hold the server's own tokens) or a page never.
    #[test]
    fn a_bare_refusal_says_what_it_can_without_quoting_tokens() {
        let json = br#"{"access_token":"at-secret-123456","note":"x"}"#;
        let said_json = super::said(400, json, &[]);
        assert!(!said_json.contains("at-secret"), "{said_json}");
        assert!(said_json.contains("JSON body"), "{said_json}");
        let text = super::said(
            400,
            b"bad client sekret-value-1234\nmore",
            &["sekret-value-1234"],
        );
        assert!(!text.contains("sekret-value"), "{text}");
        assert!(text.starts_with(": \"bad client"), "{text}");
        assert!(super::said(404, b"<html>", &[]).contains("is this the token endpoint?"));
        assert!(super::said(400, b"", &[]).contains("empty body"));
    }

    use super::*;

    const NOW: i64 = 1_000_000;

    fn parse(
        status: u16,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> Result<Fresh, ProviderError> {
        parse_token_response(
            Grant::RefreshToken,
            status,
            retry_after,
            body,
            NOW,
            Duration::from_secs(60),
            &[],
        )
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7", 0), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 7 ", 0), Some(Duration::from_secs(7)));
        let now = jiff::Timestamp::from_second(1_445_412_470)
            .unwrap()
            .as_millisecond();
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now + 60_000),
            Some(Duration::ZERO),
            "a date in the past is no wait"
        );
        assert_eq!(parse_retry_after("soon", 0), None);
    }

    /// A 200 without a servable token still carries the rotated refresh
    /// token: the old one is dead, so dropping it would lose the credential.
    #[test]
    fn an_unusable_answer_keeps_the_rotated_refresh_token() {
        use base64::Engine;
        use secrecy::ExposeSecret;
        // now is 1,000,000 ms: an exp of 999 s is past.
        let expired_jwt = format!(
            "e30.{}.c2ln",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"exp":999}"#)
        );
        for body in [
            r#"{"access_token":"opaque","expires_in":0,"refresh_token":"r2"}"#.to_owned(),
            r#"{"expires_in":30,"refresh_token":"r2"}"#.to_owned(),
            format!(r#"{{"access_token":"{expired_jwt}","refresh_token":"r2"}}"#),
        ] {
            match parse(200, None, body.as_bytes()) {
                Err(ProviderError::Unusable {
                    refresh_token: Some(rt),
                    message,
                }) => {
                    assert_eq!(rt.expose_secret(), "r2");
                    assert!(!message.contains("r2"), "{message}");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        let e = parse(
            200,
            None,
            format!(r#"{{"access_token":"{expired_jwt}"}}"#).as_bytes(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("check this machine's clock"), "{e}");
    }

    /// `exp` is whole seconds: a token whose `expires_in` says 30 s but
    /// whose `exp` ends 0.9 s sooner expires at its `exp`; an `exp` an hour
    /// off is a clock difference, and `expires_in` wins.
    #[test]
    fn the_expiry_is_the_earlier_of_expires_in_and_exp() {
        assert_eq!(earliest_expiry(1_030_000, Some(1_029_000)), 1_029_000);
        assert_eq!(earliest_expiry(1_030_000, Some(1_031_000)), 1_030_000);
        assert_eq!(earliest_expiry(1_030_000, None), 1_030_000);
        assert_eq!(earliest_expiry(4_600_000, Some(1_000_000)), 4_600_000);
        let jwt = |exp: i64| {
            use base64::Engine as _;
            let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
            format!(
                "{}.{}.c2ln",
                b64(r#"{"alg":"none"}"#),
                b64(&format!(r#"{{"exp":{exp}}}"#))
            )
        };
        // Received at 1 000.5 s for 30 s: `exp` 1 030 s is half a second sooner.
        let body = format!(r#"{{"access_token":"{}","expires_in":30}}"#, jwt(1_030));
        let ok = parse_token_response(
            Grant::RefreshToken,
            200,
            None,
            body.as_bytes(),
            1_000_500,
            Duration::from_secs(60),
            &[],
        )
        .unwrap();
        assert_eq!(ok.expires_at_ms, 1_030_000);
    }

    #[test]
    fn sorting() {
        let ok = parse(
            200,
            None,
            br#"{"access_token":"opaque","expires_in":30,"refresh_token":"r2","scope":"a b"}"#,
        )
        .unwrap();
        assert_eq!(ok.expires_at_ms, 1_030_000);
        assert_eq!(ok.scopes, ["a", "b"]);
        assert!(ok.refresh_token.is_some());
        let no_exp = parse(200, None, br#"{"access_token":"opaque"}"#).unwrap();
        assert_eq!(
            no_exp.expires_at_ms, 1_060_000,
            "falls back to the default lifetime"
        );
        let dead = parse(400, None, br#"{"error":"invalid_grant"}"#);
        assert!(matches!(dead, Err(ProviderError::Dead(_))));
        let client = parse(401, None, b"");
        assert!(matches!(client, Err(ProviderError::Dead(_))));
        let busy = parse(429, Some(Duration::from_secs(3)), b"");
        assert!(matches!(
            busy,
            Err(ProviderError::Transient {
                retry_after: Some(_),
                ..
            })
        ));
        let down = parse(502, None, b"<html>");
        assert!(matches!(down, Err(ProviderError::Transient { .. })));
        assert!(matches!(
            parse(200, None, b"{\"access_token\": "),
            Err(ProviderError::Transient { .. })
        ));
        for bad in [&b"{}"[..], b"{\"access_token\":\"x\",\"expires_in\":0}"] {
            assert!(matches!(
                parse(200, None, bad),
                Err(ProviderError::Unusable {
                    refresh_token: None,
                    ..
                })
            ));
        }
        let scope = parse(400, None, br#"{"error":"invalid_scope"}"#);
        assert!(matches!(scope, Err(ProviderError::Rejected(_))));
    }

    /// An `invalid_grant` names what was sent: a login's code is not a
    /// refresh token.
    #[test]
    fn invalid_grant_names_the_grant() {
        let body = br#"{"error":"invalid_grant","error_description":"code expired"}"#;
        let message = |grant| {
            parse_token_response(grant, 400, None, body, NOW, Duration::from_secs(60), &[])
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            message(Grant::RefreshToken),
            "the token server rejected the refresh token (invalid_grant (code expired)): it was \
             revoked, expired or already used"
        );
        let login = message(Grant::AuthorizationCode);
        assert!(
            login.contains("authorization code (invalid_grant (code expired))"),
            "{login}"
        );
        assert!(!login.contains("refresh token"), "{login}");
        let client = message(Grant::ClientCredentials);
        assert!(
            client.contains("client credentials grant (invalid_grant (code expired))"),
            "{client}"
        );
        assert!(!client.contains("refresh token"), "{client}");
    }

    /// Regression: a JWT `exp` of -1e300 and no `expires_in` gave an expiry
    /// of `i64::MIN`, which the agent's `expires_at_ms - now` overflowed.
    /// Now clamped, it is simply in the past: an unusable answer.
    #[test]
    fn an_absurd_jwt_exp_gives_a_usable_expiry() {
        use base64::Engine;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"exp":-1e300}"#);
        let body = format!(r#"{{"access_token":"e30.{payload}.c2ln"}}"#);
        let now_ms = 1_800_000_000_000;
        let at = |body: &str| {
            parse_token_response(
                Grant::RefreshToken,
                200,
                None,
                body.as_bytes(),
                now_ms,
                Duration::from_secs(60),
                &[],
            )
        };
        let got = at(&body);
        assert!(
            matches!(got, Err(ProviderError::Unusable { .. })),
            "{:?}",
            got.err()
        );
        let far = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"exp":1e300}"#);
        let body = format!(r#"{{"access_token":"e30.{far}.c2ln"}}"#);
        let fresh = at(&body).unwrap();
        assert!(
            fresh
                .expires_at_ms
                .checked_sub(now_ms)
                .is_some_and(|left| left > 0)
        );
    }

    /// An access token goes onto terminals (`a365 token`) and into header
    /// lines (`--format header`): escapes and CR/LF from a token server are
    /// refused at parse time, the token unquoted, a rotated refresh token kept.
    #[test]
    fn an_access_token_outside_rfc_6750_b64token_is_refused() {
        for bad in [
            r"abc\u001b]0;pwned\u0007",
            r"abc\r\nX-Evil: 1",
            "a b",
            "a=b",
            "",
            r"\u00e9t\u00e9",
        ] {
            let body =
                format!(r#"{{"access_token":"{bad}","expires_in":30,"refresh_token":"r2"}}"#);
            match parse(200, None, body.as_bytes()) {
                Err(ProviderError::Unusable {
                    message,
                    refresh_token: Some(_),
                }) => {
                    assert!(message.contains("RFC 6750"), "{message}");
                    assert!(
                        !message.contains("Evil") && !message.contains("pwned"),
                        "{message}"
                    );
                }
                other => panic!("{bad:?}: {:?}", other.map(|_| ())),
            }
        }
        for good in ["eyJ.a-b_c~d+e/f", "abc==", "Zm9v", "0"] {
            let body = format!(r#"{{"access_token":"{good}","expires_in":30}}"#);
            assert!(parse(200, None, body.as_bytes()).is_ok(), "{good}");
        }
    }

    /// A server that quotes the request in `error_description`: the
    /// secrets it carried are cut out, the code and the rest are kept.
    #[test]
    fn an_error_description_never_shows_what_the_request_carried() {
        let body = br#"{"error":"invalid_grant","error_description":"revoked; you sent client_secret=s3cr3t-value%2B1 and refresh_token=rt-0123456789"}"#;
        let message = parse_token_response(
            Grant::RefreshToken,
            400,
            None,
            body,
            NOW,
            Duration::from_secs(60),
            &["s3cr3t-value+1", "rt-0123456789"],
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.contains("invalid_grant (revoked; you sent"),
            "{message}"
        );
        assert!(
            !message.contains("s3cr3t") && !message.contains("01234567"),
            "{message}"
        );
    }

    #[test]
    fn errors_never_quote_the_body() {
        let body = br#"{"access_token": "sekrit-token", "expires_in": "x"}"#;
        let err = parse(200, None, body).unwrap_err();
        assert!(!err.to_string().contains("sekrit"));
    }
}
