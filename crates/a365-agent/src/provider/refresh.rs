//! The `refresh` kind: client id + secret + a (one-time-use) refresh token.

use secrecy::{ExposeSecret, SecretString};

use super::oauth::{Call, Grant, post_form};
use super::{Fresh, ProviderError};

/// The secrets one exchange needs.
#[derive(Debug)]
pub struct RefreshCredential<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a SecretString,
    pub refresh_token: &'a SecretString,
}

/// `grant_type=refresh_token`. If the answer carries a new refresh token,
/// the presented one is dead: the caller must persist the new one first.
pub async fn exchange(
    call: Call<'_>,
    credential: &RefreshCredential<'_>,
    scopes: &[String],
    secure: bool,
) -> Result<Fresh, ProviderError> {
    let scope = scopes.join(" ");
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", credential.refresh_token.expose_secret()),
        ("client_id", credential.client_id),
        ("client_secret", credential.client_secret.expose_secret()),
    ];
    if !scope.is_empty() {
        form.push(("scope", &scope));
    }
    if secure {
        form.push(("secure", "1"));
    }
    post_form(call, Grant::RefreshToken, &form).await
}
