//! Reading (never verifying) the claims of a JWT access token: the agent
//! only needs to know when it expires and what it may do.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;
use zeroize::Zeroizing;

const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The claims a365 cares about.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims {
    /// Expiry, UTC epoch seconds, within the years -9999 to 9999 (see
    /// `epoch_seconds`).
    pub exp: Option<i64>,
    pub iat: Option<i64>,
    pub scopes: Vec<String>,
    /// Who the token is for, to show a person: `preferred_username`, else
    /// `email`, else `sub`; printable text only.
    pub account: Option<String>,
    /// An OpenID id_token's `nonce` (OpenID Connect Core §3.1.3.7).
    pub nonce: Option<String>,
    /// `iss`: which token service made it.
    pub issuer: Option<String>,
    /// Altium's `secure` claim: a token of its Gov Cloud.
    pub secure: bool,
}

impl Claims {
    /// The expiry in UTC epoch milliseconds. `exp` is clamped, so neither
    /// this nor the agent's `exp_ms - now` overflows.
    pub fn exp_ms(&self) -> Option<i64> {
        self.exp.map(|s| s.saturating_mul(1000))
    }
}

#[derive(Deserialize)]
struct RawClaims {
    exp: Option<f64>,
    iat: Option<f64>,
    #[serde(default)]
    scope: Option<ScopeClaim>,
    preferred_username: Option<serde_json::Value>,
    email: Option<serde_json::Value>,
    sub: Option<serde_json::Value>,
    nonce: Option<serde_json::Value>,
    iss: Option<serde_json::Value>,
    secure: Option<serde_json::Value>,
}

/// `scope` is an array in Altium's JWTs and a space-separated string elsewhere.
#[derive(Deserialize)]
#[serde(untagged)]
enum ScopeClaim {
    List(Vec<String>),
    Text(String),
}

/// The claims of `token`, or `None` when it is not a JWT (an opaque token).
pub fn claims(token: &str) -> Option<Claims> {
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = Zeroizing::new(URL_SAFE_LENIENT.decode(payload).ok()?);
    let raw: RawClaims = serde_json::from_slice(&bytes).ok()?;
    let account = [&raw.preferred_username, &raw.email, &raw.sub]
        .into_iter()
        .find_map(|v| match v {
            Some(serde_json::Value::String(s)) if printable(s) => Some(s.clone()),
            _ => None,
        });
    let nonce = match raw.nonce {
        Some(serde_json::Value::String(s)) => Some(s),
        _ => None,
    };
    let issuer = match raw.iss {
        Some(serde_json::Value::String(s)) => Some(s),
        _ => None,
    };
    // "1" as Altium writes it; `true` and 1 mean the same.
    let secure = match raw.secure {
        Some(serde_json::Value::String(s)) => s == "1" || s.eq_ignore_ascii_case("true"),
        Some(serde_json::Value::Bool(b)) => b,
        Some(serde_json::Value::Number(n)) => n.as_u64() == Some(1),
        _ => false,
    };
    Some(Claims {
        account,
        nonce,
        issuer,
        secure,
        exp: raw.exp.map(epoch_seconds),
        iat: raw.iat.map(epoch_seconds),
        scopes: match raw.scope {
            Some(ScopeClaim::List(list)) => {
                list.into_iter().filter(|s| is_scope_token(s)).collect()
            }
            Some(ScopeClaim::Text(text)) => split_scopes(&text),
            None => Vec::new(),
        },
    })
}

/// A NumericDate clamped to the times jiff represents (years -9999 to
/// 9999): the agent computes `exp * 1000 - now` unchecked, which an `exp`
/// of -1e300 overflowed (the fuzz target `token_response` checks it). A far
/// past stays expired, a far future stays valid.
fn epoch_seconds(v: f64) -> i64 {
    (v as i64).clamp(
        jiff::Timestamp::MIN.as_second(),
        jiff::Timestamp::MAX.as_second(),
    )
}

/// Splits an RFC 6749 scope string (space-separated), keeping only valid
/// scope tokens.
pub fn split_scopes(text: &str) -> Vec<String> {
    text.split_ascii_whitespace()
        .filter(|s| is_scope_token(s))
        .map(str::to_owned)
        .collect()
}

/// Short text without control characters, safe to show.
fn printable(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control)
}

/// RFC 6749 §3.3: a scope token is printable ASCII but `"` and `\`. What a
/// token server sends beyond that (control characters, escape sequences
/// meant for the terminal that prints `status`) is dropped here, once.
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

/// The workspace id from an `a365:workspace:{uuid}` scope.
pub fn workspace(scopes: &[String]) -> Option<String> {
    scopes
        .iter()
        .find_map(|s| s.strip_prefix("a365:workspace:"))
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let enc = |s: &str| URL_SAFE_LENIENT.encode(s.as_bytes());
        format!("{}.{}.c2ln", enc(r#"{"alg":"RS256"}"#), enc(payload))
    }

    #[test]
    fn the_account_is_the_friendliest_printable_name() {
        let account = |payload: &str| claims(&jwt(payload)).unwrap().account;
        assert_eq!(
            account(r#"{"sub":"u1","email":"a@b.c","preferred_username":"ann"}"#),
            Some("ann".into())
        );
        assert_eq!(
            account(r#"{"sub":"u1","email":"a@b.c"}"#),
            Some("a@b.c".into())
        );
        assert_eq!(account(r#"{"sub":"u1"}"#), Some("u1".into()));
        assert_eq!(account(r#"{"sub":"u\u001b[2J","email":7}"#), None);
        assert_eq!(account(r#"{}"#), None);
    }

    #[test]
    fn scopes_with_control_characters_are_dropped_at_parse_time() {
        let c = claims(&jwt(
            r#"{"scope":["openid","evil\u001b]0;pwned\u0007","a365:workspace:\u001b[2J","ok"]}"#,
        ))
        .unwrap();
        assert_eq!(c.scopes, ["openid", "ok"]);
        assert_eq!(workspace(&c.scopes), None);
        assert_eq!(
            split_scopes("a \u{1b}[31mred b\u{9b}2J c\"q d\\e f"),
            ["a", "f"]
        );
        assert!(is_scope_token("a365:design.read"));
        assert!(!is_scope_token(""));
    }

    #[test]
    fn reads_exp_and_array_scopes() {
        let c = claims(&jwt(
            r#"{"exp":1900000000,"iat":1899996400,"scope":["openid","a365:workspace:abc-1"]}"#,
        ))
        .unwrap();
        assert_eq!(c.exp, Some(1_900_000_000));
        assert_eq!(c.iat, Some(1_899_996_400));
        assert_eq!(workspace(&c.scopes).as_deref(), Some("abc-1"));
    }

    #[test]
    fn reads_string_scopes_and_missing_claims() {
        let c = claims(&jwt(r#"{"scope":"supply.domain design.read"}"#)).unwrap();
        assert_eq!(c.exp, None);
        assert_eq!(c.scopes, ["supply.domain", "design.read"]);
        assert_eq!(workspace(&c.scopes), None);
    }

    /// Regression: an absurd `exp` gave `i64::MIN` seconds, and the agent's
    /// `exp * 1000 - now` overflowed.
    #[test]
    fn absurd_times_are_clamped() {
        let past = claims(&jwt(r#"{"exp":-1e300,"iat":-9.3e18}"#)).unwrap();
        assert_eq!(past.exp, Some(jiff::Timestamp::MIN.as_second()));
        assert_eq!(past.iat, Some(jiff::Timestamp::MIN.as_second()));
        let now_ms = 1_800_000_000_000_i64;
        let exp_ms = past.exp_ms().unwrap();
        assert!(exp_ms.checked_sub(now_ms).is_some_and(|left| left < 0));
        let future = claims(&jwt(r#"{"exp":1e300}"#)).unwrap();
        assert_eq!(future.exp, Some(jiff::Timestamp::MAX.as_second()));
        assert!(future.exp.unwrap() * 1000 > now_ms);
        let normal = claims(&jwt(r#"{"exp":1900000000.9}"#)).unwrap();
        assert_eq!(normal.exp, Some(1_900_000_000));
    }

    #[test]
    fn opaque_tokens_have_no_claims() {
        assert_eq!(claims("opaque-token"), None);
        assert_eq!(claims("a.b"), None);
        assert_eq!(claims("a.!!!.c"), None);
        assert_eq!(claims(&jwt("not json")), None);
        assert_eq!(claims("a.b.c.d"), None);
    }
}
