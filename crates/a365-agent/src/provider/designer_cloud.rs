//! The `designer-cloud` kind: one v4 API access token that renews itself.
//! The current token creates its successor (`POST /v4/apiAccessTokens`);
//! the caller stores the new one durably, and only then deletes the old one.

use a365_token::designer_cloud::failure;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};

use super::ProviderError;
use super::oauth::{describe_send_error, read_body, retry_after};

/// The answer is parsed in `a365-token`: pure, and built by the fuzz
/// target `token_response` without the agent.
pub use a365_token::designer_cloud::{Renewed, parse_created};

/// Creates the successor of `current`, living `lifetime_secs`.
pub async fn renew(
    http: &reqwest::Client,
    tokens_url: &reqwest::Url,
    current: &SecretString,
    lifetime_secs: u64,
    now_ms: i64,
) -> Result<Renewed, ProviderError> {
    let body = serde_json::json!({
        "lifetimeSeconds": lifetime_secs,
        "description": "a365 renewal",
    });
    let response = http
        .post(tokens_url.clone())
        .bearer_auth(current.expose_secret())
        .json(&body)
        .send()
        .await
        .map_err(|e| ProviderError::transient(describe_send_error(&e, tokens_url)))?;
    let status = response.status();
    let wait = retry_after(response.headers(), now_ms);
    let body = read_body(response).await?;
    parse_created(status.as_u16(), wait, &body)
}

/// Deletes a replaced token. A token already gone counts as deleted.
pub async fn delete(
    http: &reqwest::Client,
    tokens_url: &reqwest::Url,
    current: &SecretString,
    token_id: &str,
) -> Result<(), ProviderError> {
    let mut url = tokens_url.clone();
    url.path_segments_mut()
        .map_err(|()| ProviderError::Rejected("the base_url cannot take a path".into()))?
        .push(token_id);
    let response = http
        .delete(url)
        .bearer_auth(current.expose_secret())
        .send()
        .await
        .map_err(|e| ProviderError::transient(describe_send_error(&e, tokens_url)))?;
    let status = response.status();
    let _ = read_body(response).await;
    match status {
        s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
        s => Err(failure(s.as_u16(), None, "delete the replaced token")),
    }
}
