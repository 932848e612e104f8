//! a365-token: turns what a token server answers, and what a JWT says, into
//! typed values — a token with its expiry and scopes, or an error sorted by
//! what the agent should do next.
//!
//! Everything here reads untrusted bytes and nothing else: no I/O, no clock
//! (the time of the request is passed in), no HTTP client. The agent's
//! providers send the request and hand the status, `Retry-After` value and
//! body to [`oauth::parse_token_response`] or
//! [`designer_cloud::parse_created`]; the fuzz target `token_response` calls
//! the same functions, and builds only this small crate to do so.

pub mod designer_cloud;
pub mod jwt;
pub mod oauth;
pub mod scrub;

use std::time::Duration;

use secrecy::SecretString;

/// A newly obtained access token.
#[derive(Debug)]
pub struct Fresh {
    pub access_token: SecretString,
    /// UTC epoch milliseconds; from `expires_in`, else the JWT `exp`, else
    /// the configured default lifetime.
    pub expires_at_ms: i64,
    pub scopes: Vec<String>,
    /// A rotated refresh token: the old one is dead once this arrives.
    pub refresh_token: Option<SecretString>,
    /// The claims of an OpenID id_token that came with it (read, not
    /// verified: it came straight from the token endpoint over TLS, as
    /// OpenID Connect Core §3.1.3.7 allows).
    pub id_token: Option<jwt::Claims>,
    /// The answer stated no lifetime (no `expires_in`, no JWT `exp`): the
    /// lifetime assumed instead, in seconds, which `status` shows.
    pub assumed_lifetime_s: Option<u64>,
}

/// Why no token came back, sorted by what the agent should do next.
/// Messages are for people and never hold a secret or a response body.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The credential is dead (`invalid_grant`, `invalid_client`): stop
    /// asking, the user must create a new one.
    #[error("{0}")]
    Dead(String),
    /// Worth retrying later (network, timeout, 5xx, 429, a garbled answer).
    #[error("{message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The request was sent and its answer was lost (a timeout, a closed
    /// connection): a one-time refresh token may have been spent. Retried
    /// like a transient failure on one machine; a fleet never replays it.
    #[error("{0}")]
    Unanswered(String),
    /// The server refused the request for a reason retrying won't fix soon
    /// (a 4xx that is not about the credential): retry slowly.
    #[error("{0}")]
    Rejected(String),
    /// The server answered 200 with no token we can serve (none, or one
    /// already expired): retry later like a transient failure. A refresh
    /// token that came with it is still the new one (the old one is dead),
    /// so the caller must keep it.
    #[error("{message}")]
    Unusable {
        message: String,
        refresh_token: Option<SecretString>,
    },
}

/// Whether `token` can be a bearer token: RFC 6750's `b64token`
/// (`ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/"`, then `*"="`).
/// An access token is printed by `a365 token` and put into header lines;
/// a server's escape sequence or CR/LF must never get that far.
pub fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// Why a token was refused by [`is_b64token`], in words that never quote it.
pub const NOT_B64TOKEN: &str = "characters no bearer token may have (RFC 6750 b64token: letters, \
     digits, - . _ ~ + / and trailing =), such as spaces, control characters or terminal escapes";

impl ProviderError {
    pub fn transient(message: impl Into<String>) -> Self {
        ProviderError::Transient {
            message: message.into(),
            retry_after: None,
        }
    }

    /// The new refresh token an unusable answer brought: the one sent is
    /// dead, so the caller must keep this one whatever else it does.
    pub fn take_rotated(&mut self) -> Option<SecretString> {
        match self {
            ProviderError::Unusable { refresh_token, .. } => refresh_token.take(),
            _ => None,
        }
    }
}
