//! The `static` kind: one long-lived bearer token (an Altium 365
//! "long-lived access token", up to a year), served as is.

use a365_proto::{ProfileSpec, Secrets};
use a365_store::Credential;
use secrecy::{ExposeSecret, SecretString};

use super::{BadSecrets, Exchange, Obtained, Pending, Provider, ProviderError, Restore};
use crate::endpoint::{self, Endpoint, EndpointError};
use a365_token::jwt;

#[derive(Debug)]
pub struct Static;

impl Provider for Static {
    fn credential(
        &self,
        name: &str,
        _spec: &ProfileSpec,
        secrets: Secrets,
        now_ms: i64,
    ) -> Result<Credential, BadSecrets> {
        let Some(token) = secrets.access_token else {
            return Err(BadSecrets(
                "a static profile needs an access_token secret".into(),
            ));
        };
        if secrets.client_secret.is_some() || secrets.refresh_token.is_some() {
            return Err(BadSecrets(
                "a static profile takes only an access_token secret".into(),
            ));
        }
        let token = token.into_inner();
        check_b64token(&token)?;
        let (exp, scopes) = describe(token.expose_secret());
        if let Some(exp) = exp.filter(|exp| *exp <= now_ms) {
            return Err(BadSecrets(format!(
                "the token for '{name}' expired {} ago: create a new one in Altium 365 (Admin → Developer)",
                a365_proto::human_ms(now_ms - exp)
            )));
        }
        let mut credential = super::new_credential(now_ms);
        credential.access_token = Some(token);
        credential.access_expires_at_ms = exp;
        credential.access_scopes = scopes;
        Ok(credential)
    }

    /// A realm or token URL only names where the token came from, for
    /// `status`: a static token is never exchanged.
    fn endpoint(&self, spec: &ProfileSpec) -> Result<Option<Endpoint>, EndpointError> {
        endpoint::named_url(spec)?;
        endpoint::reject_revocation_url(spec)?;
        Ok(None)
    }

    fn renews(&self) -> bool {
        false
    }

    fn restore(&self, _name: &str, _credential: &Credential) -> Restore {
        Restore::AsIs
    }

    fn obtain<'a>(
        &'a self,
        _exchange: Exchange<'a>,
        _credential: &'a Credential,
    ) -> Pending<'a, Result<Obtained, ProviderError>> {
        Box::pin(async { Err(super::missing()) })
    }

    fn reauth_advice(&self, name: &str, spec: &ProfileSpec) -> String {
        let how = match spec.realm.as_deref() {
            // A static profile has no token URL: its realm says whose it is.
            None => "Get a new token where it was issued (an Altium 365 token: Admin → Developer)"
                .to_owned(),
            Some(_) => super::new_credential_at(spec, "token"),
        };
        format!("{how}, then run `a365 add {name} --kind static --replace`")
    }
}

/// Expiry (UTC epoch ms) and scopes of a static token, read from its JWT
/// claims; an opaque token has neither.
pub fn describe(token: &str) -> (Option<i64>, Vec<String>) {
    match jwt::claims(token) {
        Some(claims) => (claims.exp_ms(), claims.scopes),
        None => (None, Vec::new()),
    }
}

/// A token given to `add` is printed and put into header lines like one
/// from a server: RFC 6750 b64token only, refused without quoting it.
pub(crate) fn check_b64token(token: &SecretString) -> Result<(), BadSecrets> {
    if a365_token::is_b64token(token.expose_secret()) {
        Ok(())
    } else {
        Err(BadSecrets(format!(
            "the access_token secret has {}: check what was pasted",
            a365_token::NOT_B64TOKEN
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pasted token with an escape or a header line is refused at `add`,
    /// for both kinds that take one, and the message does not quote it.
    #[test]
    fn a_token_outside_b64token_is_refused_at_add() {
        for kind in [a365_proto::Kind::Static, a365_proto::Kind::DesignerCloud] {
            for bad in ["abc\x1b]0;pwned\x07", "abc\r\nX-Evil: 1", "ab cd"] {
                let secrets = Secrets {
                    access_token: Some(SecretString::from(bad).into()),
                    ..Secrets::default()
                };
                let spec = ProfileSpec {
                    kind,
                    ..ProfileSpec::default()
                };
                let err = super::super::of(kind)
                    .credential("x", &spec, secrets, 0)
                    .unwrap_err()
                    .0;
                assert!(err.contains("RFC 6750"), "{kind}: {err}");
                assert!(!err.contains("Evil") && !err.contains("pwned"), "{err}");
            }
        }
    }
}
