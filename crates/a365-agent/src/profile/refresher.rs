//! The refresher: the one task per profile that makes token requests. It
//! renews before expiry (and on a client's demand), saves a rotated
//! refresh token durably before serving the new access token, backs off
//! after failures, and stops for good on a dead credential.

use std::sync::Arc;

use a365_proto::{EventKind, human_ms};
use a365_store::Credential;

use super::engine::{self, Folded, Verdict, due_at, should_refresh, sleep_ms};
use super::lost::Lost;
use super::mailbox::Asked;
use super::{Phase, Profile, Snapshot};
use crate::provider::{Exchange, Obtained, ProviderError};
use crate::schedule;

/// A new credential could not be saved; it is held in memory and saving is
/// retried.
#[derive(Debug)]
struct Unsaved;

/// Work after a save (Designer Cloud deletes replaced tokens): when it is
/// next tried, backing off from 2 s to an hour after failures.
#[derive(Debug)]
struct AfterSaveRetry {
    at_ms: i64,
    failures: u32,
}

impl AfterSaveRetry {
    fn record(&mut self, done: bool, now_ms: i64) {
        if done {
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
            self.at_ms = now_ms + (1_000i64 << self.failures.min(12)).min(3_600_000);
        }
    }
}

/// What the refresh loop carries between rounds, by the profile's home.
pub(super) enum Rounds {
    Local(Box<LocalRounds>),
    Fleet(Box<super::fleet::FleetRounds>),
}

/// A local profile's loop state: the credential as last saved (or to be
/// saved), and what is left to do.
pub(super) struct LocalRounds {
    credential: Credential,
    failures: u32,
    /// The new credential could not be saved: saving is retried.
    unsaved: bool,
    after_save: AfterSaveRetry,
}

impl Rounds {
    pub(super) fn local(credential: Credential, now_ms: i64) -> Rounds {
        Rounds::Local(Box::new(LocalRounds {
            credential,
            failures: 0,
            unsaved: false,
            after_save: AfterSaveRetry {
                at_ms: now_ms,
                failures: 0,
            },
        }))
    }
}

/// What a home says of the next round.
pub(super) struct Plan {
    /// When the next round is due by the published state.
    pub due: Option<i64>,
    /// Whether a round may start now (the home may hold it back).
    pub may_look: bool,
    /// Start a round now even though the state says none is due.
    pub look_anyway: bool,
    /// When to wake at the latest (before the next tick).
    pub wake_at: Option<i64>,
    /// Until when the home holds rounds back.
    pub hold_until: Option<i64>,
}

impl Profile {
    /// Takes what clients asked. A demand that the fresh token published
    /// meanwhile meets costs no request: the client looked before it was
    /// published, and is woken to look again.
    pub(super) fn take_asked(&self, snap: &Snapshot, now: i64) -> Asked {
        let (asked, dropped) = self.mailbox.take(now, |wanted_ms| {
            snap.phase == Phase::Fresh
                && snap
                    .token
                    .as_ref()
                    .is_some_and(|h| h.valid_for(now, wanted_ms))
        });
        if dropped {
            self.state.send_modify(|_| {});
        }
        asked
    }

    /// The one refresh loop, whatever the home: sleeps until the next
    /// refresh is due (checking the wall clock at least every tick: tokio's
    /// timers stand still while the machine sleeps) or until woken by a
    /// client, then makes a round in its home. It lives as long as its
    /// profile, mostly asleep: the work it awaits (an HTTP exchange, a save,
    /// etcd) is boxed, so that each idle profile's task holds only the
    /// loop's state.
    pub(super) async fn refresher(self: Arc<Self>, mut rounds: Rounds) {
        let tick_ms = self.shared.tick_ms;
        let mut tick = self.shared.tick.waiter();
        loop {
            if self.mailbox.stopping() {
                return;
            }
            self.settle(&mut rounds).await;
            let now = self.shared.clock.now_ms();
            let snap = self.snapshot();
            let plan = match &rounds {
                Rounds::Local(local) => self.plan_local(local, &snap, now),
                Rounds::Fleet(fleet) => fleet.plan(&snap, now, self.shared.tick_ms),
            };
            if plan.may_look {
                let asked = self.take_asked(&snap, now);
                let due = should_refresh(&snap.phase, plan.due, now, asked.forced, asked.demanded);
                if due || plan.look_anyway {
                    match &mut rounds {
                        Rounds::Local(local) => Box::pin(self.local_round(local)).await,
                        Rounds::Fleet(fleet) => Box::pin(self.fleet_round(fleet, asked)).await,
                    }
                    continue;
                }
            }
            // A client waiting while the home holds the profile back is
            // served at the end of the hold, not at the next tick.
            let sleep_ms = match plan.hold_until {
                Some(until) if self.mailbox.waiting() => until - now,
                _ => sleep_ms(plan.wake_at, now, tick_ms),
            };
            // Nothing due before the next tick: wait for the tick itself.
            match sleep_ms < tick_ms - now.rem_euclid(tick_ms) {
                true => self.mailbox.wait(sleep_ms).await,
                false => {
                    let wake_at = plan.wake_at.unwrap_or(i64::MAX);
                    self.mailbox.wait_tick(&mut tick, wake_at).await
                }
            }
        }
    }

    /// Work left from the last round: a save or a commit to retry, a
    /// kind's work after a save.
    async fn settle(&self, rounds: &mut Rounds) {
        match rounds {
            Rounds::Local(local) => {
                if local.unsaved {
                    local.unsaved = Box::pin(self.persist(&local.credential, false))
                        .await
                        .is_err();
                }
                let pending = self.provider().has_work_after_save(&local.credential);
                let now = self.shared.clock.now_ms();
                if !local.unsaved && pending && now >= local.after_save.at_ms {
                    let done = Box::pin(self.after_save(&mut local.credential)).await;
                    local.after_save.record(done, self.shared.clock.now_ms());
                }
            }
            Rounds::Fleet(fleet) => Box::pin(self.settle_fleet(fleet)).await,
        }
    }

    fn plan_local(&self, local: &LocalRounds, snap: &Snapshot, now: i64) -> Plan {
        let due = due_at(snap, now);
        let at = local.after_save.at_ms;
        let wake_at = match self.provider().has_work_after_save(&local.credential) {
            false => due,
            true => Some(due.map_or(at, |d| d.min(at))),
        };
        Plan {
            due,
            may_look: true,
            look_anyway: false,
            wake_at,
            hold_until: None,
        }
    }

    /// One token request from the local store, and its consequences.
    async fn local_round(&self, local: &mut LocalRounds) {
        let outcome = self
            .refresh_once(&mut local.credential, &mut local.failures)
            .await;
        local.unsaved = outcome.is_err();
    }

    pub(super) fn exchange(&self, now_ms: i64) -> Option<Exchange<'_>> {
        let mut exchange = self
            .shared
            .exchange(&self.name, self.endpoint.as_ref()?, &self.spec);
        exchange.now_ms = now_ms;
        Some(exchange)
    }

    /// One token request and its consequences. A rotated refresh token (or
    /// a renewed Designer Cloud token) is saved, fsync'd, before the new
    /// access token is published. `Err` means the new credential could not
    /// be saved and is held in memory.
    async fn refresh_once(
        &self,
        credential: &mut Credential,
        failures: &mut u32,
    ) -> Result<(), Unsaved> {
        let now = self.shared.clock.now_ms();
        let Some(exchange) = self.exchange(now) else {
            return Ok(());
        };
        if let Err(why) = self.provider().can_renew(&self.name, credential) {
            self.serve_until_expiry(now, &why);
            return Ok(());
        }
        let replay_safe = engine::replay_safe(credential);
        if let Some(sent_at) = credential.refresh_sent_at_ms.filter(|_| !replay_safe) {
            // An earlier request's answer never came (a crash, a lost
            // answer): the token it carried may be spent.
            let cause = "the agent stopped or the connection ended before it came";
            let lost = Lost { sent_at, cause };
            if !self
                .still_active(exchange, credential, lost, failures)
                .await
            {
                return Ok(());
            }
            credential.refresh_sent_at_ms = None;
        }
        // Within the token endpoint's budget, counted (and saved) before
        // it is sent; else the current token is served meanwhile.
        let admitted = match &self.budget {
            Some(quota) => match quota.admit(self.shared.clock.as_ref()).await {
                Ok(id) => Some((quota, id)),
                Err(hold) => {
                    self.held_back(&hold, self.shared.clock.now_ms());
                    return Ok(());
                }
            },
            None => None,
        };
        // Nothing is sent that could not be found again after a crash (a
        // Designer Cloud tag), nor a refresh token that may be spent
        // without a record that it was sent.
        let mut marked = self.provider().before_obtain(credential);
        if !replay_safe {
            marked
                .get_or_insert_with(|| credential.clone())
                .refresh_sent_at_ms = Some(now);
        }
        if let Some(marked) = marked {
            // Clients arriving during the save wait for this round.
            self.refreshing();
            if let Err(why) = self.persist(&marked, false).await {
                if let Some((quota, id)) = admitted {
                    quota.cancel(id).await;
                }
                let e = ProviderError::transient(why);
                return self.failed(e, credential, failures, now, false).await;
            }
            *credential = marked;
        }
        let result = self.send(exchange, credential).await;
        let now = self.shared.clock.now_ms();
        if let Some((quota, id)) = admitted {
            quota.settle(id, now).await;
        }
        match result {
            Ok(got) => {
                *failures = 0;
                self.refreshed(got, credential, now).await
            }
            Err(ProviderError::Unanswered(cause)) if !replay_safe => {
                let sent_at = credential.refresh_sent_at_ms.unwrap_or(now);
                tracing::warn!(profile = %self.name, "the answer to a refresh was lost: {cause}");
                let lost = Lost {
                    sent_at,
                    cause: &cause,
                };
                // Asked now when the answer was waited for in full, else
                // once the server must have finished with the request.
                let Some(exchange) = self.exchange(now) else {
                    return Ok(());
                };
                if !self
                    .still_active(exchange, credential, lost, failures)
                    .await
                {
                    return Ok(());
                }
                // Not spent: sent again after the usual back-off.
                credential.refresh_sent_at_ms = None;
                let e = ProviderError::transient(format!(
                    "the answer to a refresh was lost ({cause}); the provider says the refresh \
                     token is still active, so it is sent again"
                ));
                self.failed(e, credential, failures, now, false).await
            }
            Err(e) => {
                // The server answered: the refresh token was not spent
                // unless the answer says so.
                let answered = credential.refresh_sent_at_ms.take().is_some();
                self.failed(e, credential, failures, now, answered).await
            }
        }
    }

    /// Sends one token request, local or for the fleet. Whoever asked
    /// before or during it is answered by it.
    pub(super) async fn send(
        &self,
        exchange: Exchange<'_>,
        credential: &Credential,
    ) -> Result<Obtained, ProviderError> {
        crate::resident::touch();
        self.refreshing();
        tracing::debug!(profile = %self.name, url = %exchange.endpoint.token_url, kind = %self.spec.kind, "refreshing");
        let result = self.provider().obtain(exchange, credential).await;
        self.mailbox.answered();
        result
    }

    /// A round is under way: clients wait for it rather than start one.
    fn refreshing(&self) {
        self.state.send_modify(|s| {
            if s.phase != Phase::Empty {
                s.phase = Phase::Refreshing;
            }
        });
    }

    /// A new token: the credential it changes is saved (durably, before
    /// anything else when the refresh token rotated), then it is served.
    async fn refreshed(
        &self,
        got: Obtained,
        credential: &mut Credential,
        now: i64,
    ) -> Result<(), Unsaved> {
        let Folded {
            credential: next,
            rotated,
            rotates,
            held,
        } = engine::fold(credential, got, now);
        if rotates == Some(true)
            && let Some(old) = &credential.refresh_token
        {
            self.shared
                .spent
                .record(old, &self.name, now.div_euclid(1000));
        }
        *credential = next;
        // Durable before anything else: the old refresh token is dead.
        let saved = self.persist(credential, rotated).await;
        let expires_at_ms = held.expires_at_ms;
        let next = expires_at_ms.map(|exp| schedule::refresh_at(now, exp, fastrand::f64()));
        tracing::info!(
            profile = %self.name,
            expires_in_s = expires_at_ms.map(|exp| (exp - now) / 1000),
            rotated,
            "token refreshed"
        );
        let client_auth = super::client_auth_of(credential, &self.spec);
        let account = credential.account.clone();
        self.state.send_modify(|s| {
            s.serve(held, next, rotates);
            s.client_auth = client_auth;
            s.account = account;
            s.last_error = saved.as_ref().err().cloned();
        });
        self.shared.events.emit(
            &self.name,
            EventKind::Refreshed,
            expires_at_ms,
            "a new token is being served".into(),
        );
        saved.map_err(|_| Unsaved)
    }

    /// A failed request: dead, or back off (at least as long as the
    /// server's `Retry-After`), keeping any rotated refresh token it brought.
    /// `changed`: the credential lost its in-flight mark, to be saved.
    async fn failed(
        &self,
        e: ProviderError,
        credential: &mut Credential,
        failures: &mut u32,
        now: i64,
        changed: bool,
    ) -> Result<(), Unsaved> {
        *failures = failures.saturating_add(1);
        let advice = self.provider().reauth_advice(&self.name, &self.spec);
        // A credential that never brought a token has no access token.
        let first = credential.access_token.is_none();
        let (retry_at, error, rotated) =
            match engine::judge(e, (*failures, first), now, &advice, fastrand::f64()) {
                Verdict::Dead { reason, message } => {
                    tracing::warn!(profile = %self.name, "credential rejected: {reason}");
                    self.mark_dead(message, reason);
                    if changed {
                        return self.persist(credential, false).await.map_err(|_| Unsaved);
                    }
                    return Ok(());
                }
                Verdict::Retry {
                    retry_at_ms,
                    error,
                    rotated,
                } => (retry_at_ms, error, rotated),
            };
        // No token to serve, but a new refresh token: the old one is dead,
        // so it is saved before anything else.
        let mut saved = Ok(());
        if let Some(rt) = rotated {
            credential.refresh_token = Some(rt);
            credential.updated_at_ms = now;
            saved = self.persist(credential, true).await;
        } else if changed {
            saved = self.persist(credential, false).await;
        }
        tracing::warn!(
            profile = %self.name,
            attempt = *failures,
            retry_in_ms = (retry_at - now).max(0) as u64,
            "refresh failed: {error}"
        );
        let held_expiry = self.snapshot().token.as_ref().and_then(|h| h.expires_at_ms);
        if let Some(exp) = held_expiry.filter(|exp| *exp > now && *exp < retry_at) {
            tracing::warn!(
                profile = %self.name,
                "the held token expires in {} but the next attempt is in {}",
                human_ms(exp - now),
                human_ms(retry_at - now)
            );
        }
        self.shared.events.emit(
            &self.name,
            EventKind::RefreshFailed,
            held_expiry,
            engine::failure_event(&error, now, retry_at, held_expiry),
        );
        self.state.send_modify(|s| s.failing(retry_at, error));
        saved.map_err(|_| Unsaved)
    }

    /// A token request waits for the budget: the current token is served,
    /// clients that need a newer one are told why and until when, and the
    /// next round is at `hold.until_ms`. Not a failure: no back-off grows.
    pub(super) fn held_back(&self, hold: &crate::budget::Hold, now: i64) {
        let client_id = self.spec.client_id.as_deref().unwrap_or("(none)");
        let message = format!(
            "{}; the current token is served meanwhile",
            hold.message(client_id, now)
        );
        tracing::warn!(profile = %self.name, "token request held back: {message}");
        let held_expiry = self.snapshot().token.as_ref().and_then(|h| h.expires_at_ms);
        self.shared.events.emit(
            &self.name,
            EventKind::HeldBack,
            held_expiry,
            message.clone(),
        );
        self.mailbox.answered();
        self.state
            .send_modify(|s| s.failing(hold.until_ms, message));
    }

    /// Each window of this profile's budget and what is used of it.
    pub(crate) fn budget_used(&self, now: i64) -> Vec<a365_proto::BudgetWindow> {
        self.budget
            .as_ref()
            .map(|b| b.used(now))
            .unwrap_or_default()
    }

    /// The credential is dead, for the user to act on `message`.
    pub(super) fn mark_dead(&self, message: String, reason: String) {
        self.shared
            .events
            .emit(&self.name, EventKind::NeedsReauth, None, message.clone());
        self.state.send_modify(|s| s.dead(message, reason));
    }

    /// A credential that cannot be renewed (a login granted no refresh
    /// token) serves its token until it expires, then needs the user.
    fn serve_until_expiry(&self, now: i64, why: &str) {
        let exp = self
            .snapshot()
            .token
            .as_ref()
            .and_then(|h| h.expires_at_ms)
            .filter(|exp| *exp > now);
        self.mailbox.answered();
        self.state.send_modify(|s| {
            match exp {
                Some(exp) => {
                    s.next_refresh_at_ms = Some(exp);
                    s.last_error = Some(format!(
                        "the token cannot be renewed before it expires; {why}"
                    ));
                }
                None => {
                    s.phase = Phase::NeedsReauth(format!("the token has expired and {why}"));
                    s.next_refresh_at_ms = None;
                }
            }
            s.attempts_done += 1;
        });
        if exp.is_none() {
            self.shared.events.emit(
                &self.name,
                EventKind::NeedsReauth,
                None,
                format!("the token has expired and {why}"),
            );
        }
    }

    /// The kind's work after a save; false when some is left for later
    /// (or what it changed could not be saved).
    async fn after_save(&self, credential: &mut Credential) -> bool {
        let now = self.shared.clock.now_ms();
        let Some(exchange) = self.exchange(now) else {
            return true;
        };
        let outcome = self
            .provider()
            .after_save(exchange, &self.name, credential)
            .await;
        let saved = !outcome.changed || self.persist(credential, false).await.is_ok();
        saved && !outcome.unfinished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_save_backs_off_to_an_hour_and_resets_on_success() {
        let mut retry = AfterSaveRetry {
            at_ms: 0,
            failures: 0,
        };
        retry.record(false, 100);
        assert_eq!(retry.at_ms, 2_100);
        for _ in 0..20 {
            retry.record(false, 100);
        }
        assert_eq!(retry.at_ms, 100 + 3_600_000);
        retry.record(true, 200);
        assert_eq!(retry.failures, 0);
        retry.record(false, 300);
        assert_eq!(retry.at_ms, 2_300);
    }
}
