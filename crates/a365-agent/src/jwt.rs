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
    /// Expiry, UTC epoch seconds.
    pub exp: Option<i64>,
    pub iat: Option<i64>,
    pub scopes: Vec<String>,
}

#[derive(Deserialize)]
struct RawClaims {
    exp: Option<f64>,
    iat: Option<f64>,
    #[serde(default)]
    scope: Option<ScopeClaim>,
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
    Some(Claims {
        exp: raw.exp.map(|v| v as i64),
        iat: raw.iat.map(|v| v as i64),
        scopes: match raw.scope {
            Some(ScopeClaim::List(list)) => list,
            Some(ScopeClaim::Text(text)) => split_scopes(&text),
            None => Vec::new(),
        },
    })
}

/// Splits an RFC 6749 scope string (space-separated).
pub fn split_scopes(text: &str) -> Vec<String> {
    text.split_ascii_whitespace().map(str::to_owned).collect()
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

    #[test]
    fn opaque_tokens_have_no_claims() {
        assert_eq!(claims("opaque-token"), None);
        assert_eq!(claims("a.b"), None);
        assert_eq!(claims("a.!!!.c"), None);
        assert_eq!(claims(&jwt("not json")), None);
        assert_eq!(claims("a.b.c.d"), None);
    }
}
