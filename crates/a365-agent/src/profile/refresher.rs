//! The refresher: the one task per profile that makes token requests. It
//! renews before expiry (and on a client's demand), saves a rotated
//! refresh token durably before serving the new access token, backs off
//! after failures, and stops for good on a dead credential.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use a365_proto::{EventKind, human_ms};
use a365_store::Credential;

use super::{Held, Phase, Profile, Snapshot};
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

/// When the next exchange is due by the published state alone; `None`
/// while the credential is dead.
pub(super) fn due_at(snap: &Snapshot, now_ms: i64) -> Option<i64> {
    match &snap.phase {
        Phase::NeedsReauth(_) => None,
        Phase::Empty => Some(now_ms),
        Phase::Failing { retry_at_ms } => Some(*retry_at_ms),
        Phase::Fresh | Phase::Refreshing => snap.next_refresh_at_ms,
    }
}

/// Whether to make a token request now: never for a dead credential;
/// when forced or due; on a client's demand unless backing off.
pub(super) fn should_refresh(
    phase: &Phase,
    due: Option<i64>,
    now_ms: i64,
    forced: bool,
    demanded: bool,
) -> bool {
    let backing_off = matches!(phase, Phase::Failing { retry_at_ms } if *retry_at_ms > now_ms);
    let dead = matches!(phase, Phase::NeedsReauth(_));
    !dead && (forced || due.is_some_and(|d| d <= now_ms) || (demanded && !backing_off))
}

/// How long to sleep: until `due`, but no later than the next tick. The
/// tick falls on a multiple of the wall clock's tick, the same instant for
/// every profile: an idle agent wakes twice a minute, not twice per profile.
pub(super) fn sleep_ms(due: Option<i64>, now_ms: i64, tick_ms: i64) -> i64 {
    let tick = tick_ms - now_ms.rem_euclid(tick_ms);
    due.map_or(tick, |d| (d - now_ms).clamp(0, tick))
}

/// How long to wait after the provider answered `e`, the `failures`th
/// failure in a row: at least the server's `Retry-After`, and a refused
/// client or grant longer than a network error. The local refresher and
/// the fleet's follow the same rule.
pub(super) fn backoff_after(e: &ProviderError, failures: u32) -> Duration {
    let (rejected, retry_after) = match e {
        ProviderError::Transient { retry_after, .. } => (false, *retry_after),
        ProviderError::Unusable { .. } | ProviderError::Unanswered(_) => (false, None),
        _ => (true, None),
    };
    schedule::backoff(failures, rejected, retry_after, fastrand::f64())
}

/// What clients asked of the refresher since it last looked.
pub(super) struct Asked {
    /// `a365 refresh`.
    pub forced: bool,
    /// The longest `min_valid_ms` a waiting client asked for.
    pub wanted_ms: u64,
    /// A client waits for a better token than the one held.
    pub demanded: bool,
}

impl Profile {
    /// Takes what clients asked. A demand that the fresh token published
    /// meanwhile meets costs no request: the client looked before it was
    /// published, and is woken to look again.
    pub(super) fn take_asked(&self, snap: &Snapshot, now: i64) -> Asked {
        let forced = self.force.swap(false, Ordering::SeqCst);
        let wanted_ms = self.demand_min_valid_ms.swap(0, Ordering::SeqCst);
        let mut demanded = self.demand.swap(false, Ordering::SeqCst);
        if demanded
            && snap.phase == Phase::Fresh
            && snap
                .token
                .as_ref()
                .is_some_and(|h| h.valid_for(now, wanted_ms))
        {
            demanded = false;
            self.state.send_modify(|_| {});
        }
        if demanded {
            self.last_demand_ms.store(now, Ordering::SeqCst);
        }
        Asked {
            forced,
            wanted_ms,
            demanded,
        }
    }

    /// Sleeps until the next refresh is due (checking the wall clock at
    /// least every tick: tokio's timers stand still while the machine
    /// sleeps) or until woken by a client. It lives as
    /// long as its profile, mostly asleep: the work it awaits (an HTTP
    /// exchange, a save) is boxed, so that each idle profile's task holds
    /// only the loop's state (0.6 KiB instead of 1.4 KiB).
    pub(super) async fn refresher(self: Arc<Self>, mut credential: Credential) {
        let mut failures = 0u32;
        let mut unsaved = false;
        let mut after_save = AfterSaveRetry {
            at_ms: self.shared.clock.now_ms(),
            failures: 0,
        };
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            if unsaved {
                unsaved = Box::pin(self.persist(&credential, false)).await.is_err();
            }
            let pending_work = self.provider().has_work_after_save(&credential);
            if !unsaved && pending_work && self.shared.clock.now_ms() >= after_save.at_ms {
                let done = Box::pin(self.after_save(&mut credential)).await;
                after_save.record(done, self.shared.clock.now_ms());
            }
            let now = self.shared.clock.now_ms();
            let snap = self.snapshot();
            let Asked {
                forced,
                wanted_ms: _,
                demanded,
            } = self.take_asked(&snap, now);
            let due = due_at(&snap, now);
            if should_refresh(&snap.phase, due, now, forced, demanded) {
                let outcome = Box::pin(self.refresh_once(&mut credential, &mut failures)).await;
                unsaved = outcome.is_err();
                continue;
            }
            let due = match self.provider().has_work_after_save(&credential) {
                false => due,
                true => Some(due.map_or(after_save.at_ms, |d| d.min(after_save.at_ms))),
            };
            let sleep_ms = sleep_ms(due, now, self.shared.tick_ms);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(sleep_ms as u64)) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    pub(super) fn exchange(&self, now_ms: i64) -> Option<Exchange<'_>> {
        Some(Exchange {
            profile: &self.name,
            http: &self.shared.http,
            endpoint: self.endpoint.as_ref()?,
            spec: &self.spec,
            now_ms,
            default_lifetime: self.shared.default_lifetime,
        })
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
        if let Some(marked) = self.provider().before_obtain(credential) {
            // Nothing is sent that could not be found again after a crash.
            if let Err(why) = self.persist(&marked, false).await {
                let e = ProviderError::transient(why);
                return self.failed(e, credential, failures, now).await;
            }
            *credential = marked;
        }
        crate::resident::touch();
        self.state.send_modify(|s| {
            if s.phase != Phase::Empty {
                s.phase = Phase::Refreshing;
            }
        });
        tracing::debug!(profile = %self.name, url = %exchange.endpoint.token_url, kind = %self.spec.kind, "refreshing");
        let result = self.provider().obtain(exchange, credential).await;
        let now = self.shared.clock.now_ms();
        // Whoever asked before or during this exchange is answered by it.
        self.demand.store(false, Ordering::SeqCst);
        match result {
            Ok(got) => {
                *failures = 0;
                self.refreshed(got, credential, now).await
            }
            Err(ProviderError::Dead(reason)) => {
                tracing::warn!(profile = %self.name, "credential rejected: {reason}");
                let message = format!("{reason}. {}", self.provider().reauth_advice(&self.name));
                self.shared
                    .events
                    .emit(&self.name, EventKind::NeedsReauth, None, message.clone());
                self.state.send_modify(|s| {
                    s.phase = Phase::NeedsReauth(message);
                    s.last_error = Some(reason);
                    s.next_refresh_at_ms = None;
                    s.attempts_done += 1;
                });
                Ok(())
            }
            Err(e) => self.failed(e, credential, failures, now).await,
        }
    }

    /// A new token: the credential it changes is saved (durably, before
    /// anything else when the refresh token rotated), then it is served.
    async fn refreshed(
        &self,
        got: Obtained,
        credential: &mut Credential,
        now: i64,
    ) -> Result<(), Unsaved> {
        let rotated = got.refresh_token.is_some();
        let rotates = crate::provider::rotation_seen(
            credential.refresh_token.as_ref(),
            got.refresh_token.as_ref(),
        );
        if let Some(rt) = got.refresh_token {
            credential.refresh_token = Some(rt);
        }
        if let Some(id) = got.token_id {
            // The old token is deleted only once the new one is saved.
            if let Some(old) = credential.token_id.replace(id) {
                credential.retired_token_ids.push(old);
            }
        }
        credential.access_token = Some(got.access_token.clone());
        credential.access_expires_at_ms = got.expires_at_ms;
        credential.access_scopes = got.scopes.clone();
        credential.updated_at_ms = now;
        // Durable before anything else: the old refresh token is dead.
        let saved = self.persist(credential, rotated).await;
        let next = got
            .expires_at_ms
            .map(|exp| schedule::refresh_at(now, exp, fastrand::f64()));
        tracing::info!(
            profile = %self.name,
            expires_in_s = got.expires_at_ms.map(|exp| (exp - now) / 1000),
            rotated,
            "token refreshed"
        );
        let held = Held {
            secret: got.access_token,
            expires_at_ms: got.expires_at_ms,
            scopes: got.scopes,
            obtained_at_ms: now,
        };
        let expires_at_ms = held.expires_at_ms;
        self.state.send_modify(|s| {
            s.token = Some(Arc::new(held));
            s.phase = Phase::Fresh;
            s.next_refresh_at_ms = next;
            s.last_error = saved.as_ref().err().cloned();
            s.attempts_done += 1;
            s.rotates = rotates.or(s.rotates);
        });
        self.shared.events.emit(
            &self.name,
            EventKind::Refreshed,
            expires_at_ms,
            "a new token is being served".into(),
        );
        saved.map_err(|_| Unsaved)
    }

    /// A failure worth retrying: back off (at least as long as the
    /// server's `Retry-After`), keeping any rotated refresh token it brought.
    async fn failed(
        &self,
        mut e: ProviderError,
        credential: &mut Credential,
        failures: &mut u32,
        now: i64,
    ) -> Result<(), Unsaved> {
        *failures = failures.saturating_add(1);
        // No token to serve, but a new refresh token: the old one is dead,
        // so it is saved before anything else.
        let mut saved = Ok(());
        if let ProviderError::Unusable { refresh_token, .. } = &mut e
            && let Some(rt) = refresh_token.take()
        {
            credential.refresh_token = Some(rt);
            credential.updated_at_ms = now;
            saved = self.persist(credential, true).await;
        }
        let wait = backoff_after(&e, *failures);
        let retry_at = now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
        tracing::warn!(
            profile = %self.name,
            attempt = *failures,
            retry_in_ms = wait.as_millis() as u64,
            "refresh failed: {e}"
        );
        let held_expiry = self.snapshot().token.as_ref().and_then(|h| h.expires_at_ms);
        let gap = self.expiry_gap(held_expiry, now, retry_at);
        self.shared.events.emit(
            &self.name,
            EventKind::RefreshFailed,
            held_expiry,
            format!("{e}; next attempt in {}{gap}", human_ms(retry_at - now)),
        );
        self.state.send_modify(|s| {
            s.phase = Phase::Failing {
                retry_at_ms: retry_at,
            };
            s.last_error = Some(e.to_string());
            s.next_refresh_at_ms = Some(retry_at);
            s.attempts_done += 1;
        });
        saved.map_err(|_| Unsaved)
    }

    /// The server asked us to wait past the held token's end: say so now,
    /// not once clients start failing. Returns the event's addition.
    fn expiry_gap(&self, held_expiry: Option<i64>, now: i64, retry_at: i64) -> String {
        match held_expiry {
            Some(exp) if exp > now && exp < retry_at => {
                tracing::warn!(
                    profile = %self.name,
                    "the held token expires in {} but the next attempt is in {}",
                    human_ms(exp - now),
                    human_ms(retry_at - now)
                );
                format!(
                    "; the held token expires in {}, before that attempt",
                    human_ms(exp - now)
                )
            }
            _ => String::new(),
        }
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
        self.demand.store(false, Ordering::SeqCst);
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

    /// Saves the credential; on failure logs and describes it.
    /// `old_is_dead`: the stored refresh token was just rotated away.
    async fn persist(&self, credential: &Credential, old_is_dead: bool) -> Result<(), String> {
        match self.placed.save(&self.name, credential, old_is_dead).await {
            Ok(()) => Ok(()),
            Err(error) => {
                tracing::error!(profile = %self.name, "could not save the new credential: {error}");
                Err(format!(
                    "could not save the new credential ({error}); it is held in memory and saving \
                     is retried"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(phase: Phase, next: Option<i64>) -> Snapshot {
        Snapshot {
            token: None,
            phase,
            last_error: None,
            next_refresh_at_ms: next,
            attempts_done: 0,
            rotates: None,
            refreshed_by: None,
        }
    }

    #[test]
    fn due_follows_the_phase() {
        assert_eq!(due_at(&snap(Phase::Empty, Some(9)), 5), Some(5));
        assert_eq!(due_at(&snap(Phase::Fresh, Some(9)), 5), Some(9));
        assert_eq!(due_at(&snap(Phase::Fresh, None), 5), None);
        let failing = Phase::Failing { retry_at_ms: 7 };
        assert_eq!(due_at(&snap(failing, Some(9)), 5), Some(7));
        let dead = Phase::NeedsReauth("log in".into());
        assert_eq!(due_at(&snap(dead, Some(9)), 5), None);
    }

    #[test]
    fn a_dead_credential_is_never_sent_even_when_forced() {
        let dead = Phase::NeedsReauth("log in".into());
        assert!(!should_refresh(&dead, Some(0), 5, true, true));
    }

    #[test]
    fn refresh_when_due_forced_or_demanded() {
        assert!(!should_refresh(&Phase::Fresh, Some(10), 5, false, false));
        assert!(should_refresh(&Phase::Fresh, Some(5), 5, false, false));
        assert!(should_refresh(&Phase::Fresh, Some(10), 5, true, false));
        assert!(should_refresh(&Phase::Fresh, Some(10), 5, false, true));
        assert!(should_refresh(&Phase::Fresh, None, 5, false, true));
    }

    #[test]
    fn a_client_demand_does_not_cut_a_backoff_short() {
        let failing = Phase::Failing { retry_at_ms: 10 };
        assert!(!should_refresh(&failing, Some(10), 5, false, true));
        // Forcing (`a365 refresh`) does.
        assert!(should_refresh(&failing, Some(10), 5, true, false));
        // Once the backoff is over, it is simply due.
        assert!(should_refresh(&failing, Some(10), 10, false, false));
    }

    #[test]
    fn sleeps_until_due_but_never_past_the_shared_tick() {
        assert_eq!(sleep_ms(None, 31_000, 30_000), 29_000);
        assert_eq!(sleep_ms(Some(32_000), 31_000, 30_000), 1_000);
        assert_eq!(sleep_ms(Some(90_000), 31_000, 30_000), 29_000);
        assert_eq!(sleep_ms(Some(1_000), 31_000, 30_000), 0);
        // Every profile wakes at the same instant.
        assert_eq!(31_000 + sleep_ms(None, 31_000, 30_000), 60_000);
        assert_eq!(47_000 + sleep_ms(None, 47_000, 30_000), 60_000);
    }

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
