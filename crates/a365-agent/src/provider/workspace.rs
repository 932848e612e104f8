//! Altium 365 workspace tokens (altium-auth SPEC §5.2, §6): the token of
//! a sign-in is exchanged (RFC 8693) for one scoped to a workspace, at
//! the token endpoint of the workspace's cloud. A workspace in Altium's
//! Gov Cloud is exchanged at the Gov endpoint with `secure=1` (the
//! Commercial→Gov bridge); `call` carries both.

use secrecy::{ExposeSecret, SecretString};

use super::ProviderError;
use super::oauth::{Answer, Call, Client, Grant, post_form};

/// RFC 8693's grant type and its token type for an access token.
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The scope of a workspace's token.
pub fn workspace_scope(workspace_id: &str) -> String {
    format!("a365:workspace:{workspace_id}")
}

/// Exchanges `subject` (a sign-in's access token) for a token of
/// `workspace_id`, with the profile's `scopes` too (`offline_access` for
/// a refresh token of its own).
pub async fn exchange(
    call: Call<'_>,
    client: Client<'_>,
    subject: &SecretString,
    workspace_id: &str,
    scopes: &[String],
) -> Result<Answer, ProviderError> {
    let scope = std::iter::once(workspace_scope(workspace_id))
        .chain(scopes.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", subject.expose_secret()),
        ("subject_token_type", ACCESS_TOKEN_TYPE),
        ("scope", scope.as_str()),
    ];
    post_form(call, Grant::TokenExchange, client, &form)
        .await
        .map_err(|e| match e {
            ProviderError::Dead(message) if message.contains("access_denied") => {
                ProviderError::Dead(format!(
                    "{message}. A workspace is exchanged only on its own Altium cloud (Gov Cloud \
                     or commercial): check that the workspace is the one meant, and its location"
                ))
            }
            other => other,
        })
}
