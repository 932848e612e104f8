//! The `client-credentials` kind (Nexar supply): client id and secret, no
//! refresh token; a new token is simply asked for again.

use a365_proto::{ProfileSpec, Secrets};
use a365_store::Credential;
use secrecy::SecretString;

use super::oauth::{Answer, Call, Client, Grant, post_form};
use super::{BadSecrets, Exchange, Obtained, Pending, Provider, ProviderError};

#[derive(Debug)]
pub struct ClientCredentials;

/// Nexar's supply API scope, asked for by client-credentials profiles on
/// the `nexar` realm.
const NEXAR_SUPPLY_SCOPES: &[&str] = &["supply.domain"];

impl Provider for ClientCredentials {
    fn default_scopes(&self, spec: &ProfileSpec) -> &'static [&'static str] {
        match spec.realm.as_deref() {
            Some("nexar") => NEXAR_SUPPLY_SCOPES,
            _ => &[],
        }
    }

    /// No refresh token: nothing to revoke when the profile is removed.
    fn endpoint(
        &self,
        spec: &ProfileSpec,
    ) -> Result<Option<crate::endpoint::Endpoint>, crate::endpoint::EndpointError> {
        crate::endpoint::reject_revocation_url(spec)?;
        crate::endpoint::oauth(spec)
    }

    fn credential(
        &self,
        _name: &str,
        spec: &ProfileSpec,
        secrets: Secrets,
        now_ms: i64,
    ) -> Result<Credential, BadSecrets> {
        super::client_secret_only(spec, secrets, true, now_ms)
    }

    fn obtain<'a>(
        &'a self,
        exchange: Exchange<'a>,
        credential: &'a Credential,
    ) -> Pending<'a, Result<Obtained, ProviderError>> {
        Box::pin(async move {
            let secret = credential
                .client_secret
                .as_ref()
                .ok_or_else(super::missing)?;
            let scopes = super::requested_scopes(exchange.spec);
            self::exchange(
                exchange.call(credential),
                exchange.client_id(),
                secret,
                &scopes,
            )
            .await
            .map(Obtained::from)
        })
    }

    fn reauth_advice(&self, name: &str, spec: &ProfileSpec) -> String {
        use crate::endpoint::Issuer;
        let how = match crate::endpoint::issuer(spec) {
            Issuer::Nexar => {
                "Check the app's client id and secret (Nexar portal → your app → Authorization)"
                    .to_owned()
            }
            Issuer::Altium => {
                "Check the client id and secret (Altium 365: Admin → Developer)".to_owned()
            }
            Issuer::Other(host) if host.is_empty() => {
                "Check the client id and secret with the provider".to_owned()
            }
            Issuer::Other(host) => {
                format!("Check the client id and secret registered at {host}")
            }
        };
        format!("{how}, then run `a365 add {name} --kind client-credentials --replace …`")
    }
}

/// `grant_type=client_credentials`. Nexar allows 2 token requests a second
/// and 200 per 15 minutes: the caller asks only when no held token will do.
pub async fn exchange(
    call: Call<'_>,
    client_id: &str,
    client_secret: &SecretString,
    scopes: &[String],
) -> Result<Answer, ProviderError> {
    let scope = scopes.join(" ");
    let mut form = vec![("grant_type", "client_credentials")];
    if !scope.is_empty() {
        form.push(("scope", &scope));
    }
    let client = Client {
        id: client_id,
        secret: Some(client_secret),
    };
    post_form(call, Grant::ClientCredentials, client, &form).await
}
