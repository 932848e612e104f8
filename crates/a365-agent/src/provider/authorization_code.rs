//! The `authorization-code` kind: a browser login with PKCE (RFC 7636, S256)
//! and a loopback redirect (RFC 8252), then refresh-token exchanges when the
//! server granted `offline_access`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use sha2::Digest;

use super::oauth::{Call, Grant, post_form};
use super::{Fresh, ProviderError};

/// One login attempt's secrets: the verifier stays in the agent, only its
/// hash goes to the browser.
pub struct Pkce {
    pub verifier: SecretString,
    pub challenge: String,
    pub state: String,
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
        Ok(Pkce {
            verifier: SecretString::from(verifier),
            challenge,
            state: URL_SAFE_NO_PAD.encode(state),
        })
    }
}

/// The URL the user opens.
pub fn authorize_url(
    authorize: &reqwest::Url,
    client_id: &str,
    redirect_uri: &reqwest::Url,
    scopes: &[String],
    pkce: &Pkce,
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
    url
}

/// `grant_type=authorization_code` with the verifier (and the client
/// secret, for confidential clients such as Nexar's).
pub async fn exchange(
    call: Call<'_>,
    client_id: &str,
    client_secret: Option<&SecretString>,
    code: &str,
    redirect_uri: &reqwest::Url,
    verifier: &SecretString,
) -> Result<Fresh, ProviderError> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri.as_str()),
        ("client_id", client_id),
        ("code_verifier", verifier.expose_secret()),
    ];
    if let Some(secret) = client_secret {
        form.push(("client_secret", secret.expose_secret()));
    }
    post_form(call, Grant::AuthorizationCode, &form).await
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
        );
        let text = url.as_str();
        assert!(text.contains("code_challenge_method=S256"));
        assert!(text.contains(&pkce.challenge));
        assert!(!text.contains(pkce.verifier.expose_secret()));
        assert!(text.contains("scope=openid+offline_access"));
        assert!(text.contains("redirect_uri=http%3A%2F%2Flocalhost%3A3000%2Flogin"));
    }
}
