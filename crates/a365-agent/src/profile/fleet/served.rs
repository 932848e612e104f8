//! What a member serves of the fleet's record, and what it says in
//! `status` and events when a round fails or the credential is dead.

use a365_proto::EventKind;
use secrecy::ExposeSecret;

use crate::fleet::Public;
use crate::profile::engine;
use crate::profile::{Held, Phase, Profile};
use crate::schedule;

impl Profile {
    /// Serves what the fleet holds, when a refresher signed it.
    pub(super) fn adopt(&self, public: &Public) {
        let Some(token) = public.access_token.as_ref().filter(|_| public.signed) else {
            return;
        };
        let now = self.shared.clock.now_ms();
        let next = public
            .expires_at_ms
            .map(|exp| schedule::refresh_at(public.obtained_at_ms.min(now), exp, fastrand::f64()));
        let held = Held {
            secret: token.clone(),
            expires_at_ms: public.expires_at_ms,
            scopes: public.scopes.clone(),
            obtained_at_ms: public.obtained_at_ms,
            assumed_lifetime_s: None,
        };
        let changed = self
            .snapshot()
            .token
            .as_ref()
            .is_none_or(|h| h.secret.expose_secret() != token.expose_secret());
        self.state.send_modify(|s| {
            s.serve(held, next, public.rotates);
            s.last_error = None;
            s.refreshed_by = Some(public.refreshed_by.clone());
        });
        if changed {
            self.shared.events.emit(
                &self.name,
                EventKind::Refreshed,
                public.expires_at_ms,
                format!(
                    "a new token from fleet member '{}' is being served",
                    public.refreshed_by
                ),
            );
        }
    }

    /// Adopts the fleet's token if it expires later than the one held.
    pub(super) fn adopt_if_newer(&self, public: &Public) {
        let held = self.snapshot().token.as_ref().and_then(|h| h.expires_at_ms);
        let newer = match (held, public.expires_at_ms) {
            (Some(held), Some(theirs)) => theirs > held,
            (None, _) => self.snapshot().token.is_none(),
            (Some(_), None) => false,
        };
        if newer && public.access_token.is_some() {
            let saved = self.snapshot();
            self.adopt(public);
            // Still due: the lock holder's token may be on its way.
            self.state.send_modify(|s| {
                s.next_refresh_at_ms = saved.next_refresh_at_ms.or(s.next_refresh_at_ms)
            });
        }
    }

    /// Why the fleet's record cannot be trusted, in `status`; the held
    /// token is still served while valid.
    pub(crate) fn note_fleet_error(&self, message: String) {
        if self.snapshot().last_error.as_deref() != Some(message.as_str()) {
            self.shared.events.emit(
                &self.name,
                EventKind::RefreshFailed,
                self.snapshot().token.as_ref().and_then(|h| h.expires_at_ms),
                message.clone(),
            );
        }
        self.note(Some(message));
    }

    /// A note in `status` without changing what is served.
    pub(super) fn note(&self, message: Option<String>) {
        self.state.send_modify(|s| s.last_error = message);
    }

    pub(super) fn fleet_dead(&self, why: &str) {
        if matches!(&self.snapshot().phase, Phase::NeedsReauth(m) if m == why) {
            return;
        }
        self.mark_dead(why.to_owned(), why.to_owned());
    }

    /// A failed round: back off until `retry_at`, serving the held token
    /// while it is valid. Returns when to look again.
    pub(super) fn fleet_failed(&self, why: String, retry_at: i64, failures: u32, now: i64) -> i64 {
        tracing::warn!(profile = %self.name, attempt = failures, "fleet refresh failed: {why}");
        let held_expiry = self.snapshot().token.as_ref().and_then(|h| h.expires_at_ms);
        self.shared.events.emit(
            &self.name,
            EventKind::RefreshFailed,
            held_expiry,
            engine::failure_event(&why, now, retry_at, held_expiry),
        );
        self.state.send_modify(|s| s.failing(retry_at, why));
        retry_at
    }
}
