//! Ways to misbehave, and their command-line spelling (`--fault status:503`).

use std::str::FromStr;
use std::time::Duration;

/// A way to misbehave, applied to the next N requests (see
/// `TokenServer::set_fault`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this HTTP status with `{"error":"server_error"}`.
    Status(u16),
    /// 429 with `Retry-After: <secs>` and `{"error":"slow_down"}`.
    RateLimited { retry_after_secs: u64 },
    /// Wait, then answer normally.
    Delay(Duration),
    /// Accept and never answer (until the server stops).
    Hang,
    /// Read the request, then close the connection without a single byte of
    /// response. Nothing is consumed.
    Drop,
    /// Rotate the refresh token (the old one dies, the new one is live but
    /// never delivered), then close like [`Fault::Drop`]: the window that
    /// one-time-use refresh tokens open.
    RotateThenDrop,
    /// 200 with a truncated JSON body.
    MalformedJson,
    /// 200 with a JSON object without `access_token`.
    MissingAccessToken,
    /// A normal 200 without `expires_in` (the JWT still has `exp`).
    MissingExpiresIn,
    /// 400 `invalid_grant`, whatever was sent.
    InvalidGrant,
    /// 401 `invalid_client`, whatever was sent.
    InvalidClient,
    /// 400 `invalid_scope`, whatever was sent.
    InvalidScope,
    /// 429 with `Retry-After` as an HTTP-date this many seconds ahead.
    RateLimitedUntil { secs: u64 },
    /// A normal 200 whose `expires_in` is this (0 or negative: nonsense).
    ExpiresIn(i64),
    /// A normal 200 whose access token is opaque, not a JWT.
    OpaqueToken,
    /// An opaque access token and no `expires_in`: nothing says when it
    /// expires.
    OpaqueNoExpiry,
    /// A normal 200 sent one byte per this interval.
    Trickle(Duration),
    /// A normal 200 whose body stops halfway: the connection is cut.
    CutMidBody,
    /// A normal 200 whose access token carries a terminal escape and a
    /// header line (`\x1b]0;…\x07\r\nX-Evil: 1`): no bearer token can.
    HostileToken,
    /// 400 `invalid_grant` whose `error_description` quotes the request:
    /// the client secret (plain, form-encoded, base64) and refresh token.
    QuotingInvalidGrant,
    /// This HTTP status with an empty body, as some servers refuse
    /// anything (a wrong secret, a revoked token, the wrong client-auth).
    Bare(u16),
    /// This status and JSON body, verbatim (a scripted answer: Altium's
    /// conformance vectors give theirs).
    Answer(u16, String),
}

/// A `--fault` or `--lifetime` value that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error(
        "unknown fault {0:?}: expected status:CODE, rate-limited:SECS, delay:DURATION, hang, \
         drop, rotate-then-drop, malformed-json, missing-access-token, missing-expires-in, \
         invalid-grant, invalid-client, invalid-scope, rate-limited-until:SECS, expires-in:N, \
         opaque-token, opaque-no-expiry, trickle:DURATION, cut-mid-body, hostile-token, \
         quoting-invalid-grant or bare:CODE"
    )]
    UnknownFault(String),
    #[error("{0:?} needs a value, as in {1}")]
    MissingValue(String, &'static str),
    #[error("bad number {0:?}")]
    BadNumber(String),
    #[error("bad duration {0:?}: use 10s, 5m, 1h or plain seconds")]
    BadDuration(String),
}

/// Parses `10s`, `5m`, `1h`, `1h30m`, `250ms` or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, ParseError> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let bad = || ParseError::BadDuration(text.to_owned());
    let signed: jiff::SignedDuration = text.parse().map_err(|_| bad())?;
    Duration::try_from(signed).map_err(|_| bad())
}

impl FromStr for Fault {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Fault, ParseError> {
        let (name, value) = match text.split_once(':') {
            Some((name, value)) => (name.trim(), Some(value.trim())),
            None => (text.trim(), None),
        };
        let need = |example: &'static str| {
            value.ok_or_else(|| ParseError::MissingValue(name.to_owned(), example))
        };
        Ok(match name.to_ascii_lowercase().replace('_', "-").as_str() {
            "status" => Fault::Status(number(need("status:503")?)?),
            "rate-limited" | "429" => Fault::RateLimited {
                retry_after_secs: number(need("rate-limited:5")?)?,
            },
            "delay" => Fault::Delay(parse_duration(need("delay:2s")?)?),
            "hang" => Fault::Hang,
            "drop" => Fault::Drop,
            "rotate-then-drop" => Fault::RotateThenDrop,
            "malformed-json" => Fault::MalformedJson,
            "missing-access-token" => Fault::MissingAccessToken,
            "missing-expires-in" => Fault::MissingExpiresIn,
            "invalid-grant" => Fault::InvalidGrant,
            "invalid-client" => Fault::InvalidClient,
            "invalid-scope" => Fault::InvalidScope,
            "rate-limited-until" => Fault::RateLimitedUntil {
                secs: number(need("rate-limited-until:5")?)?,
            },
            "expires-in" => Fault::ExpiresIn(number(need("expires-in:0")?)?),
            "opaque-token" => Fault::OpaqueToken,
            "opaque-no-expiry" => Fault::OpaqueNoExpiry,
            "trickle" => Fault::Trickle(parse_duration(need("trickle:200ms")?)?),
            "cut-mid-body" => Fault::CutMidBody,
            "hostile-token" => Fault::HostileToken,
            "quoting-invalid-grant" => Fault::QuotingInvalidGrant,
            "bare" => Fault::Bare(number(need("bare:400")?)?),
            _ => return Err(ParseError::UnknownFault(text.to_owned())),
        })
    }
}

fn number<T: FromStr>(text: &str) -> Result<T, ParseError> {
    text.parse()
        .map_err(|_| ParseError::BadNumber(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("42").unwrap(), Duration::from_secs(42));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn faults() {
        assert_eq!("status:503".parse::<Fault>().unwrap(), Fault::Status(503));
        assert_eq!(
            "rate-limited:7".parse::<Fault>().unwrap(),
            Fault::RateLimited {
                retry_after_secs: 7
            }
        );
        assert_eq!(
            "delay:2s".parse::<Fault>().unwrap(),
            Fault::Delay(Duration::from_secs(2))
        );
        assert_eq!(
            "rotate_then_drop".parse::<Fault>().unwrap(),
            Fault::RotateThenDrop
        );
        assert_eq!(
            "expires-in:-5".parse::<Fault>().unwrap(),
            Fault::ExpiresIn(-5)
        );
        assert_eq!(
            "trickle:100ms".parse::<Fault>().unwrap(),
            Fault::Trickle(Duration::from_millis(100))
        );
        assert!("status".parse::<Fault>().is_err());
        assert!("status:abc".parse::<Fault>().is_err());
        assert!("explode".parse::<Fault>().is_err());
    }
}
