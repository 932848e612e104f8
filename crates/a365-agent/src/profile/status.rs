//! A profile as `a365 status` shows it, and the advice that goes with a
//! token the agent cannot renew.

use a365_proto::{ProfileStatus, state};
use secrecy::ExposeSecret;

use super::{Phase, Profile};
use a365_token::jwt;

impl Profile {
    pub fn status(&self, is_default: bool) -> ProfileStatus {
        let snap = self.snapshot();
        let now = self.shared.clock.now_ms();
        let token = snap.token.as_deref();
        let expired = token
            .and_then(|t| t.expires_at_ms)
            .is_some_and(|exp| exp <= now);
        let state = match &snap.phase {
            Phase::Empty => state::EMPTY,
            Phase::Fresh if expired => state::EXPIRED,
            Phase::Fresh => state::FRESH,
            Phase::Refreshing => state::REFRESHING,
            Phase::Failing { .. } => state::FAILING,
            Phase::NeedsReauth(_) => state::NEEDS_REAUTH,
        };
        let scopes = token.map(|t| t.scopes.clone()).unwrap_or_default();
        let store_error = self
            .home
            .placed()
            .and_then(|p| p.store.as_ref().err())
            .map(ToString::to_string);
        ProfileStatus {
            name: self.name.clone(),
            kind: self.spec.kind,
            realm: self.spec.realm.clone(),
            token_url: self.endpoint.as_ref().map(|e| e.token_url.to_string()),
            state: state.into(),
            expires_at: token
                .and_then(|t| t.expires_at_ms)
                .map(|ms| ms.div_euclid(1000)),
            next_refresh_at: snap.next_refresh_at_ms.map(|ms| ms.div_euclid(1000)),
            workspace: jwt::workspace(&scopes),
            scopes_not_granted: match token {
                Some(held) => self
                    .spec
                    .scopes
                    .iter()
                    .filter(|s| !held.scopes.contains(s))
                    .cloned()
                    .collect(),
                None => Vec::new(),
            },
            scopes,
            last_error: match &snap.phase {
                Phase::NeedsReauth(message) => Some(message.clone()),
                _ => snap.last_error.clone().or(store_error),
            },
            store: self.home.name().into(),
            is_default,
            rotates: snap.rotates,
            budget: self.budget_used(now),
            refreshed_by: snap.refreshed_by.clone(),
            client_auth: snap.client_auth,
            assumed_lifetime_secs: token.and_then(|t| t.assumed_lifetime_s),
            account: snap
                .account
                .clone()
                .or_else(|| token.and_then(|t| jwt::claims(t.secret.expose_secret())?.account)),
        }
    }

    pub(super) fn expired_static_message(&self) -> String {
        format!(
            "the static token of profile '{0}' has expired: create a new token in Altium 365 (Admin → \
             Developer), then run `a365 add {0} --kind static --replace`",
            self.name
        )
    }

    /// The expiry of a held token that the agent cannot renew (a static
    /// token, made for up to a year), for `expires-soon`.
    pub fn unrenewable_expiry(&self) -> Option<i64> {
        if self.provider().renews() {
            return None;
        }
        self.snapshot().token.as_ref()?.expires_at_ms
    }

    /// What to do before an unrenewable token expires.
    pub fn renew_advice(&self) -> String {
        self.provider().reauth_advice(&self.name, &self.spec)
    }
}
