//! OpenID Connect userinfo (Core §5.3): who signed in, asked once after an
//! Altium 365 sign-in so that `status` names the user (Altium's access
//! tokens carry only an opaque `sub`).

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};

use super::ProviderError;

/// The longest userinfo answer read.
const MAX_BODY: usize = 64 * 1024;

/// The claims `url` answers for `token`.
pub async fn claims(
    http: &reqwest::Client,
    url: &reqwest::Url,
    token: &SecretString,
) -> Result<BTreeMap<String, serde_json::Value>, ProviderError> {
    let response = http
        .get(url.clone())
        .bearer_auth(token.expose_secret())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| ProviderError::transient(super::send_error::describe_send_error(&e, url)))?;
    let status = response.status().as_u16();
    let body = crate::body::read_limited(response, MAX_BODY)
        .await
        .map_err(|_| ProviderError::transient("the userinfo answer was cut or too large"))?;
    if status != 200 {
        return Err(ProviderError::transient(format!(
            "the userinfo endpoint answered HTTP {status}"
        )));
    }
    serde_json::from_slice(&body)
        .map_err(|_| ProviderError::transient("the userinfo answer is not a JSON object"))
}

/// The friendliest printable name among `claims`: Altium's `username`,
/// then `preferred_username`, `email`, `name` and `sub`.
pub fn display(claims: &BTreeMap<String, serde_json::Value>) -> Option<String> {
    ["username", "preferred_username", "email", "name", "sub"]
        .iter()
        .filter_map(|key| claims.get(*key)?.as_str())
        .find(|v| !v.is_empty() && v.len() <= 200 && !v.chars().any(char::is_control))
        .map(a365_proto::visible)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_friendliest_name() {
        let claims: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(r#"{"sub":"u1","email":"a@b.c","username":"ann\u001b"}"#).unwrap();
        assert_eq!(
            display(&claims).as_deref(),
            Some("a@b.c"),
            "not one with a control"
        );
        let none: BTreeMap<String, serde_json::Value> = serde_json::from_str("{}").unwrap();
        assert_eq!(display(&none), None);
    }
}
