//! Providers turn a stored credential into a fresh access token. Each kind
//! of credential lives in one file here and implements [`Provider`]: the
//! secrets it needs, where its requests go, the exchange, what follows a
//! save, and what to tell the user when the credential dies. They know
//! nothing of sockets or scheduling.
//!
//! A new kind is one file and one line in [`of`].

pub mod authorization_code;
pub mod client_auth;
pub mod client_credentials;
pub mod designer_cloud;
pub mod oauth;
pub mod refresh;
pub mod send_error;
pub mod static_token;
pub mod userinfo;
pub mod workspace;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use a365_proto::{Kind, ProfileSpec, Secrets};
use a365_store::Credential;
use secrecy::SecretString;

use crate::endpoint::{Endpoint, EndpointError, LoginEndpoint};

/// What a provider's call ends in. Defined in `a365-token`, whose parsers
/// return them.
pub use a365_token::{Fresh, ProviderError};

/// The provider of each kind: the one table of kinds.
pub fn of(kind: Kind) -> &'static dyn Provider {
    match kind {
        Kind::Static => &static_token::Static,
        Kind::Refresh => &refresh::Refresh,
        Kind::ClientCredentials => &client_credentials::ClientCredentials,
        Kind::AuthorizationCode => &authorization_code::AuthorizationCode,
        Kind::DesignerCloud => &designer_cloud::DesignerCloud,
    }
}

/// A future a provider returns; boxed, so that [`Provider`] can be a
/// trait object and an idle profile's task stays small.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a browser login (PKCE and a loopback redirect) needs from its
/// kind; the agent's `login` holds the redirect and the user's answer.
pub trait BrowserLogin: Sync {
    /// The URL the user opens.
    fn authorize_url(&self, spec: &ProfileSpec, login: &LoginEndpoint, pkce: &Pkce)
    -> reqwest::Url;

    /// Redeems the code the redirect brought.
    fn redeem<'a>(
        &'a self,
        call: oauth::Call<'a>,
        spec: &'a ProfileSpec,
        client_secret: Option<&'a SecretString>,
        code: &'a str,
        redirect_uri: &'a reqwest::Url,
        pkce: &'a Pkce,
    ) -> Pending<'a, Result<oauth::Answer, ProviderError>>;

    /// Whether the login asked for a refresh token (the advice differs
    /// when none came).
    fn asks_for_refresh(&self, spec: &ProfileSpec) -> bool;
}

pub use authorization_code::Pkce;
pub use client_auth::{client_auth, learned_client_auth};

/// Asks the profile's introspection endpoint (RFC 7662) whether the
/// refresh token of `credential` is still active; `None` when there is
/// no endpoint to ask (or no refresh token).
pub fn still_active<'a>(
    exchange: Exchange<'a>,
    credential: &'a Credential,
) -> Option<Pending<'a, Result<bool, ProviderError>>> {
    let url = exchange.endpoint.introspection_url.as_ref()?;
    let token = credential.refresh_token.as_ref()?;
    let client = oauth::Client {
        id: exchange.client_id(),
        secret: credential.client_secret.as_ref(),
    };
    Some(Box::pin(oauth::introspect(
        exchange.call(credential),
        url,
        client,
        token,
    )))
}

/// Secrets sent with `a365 add` that do not fit the kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadSecrets(pub String);

/// What one exchange may use.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    /// The profile's name (Designer Cloud tags its tokens with it).
    pub profile: &'a str,
    pub http: &'a reqwest::Client,
    pub endpoint: &'a Endpoint,
    pub spec: &'a ProfileSpec,
    pub now_ms: i64,
    /// Lifetime assumed for a token that states none.
    pub default_lifetime: Duration,
    /// How long a sent refresh token's answer is waited for.
    pub answer_wait: Duration,
}

impl<'a> Exchange<'a> {
    /// The context of an OAuth token-endpoint call for `credential`: the
    /// client authentication its server accepted before, else the
    /// profile's.
    pub fn call(&self, credential: &Credential) -> oauth::Call<'a> {
        oauth::Call {
            http: self.http,
            token_url: &self.endpoint.token_url,
            now_ms: self.now_ms,
            default_lifetime: self.default_lifetime,
            answer_wait: self.answer_wait,
            client_auth: credential.client_auth.unwrap_or(client_auth(self.spec)),
            proven: credential.client_auth.is_some(),
            altium: self.endpoint.altium,
            secure: self.endpoint.secure,
            params: &self.spec.token_params,
        }
    }

    pub fn client_id(&self) -> &'a str {
        self.spec.client_id.as_deref().unwrap_or_default()
    }
}

/// What a refresh of any kind brought.
#[derive(Debug)]
pub struct Obtained {
    pub access_token: SecretString,
    /// `None`: never expires (a Designer Cloud token with no `expiredAt`).
    pub expires_at_ms: Option<i64>,
    pub scopes: Vec<String>,
    /// A rotated refresh token: the one presented is dead.
    pub refresh_token: Option<SecretString>,
    /// Designer Cloud: the new token's id.
    pub token_id: Option<String>,
    /// How the client secret was sent, which the server accepted.
    pub client_auth: Option<a365_proto::ClientAuth>,
    /// The token stated no lifetime: the one assumed, in seconds.
    pub assumed_lifetime_s: Option<u64>,
}

impl From<oauth::Answer> for Obtained {
    fn from(answer: oauth::Answer) -> Obtained {
        let fresh = answer.fresh;
        Obtained {
            access_token: fresh.access_token,
            expires_at_ms: Some(fresh.expires_at_ms),
            scopes: fresh.scopes,
            refresh_token: fresh.refresh_token,
            token_id: None,
            client_auth: answer.client_auth,
            assumed_lifetime_s: fresh.assumed_lifetime_s,
        }
    }
}

/// How [`Provider::after_save`] went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AfterSave {
    /// The credential changed: save it again.
    pub changed: bool,
    /// Some of the work is left for a later attempt.
    pub unfinished: bool,
}

/// What `a365 remove` did about the credential at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// Nothing there outlives the local secrets (a static token, a client
    /// secret the user keeps, `--keep-remote`).
    NotNeeded,
    /// Revoked or deleted there: what.
    Done(String),
    /// Still valid there: why, and what the user can do.
    Left(String),
}

/// How a credential read from the store at start-up is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// Serve the cached token as it is, never renewed (a static token).
    AsIs,
    /// Serve the cached token while it is valid, then renew it.
    WhileValid,
    /// Renew at once, whatever is cached.
    RenewNow,
    /// Nothing can be served or renewed yet: tell the user this.
    NotReady(String),
}

/// One kind of credential.
pub trait Provider: Sync + std::fmt::Debug {
    /// The credential `a365 add` stores: exactly the secrets this kind
    /// needs (and a client id where it needs one), checked.
    fn credential(
        &self,
        name: &str,
        spec: &ProfileSpec,
        secrets: Secrets,
        now_ms: i64,
    ) -> Result<Credential, BadSecrets>;

    /// The credential made from a one-time login (a user's name and
    /// password typed at `a365 add`, used once and never stored), for
    /// kinds whose first secret comes that way.
    fn credential_from_login<'a>(
        &'a self,
        _exchange: Exchange<'a>,
        _secrets: Secrets,
    ) -> Pending<'a, Result<Credential, ProviderError>> {
        Box::pin(async {
            Err(ProviderError::Rejected(
                "only a designer-cloud profile takes a username and password".into(),
            ))
        })
    }

    /// Where its token requests go; `None` for a kind that makes none.
    fn endpoint(&self, spec: &ProfileSpec) -> Result<Option<Endpoint>, EndpointError> {
        crate::endpoint::oauth(spec)
    }

    /// The scopes its token requests carry when the profile names none.
    fn default_scopes(&self, _spec: &ProfileSpec) -> &'static [&'static str] {
        &[]
    }

    /// Its browser login, when its first token comes from `a365 login`
    /// rather than from the secrets `a365 add` stored.
    fn browser(&self) -> Option<&dyn BrowserLogin> {
        None
    }

    /// Whether the agent ever renews its tokens (a static token: never).
    fn renews(&self) -> bool {
        true
    }

    /// How a stored credential is served at start-up.
    fn restore(&self, _name: &str, _credential: &Credential) -> Restore {
        Restore::WhileValid
    }

    /// `Err(why)` when `credential` cannot be renewed at all (a login
    /// that was granted no refresh token): it is served until it expires.
    fn can_renew(&self, _name: &str, _credential: &Credential) -> Result<(), String> {
        Ok(())
    }

    /// What must be durable before [`Provider::obtain`] sends its request
    /// (Designer Cloud: the tag of the token it will create): the
    /// credential to save first, or `None` when there is nothing to add.
    fn before_obtain(&self, _credential: &Credential) -> Option<Credential> {
        None
    }

    /// A new token from `credential`.
    fn obtain<'a>(
        &'a self,
        exchange: Exchange<'a>,
        credential: &'a Credential,
    ) -> Pending<'a, Result<Obtained, ProviderError>>;

    /// Whether [`Provider::after_save`] has work for `credential`.
    fn has_work_after_save(&self, _credential: &Credential) -> bool {
        false
    }

    /// Work that waits until the new credential is saved (Designer Cloud
    /// deletes the tokens it replaced).
    fn after_save<'a>(
        &'a self,
        _exchange: Exchange<'a>,
        _name: &'a str,
        _credential: &'a mut Credential,
    ) -> Pending<'a, AfterSave> {
        Box::pin(async { AfterSave::default() })
    }

    /// Ends the credential at the provider before `a365 remove` deletes
    /// the local copy. One attempt: the secrets go either way.
    fn revoke<'a>(
        &'a self,
        _exchange: Exchange<'a>,
        _credential: &'a Credential,
    ) -> Pending<'a, Revocation> {
        Box::pin(async { Revocation::NotNeeded })
    }

    /// What to do when the credential is dead.
    fn reauth_advice(&self, name: &str, spec: &ProfileSpec) -> String;
}

/// Where a new `what` (a refresh token, a token) of `spec`'s issuer comes
/// from, in the words of that issuer, or neutral for a custom token URL.
pub(crate) fn new_credential_at(spec: &ProfileSpec, what: &str) -> String {
    use crate::endpoint::Issuer;
    match crate::endpoint::issuer(spec) {
        Issuer::Altium => format!("Create a new {what} in Altium 365 (Admin → Developer)"),
        Issuer::Nexar => format!("Get a new {what} by logging in to Nexar again"),
        Issuer::Other(host) if host.is_empty() => format!("Get a new {what} from the provider"),
        Issuer::Other(host) => format!("Get a new {what} from {host}"),
    }
}

/// The scopes a profile's token requests carry: its own, else its kind's
/// default.
pub fn requested_scopes(spec: &ProfileSpec) -> Vec<String> {
    if !spec.scopes.is_empty() {
        return spec.scopes.clone();
    }
    let default = of(spec.kind).default_scopes(spec);
    default.iter().map(|s| (*s).to_owned()).collect()
}

/// A secret a provider needs that the store does not hold.
pub fn missing() -> ProviderError {
    ProviderError::Dead("a secret this profile needs is missing".into())
}

/// Resolves a profile's realm or explicit URLs by its kind's rules;
/// `None` for a kind that never calls a token endpoint. Here, not in
/// `endpoint`, so that the URL rules never depend on the kinds.
pub fn endpoint(spec: &ProfileSpec) -> Result<Option<Endpoint>, EndpointError> {
    crate::endpoint::check_params(spec)?;
    if let Some(why) = spec.limits_error() {
        return Err(EndpointError(why));
    }
    if let Some(ca) = &spec.ca_file
        && !std::path::Path::new(ca).is_absolute()
    {
        return Err(EndpointError(format!(
            "ca_file '{}' must be an absolute path (the agent does not run in your directory)",
            ca.escape_default()
        )));
    }
    of(spec.kind).endpoint(spec)
}

/// The checks every kind with a client id shares.
/// Whether the provider rotates refresh tokens, as one answer shows it
/// without any risk: the refresh token it returned against the one sent
/// (never by replaying an old one, which kills the grant). `None` when no
/// refresh token was sent.
pub fn rotation_seen(
    sent: Option<&secrecy::SecretString>,
    back: Option<&secrecy::SecretString>,
) -> Option<bool> {
    use secrecy::ExposeSecret;
    match (sent, back) {
        (Some(sent), Some(back)) => Some(sent.expose_secret() != back.expose_secret()),
        (Some(_), None) => Some(false),
        (None, _) => None,
    }
}

pub fn needs_client_id(spec: &ProfileSpec) -> Result<(), BadSecrets> {
    if spec.client_id.as_deref().is_none_or(str::is_empty) {
        Err(BadSecrets(format!(
            "a {} profile needs a client id (--client-id)",
            spec.kind
        )))
    } else {
        Ok(())
    }
}

/// The credential of a kind that takes a client id and, at most, a client
/// secret (`required`: at least one).
fn client_secret_only(
    spec: &ProfileSpec,
    secrets: Secrets,
    required: bool,
    now_ms: i64,
) -> Result<Credential, BadSecrets> {
    needs_client_id(spec)?;
    if secrets.refresh_token.is_some() || secrets.access_token.is_some() {
        return Err(BadSecrets(format!(
            "a {} profile takes only a client_secret secret",
            spec.kind
        )));
    }
    if required && secrets.client_secret.is_none() {
        return Err(BadSecrets(format!(
            "a {} profile needs the client_secret secret",
            spec.kind
        )));
    }
    let mut credential = new_credential(now_ms);
    credential.client_secret = secrets.client_secret.map(|s| s.into_inner());
    Ok(credential)
}

/// A fresh credential, stamped now.
pub(crate) fn new_credential(now_ms: i64) -> Credential {
    Credential {
        updated_at_ms: now_ms,
        ..Credential::default()
    }
}

#[cfg(test)]
mod tests;
