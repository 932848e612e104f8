//! The `authorization-code` kind: a browser login with PKCE (RFC 7636, S256)
//! and a loopback redirect (RFC 8252), then refresh-token exchanges when the
//! server granted `offline_access`.

use a365_proto::{ProfileSpec, Secrets};
use a365_store::Credential;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use sha2::Digest;

use super::oauth::{Answer, Call, Client, Grant, post_form};
use super::refresh::RefreshCredential;
use super::{BadSecrets, Exchange, Fresh, Obtained, Pending, Provider, ProviderError, Restore};
use crate::endpoint::{self, Endpoint, EndpointError, LoginEndpoint, is_loopback, parse_url};

/// Where Nexar registers its design apps' redirect.
pub const DEFAULT_REDIRECT: &str = "http://localhost:3000/login";

#[derive(Debug)]
pub struct AuthorizationCode;

/// Nexar's scopes for a design app; `offline_access` asks for a refresh token.
const LOGIN_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "design.domain",
    "user.access",
    "offline_access",
];

impl Provider for AuthorizationCode {
    fn default_scopes(&self, _spec: &ProfileSpec) -> &'static [&'static str] {
        LOGIN_SCOPES
    }

    fn browser(&self) -> Option<&dyn super::BrowserLogin> {
        Some(self)
    }

    fn credential(
        &self,
        _name: &str,
        spec: &ProfileSpec,
        secrets: Secrets,
        now_ms: i64,
    ) -> Result<Credential, BadSecrets> {
        // PKCE serves public clients too (no secret); Nexar's apps have one.
        super::client_secret_only(spec, secrets, false, now_ms)
    }

    fn endpoint(&self, spec: &ProfileSpec) -> Result<Option<Endpoint>, EndpointError> {
        let (token_url, secure) = endpoint::token_endpoint(spec)?;
        let login = login_endpoint(spec, &token_url)?;
        if spec.workspace.is_some() && !endpoint::is_altium(&token_url) {
            return Err(EndpointError(
                "workspace is for Altium 365 sign-ins: the profile's token endpoint is not \
                 Altium's"
                    .into(),
            ));
        }
        Endpoint {
            revocation_url: endpoint::revocation_url(spec)?,
            introspection_url: endpoint::introspection_url(spec)?,
            altium: endpoint::is_altium(&token_url),
            token_url,
            secure,
            login: Some(login),
        }
        .check_cloud()
        .map(Some)
    }

    /// A profile that never logged in has nothing to serve or renew.
    fn restore(&self, name: &str, credential: &Credential) -> Restore {
        if credential.access_token.is_none() && credential.refresh_token.is_none() {
            return Restore::NotReady(format!(
                "profile '{name}' is not logged in yet: run `a365 login {name}`"
            ));
        }
        Restore::WhileValid
    }

    fn can_renew(&self, name: &str, credential: &Credential) -> Result<(), String> {
        match credential.refresh_token {
            Some(_) => Ok(()),
            None => Err(format!(
                "the server granted no refresh token (offline_access): log in again with \
                 `a365 login {name}`"
            )),
        }
    }

    fn obtain<'a>(
        &'a self,
        exchange: Exchange<'a>,
        credential: &'a Credential,
    ) -> Pending<'a, Result<Obtained, ProviderError>> {
        Box::pin(async move {
            let secrets = RefreshCredential {
                client_id: exchange.client_id(),
                // A public client (PKCE without a secret) sends none.
                client_secret: credential.client_secret.as_ref(),
                refresh_token: credential
                    .refresh_token
                    .as_ref()
                    .ok_or_else(super::missing)?,
            };
            // The login asked for its scopes; a refresh keeps them.
            super::refresh::exchange(exchange.call(credential), &secrets, &[])
                .await
                .map(Obtained::from)
        })
    }

    fn revoke<'a>(
        &'a self,
        exchange: Exchange<'a>,
        credential: &'a Credential,
    ) -> Pending<'a, super::Revocation> {
        Box::pin(super::refresh::revoke_refresh_token(exchange, credential))
    }

    fn reauth_advice(&self, name: &str, spec: &ProfileSpec) -> String {
        match &spec.workspace_of {
            Some(parent) => format!(
                "Ask for it again (`a365 token {parent} --workspace …`): the agent exchanges a \
                 new one from the sign-in"
            ),
            None => format!("Log in again: `a365 login {name}`"),
        }
    }
}

/// The authorize URL (given, or the token URL's sibling `…/authorize`) and
/// the loopback redirect the agent listens on.
fn login_endpoint(
    spec: &ProfileSpec,
    token_url: &reqwest::Url,
) -> Result<LoginEndpoint, EndpointError> {
    let invalid = |m: String| EndpointError(m);
    let authorize_url = match &spec.authorize_url {
        Some(url) => parse_url("authorize_url", url)?,
        None => {
            let path = token_url.path();
            let Some(prefix) = path.strip_suffix("/token") else {
                return Err(invalid(
                    "give the authorize_url: it cannot be derived from a token URL that does \
                     not end in /token"
                        .into(),
                ));
            };
            let mut url = token_url.clone();
            url.set_path(&format!("{prefix}/authorize"));
            url
        }
    };
    // Altium Identity registers no loopback redirect for a desktop client:
    // its sign-in ends on Altium's AuthComplete page, and the code comes
    // through ActionWait (altium-auth SPEC §4), unless a redirect is given.
    if spec.redirect_uri.is_none()
        && let Some(realm) = crate::realm::owning(token_url)
        && let (Some(actionwait), Some(complete)) = (realm.actionwait, realm.auth_complete)
    {
        return Ok(LoginEndpoint {
            authorize_url,
            redirect_uri: complete,
            actionwait: Some(actionwait),
        });
    }
    let text = spec.redirect_uri.as_deref().unwrap_or(DEFAULT_REDIRECT);
    let redirect_uri =
        reqwest::Url::parse(text).map_err(|e| invalid(format!("redirect_uri '{text}': {e}")))?;
    // RFC 8252 §7.3: the agent can only receive a loopback redirect.
    if redirect_uri.scheme() != "http"
        || !is_loopback(&redirect_uri)
        || redirect_uri.port().is_none()
    {
        return Err(invalid(format!(
            "redirect_uri '{text}' must be http://localhost:PORT/… or http://127.0.0.1:PORT/… \
             (the agent listens there)"
        )));
    }
    // The listener compares the path exactly; a query or fragment would
    // never match, and `:`, `*`, `{`, `}` read as patterns to people
    // and to routers.
    if redirect_uri.query().is_some()
        || redirect_uri.fragment().is_some()
        || redirect_uri.path().contains([':', '*', '{', '}'])
        || redirect_uri.path().starts_with("/start/")
    {
        return Err(invalid(format!(
            "redirect_uri '{text}' must be a plain path without a query, a fragment, `:`, \
             `*`, `{{` or `}}`, and not under /start/ (the agent's own login launcher)"
        )));
    }
    Ok(LoginEndpoint {
        authorize_url,
        redirect_uri,
        actionwait: None,
    })
}

/// One login attempt's secrets: the verifier stays in the agent, only its
/// hash goes to the browser.
pub struct Pkce {
    pub verifier: SecretString,
    pub challenge: String,
    pub state: String,
    /// Sent with an `openid` login and checked in the id_token (OpenID
    /// Connect Core §3.1.2.1): a code injected from another login fails.
    pub nonce: String,
}

impl std::fmt::Debug for Pkce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pkce([REDACTED])")
    }
}

impl Pkce {
    /// A 64-character verifier (RFC 7636 asks for 43 to 128) from 48
    /// random bytes, and a 22-character state.
    pub fn generate() -> Result<Pkce, getrandom::Error> {
        let mut bytes = zeroize::Zeroizing::new([0u8; 48]);
        getrandom::fill(&mut bytes[..])?;
        let verifier = URL_SAFE_NO_PAD.encode(&bytes[..]);
        let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
        let mut state = [0u8; 16];
        getrandom::fill(&mut state)?;
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce)?;
        Ok(Pkce {
            verifier: SecretString::from(verifier),
            challenge,
            state: URL_SAFE_NO_PAD.encode(state),
            nonce: URL_SAFE_NO_PAD.encode(nonce),
        })
    }
}

/// The URL the user opens, with the profile's `extra` parameters. Asking
/// for `offline_access` (a refresh token) also sends `prompt=consent`,
/// which OpenID Connect Core §11 requires for it and strict providers
/// enforce (no refresh token otherwise), unless the profile names a
/// `prompt` of its own (in `authorize_url` or `extra`; an empty one sends
/// none).
fn authorize_url(
    authorize: &reqwest::Url,
    client_id: &str,
    redirect_uri: &reqwest::Url,
    scopes: &[String],
    pkce: &Pkce,
    extra: &std::collections::BTreeMap<String, String>,
) -> reqwest::Url {
    let mut url = authorize.clone();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri.as_str())
        .append_pair("scope", &scopes.join(" "))
        .append_pair("state", &pkce.state)
        .append_pair("code_challenge", &pkce.challenge)
        .append_pair("code_challenge_method", "S256");
    if scopes.iter().any(|s| s == OPENID) {
        url.query_pairs_mut().append_pair("nonce", &pkce.nonce);
    }
    // An empty value sends nothing; so does Altium's selectWorkspace=none,
    // its default (altium-auth SPEC §3.1).
    let sent = |(name, value): &(&String, &String)| {
        !(value.is_empty() || (name.as_str() == "selectWorkspace" && value.as_str() == "none"))
    };
    for (name, value) in extra.iter().filter(sent) {
        url.query_pairs_mut().append_pair(name, value);
    }
    let own_prompt =
        authorize.query_pairs().any(|(k, _)| k == "prompt") || extra.contains_key("prompt");
    if scopes.iter().any(|s| s == OFFLINE_ACCESS) && !own_prompt {
        url.query_pairs_mut().append_pair("prompt", "consent");
    }
    url
}

/// The scope that asks for a refresh token.
const OFFLINE_ACCESS: &str = "offline_access";

/// The scope of an OpenID login: it sends a `nonce`.
const OPENID: &str = "openid";

/// An id_token that came back must carry the login's `nonce` (OpenID
/// Connect Core §3.1.3.7): otherwise the code was not this login's.
fn check_nonce(fresh: &Fresh, pkce: &Pkce, asked_openid: bool) -> Result<(), ProviderError> {
    match (&fresh.id_token, asked_openid) {
        (Some(claims), true) if claims.nonce.as_deref() != Some(pkce.nonce.as_str()) => {
            Err(ProviderError::Dead(
                "the id_token that came with the login does not carry this login's nonce: \
                 the answer was not for this login, and it is not kept"
                    .into(),
            ))
        }
        _ => Ok(()),
    }
}

/// `grant_type=authorization_code` with the verifier (and the client
/// secret, for confidential clients such as Nexar's).
async fn exchange(
    call: Call<'_>,
    client_id: &str,
    client_secret: Option<&SecretString>,
    code: &str,
    redirect_uri: &reqwest::Url,
    verifier: &SecretString,
) -> Result<Answer, ProviderError> {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri.as_str()),
        ("code_verifier", verifier.expose_secret()),
    ];
    let client = Client {
        id: client_id,
        secret: client_secret,
    };
    post_form(call, Grant::AuthorizationCode, client, &form).await
}

impl super::BrowserLogin for AuthorizationCode {
    fn authorize_url(
        &self,
        spec: &ProfileSpec,
        login: &LoginEndpoint,
        pkce: &Pkce,
    ) -> reqwest::Url {
        authorize_url(
            &login.authorize_url,
            spec.client_id.as_deref().unwrap_or_default(),
            &login.redirect_uri,
            &super::requested_scopes(spec),
            pkce,
            &spec.authorize_params,
        )
    }

    fn redeem<'a>(
        &'a self,
        call: Call<'a>,
        spec: &'a ProfileSpec,
        client_secret: Option<&'a SecretString>,
        code: &'a str,
        redirect_uri: &'a reqwest::Url,
        pkce: &'a Pkce,
    ) -> Pending<'a, Result<Answer, ProviderError>> {
        let client_id = spec.client_id.as_deref().unwrap_or_default();
        let asked_openid = super::requested_scopes(spec).iter().any(|s| s == OPENID);
        Box::pin(async move {
            let answer = exchange(
                call,
                client_id,
                client_secret,
                code,
                redirect_uri,
                &pkce.verifier,
            )
            .await?;
            check_nonce(&answer.fresh, pkce, asked_openid)?;
            Ok(answer)
        })
    }

    fn asks_for_refresh(&self, spec: &ProfileSpec) -> bool {
        super::requested_scopes(spec)
            .iter()
            .any(|s| s == OFFLINE_ACCESS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc_7636() {
        let pkce = Pkce::generate().unwrap();
        let verifier = pkce.verifier.expose_secret();
        assert!((43..=128).contains(&verifier.len()));
        assert!(
            verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(
            pkce.challenge,
            URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
        );
        assert_ne!(Pkce::generate().unwrap().state, pkce.state);
        assert!(!format!("{pkce:?}").contains(verifier));
        // RFC 7636 appendix B.
        let digest = sha2::Sha256::digest(b"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(
            URL_SAFE_NO_PAD.encode(digest),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn the_authorize_url_carries_the_challenge_not_the_verifier() {
        let pkce = Pkce::generate().unwrap();
        let url = authorize_url(
            &"https://identity.nexar.com/connect/authorize"
                .parse()
                .unwrap(),
            "cid",
            &"http://localhost:3000/login".parse().unwrap(),
            &["openid".into(), "offline_access".into()],
            &pkce,
            &Default::default(),
        );
        let text = url.as_str();
        assert!(text.contains("code_challenge_method=S256"));
        assert!(text.contains(&pkce.challenge));
        assert!(!text.contains(pkce.verifier.expose_secret()));
        assert!(text.contains("scope=openid+offline_access"));
        assert!(text.contains("redirect_uri=http%3A%2F%2Flocalhost%3A3000%2Flogin"));
        assert!(text.ends_with("&prompt=consent"), "{text}");
    }

    /// An `openid` login sends a nonce, and an id_token that comes back
    /// must carry it; without `openid`, or without an id_token, there is
    /// nothing to check.
    #[test]
    fn an_openid_login_sends_a_nonce_and_the_id_token_must_carry_it() {
        let pkce = Pkce::generate().unwrap();
        assert_ne!(Pkce::generate().unwrap().nonce, pkce.nonce);
        let authorize: reqwest::Url = "https://idp.example/authorize".parse().unwrap();
        let redirect: reqwest::Url = "http://localhost:3000/login".parse().unwrap();
        let none = Default::default();
        let with = authorize_url(&authorize, "c", &redirect, &["openid".into()], &pkce, &none);
        let nonces: Vec<_> = with.query_pairs().filter(|(k, _)| k == "nonce").collect();
        assert_eq!(nonces.len(), 1, "{with}");
        assert_eq!(nonces[0].1, pkce.nonce);
        let without = authorize_url(&authorize, "c", &redirect, &["api".into()], &pkce, &none);
        assert!(!without.as_str().contains("nonce="), "{without}");
        let fresh = |nonce: Option<&str>| Fresh {
            access_token: SecretString::from("at"),
            expires_at_ms: 0,
            scopes: vec![],
            refresh_token: None,
            id_token: Some(a365_token::jwt::Claims {
                nonce: nonce.map(str::to_owned),
                ..Default::default()
            }),
            assumed_lifetime_s: None,
        };
        assert!(check_nonce(&fresh(Some(&pkce.nonce)), &pkce, true).is_ok());
        assert!(check_nonce(&fresh(Some("other")), &pkce, true).is_err());
        assert!(check_nonce(&fresh(None), &pkce, true).is_err());
        assert!(check_nonce(&fresh(None), &pkce, false).is_ok());
        let mut no_id_token = fresh(None);
        no_id_token.id_token = None;
        assert!(check_nonce(&no_id_token, &pkce, true).is_ok());
    }

    #[test]
    fn prompt_consent_only_for_offline_access_and_never_over_the_profiles_own() {
        let pkce = Pkce::generate().unwrap();
        let redirect: reqwest::Url = "http://localhost:3000/login".parse().unwrap();
        let plain: reqwest::Url = "https://idp.example/authorize".parse().unwrap();
        let none = Default::default();
        let url = authorize_url(&plain, "cid", &redirect, &["openid".into()], &pkce, &none);
        assert!(!url.as_str().contains("prompt="), "{url}");
        let own: reqwest::Url = "https://idp.example/authorize?prompt=login"
            .parse()
            .unwrap();
        let offline = ["openid".into(), OFFLINE_ACCESS.into()];
        let url = authorize_url(&own, "cid", &redirect, &offline, &pkce, &none);
        let prompts: Vec<_> = url.query_pairs().filter(|(k, _)| k == "prompt").collect();
        assert_eq!(prompts.len(), 1, "{url}");
        assert_eq!(prompts[0].1, "login");
        // The profile's own parameters: its prompt instead of consent, an
        // empty one sends none, the others as given.
        let prompts_with = |value: &str| {
            let extra = [
                ("prompt".to_owned(), value.to_owned()),
                ("login_hint".to_owned(), "me@example.com".to_owned()),
            ];
            let url = authorize_url(&plain, "cid", &redirect, &offline, &pkce, &extra.into());
            assert!(
                url.as_str().contains("login_hint=me%40example.com"),
                "{url}"
            );
            url.query_pairs()
                .filter(|(k, _)| k == "prompt")
                .map(|(_, v)| v.into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(prompts_with("select_account"), ["select_account"]);
        assert!(prompts_with("").is_empty());
    }
}
