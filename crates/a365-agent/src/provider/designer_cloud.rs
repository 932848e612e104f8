//! The `designer-cloud` kind: one v4 API access token that renews itself.
//! The current token creates its successor (`POST /v4/apiAccessTokens`);
//! the caller stores the new one durably, and only then deletes the old one.
//!
//! A successor created but never saved (the agent crashed, or the answer
//! was lost) would live on unseen. So before each create a random tag is
//! saved, the new token is described `a365:<profile> #<tag>`, and after the
//! save the tokens so described, except the current one, are deleted. The
//! tag is this credential's alone: a token another machine created for a
//! profile of the same name is never touched.

use a365_proto::{ProfileSpec, Secrets};
use a365_store::Credential;
use a365_token::designer_cloud::failure;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};

use super::oauth::{read_body, retry_after};
use super::send_error::describe_send_error;
use super::{BadSecrets, Exchange, Obtained, Pending, Provider, ProviderError, Restore};
use crate::endpoint::{Endpoint, EndpointError, parse_url};

/// Lifetime of a renewed token when the profile sets none.
pub const DEFAULT_RENEW_LIFETIME_SECS: u64 = 30 * 24 * 3600;

#[derive(Debug)]
pub struct DesignerCloud;

impl Provider for DesignerCloud {
    fn credential(
        &self,
        _name: &str,
        _spec: &ProfileSpec,
        secrets: Secrets,
        now_ms: i64,
    ) -> Result<Credential, BadSecrets> {
        let Some(token) = secrets.access_token else {
            return Err(BadSecrets(
                "a designer-cloud profile needs the API token as its access_token secret".into(),
            ));
        };
        if secrets.client_secret.is_some() || secrets.refresh_token.is_some() {
            return Err(BadSecrets(
                "a designer-cloud profile takes only an access_token secret".into(),
            ));
        }
        let token = token.into_inner();
        super::static_token::check_b64token(&token)?;
        let mut credential = super::new_credential(now_ms);
        credential.access_token = Some(token);
        Ok(credential)
    }

    /// The first API token, created with the user's name and password
    /// (HTTP Basic, once); the password is dropped here, never stored.
    fn credential_from_login<'a>(
        &'a self,
        exchange: Exchange<'a>,
        secrets: Secrets,
    ) -> Pending<'a, Result<Credential, ProviderError>> {
        Box::pin(async move {
            let (Some(username), Some(password)) = (secrets.username, secrets.password) else {
                return Err(ProviderError::Rejected(
                    "a first token needs both a username and a password".into(),
                ));
            };
            let password = password.into_inner();
            let auth = Auth::Login {
                username: &username,
                password: &password,
            };
            let lifetime = exchange
                .spec
                .renew_lifetime_secs
                .unwrap_or(DEFAULT_RENEW_LIFETIME_SECS);
            let created = create(exchange, auth, lifetime, None).await?;
            let mut credential = super::new_credential(exchange.now_ms);
            credential.access_token = Some(created.token);
            credential.token_id = Some(created.token_id);
            credential.access_expires_at_ms = created.expires_at_ms;
            Ok(credential)
        })
    }

    /// `{base_url}/v4/apiAccessTokens` of its instance; no realm, token URL
    /// or client id.
    fn endpoint(&self, spec: &ProfileSpec) -> Result<Option<Endpoint>, EndpointError> {
        if spec.realm.is_some() || spec.token_url.is_some() || spec.client_id.is_some() {
            return Err(EndpointError(
                "a designer-cloud profile takes a base_url (its instance), not a realm, token_url \
                 or client id"
                    .into(),
            ));
        }
        crate::endpoint::reject_login_fields(spec)?;
        crate::endpoint::reject_revocation_url(spec)?;
        let base = spec.base_url.as_deref().ok_or_else(|| {
            EndpointError(
                "a designer-cloud profile needs the base_url of its instance (--base-url)".into(),
            )
        })?;
        let mut base = parse_url("base_url", base)?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let token_url = base
            .join("v4/apiAccessTokens")
            .map_err(|e| EndpointError(format!("base_url: {e}")))?;
        Ok(Some(Endpoint {
            token_url,
            secure: false,
            altium: false,
            login: None,
            revocation_url: None,
            introspection_url: None,
        }))
    }

    /// A token of unknown id and expiry is renewed at once, so that from
    /// then on the agent knows both.
    fn restore(&self, _name: &str, credential: &Credential) -> Restore {
        match credential.token_id {
            None => Restore::RenewNow,
            Some(_) => Restore::WhileValid,
        }
    }

    fn obtain<'a>(
        &'a self,
        exchange: Exchange<'a>,
        credential: &'a Credential,
    ) -> Pending<'a, Result<Obtained, ProviderError>> {
        Box::pin(async move {
            let current = credential
                .access_token
                .as_ref()
                .ok_or_else(super::missing)?;
            let lifetime = exchange
                .spec
                .renew_lifetime_secs
                .unwrap_or(DEFAULT_RENEW_LIFETIME_SECS);
            let tag = credential.creating.as_deref();
            let renewed = create(exchange, Auth::Token(current), lifetime, tag).await?;
            Ok(Obtained {
                access_token: renewed.token,
                expires_at_ms: renewed.expires_at_ms,
                scopes: Vec::new(),
                refresh_token: None,
                token_id: Some(renewed.token_id),
                client_auth: None,
                assumed_lifetime_s: None,
            })
        })
    }

    /// Tags the token about to be created (a tag left by an interrupted
    /// create is kept, so one cleanup finds the tokens of both).
    fn before_obtain(&self, credential: &Credential) -> Option<Credential> {
        if credential.creating.is_some() {
            return None;
        }
        let mut marked = credential.clone();
        marked.creating = Some(format!("{:016x}", fastrand::u64(..)));
        Some(marked)
    }

    fn has_work_after_save(&self, credential: &Credential) -> bool {
        !credential.retired_token_ids.is_empty() || credential.creating.is_some()
    }

    /// Deletes the tokens this one replaced, each only once its successor
    /// is saved; one that cannot be deleted now stays listed (and saved)
    /// for a later attempt. Then deletes the tagged tokens no one saved.
    fn after_save<'a>(
        &'a self,
        exchange: Exchange<'a>,
        name: &'a str,
        credential: &'a mut Credential,
    ) -> Pending<'a, super::AfterSave> {
        Box::pin(async move {
            let mut outcome = super::AfterSave::default();
            let Some(current) = credential.access_token.clone() else {
                return outcome;
            };
            for id in credential.retired_token_ids.clone() {
                match delete(exchange, &current, &id).await {
                    Ok(()) => {
                        tracing::info!(profile = %name, token_id = %id, "replaced token deleted");
                        credential.retired_token_ids.retain(|r| *r != id);
                        outcome.changed = true;
                    }
                    Err(e) => {
                        tracing::warn!(
                            profile = %name,
                            token_id = %id,
                            "could not delete the replaced token (retried later): {e}"
                        );
                        outcome.unfinished = true;
                    }
                }
            }
            if let Some(tag) = credential.creating.clone() {
                match delete_unsaved(exchange, credential, &current, &tag).await {
                    Ok(()) => {
                        credential.creating = None;
                        outcome.changed = true;
                    }
                    Err(ProviderError::Rejected(why)) => {
                        // A deployment without the listing: retrying cannot help.
                        tracing::warn!(
                            profile = %name,
                            "cannot look for a token an interrupted renewal may have left \
                             (described \"{}\"): {why}",
                            description(name, Some(&tag))
                        );
                        credential.creating = None;
                        outcome.changed = true;
                    }
                    Err(e) => {
                        tracing::warn!(
                            profile = %name,
                            "could not look for tokens left by an interrupted renewal (retried \
                             later): {e}"
                        );
                        outcome.unfinished = true;
                    }
                }
            }
            outcome
        })
    }

    /// Deletes the tokens it replaced and any an interrupted renewal left,
    /// then the current one, each with the current token (which may delete
    /// itself).
    fn revoke<'a>(
        &'a self,
        exchange: Exchange<'a>,
        credential: &'a Credential,
    ) -> Pending<'a, super::Revocation> {
        use super::Revocation;
        Box::pin(async move {
            let (Some(current), Some(current_id)) =
                (&credential.access_token, &credential.token_id)
            else {
                return Revocation::Left(
                    "the API token was never renewed, so its id is unknown: delete it in \
                     Designer Cloud"
                        .into(),
                );
            };
            // Before the current token deletes itself, which ends the listing.
            let unsaved = match &credential.creating {
                Some(tag) => delete_unsaved(exchange, credential, current, tag)
                    .await
                    .map_err(|e| (e, description(exchange.profile, Some(tag)))),
                None => Ok(()),
            };
            let ids = credential.retired_token_ids.iter().chain([current_id]);
            for id in ids {
                if let Err(e) = delete(exchange, current, id).await {
                    return Revocation::Left(format!(
                        "deleting API token {id} failed ({e}): delete it in Designer Cloud"
                    ));
                }
            }
            match unsaved {
                Ok(()) => Revocation::Done(format!(
                    "its API token {current_id} was deleted in Designer Cloud"
                )),
                Err((e, described)) => Revocation::Left(format!(
                    "its API token {current_id} was deleted, but looking for one an interrupted \
                     renewal left failed ({e}): delete any token described \"{described}\" in \
                     Designer Cloud"
                )),
            }
        })
    }

    fn reauth_advice(&self, name: &str, _spec: &ProfileSpec) -> String {
        format!(
            "Create a new API token in Designer Cloud, then run \
             `a365 add {name} --kind designer-cloud --replace …`"
        )
    }
}

/// The answer is parsed in `a365-token`: pure, and built by the fuzz
/// target `token_response` without the agent.
pub use a365_token::designer_cloud::{Renewed, parse_created, parse_listed};

/// How a create authenticates: with the current token (a renewal), or
/// once with the user's name and password (the first token).
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    Token(&'a SecretString),
    Login {
        username: &'a str,
        password: &'a SecretString,
    },
}

/// `a365:<profile>`, so that our tokens can be told from the user's own,
/// then ` #<tag>` for a renewal's.
fn description(profile: &str, tag: Option<&str>) -> String {
    match tag {
        Some(tag) => format!("a365:{profile} #{tag}"),
        None => format!("a365:{profile}"),
    }
}

/// Creates a token living `lifetime_secs`, described by [`description`],
/// with the profile's headers.
pub async fn create(
    exchange: Exchange<'_>,
    auth: Auth<'_>,
    lifetime_secs: u64,
    tag: Option<&str>,
) -> Result<Renewed, ProviderError> {
    let url = &exchange.endpoint.token_url;
    let login = matches!(auth, Auth::Login { .. });
    let body = serde_json::json!({
        "lifetimeSeconds": lifetime_secs,
        "description": description(exchange.profile, tag),
    });
    let request = with_headers(exchange, exchange.http.post(url.clone()));
    let request = match auth {
        Auth::Token(current) => request.bearer_auth(current.expose_secret()),
        Auth::Login { username, password } => request.header(
            reqwest::header::AUTHORIZATION,
            super::client_auth::basic_login(username, password),
        ),
    };
    let (status, wait, body) = send(exchange, request.json(&body)).await?;
    if login && status == StatusCode::UNAUTHORIZED {
        return Err(ProviderError::Dead(
            "Designer Cloud refused the username or password (HTTP 401)".into(),
        ));
    }
    parse_created(status.as_u16(), wait, &body)
}

/// Sends a request to the instance: its status, the wait a `Retry-After`
/// asked for, and its body.
async fn send(
    exchange: Exchange<'_>,
    request: reqwest::RequestBuilder,
) -> Result<
    (
        StatusCode,
        Option<std::time::Duration>,
        zeroize::Zeroizing<Vec<u8>>,
    ),
    ProviderError,
> {
    let url = &exchange.endpoint.token_url;
    let response = request
        .send()
        .await
        .map_err(|e| ProviderError::transient(describe_send_error(&e, url)))?;
    let status = response.status();
    let wait = retry_after(response.headers(), exchange.now_ms);
    Ok((status, wait, read_body(response).await?))
}

/// The profile's own headers (`x-alteryx-workspace-gid`, …).
fn with_headers(
    exchange: Exchange<'_>,
    mut request: reqwest::RequestBuilder,
) -> reqwest::RequestBuilder {
    for (name, value) in &exchange.spec.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    request
}

/// Deletes a replaced token. A token already gone counts as deleted.
pub async fn delete(
    exchange: Exchange<'_>,
    current: &SecretString,
    token_id: &str,
) -> Result<(), ProviderError> {
    let tokens_url = &exchange.endpoint.token_url;
    let mut url = tokens_url.clone();
    url.path_segments_mut()
        .map_err(|()| ProviderError::Rejected("the base_url cannot take a path".into()))?
        .push(token_id);
    let response = with_headers(exchange, exchange.http.delete(url))
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

/// Deletes every token described with `tag` except the saved one: those a
/// create made that never reached the store.
async fn delete_unsaved(
    exchange: Exchange<'_>,
    credential: &Credential,
    current: &SecretString,
    tag: &str,
) -> Result<(), ProviderError> {
    let url = &exchange.endpoint.token_url;
    let request = with_headers(exchange, exchange.http.get(url.clone()));
    let (status, wait, body) = send(exchange, request.bearer_auth(current.expose_secret())).await?;
    let tagged = parse_listed(
        status.as_u16(),
        wait,
        &body,
        &description(exchange.profile, Some(tag)),
    )?;
    for id in tagged {
        if credential.token_id.as_deref() == Some(id.as_str()) {
            continue;
        }
        delete(exchange, current, &id).await?;
        tracing::warn!(
            profile = %exchange.profile,
            token_id = %id,
            "deleted a token an interrupted renewal had created but not saved"
        );
    }
    Ok(())
}
