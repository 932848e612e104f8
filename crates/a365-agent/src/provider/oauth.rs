//! RFC 6749 token endpoint calls shared by the OAuth providers: POST a form,
//! read a bounded body into zeroized memory, sort the outcome (§5.1, §5.2)
//! with `a365-token`'s pure parsers.

use std::time::Duration;

use a365_proto::ClientAuth;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::body::BodyError;

use super::client_auth::{
    basic_authorization, basic_login, client_hint, raw_basic_may_help, refuses_client,
};
use super::send_error::describe_send_error;
use super::{Fresh, ProviderError};

pub use a365_token::oauth::{Grant, parse_retry_after, parse_token_response};

/// A token response is a few KiB; anything larger is not one.
const MAX_BODY: usize = 256 * 1024;

/// Context for one token request.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub http: &'a reqwest::Client,
    pub token_url: &'a reqwest::Url,
    pub now_ms: i64,
    pub default_lifetime: Duration,
    /// How long a sent refresh token's answer is waited for (see
    /// [`post_form`]).
    pub answer_wait: Duration,
    /// How a client with a secret authenticates.
    pub client_auth: ClientAuth,
    /// The server has accepted this client's authentication before: a
    /// refusal now is not about how it is encoded.
    pub proven: bool,
    /// Send `secure=1` with every grant (an Altium Gov Cloud token
    /// endpoint: SPEC §5.4).
    pub secure: bool,
    /// Altium Identity: a token is taken to expire 30 s before the
    /// server's `expires_in` says (SPEC §5.1's clock-skew buffer).
    pub altium: bool,
    /// The profile's extra token-request parameters (`audience`, …).
    pub params: &'a std::collections::BTreeMap<String, String>,
}

/// The client making the request: its id, and its secret unless it is a
/// public client (PKCE, no secret).
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    pub id: &'a str,
    pub secret: Option<&'a SecretString>,
}

/// A token endpoint's good answer, and how the client authenticated for
/// it.
#[derive(Debug)]
pub struct Answer {
    pub fresh: Fresh,
    /// How the client secret was sent (`None`: a public client, none).
    pub client_auth: Option<ClientAuth>,
}

/// POSTs `form` with the client's authentication (which holds secrets,
/// hence the zeroized pairs) and sorts the answer; `grant` says what the
/// form presents, for the message of an `invalid_grant`. Never retried
/// here, but for one case: a server that has never accepted this client
/// and refuses HTTP Basic with RFC 6749's form-encoded id and secret is
/// asked once more with them as they are, which is what many servers
/// decode (a refused request spent nothing).
pub async fn post_form(
    call: Call<'_>,
    grant: Grant,
    client: Client<'_>,
    form: &[(&str, &str)],
) -> Result<Answer, ProviderError> {
    let used = client.secret.map(|_| call.client_auth);
    let first = post_once(call, grant, client, form).await;
    let first = match first {
        Err(e) if raw_basic_may_help(call, client, &e) => e,
        other => {
            return other.map(|fresh| Answer {
                fresh,
                client_auth: used,
            });
        }
    };
    tracing::info!(
        "the token server refused HTTP Basic with the id and secret form-encoded (RFC 6749 \
         §2.3.1); trying once with them as they are"
    );
    let raw = Call {
        client_auth: ClientAuth::BasicRaw,
        ..call
    };
    match post_once(raw, grant, client, form).await {
        Ok(fresh) => Ok(Answer {
            fresh,
            client_auth: Some(ClientAuth::BasicRaw),
        }),
        // Refused as well: the first refusal (and its hint) stands.
        Err(e) if refuses_client(&e) => Err(first),
        Err(e) => Err(e),
    }
}

/// One token request (see [`post_form`]).
async fn post_once(
    call: Call<'_>,
    grant: Grant,
    client: Client<'_>,
    form: &[(&str, &str)],
) -> Result<Fresh, ProviderError> {
    let mut form = form.to_vec();
    if call.secure {
        form.push(("secure", "1"));
    }
    form.extend(call.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    // A refresh token, once sent, may be spent: its answer is waited for
    // as long as the connection lives (up to `answer_wait`), never given
    // up on at the usual timeout to be sent again.
    let spends = grant == Grant::RefreshToken;
    let wait = spends.then_some(call.answer_wait);
    let response = send_form(call, call.token_url, client, &form, wait).await?;
    let status = response.status();
    let retry_after = retry_after(response.headers(), call.now_ms);
    let body = read_body(response).await.map_err(|e| match spends {
        // The server answered: it did its work, whatever was lost.
        true => ProviderError::Unanswered(e.to_string()),
        false => e,
    })?;
    tracing::debug!(status = status.as_u16(), "token response received");
    parse_token_response(
        grant,
        status.as_u16(),
        retry_after,
        &body,
        call.now_ms,
        call.default_lifetime,
        &sent(client, &form),
    )
    .map(|mut fresh| {
        if call.altium {
            fresh.expires_at_ms = altium_expiry(fresh.expires_at_ms, call.now_ms);
        }
        fresh
    })
    .map_err(|e| match spends {
        true => fate_unknown(e, status.as_u16(), &body),
        false => e,
    })
    .map_err(|e| client_hint(e, call.client_auth, client.secret.is_some()))
}

/// Altium's clients take a token to expire this much before its
/// `expires_in` ends.
const ALTIUM_SKEW_MS: i64 = 30_000;

/// An Altium token's expiry, 30 s early; at most a quarter of a short
/// lifetime early, so that no token is expired when it arrives (which
/// would refresh it again at once, and again).
fn altium_expiry(expires_at_ms: i64, now_ms: i64) -> i64 {
    let life = expires_at_ms.saturating_sub(now_ms).max(0);
    expires_at_ms - ALTIUM_SKEW_MS.min(life / 4)
}

/// RFC 7009: asks the server at `url` to revoke `token` (a refresh token:
/// the server then also ends the access tokens of its grant). A 200
/// means done, also for a token the server no longer knows (§2.2).
pub async fn revoke(
    call: Call<'_>,
    url: &reqwest::Url,
    client: Client<'_>,
    token: &SecretString,
) -> Result<(), ProviderError> {
    let form = token_form(token);
    let (status, retry_after, body) = send_token(call, url, client, &form).await?;
    if status.is_success() {
        return Ok(());
    }
    let code = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            let code = v.get("error")?.as_str()?;
            Some(a365_token::scrub::describe(
                code,
                &sent(client, &form),
                a365_token::oauth::MAX_CODE,
            ))
        })
        .unwrap_or_default();
    let status = status.as_u16();
    Err(if status == 401 || code == "invalid_client" {
        let message = format!(
            "{} at the revocation endpoint (HTTP {status})",
            a365_token::oauth::CLIENT_REJECTED
        );
        client_hint(
            ProviderError::Dead(message),
            call.client_auth,
            client.secret.is_some(),
        )
    } else {
        let code = if code.is_empty() {
            code
        } else {
            format!(": {code}")
        };
        let message = format!("the revocation endpoint answered HTTP {status}{code}");
        match status {
            429 | 500.. => ProviderError::Transient {
                message,
                retry_after,
            },
            _ => ProviderError::Rejected(message),
        }
    })
}

/// An answer to a sent refresh token that does not say whether the server
/// spent it is a lost answer: a gateway that gave up on the server (502,
/// 504, 524), or a 200 that is not JSON at all. A 200 in JSON that the
/// strict parser refused keeps any `refresh_token` it carries (rotated:
/// the old one is dead).
fn fate_unknown(e: ProviderError, status: u16, body: &[u8]) -> ProviderError {
    if matches!(status, 502 | 504 | 524) {
        return ProviderError::Unanswered(format!(
            "{e}: a gateway answered, and the token server behind it may have done the refresh"
        ));
    }
    if !(200..300).contains(&status) {
        return e;
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return ProviderError::Unanswered(e.to_string());
    };
    let rotated = json
        .get("refresh_token")
        .and_then(serde_json::Value::as_str)
        .filter(|rt| !rt.is_empty() && a365_token::is_b64token(rt))
        .map(|rt| SecretString::from(rt.to_owned()));
    match (e, rotated) {
        (
            ProviderError::Unusable {
                message,
                refresh_token: None,
            }
            | ProviderError::Transient { message, .. },
            Some(rt),
        ) => ProviderError::Unusable {
            message,
            refresh_token: Some(rt),
        },
        (other, _) => other,
    }
}

/// The form that names a refresh token to a revocation or introspection
/// endpoint (RFC 7009 §2.1, RFC 7662 §2.1).
fn token_form(token: &SecretString) -> [(&'static str, &str); 2] {
    [
        ("token", token.expose_secret()),
        ("token_type_hint", "refresh_token"),
    ]
}

/// Posts `form` (see [`token_form`]) with the client's authentication:
/// the status, its `Retry-After` and the body.
async fn send_token(
    call: Call<'_>,
    url: &reqwest::Url,
    client: Client<'_>,
    form: &[(&str, &str)],
) -> Result<(reqwest::StatusCode, Option<Duration>, Zeroizing<Vec<u8>>), ProviderError> {
    let response = send_form(call, url, client, form, None).await?;
    let status = response.status();
    let retry_after = retry_after(response.headers(), call.now_ms);
    Ok((status, retry_after, read_body(response).await?))
}

/// RFC 7662: asks the server at `url` whether the refresh token `token`
/// is still active, authenticating as token requests do. Nothing is
/// spent by asking.
pub async fn introspect(
    call: Call<'_>,
    url: &reqwest::Url,
    client: Client<'_>,
    token: &SecretString,
) -> Result<bool, ProviderError> {
    let form = token_form(token);
    let (status, retry_after, body) = send_token(call, url, client, &form).await?;
    let active = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("active")?.as_bool());
    match (status.as_u16(), active) {
        (200, Some(active)) => Ok(active),
        (200, None) => Err(ProviderError::transient(
            "the introspection endpoint answered without an `active` field",
        )),
        (status, _) => Err(ProviderError::Transient {
            message: format!("the introspection endpoint answered HTTP {status}"),
            retry_after,
        }),
    }
}

/// Form fields that carry a secret.
const SECRET_FIELDS: &[&str] = &[
    "client_secret",
    "refresh_token",
    "token",
    "code",
    "code_verifier",
    "password",
    "subject_token",
];

/// The secrets a request carries, which a server's error text must not
/// repeat (see `a365_token::scrub`).
fn sent<'a>(client: Client<'a>, form: &[(&'a str, &'a str)]) -> Vec<&'a str> {
    form.iter()
        .filter(|(name, _)| SECRET_FIELDS.contains(name))
        .map(|(_, value)| *value)
        .chain(client.secret.map(|s| s.expose_secret()))
        .collect()
}

/// POSTs `form` to `url` with the client's authentication: in the body
/// or as HTTP Basic, as the profile says.
/// Sends `form` to `url`; `wait`, when given, replaces the HTTP client's
/// overall timeout for this request.
async fn send_form(
    call: Call<'_>,
    url: &reqwest::Url,
    client: Client<'_>,
    form: &[(&str, &str)],
    wait: Option<Duration>,
) -> Result<reqwest::Response, ProviderError> {
    let mut pairs = form.to_vec();
    let basic = match (call.client_auth, client.secret) {
        (ClientAuth::Basic, Some(secret)) => Some(basic_authorization(client.id, secret)),
        (ClientAuth::BasicRaw, Some(secret)) => Some(basic_login(client.id, secret)),
        (_, secret) => {
            pairs.push(("client_id", client.id));
            if let Some(secret) = secret {
                pairs.push(("client_secret", secret.expose_secret()));
            }
            None
        }
    };
    let mut request = call
        .http
        .post(url.clone())
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(reqwest::header::ACCEPT, "application/json");
    if let Some(value) = basic {
        request = request.header(reqwest::header::AUTHORIZATION, value);
    }
    if let Some(wait) = wait {
        request = request.timeout(wait);
    }
    request
        .body(bytes::Bytes::from_owner(Wiped(form_body(&pairs))))
        .send()
        .await
        .map_err(|e| match e.is_connect() || e.is_builder() {
            true => ProviderError::transient(describe_send_error(&e, url)),
            false => ProviderError::Unanswered(describe_send_error(&e, url)),
        })
}

/// `application/x-www-form-urlencoded`, built in a buffer sized for the
/// worst case up front (every byte percent-encoded), so it never grows
/// and leaves a copy of a secret behind, and wiped when dropped.
pub fn form_body(form: &[(&str, &str)]) -> Zeroizing<Vec<u8>> {
    let worst: usize = form.iter().map(|(k, v)| 3 * (k.len() + v.len()) + 2).sum();
    let text = form_urlencoded::Serializer::new(String::with_capacity(worst))
        .extend_pairs(form)
        .finish();
    Zeroizing::new(text.into_bytes())
}

/// The request body handed to reqwest: its bytes are wiped when the last
/// reference to them drops, after the request was written.
pub(super) struct Wiped(pub(super) Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for Wiped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

pub(crate) async fn read_body(
    response: reqwest::Response,
) -> Result<Zeroizing<Vec<u8>>, ProviderError> {
    crate::body::read_limited(response, MAX_BODY)
        .await
        .map_err(|e| {
            ProviderError::transient(match e {
                BodyError::TooLarge => "the token server sent an oversized response",
                BodyError::Cut { timed_out: true } => "the token server's response timed out",
                BodyError::Cut { timed_out: false } => "the token server's response was cut off",
            })
        })
}

/// `Retry-After` in seconds or as an HTTP date.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap, now_ms: i64) -> Option<Duration> {
    parse_retry_after(
        headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?,
        now_ms,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        let body = form_body(&[("grant_type", "refresh_token"), ("x", "a b&c=d/é")]);
        assert_eq!(
            &body[..],
            b"grant_type=refresh_token&x=a+b%26c%3Dd%2F%C3%A9"
        );
        // Sized once, for the worst case: it never grew.
        let all_escaped = "\u{e9}".repeat(500);
        let body = form_body(&[("refresh_token", &all_escaped)]);
        assert_eq!(body.len(), "refresh_token=".len() + 6 * 500);
        assert!(body.capacity() >= body.len());
    }

    #[test]
    fn altium_expiry_is_early_but_never_past() {
        assert_eq!(altium_expiry(3_600_000, 0), 3_570_000);
        assert_eq!(altium_expiry(20_000, 0), 15_000, "a quarter of 20 s");
        assert_eq!(altium_expiry(0, 0), 0);
        assert!(altium_expiry(1_000, 0) > 0);
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
}
