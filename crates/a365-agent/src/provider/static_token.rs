//! The `static` kind: one long-lived bearer token, served as is.

use crate::jwt;

/// Expiry (UTC epoch ms) and scopes of a static token, read from its JWT
/// claims; an opaque token has neither.
pub fn describe(token: &str) -> (Option<i64>, Vec<String>) {
    match jwt::claims(token) {
        Some(claims) => (claims.exp_ms(), claims.scopes),
        None => (None, Vec::new()),
    }
}
