//! The `refresh` kind: client id + secret + a (one-time-use) refresh token.

use a365_proto::{ProfileSpec, Secrets};
use a365_store::Credential;
use secrecy::{ExposeSecret, SecretString};

use super::oauth::{Answer, Call, Client, Grant, post_form};
use super::{BadSecrets, Exchange, Obtained, Pending, Provider, ProviderError};

#[derive(Debug)]
pub struct Refresh;

impl Provider for Refresh {
    fn credential(
        &self,
        _name: &str,
        spec: &ProfileSpec,
        secrets: Secrets,
        now_ms: i64,
    ) -> Result<Credential, BadSecrets> {
        super::needs_client_id(spec)?;
        let (Some(secret), Some(rt)) = (secrets.client_secret, secrets.refresh_token) else {
            return Err(BadSecrets(
                "a refresh profile needs the client_secret and refresh_token secrets".into(),
            ));
        };
        if secrets.access_token.is_some() {
            return Err(BadSecrets(
                "a refresh profile takes client_secret and refresh_token, not access_token".into(),
            ));
        }
        let mut credential = super::new_credential(now_ms);
        credential.client_secret = Some(secret.into_inner());
        credential.refresh_token = Some(rt.into_inner());
        Ok(credential)
    }

    fn obtain<'a>(
        &'a self,
        exchange: Exchange<'a>,
        credential: &'a Credential,
    ) -> Pending<'a, Result<Obtained, ProviderError>> {
        Box::pin(async move {
            let secrets = RefreshCredential {
                client_id: exchange.client_id(),
                client_secret: Some(
                    credential
                        .client_secret
                        .as_ref()
                        .ok_or_else(super::missing)?,
                ),
                refresh_token: credential
                    .refresh_token
                    .as_ref()
                    .ok_or_else(super::missing)?,
            };
            // Altium Identity refuses a scope on a refresh (SPEC §5.3).
            let scopes = match exchange.endpoint.altium {
                true => Vec::new(),
                false => super::requested_scopes(exchange.spec),
            };
            self::exchange(exchange.call(credential), &secrets, &scopes)
                .await
                .map(Obtained::from)
        })
    }

    fn revoke<'a>(
        &'a self,
        exchange: Exchange<'a>,
        credential: &'a Credential,
    ) -> Pending<'a, super::Revocation> {
        Box::pin(revoke_refresh_token(exchange, credential))
    }

    fn reauth_advice(&self, name: &str, spec: &ProfileSpec) -> String {
        let how = super::new_credential_at(spec, "refresh token");
        format!("{how}, then run `a365 add {name} --kind refresh --replace …`")
    }
}

/// The secrets one exchange needs.
#[derive(Debug)]
pub struct RefreshCredential<'a> {
    pub client_id: &'a str,
    /// `None` for a public client.
    pub client_secret: Option<&'a SecretString>,
    pub refresh_token: &'a SecretString,
}

/// `grant_type=refresh_token`. If the answer carries a new refresh token,
/// the presented one is dead: the caller must persist the new one first.
pub async fn exchange(
    call: Call<'_>,
    credential: &RefreshCredential<'_>,
    scopes: &[String],
) -> Result<Answer, ProviderError> {
    let scope = scopes.join(" ");
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", credential.refresh_token.expose_secret()),
    ];
    if !scope.is_empty() {
        form.push(("scope", &scope));
    }
    let client = Client {
        id: credential.client_id,
        secret: credential.client_secret,
    };
    post_form(call, Grant::RefreshToken, client, &form).await
}

/// Revokes the profile's refresh token at its revocation endpoint (RFC
/// 7009), authenticating as its token requests do.
pub async fn revoke_refresh_token(
    exchange: Exchange<'_>,
    credential: &Credential,
) -> super::Revocation {
    use super::Revocation;
    let Some(token) = &credential.refresh_token else {
        return Revocation::NotNeeded;
    };
    let Some(url) = &exchange.endpoint.revocation_url else {
        return Revocation::Left(
            "its refresh token stays valid at the provider: no revocation endpoint is known \
             (give one with `a365 add --revocation-url`); revoke it in the provider's console"
                .into(),
        );
    };
    let host = url.host_str().unwrap_or("the provider");
    let client = Client {
        id: exchange.client_id(),
        secret: credential.client_secret.as_ref(),
    };
    match super::oauth::revoke(exchange.call(credential), url, client, token).await {
        Ok(()) => Revocation::Done(format!("its refresh token was revoked at {host}")),
        Err(e) => Revocation::Left(format!(
            "revoking its refresh token at {host} failed ({e}): it stays valid there until it \
             expires or you revoke it in the provider's console"
        )),
    }
}
