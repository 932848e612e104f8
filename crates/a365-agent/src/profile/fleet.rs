//! A shared profile's loop (fleet mode): the member whose refresh falls
//! due first takes the fleet's lock, and the others adopt what it wrote.
//!
//! The rules, each against a failure seen with a plain lock:
//!
//! - the credential changes only by a transaction on its revision, so a
//!   member that stalled past its lease cannot overwrite a newer one;
//! - a refresh is marked in flight before it is sent, so that if its
//!   answer is lost (the member died or stalled), no other member replays
//!   a refresh token that the provider may have rotated: the credential is
//!   marked dead instead, unless the provider is known not to rotate;
//! - nothing is sent unless the lease was just renewed with room for the
//!   whole request;
//! - a member that finds a fresh token once it holds the lock sends
//!   nothing; a dead credential is dead for every member;
//! - etcd trouble stops refreshes, not service: held tokens are served
//!   while valid, and the reason is in `status`.

use std::sync::Arc;
use std::time::Duration;

use a365_proto::{EventKind, human_ms};
use a365_store::Credential;
use secrecy::ExposeSecret;

use super::engine::{self, Folded, Verdict, due_at};
use super::mailbox::Asked;
use super::refresher::Plan;
use super::{Held, Phase, Profile};
use crate::fleet::{Fleet, FleetError, Inflight, Lock, Public, Role, Secret};
use crate::provider::{Obtained, ProviderError};
use crate::schedule;

/// How soon to look again while another member holds the lock.
const LOCKED_RETRY_MS: i64 = 250;

/// A new credential that could not be written to etcd: retried until it
/// is, or until another member has moved on (then it is dropped, loudly).
#[derive(Debug)]
pub(super) struct Uncommitted {
    /// The in-flight marker this member wrote before sending.
    marker: Inflight,
    secret: Secret,
    public: Public,
}

/// What a round asks of the loop.
enum Next {
    /// Look again at the usual time.
    Done,
    /// Look again after this long, without counting a failure.
    Soon(i64),
    /// A failure of etcd or of the fleet's records: back off, at most 30 s.
    Failed(String),
    /// The provider's answer: back off as the local refresher does
    /// (its `Retry-After` at least, longer for a refused client).
    Refused(ProviderError),
}

/// A shared profile's loop state.
pub(super) struct FleetRounds {
    fleet: Arc<Fleet>,
    failures: u32,
    /// No round before this (a back-off, or another member's lock).
    not_before: i64,
    /// This member's answer, not yet written to etcd.
    uncommitted: Option<Uncommitted>,
    last_round: i64,
}

impl FleetRounds {
    pub(super) fn new(fleet: Arc<Fleet>) -> FleetRounds {
        FleetRounds {
            fleet,
            failures: 0,
            not_before: 0,
            uncommitted: None,
            last_round: 0,
        }
    }

    pub(super) fn plan(&self, snap: &super::Snapshot, now: i64, tick_ms: i64) -> Plan {
        let dead = matches!(snap.phase, Phase::NeedsReauth(_));
        // A dead credential is looked at every tick: another member may
        // have put a new one in the fleet.
        let due = match dead {
            true => Some(self.last_round + tick_ms),
            false => due_at(snap, now),
        }
        .map(|d| d.max(self.not_before));
        Plan {
            due,
            may_look: now >= self.not_before,
            look_anyway: dead && due.is_some_and(|d| d <= now),
            wake_at: match self.uncommitted {
                Some(_) => Some(now + 1_000),
                None => due,
            },
            hold_until: (now < self.not_before).then_some(self.not_before),
        }
    }
}

impl Profile {
    /// Writes an answer that etcd could not take when it came.
    pub(super) async fn settle_fleet(&self, rounds: &mut FleetRounds) {
        if let Some(pending) = rounds.uncommitted.take() {
            rounds.uncommitted = self.recommit(&rounds.fleet, pending).await;
        }
    }

    /// One round in the fleet, and when the next may start.
    pub(super) async fn fleet_round(&self, rounds: &mut FleetRounds, asked: Asked) {
        let Asked {
            forced,
            wanted_ms,
            demanded: _,
        } = asked;
        rounds.last_round = self.shared.clock.now_ms();
        let fleet = Arc::clone(&rounds.fleet);
        let next = self
            .fleet_look(&fleet, forced, wanted_ms, &mut rounds.uncommitted)
            .await;
        let now = self.shared.clock.now_ms();
        match next {
            Next::Done => rounds.failures = 0,
            Next::Soon(ms) => {
                // `a365 refresh` waits for a refresh, not for a look.
                if forced {
                    self.mailbox.force();
                }
                rounds.not_before = now + ms;
            }
            Next::Failed(why) => {
                rounds.failures = rounds.failures.saturating_add(1);
                let wait = schedule::backoff(rounds.failures, false, None, fastrand::f64())
                    .min(Duration::from_secs(30));
                let retry_at = now.saturating_add(wait.as_millis() as i64);
                rounds.not_before = self.fleet_failed(why, retry_at, rounds.failures, now);
            }
            Next::Refused(e) => {
                rounds.failures = rounds.failures.saturating_add(1);
                let advice = self.provider().reauth_advice(&self.name);
                rounds.not_before =
                    match engine::judge(e, rounds.failures, now, &advice, fastrand::f64()) {
                        Verdict::Retry {
                            retry_at_ms, error, ..
                        } => self.fleet_failed(error, retry_at_ms, rounds.failures, now),
                        Verdict::Dead { message, .. } => {
                            self.fleet_dead(&message);
                            now
                        }
                    };
            }
        }
    }

    /// One look at the fleet, and a refresh if this member should make it.
    async fn fleet_look(
        &self,
        fleet: &Fleet,
        forced: bool,
        wanted_ms: u64,
        uncommitted: &mut Option<Uncommitted>,
    ) -> Next {
        let now = self.shared.clock.now_ms();
        let public = match fleet.read_public(&self.name, now).await {
            Ok(Some(public)) => public,
            Ok(None) => return Next::Failed("it is no longer in the fleet".into()),
            Err(e) => return Next::Failed(no_refresh(&e)),
        };
        if let Some(why) = &public.dead {
            self.fleet_dead(why);
            return Next::Done;
        }
        // A consumer's `refresh` takes what the fleet has. A record of the
        // first format is never served: a refresher replaces it.
        let take = forced && fleet.role == Role::Consumer;
        if public.signed && (take || (!forced && fresh_enough(&public, now, wanted_ms))) {
            self.adopt(&public);
            return Next::Done;
        }
        if fleet.role == Role::Consumer {
            self.adopt_if_newer(&public);
            self.note(Some(format!(
                "waiting for a refresher of the fleet to renew it (last by '{}')",
                public.refreshed_by
            )));
            return Next::Soon(1_000);
        }
        let lock = match fleet.lock(&self.name, now).await {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                self.adopt_if_newer(&public);
                return Next::Soon(LOCKED_RETRY_MS + fastrand::i64(0..LOCKED_RETRY_MS));
            }
            Err(e) => return Next::Failed(no_refresh(&e)),
        };
        let next = self
            .refresh_locked(fleet, &lock, forced, wanted_ms, uncommitted)
            .await;
        fleet.unlock(lock).await;
        next
    }

    /// Holding the lock: adopt, or refresh and commit.
    async fn refresh_locked(
        &self,
        fleet: &Fleet,
        lock: &Lock,
        forced: bool,
        wanted_ms: u64,
        uncommitted: &mut Option<Uncommitted>,
    ) -> Next {
        let now = self.shared.clock.now_ms();
        // Read again under the lock: the last holder may have just written.
        let (public, (secret, rev)) = match tokio::try_join!(
            fleet.read_public(&self.name, now),
            fleet.read_secret(&self.name)
        ) {
            Ok((Some(public), Some(secret))) => (public, secret),
            Ok(_) => return Next::Failed("it is no longer in the fleet".into()),
            Err(e) => return Next::Failed(no_refresh(&e)),
        };
        if let Some(why) = public.dead.as_ref().or(secret.dead.as_ref()) {
            self.fleet_dead(why);
            return Next::Done;
        }
        if !public.signed && secret.generation > 0 {
            // Only a writer without the key drops the signature of a
            // record whose credential is of the signed format.
            let e = fleet.forged(&self.name, "none");
            tracing::error!(profile = %self.name, "{e}");
            return Next::Failed(e.to_string());
        }
        if public.signed && !forced && fresh_enough(&public, now, wanted_ms) {
            self.adopt(&public);
            return Next::Done;
        }
        // The settings sealed with the credential must be those this
        // member would send it with; see `Fleet::open_credential`.
        let credential = match fleet.open_credential(&self.name, &secret, &self.spec) {
            Ok(credential) => credential,
            Err(e) => return Next::Failed(e.to_string()),
        };
        let replay_safe = credential.refresh_token.is_none() || public.rotates == Some(false);
        if let Some(lost) = secret.inflight.as_ref().filter(|_| !replay_safe) {
            let why = format!(
                "a refresh sent by fleet member '{}' {} ago never had its answer written to the fleet \
                 (it stopped or stalled past its lease); the provider may have rotated the refresh \
                 token, and sending it again could revoke the grant. If that member comes back with \
                 the answer, the fleet recovers by itself; otherwise add the credential again \
                 (`a365 add {} --shared --replace …`)",
                lost.member,
                human_ms(now - lost.at_ms),
                self.name
            );
            return self.write_dead(fleet, rev, &secret, &public, why).await;
        }
        // Marked before it is sent: see the module's rules.
        let marker = Inflight {
            member: fleet.member.clone(),
            at_ms: now,
        };
        let marked = Secret {
            inflight: Some(marker.clone()),
            ..secret.clone()
        };
        let rev = match fleet.commit(&self.name, rev, &marked, None).await {
            Ok(Some(rev)) => rev,
            Ok(None) => return Next::Soon(LOCKED_RETRY_MS),
            Err(e) => return Next::Failed(no_refresh(&e)),
        };
        // The budget: only with the lease just renewed for the whole request.
        let budget_ms = self.shared.http_timeout_ms + 1_000;
        let left_ms = fleet
            .renew(lock, self.shared.clock.now_ms())
            .await
            .map(|s| s.saturating_mul(1_000));
        if !matches!(left_ms, Ok(ms) if ms >= budget_ms) {
            let why = match left_ms {
                Ok(0) => {
                    "this member's fleet lock ended before the request could be sent (a stall \
                          or a suspend); nothing was sent"
                        .to_owned()
                }
                Ok(ms) => format!(
                    "the fleet lease ({}) is shorter than a token request may take ({}): raise \
                     lease_secs; nothing was sent",
                    human_ms(ms),
                    human_ms(budget_ms)
                ),
                Err(e) => no_refresh(&e),
            };
            let _ = fleet.commit(&self.name, rev, &secret, None).await;
            return Next::Failed(why);
        }
        let Some(exchange) = self.exchange(now) else {
            return Next::Failed("the profile has no token endpoint".into());
        };
        tracing::debug!(profile = %self.name, member = %fleet.member, "refreshing for the fleet");
        let result = self.send(exchange, &credential).await;
        let now = self.shared.clock.now_ms();
        match result {
            Ok(got) => {
                let (secret, public) =
                    match self.next_records(fleet, &credential, (&secret, &public), got, now) {
                        Ok(records) => records,
                        Err(e) => return Next::Failed(e.to_string()),
                    };
                // Written before it is served, as a rotated refresh token is
                // saved before the local refresher serves; if etcd cannot
                // take it now, it is served anyway and written later.
                let pending = Uncommitted {
                    marker,
                    secret,
                    public,
                };
                match fleet
                    .commit(&self.name, rev, &pending.secret, Some(&pending.public))
                    .await
                {
                    Ok(Some(_)) => self.adopt(&pending.public),
                    Ok(None) | Err(_) => {
                        self.adopt(&pending.public);
                        *uncommitted = Box::pin(self.recommit(fleet, pending)).await
                    }
                }
                Next::Done
            }
            Err(ProviderError::Dead(reason)) => {
                let why = format!("{reason}. {}", self.provider().reauth_advice(&self.name));
                self.write_dead(fleet, rev, &secret, &public, why).await
            }
            Err(ProviderError::Unanswered(m)) if !replay_safe => {
                let why = format!(
                    "the answer to a refresh was lost ({m}); the provider may have rotated the \
                     refresh token, and sending it again could revoke the grant: add the credential \
                     again (`a365 add {} --shared --replace …`)",
                    self.name
                );
                self.write_dead(fleet, rev, &secret, &public, why).await
            }
            Err(mut e) => {
                match e.take_rotated() {
                    // No token, but a new refresh token: the old one is dead.
                    Some(rt) => {
                        let mut next = credential.clone();
                        next.refresh_token = Some(rt);
                        next.updated_at_ms = now;
                        let generation = crate::fleet::next_generation(secret.generation, now);
                        match fleet.seal(&self.name, &self.spec, &next, generation) {
                            Ok(sealed) => {
                                if !matches!(
                                    fleet.commit(&self.name, rev, &sealed, None).await,
                                    Ok(Some(_))
                                ) {
                                    tracing::error!(profile = %self.name, "could not write the rotated refresh token to the fleet");
                                }
                            }
                            Err(e) => tracing::error!(profile = %self.name, "{e}"),
                        }
                    }
                    // Nothing was spent: the marker goes.
                    None => {
                        let _ = fleet.commit(&self.name, rev, &secret, None).await;
                    }
                }
                Next::Refused(e)
            }
        }
    }

    /// The records a good answer makes.
    fn next_records(
        &self,
        fleet: &Fleet,
        credential: &Credential,
        (last, public): (&Secret, &Public),
        got: Obtained,
        now: i64,
    ) -> Result<(Secret, Public), FleetError> {
        let Folded {
            credential: mut next,
            rotates,
            held,
            ..
        } = engine::fold(credential, got, now);
        // The access token travels in the public record only.
        next.access_token = None;
        let generation = crate::fleet::next_generation(last.generation, now);
        let secret = fleet.seal(&self.name, &self.spec, &next, generation)?;
        tracing::info!(
            profile = %self.name,
            expires_in_s = held.expires_at_ms.map(|exp| (exp - now) / 1000),
            rotated = rotates == Some(true),
            "token refreshed for the fleet"
        );
        let token = (held.secret, held.expires_at_ms, held.scopes);
        let rotates = rotates.or(public.rotates);
        let public = Public::issued(
            self.spec.clone(),
            token,
            now,
            &fleet.member,
            rotates,
            secret.generation,
        );
        Ok((secret, public))
    }

    /// Writes a credential that another member changed meanwhile, if the
    /// change was only the verdict on this member's own refresh (marked
    /// dead while it stalled): its answer is the truth. `Some` while etcd
    /// cannot be reached.
    async fn recommit(&self, fleet: &Fleet, pending: Uncommitted) -> Option<Uncommitted> {
        for _ in 0..3 {
            let (current, rev) = match fleet.read_secret(&self.name).await {
                Ok(Some(found)) => found,
                Ok(None) => return None,
                Err(e) => {
                    tracing::error!(profile = %self.name, "the new refresh token is held by this member only, until etcd answers: {e}");
                    return Some(pending);
                }
            };
            if current.inflight.as_ref() != Some(&pending.marker) {
                tracing::error!(
                    profile = %self.name,
                    "another fleet member changed the shared credential while this one refreshed it; \
                     this member's answer is dropped"
                );
                return None;
            }
            match fleet
                .commit(&self.name, rev, &pending.secret, Some(&pending.public))
                .await
            {
                Ok(Some(_)) => {
                    tracing::info!(profile = %self.name, "this member's late answer was written to the fleet");
                    return None;
                }
                Ok(None) => continue,
                Err(_) => return Some(pending),
            }
        }
        Some(pending)
    }

    /// Marks the shared credential dead, for every member.
    async fn write_dead(
        &self,
        fleet: &Fleet,
        rev: i64,
        secret: &Secret,
        public: &Public,
        why: String,
    ) -> Next {
        tracing::warn!(profile = %self.name, "shared credential dead: {why}");
        // The marker stays: if its member comes back with the answer,
        // `recommit` recognises its own refresh and revives the credential.
        let dead_secret = Secret {
            dead: Some(why.clone()),
            ..secret.clone()
        };
        let dead_public = Public {
            dead: Some(why.clone()),
            refreshed_by: fleet.member.clone(),
            ..public.clone()
        };
        match fleet
            .commit(&self.name, rev, &dead_secret, Some(&dead_public))
            .await
        {
            Ok(Some(_)) => {
                self.fleet_dead(&why);
                Next::Done
            }
            Ok(None) => Next::Soon(LOCKED_RETRY_MS),
            Err(e) => Next::Failed(no_refresh(&e)),
        }
    }

    /// Serves what the fleet holds, when a refresher signed it.
    fn adopt(&self, public: &Public) {
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
    fn adopt_if_newer(&self, public: &Public) {
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
    fn note(&self, message: Option<String>) {
        self.state.send_modify(|s| s.last_error = message);
    }

    fn fleet_dead(&self, why: &str) {
        if matches!(&self.snapshot().phase, Phase::NeedsReauth(m) if m == why) {
            return;
        }
        self.mark_dead(why.to_owned(), why.to_owned());
    }

    /// A failed round: back off until `retry_at`, serving the held token
    /// while it is valid. Returns when to look again.
    fn fleet_failed(&self, why: String, retry_at: i64, failures: u32, now: i64) -> i64 {
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

/// Whether the fleet's token needs no refresh yet: before the earliest
/// instant any member would refresh it, and long enough for the client.
fn fresh_enough(public: &Public, now: i64, wanted_ms: u64) -> bool {
    let Some(_) = &public.access_token else {
        return false;
    };
    match public.expires_at_ms {
        None => true,
        Some(exp) => {
            let wanted = i64::try_from(wanted_ms).unwrap_or(i64::MAX);
            schedule::refresh_at(public.obtained_at_ms, exp, 1.0) > now
                && exp > now.saturating_add(wanted)
        }
    }
}

fn no_refresh(e: &FleetError) -> String {
    match e {
        FleetError::Etcd(_) => format!(
            "no refresh while etcd cannot be used ({e}); held tokens are served while valid"
        ),
        _ => format!("no refresh: {e}; held tokens are served while valid"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn public(obtained: i64, expires: Option<i64>) -> Public {
        Public::issued(
            Default::default(),
            (SecretString::from("t"), expires, Vec::new()),
            obtained,
            "m",
            None,
            1,
        )
    }

    #[test]
    fn a_token_is_fresh_until_the_earliest_refresh_of_any_member() {
        // Lifetime 100 s: the margin is 25 s, the earliest refresh 30 s
        // before expiry.
        let p = public(0, Some(100_000));
        assert!(fresh_enough(&p, 69_000, 0));
        assert!(!fresh_enough(&p, 71_000, 0));
        assert!(!fresh_enough(&p, 10_000, 95_000));
        assert!(fresh_enough(&public(0, None), 1, 0));
        let mut none = public(0, Some(100_000));
        none.access_token = None;
        assert!(!fresh_enough(&none, 1, 0));
    }
}
