//! The `client-credentials` kind (Nexar supply): client id and secret, no
//! refresh token; a new token is simply asked for again.

use secrecy::{ExposeSecret, SecretString};

use super::oauth::{Call, Grant, post_form};
use super::{Fresh, ProviderError};

/// `grant_type=client_credentials`. Nexar allows 2 token requests a second
/// and 200 per 15 minutes: the caller asks only when no held token will do.
pub async fn exchange(
    call: Call<'_>,
    client_id: &str,
    client_secret: &SecretString,
    scopes: &[String],
    secure: bool,
) -> Result<Fresh, ProviderError> {
    let scope = scopes.join(" ");
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("client_secret", client_secret.expose_secret()),
    ];
    if !scope.is_empty() {
        form.push(("scope", &scope));
    }
    if secure {
        form.push(("secure", "1"));
    }
    post_form(call, Grant::ClientCredentials, &form).await
}
