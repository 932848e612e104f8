//! A refresh whose answer never came (a crash, a cut connection, a
//! timeout): its refresh token may be spent, so it is sent again only when
//! the provider says it is still active (RFC 7662).

use a365_proto::human_ms;
use a365_store::Credential;

use super::{Profile, engine};
use crate::provider::Exchange;

/// A refresh token sent at `sent_at` whose answer never came, and why.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lost<'a> {
    pub(super) sent_at: i64,
    pub(super) cause: &'a str,
}

impl Profile {
    /// Whether the refresh token of `credential`, whose answer was `lost`,
    /// may be sent again: only when the provider says it is still active
    /// (RFC 7662), asked once the server must be done with the request
    /// it was sent in. Otherwise the profile says what happened: dead (no
    /// one to ask, or the provider says it was spent), or failing until
    /// the provider can be asked.
    pub(super) async fn still_active(
        &self,
        exchange: Exchange<'_>,
        credential: &Credential,
        lost: Lost<'_>,
        failures: &mut u32,
    ) -> bool {
        let now = self.shared.clock.now_ms();
        let advice = self.provider().reauth_advice(&self.name, &self.spec);
        let Lost { sent_at, cause } = lost;
        let Some(ask) = crate::provider::still_active(exchange, credential) else {
            let (reason, message) = engine::lost_answer(cause, sent_at, now, &advice);
            self.mark_dead(message, reason);
            return false;
        };
        let ago = |now: i64| human_ms(now.saturating_sub(sent_at).max(0));
        let wait_ms = i64::try_from(self.shared.answer_wait.as_millis()).unwrap_or(i64::MAX);
        let ask_at = sent_at.saturating_add(wait_ms);
        if now < ask_at {
            let error = format!(
                "the answer to a refresh sent {} ago was lost ({cause}); the provider is asked in \
                 {} whether the refresh token is still active",
                ago(now),
                human_ms(ask_at - now)
            );
            self.state.send_modify(|s| s.failing(ask_at, error));
            return false;
        }
        let answer = ask.await;
        let now = self.shared.clock.now_ms();
        match answer {
            Ok(true) => {
                tracing::info!(profile = %self.name, "the provider says the refresh token whose answer was lost is still active: sending it again");
                true
            }
            Ok(false) => {
                let reason = format!(
                    "the provider says the refresh token sent {} ago is no longer active: that \
                     refresh was done and its answer lost ({cause})",
                    ago(now)
                );
                tracing::warn!(profile = %self.name, "{reason}");
                self.mark_dead(format!("{reason}. {advice}"), reason);
                false
            }
            Err(e) => {
                *failures = failures.saturating_add(1);
                let wait = crate::schedule::backoff(*failures, false, None, fastrand::f64());
                let retry_at =
                    now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
                let error = format!(
                    "the answer to a refresh sent {} ago was lost ({cause}), and asking the provider \
                     whether the refresh token is still active failed: {e}",
                    ago(now)
                );
                tracing::warn!(profile = %self.name, "{error}");
                self.state.send_modify(|s| s.failing(retry_at, error));
                false
            }
        }
    }
}
