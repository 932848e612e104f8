//! What Designer Cloud answers when a v4 API access token creates its
//! successor (`POST /v4/apiAccessTokens`) or lists the user's tokens
//! (`GET /v4/apiAccessTokens`), and how its failures sort.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::ProviderError;
use crate::oauth::sanitize;

/// A newly created API token.
#[derive(Debug)]
pub struct Renewed {
    pub token: SecretString,
    pub token_id: String,
    /// UTC epoch ms; `None`: the token never expires.
    pub expires_at_ms: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateResponse {
    token_value: Option<SecretString>,
    token_info: Option<TokenInfo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenInfo {
    token_id: Option<serde_json::Value>,
    expired_at: Option<String>,
}

/// Sorts what `POST /v4/apiAccessTokens` answered — its HTTP `status`, the
/// wait its `Retry-After` asked for and its `body` — into the new token or a
/// classified error. Pure: the fuzz target and tests call it directly.
pub fn parse_created(
    status: u16,
    wait: Option<Duration>,
    body: &[u8],
) -> Result<Renewed, ProviderError> {
    if !(200..300).contains(&status) {
        return Err(failure(status, wait, "create a new token"));
    }
    let parsed: CreateResponse = serde_json::from_slice(body).map_err(|_| {
        ProviderError::transient("Designer Cloud answered with a body that is not a created token")
    })?;
    let token = parsed
        .token_value
        .ok_or_else(|| ProviderError::transient("Designer Cloud answered without a tokenValue"))?;
    if !crate::is_b64token(secrecy::ExposeSecret::expose_secret(&token)) {
        return Err(ProviderError::transient(format!(
            "Designer Cloud sent a tokenValue with {}: refused",
            crate::NOT_B64TOKEN
        )));
    }
    let info = parsed
        .token_info
        .ok_or_else(|| ProviderError::transient("Designer Cloud answered without tokenInfo"))?;
    let token_id = info.token_id.and_then(token_id).ok_or_else(|| {
        ProviderError::transient("Designer Cloud answered without tokenInfo.tokenId")
    })?;
    let expires_at_ms = match info.expired_at {
        None => None,
        Some(text) => Some(
            text.parse::<jiff::Timestamp>()
                .map_err(|_| {
                    ProviderError::transient(format!(
                        "Designer Cloud answered with an expiredAt that is not a time ({})",
                        sanitize(&text)
                    ))
                })?
                .as_millisecond(),
        ),
    };
    Ok(Renewed {
        token,
        token_id,
        expires_at_ms,
    })
}

/// A token id as the server gave it. It goes into a URL path (a later
/// DELETE) and onto terminals: URL-unreserved characters only, so `../x`
/// or an escape sequence is no id.
fn token_id(value: serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(id)
            if !id.is_empty()
                && id.len() <= 128
                && id.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
                })
                && id != "."
                && id != ".." =>
        {
            Some(id)
        }
        serde_json::Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

/// `{"data": [{"tokenId": …, "description": …, …}, …]}`, as the v4 API
/// reference documents the listing.
#[derive(Deserialize)]
struct Listing {
    data: Vec<Listed>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Listed {
    token_id: Option<serde_json::Value>,
    description: Option<String>,
}

/// The ids of the tokens described exactly `description` in what
/// `GET /v4/apiAccessTokens` answered. Entries without a usable id are
/// skipped: what is deleted on this answer's word must be unambiguous.
pub fn parse_listed(
    status: u16,
    wait: Option<Duration>,
    body: &[u8],
    description: &str,
) -> Result<Vec<String>, ProviderError> {
    if !(200..300).contains(&status) {
        return Err(failure(status, wait, "list the API tokens"));
    }
    let listing: Listing = serde_json::from_slice(body).map_err(|_| {
        ProviderError::transient("Designer Cloud answered with a body that is not a token list")
    })?;
    Ok(listing
        .data
        .into_iter()
        .filter(|t| t.description.as_deref() == Some(description))
        .filter_map(|t| t.token_id.and_then(token_id))
        .collect())
}

/// Sorts a non-2xx answer to a request meant to `what` (e.g. "delete the
/// replaced token").
pub fn failure(status: u16, retry_after: Option<Duration>, what: &str) -> ProviderError {
    match status {
        401 => ProviderError::Dead(
            "Designer Cloud rejected the API token (HTTP 401): it expired or was revoked".into(),
        ),
        429 => ProviderError::Transient {
            message: format!("Designer Cloud is rate limiting (HTTP 429) the request to {what}"),
            retry_after,
        },
        500..=599 => ProviderError::Transient {
            message: format!("Designer Cloud failed (HTTP {status}) to {what}"),
            retry_after,
        },
        code => ProviderError::Rejected(format!("Designer Cloud refused (HTTP {code}) to {what}")),
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    /// A `tokenValue` is a bearer token like any other: no escapes, no CR/LF.
    #[test]
    fn a_created_token_outside_b64token_is_refused() {
        for bad in [r"dc\u001b]0;x\u0007", r"dc\r\nX-Evil: 1", "dc 2"] {
            let body = format!(r#"{{"tokenValue":"{bad}","tokenInfo":{{"tokenId":7}}}}"#);
            let err = parse_created(201, None, body.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains("RFC 6750") && !err.contains("Evil"), "{err}");
        }
    }

    #[test]
    fn created_tokens_and_failures() {
        let ok = parse_created(
            201,
            None,
            br#"{"tokenValue":"dc-2","tokenInfo":{"tokenId":7,"expiredAt":"2030-01-01T00:00:00Z"}}"#,
        )
        .unwrap();
        assert_eq!(ok.token.expose_secret(), "dc-2");
        assert_eq!(ok.token_id, "7");
        assert_eq!(ok.expires_at_ms, Some(1_893_456_000_000));
        let forever = parse_created(
            200,
            None,
            br#"{"tokenValue":"dc-3","tokenInfo":{"tokenId":"t-3"}}"#,
        )
        .unwrap();
        assert_eq!(forever.expires_at_ms, None);
        assert!(matches!(
            parse_created(401, None, b""),
            Err(ProviderError::Dead(_))
        ));
        assert!(matches!(
            parse_created(429, Some(Duration::from_secs(2)), b""),
            Err(ProviderError::Transient {
                retry_after: Some(_),
                ..
            })
        ));
        for bad in [
            &b"<html>"[..],
            br#"{"tokenValue":"x"}"#,
            br#"{"tokenValue":"x","tokenInfo":{"tokenId":""}}"#,
            br#"{"tokenValue":"x","tokenInfo":{"tokenId":"../users/1"}}"#,
            br#"{"tokenValue":"x","tokenInfo":{"tokenId":".."}}"#,
            b"{\"tokenValue\":\"x\",\"tokenInfo\":{\"tokenId\":\"a\\u001b[2J\"}}",
            br#"{"tokenValue":"x","tokenInfo":{"tokenId":"i","expiredAt":"soon"}}"#,
        ] {
            assert!(matches!(
                parse_created(200, None, bad),
                Err(ProviderError::Transient { .. })
            ));
        }
    }

    #[test]
    fn listed_tokens_match_the_whole_description() {
        let body = br#"{"data":[
            {"tokenId":"a","description":"a365:dc #7","createdAt":"2030-01-01T00:00:00Z"},
            {"tokenId":"b","description":"a365:dc #70"},
            {"tokenId":"c","description":"a365:dc"},
            {"tokenId":9,"description":"a365:dc #7","lastUsed":null},
            {"tokenId":"../x","description":"a365:dc #7"},
            {"description":"a365:dc #7"}
        ]}"#;
        assert_eq!(
            parse_listed(200, None, body, "a365:dc #7").unwrap(),
            ["a", "9"]
        );
        assert!(matches!(
            parse_listed(401, None, b"", "a365:dc #7"),
            Err(ProviderError::Dead(_))
        ));
        assert!(matches!(
            parse_listed(404, None, b"Route doesn't exist", "x"),
            Err(ProviderError::Rejected(_))
        ));
        for bad in [&b"<html>"[..], br#"{"data":{}}"#, br#"[]"#] {
            assert!(matches!(
                parse_listed(200, None, bad, "x"),
                Err(ProviderError::Transient { .. })
            ));
        }
    }
}
