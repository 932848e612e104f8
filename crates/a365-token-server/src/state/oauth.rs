//! The OAuth side of the state: who may ask, which refresh tokens and
//! codes are live, and what a grant issues. Kept apart from Designer
//! Cloud's tokens, which share none of it.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{State, now_ms, random_token};

/// What `/connect/authorize` remembers for the token request.
#[derive(Debug, Clone)]
pub(crate) struct PendingCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub challenge: String,
    pub scope: String,
}

/// What a successful grant produces.
#[derive(Debug)]
pub(crate) struct Grant {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: Option<String>,
    pub scope: String,
}

impl State {
    pub fn issue_refresh_token(&self, client_id: &str) -> String {
        let token = random_token(32);
        let mut inner = self.lock();
        inner
            .refresh_tokens
            .insert(token.clone(), client_id.to_owned());
        inner.refresh_issued.push(token.clone());
        token
    }

    pub fn set_lifetime(&self, lifetime: Duration) {
        self.lock().lifetime = lifetime;
    }

    pub fn replays(&self) -> usize {
        self.lock().replays
    }

    pub fn is_refresh_token_valid(&self, refresh_token: &str) -> bool {
        self.lock().refresh_tokens.contains_key(refresh_token)
    }

    pub fn issued_access_tokens(&self) -> Vec<String> {
        self.lock().access_issued.clone()
    }

    pub fn issued_refresh_tokens(&self) -> Vec<String> {
        self.lock().refresh_issued.clone()
    }

    pub(crate) fn require_basic(&self) -> bool {
        self.lock().require_basic
    }

    pub(crate) fn basic_raw(&self) -> bool {
        self.lock().basic_raw
    }

    pub(crate) fn client_ok(&self, id: &str, secret: &str) -> bool {
        self.lock().clients.get(id).is_some_and(|s| s == secret)
    }

    /// Consumes `refresh_token` if it is live and belongs to `client_id`;
    /// returns whether it was.
    pub(crate) fn consume_refresh_token(&self, refresh_token: &str, client_id: &str) -> bool {
        let mut inner = self.lock();
        if inner
            .refresh_tokens
            .get(refresh_token)
            .is_none_or(|c| c != client_id)
        {
            if inner.refresh_issued.iter().any(|t| t == refresh_token) {
                inner.replays += 1;
            }
            return false;
        }
        if inner.rotate {
            inner.refresh_tokens.remove(refresh_token);
        }
        true
    }

    /// RFC 7662: whether `refresh_token` is live and `client_id`'s.
    pub(crate) fn refresh_token_active(&self, refresh_token: &str, client_id: &str) -> bool {
        self.lock()
            .refresh_tokens
            .get(refresh_token)
            .is_some_and(|c| c == client_id)
    }

    /// RFC 7009: ends `refresh_token` if it is this client's.
    pub(crate) fn revoke_refresh_token(&self, refresh_token: &str, client_id: &str) {
        let mut inner = self.lock();
        if inner
            .refresh_tokens
            .get(refresh_token)
            .is_some_and(|c| c == client_id)
        {
            inner.refresh_tokens.remove(refresh_token);
        }
    }

    /// Remembers a code issued by `/connect/authorize`.
    pub(crate) fn issue_code(&self, pending: PendingCode) -> String {
        let code = random_token(24);
        self.lock().codes.insert(code.clone(), pending);
        code
    }

    /// Redeems a code once: it must belong to this client and redirect,
    /// and the verifier must hash to the challenge (RFC 7636 §4.6).
    pub(crate) fn redeem_code(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Option<PendingCode> {
        use sha2::Digest;
        let pending = self.lock().codes.remove(code)?;
        let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
        (pending.client_id == client_id
            && pending.redirect_uri == redirect_uri
            && pending.challenge == challenge)
            .then_some(pending)
    }

    pub(crate) fn note_access_token(&self, token: &str) {
        self.lock().access_issued.push(token.to_owned());
    }

    pub(crate) fn client_known(&self, id: &str) -> bool {
        let inner = self.lock();
        inner.clients.contains_key(id) || inner.public_clients.iter().any(|p| p == id)
    }

    /// A public client: it has no secret to send.
    pub(crate) fn is_public(&self, id: &str) -> bool {
        self.lock().public_clients.iter().any(|p| p == id)
    }

    /// A login's tokens: a refresh token only with `offline_access`.
    pub(crate) fn grant_login(&self, client_id: &str, scope: &str, offline: bool) -> Grant {
        let mut grant = self.grant(client_id, Some(scope), false);
        if offline {
            let rt = self.issue_refresh_token(client_id);
            self.lock()
                .refresh_scopes
                .insert(rt.clone(), scope.to_owned());
            grant.refresh_token = Some(rt);
        }
        grant
    }

    /// The scope `refresh_token` was granted with, if it was a login's or
    /// an exchange's (a refresh keeps it, as Altium Identity does).
    pub(crate) fn scope_of(&self, refresh_token: &str) -> Option<String> {
        self.lock().refresh_scopes.get(refresh_token).cloned()
    }

    /// Notes the scope a rotated refresh token carries on.
    pub(crate) fn keep_scope(&self, refresh_token: &str, scope: &str) {
        self.lock()
            .refresh_scopes
            .insert(refresh_token.to_owned(), scope.to_owned());
    }

    /// Altium Identity's rules for exchanging a token for workspace `id`
    /// (SPEC §6): only on the workspace's own cloud, and on the Gov one
    /// only with `secure=1`.
    pub(crate) fn may_exchange(&self, id: &str, secure: bool) -> Result<(), &'static str> {
        let inner = self.lock();
        let workspace = inner
            .workspaces
            .iter()
            .find(|w| w.id == id)
            .ok_or("the workspace is unknown")?;
        if workspace.gov != inner.gov || (inner.gov && !secure) {
            return Err("the workspace is not on this cloud, or secure=1 is missing");
        }
        Ok(())
    }

    /// The user's workspaces, for the GraphQL list.
    pub(crate) fn workspaces(&self) -> Vec<crate::MockWorkspace> {
        self.lock().workspaces.clone()
    }

    /// Whether `token` is an access token this server issued.
    pub(crate) fn issued(&self, token: &str) -> bool {
        self.lock().access_issued.iter().any(|t| t == token)
    }

    /// Issues an access token (and a rotated refresh token when asked).
    pub(crate) fn grant(&self, client_id: &str, scope: Option<&str>, with_refresh: bool) -> Grant {
        let (lifetime, scopes, rotate, gov) = {
            let inner = self.lock();
            let scopes: Vec<String> = match scope {
                Some(s) if !s.trim().is_empty() => {
                    s.split_whitespace().map(str::to_owned).collect()
                }
                _ => inner.scopes.clone(),
            };
            (inner.lifetime, scopes, inner.rotate, inner.gov)
        };
        let iat = now_ms() / 1000;
        let exp = iat + lifetime.as_secs() as i64;
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT","kid":"a365-test"}"#);
        let claims = serde_json::json!({
            "iss": self.issuer,
            "sub": format!("user-of-{client_id}"),
            "client_id": client_id,
            "iat": iat,
            "nbf": iat,
            "exp": exp,
            "jti": random_token(12),
            "scope": scopes,
        });
        let mut claims = claims;
        // Altium's claims (SPEC §8): a workspace token names its
        // workspace; a Gov Cloud token carries `secure`.
        if let Some(id) = scopes
            .iter()
            .find_map(|s| s.strip_prefix("a365:workspace:"))
        {
            claims["workspaceId"] = serde_json::json!(id);
        }
        if gov {
            claims["secure"] = serde_json::json!("1");
        }
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let access_token = format!("{header}.{payload}.{}", random_token(32));
        let refresh_token = (with_refresh && rotate).then(|| self.issue_refresh_token(client_id));
        self.lock().access_issued.push(access_token.clone());
        Grant {
            access_token,
            expires_in: lifetime.as_secs(),
            refresh_token,
            scope: scopes.join(" "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServerConfig;

    #[test]
    fn refresh_tokens_are_one_time() {
        let state = State::new(&ServerConfig::default(), "http://x".into());
        let rt = state.issue_refresh_token("test-client");
        assert!(!state.consume_refresh_token(&rt, "other-client"));
        assert!(state.consume_refresh_token(&rt, "test-client"));
        assert!(!state.consume_refresh_token(&rt, "test-client"));
    }
}
