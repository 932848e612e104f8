//! The `static` kind: one long-lived bearer token, served as is.

use crate::jwt;

/// Expiry (UTC epoch ms) and scopes of a static token, read from its JWT
/// claims; an opaque token has neither.
pub fn describe(token: &str) -> (Option<i64>, Vec<String>) {
    match jwt::claims(token) {
        Some(claims) => (claims.exp.map(|s| s.saturating_mul(1000)), claims.scopes),
        None => (None, Vec::new()),
    }
}
