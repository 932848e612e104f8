//! What a restart serves: the credential the store holds, judged by its
//! kind's rules, so that a token still valid costs no token request.

use std::sync::Arc;

use a365_proto::{ProfileSpec, StoreKind};
use a365_store::Credential;
use secrecy::ExposeSecret;

use super::{Held, Phase, Snapshot, engine};
use crate::provider::{self, Restore, static_token};
use crate::schedule;
use crate::stores::StoreError;

/// The access token the store kept, with its expiry and scopes (from the
/// record, else from the token itself when it is a JWT).
fn cached_token(credential: &Credential) -> Option<Held> {
    credential.access_token.as_ref().map(|secret| {
        let (jwt_exp, jwt_scopes) = static_token::describe(secret.expose_secret());
        let scopes = if credential.access_scopes.is_empty() {
            jwt_scopes
        } else {
            credential.access_scopes.clone()
        };
        Held {
            secret: secret.clone(),
            expires_at_ms: credential.access_expires_at_ms.or(jwt_exp),
            scopes,
            obtained_at_ms: credential.updated_at_ms,
            assumed_lifetime_s: credential.assumed_lifetime_s,
        }
    })
}

/// No token, nothing known yet.
pub(super) fn empty_snapshot() -> Snapshot {
    Snapshot {
        token: None,
        phase: Phase::Empty,
        last_error: None,
        next_refresh_at_ms: None,
        attempts_done: 0,
        rotates: None,
        refreshed_by: None,
        client_auth: None,
        account: None,
    }
}

/// The first published state of profile `name`, from what its store gave.
pub(super) fn initial_snapshot(
    name: &str,
    spec: &ProfileSpec,
    store: StoreKind,
    loaded: &Result<Option<Credential>, StoreError>,
    now: i64,
) -> Snapshot {
    let mut snap = empty_snapshot();
    let credential = match loaded {
        Ok(Some(credential)) => credential,
        Ok(None) => {
            snap.phase = Phase::NeedsReauth(format!(
                "the {store} store holds no secret for profile '{name}' (memory store after a restart, \
                 or the secret was removed): run `a365 add {name} --replace …`"
            ));
            return snap;
        }
        Err(e) => {
            snap.phase = Phase::NeedsReauth(format!(
                "cannot read the secrets of profile '{name}' from the {store} store ({e}): fix that and \
                 restart the agent, or run `a365 add {name} --replace …`"
            ));
            return snap;
        }
    };
    let cached = cached_token(credential);
    snap.rotates = credential.rotates;
    snap.client_auth = super::client_auth_of(credential, spec);
    snap.account = credential.account.clone();
    let provider = provider::of(spec.kind);
    match provider.restore(name, credential) {
        Restore::AsIs => {
            snap.phase = Phase::Fresh;
            snap.token = cached.map(Arc::new);
        }
        Restore::NotReady(message) => snap.phase = Phase::NeedsReauth(message),
        Restore::RenewNow => {}
        Restore::WhileValid => {
            if let Some(held) = cached.filter(|h| h.valid_for(now, 0)) {
                // A token without expiry (Designer Cloud `expiredAt: null`)
                // is never renewed.
                snap.next_refresh_at_ms = held.expires_at_ms.map(|exp| {
                    schedule::refresh_at(credential.updated_at_ms, exp, fastrand::f64())
                });
                snap.token = Some(Arc::new(held));
                snap.phase = Phase::Fresh;
            }
        }
    }
    if let Some(sent_at) = credential
        .refresh_sent_at_ms
        .filter(|_| !engine::replay_safe(credential))
    {
        let cause = "the agent stopped before it came";
        let can_ask = provider::endpoint(spec)
            .ok()
            .flatten()
            .is_some_and(|e| e.introspection_url.is_some());
        if can_ask {
            // The refresher asks the provider at once (see `still_active`).
            snap.failing(now, format!("the answer to a refresh was lost ({cause})"));
        } else {
            let advice = provider.reauth_advice(name, spec);
            let (_, message) = engine::lost_answer(cause, sent_at, now, &advice);
            snap.phase = Phase::NeedsReauth(message);
        }
    }
    snap
}

#[cfg(test)]
mod tests {
    use super::*;
    use a365_proto::Kind;
    use secrecy::SecretString;

    fn spec(kind: Kind) -> ProfileSpec {
        ProfileSpec {
            kind,
            ..ProfileSpec::default()
        }
    }

    fn cached(expires_at_ms: i64) -> Credential {
        Credential {
            access_token: Some(SecretString::from("opaque")),
            access_expires_at_ms: Some(expires_at_ms),
            refresh_token: Some(SecretString::from("rt")),
            updated_at_ms: 0,
            ..Credential::default()
        }
    }

    /// A restart inside a token's lifetime serves it, and plans the
    /// refresh before it expires: no token request.
    #[test]
    fn a_valid_cached_token_is_served_and_its_refresh_planned() {
        let snap = initial_snapshot(
            "p",
            &spec(Kind::Refresh),
            StoreKind::File,
            &Ok(Some(cached(10_000))),
            5_000,
        );
        assert_eq!(snap.phase, Phase::Fresh);
        assert!(snap.token.is_some());
        let next = snap.next_refresh_at_ms.unwrap();
        assert!((7_000..10_000).contains(&next), "{next}");
    }

    #[test]
    fn an_expired_cached_token_is_renewed_first() {
        let snap = initial_snapshot(
            "p",
            &spec(Kind::Refresh),
            StoreKind::File,
            &Ok(Some(cached(4_000))),
            5_000,
        );
        assert_eq!(snap.phase, Phase::Empty);
        assert!(snap.token.is_none());
    }

    #[test]
    fn nothing_stored_or_unreadable_asks_for_the_secret_again() {
        let none = initial_snapshot("p", &spec(Kind::Refresh), StoreKind::Memory, &Ok(None), 0);
        assert!(
            matches!(&none.phase, Phase::NeedsReauth(m) if m.contains("memory store holds no secret")),
            "{:?}",
            none.phase
        );
        let failed = initial_snapshot(
            "p",
            &spec(Kind::Refresh),
            StoreKind::Keyring,
            &Err(StoreError::Failed("locked".into())),
            0,
        );
        assert!(
            matches!(&failed.phase, Phase::NeedsReauth(m) if m.contains("(locked)")),
            "{:?}",
            failed.phase
        );
    }

    #[test]
    fn a_static_token_is_served_even_when_expired_and_never_planned() {
        let snap = initial_snapshot(
            "p",
            &spec(Kind::Static),
            StoreKind::File,
            &Ok(Some(cached(4_000))),
            5_000,
        );
        assert_eq!(snap.phase, Phase::Fresh);
        assert!(snap.token.is_some());
        assert_eq!(snap.next_refresh_at_ms, None);
    }
}
