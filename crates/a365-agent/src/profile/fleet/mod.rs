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

use super::engine::due_at;
use super::mailbox::Asked;
use super::refresher::Plan;
use super::{Phase, Profile};
use crate::fleet::{Fleet, FleetError, Inflight, Public, Role, Secret};
use crate::schedule;

mod locked;
mod lost;
mod served;

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
    /// The fleet backs off after a failed refresh (this member's or
    /// another's): as the local refresher does, its `Retry-After` at least.
    BackingOff(crate::fleet::Backoff),
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
            Next::BackingOff(backoff) => {
                rounds.failures = backoff.failures;
                rounds.not_before =
                    self.fleet_failed(backoff.error, backoff.until_ms, backoff.failures, now);
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
                // Until the holder lets go (or may be taken over from).
                let waited = tokio::select! {
                    waited = fleet.wait_for_lock(&self.name, now) => waited,
                    () = self.mailbox.stopped() => Ok(()),
                };
                return match waited {
                    Ok(()) => Next::Soon(0),
                    Err(_) => Next::Soon(LOCKED_RETRY_MS + fastrand::i64(0..LOCKED_RETRY_MS)),
                };
            }
            Err(e) => return Next::Failed(no_refresh(&e)),
        };
        let next = self
            .refresh_locked(fleet, &lock, (forced, wanted_ms), uncommitted)
            .await;
        fleet.unlock(lock).await;
        next
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
