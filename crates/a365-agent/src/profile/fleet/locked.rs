//! A refresh under the fleet's lock: read again, mark in flight, renew
//! the lease for the whole request, send, and commit the answer (or the
//! verdict) by a transaction on the revision read.

use a365_store::Credential;

use super::lost::Lost;
use super::{LOCKED_RETRY_MS, Next, Uncommitted, fresh_enough, no_refresh};
use crate::fleet::{Backoff, Fleet, FleetError, Inflight, Lock, Public, Secret};
use crate::profile::Profile;
use crate::profile::engine::{self, Folded, Verdict};
use crate::provider::{Obtained, ProviderError};
use std::future::Future;
use std::time::Duration;

use a365_proto::human_ms;
use secrecy::SecretString;

/// The most failures in a row a shared back-off is believed to count: etcd
/// writers are not trusted, and the back-off's growth stops long before.
const MAX_SHARED_FAILURES: u32 = 64;

/// A shared back-off as read from etcd, which anyone who can write there
/// may have forged: its wait bounded by the longest `Retry-After` honoured,
/// its count bounded, its error short and with control characters escaped.
fn checked(backoff: &Backoff, now: i64) -> Backoff {
    let longest = i64::try_from(crate::schedule::MAX_RETRY_AFTER.as_millis()).unwrap_or(i64::MAX);
    let error: String = backoff.error.chars().take(300).collect();
    Backoff {
        until_ms: backoff.until_ms.min(now.saturating_add(longest)),
        failures: backoff.failures.min(MAX_SHARED_FAILURES),
        error: a365_proto::visible(&error),
    }
}

/// A refresh under way: what was read and marked before it was sent.
struct Begun {
    credential: Credential,
    secret: Secret,
    public: Public,
    /// The revision of the credential with this member's marker.
    rev: i64,
    marker: Inflight,
    /// Sending the refresh token again cannot revoke the grant.
    replay_safe: bool,
}

impl Profile {
    /// Holding the lock: adopt, or refresh and commit.
    pub(super) async fn refresh_locked(
        &self,
        fleet: &Fleet,
        lock: &Lock,
        (forced, wanted_ms): (bool, u64),
        uncommitted: &mut Option<Uncommitted>,
    ) -> Next {
        // Within the client id's budget, counted in etcd for every member
        // before anything is marked or sent.
        let mut admitted = None;
        if let Some(quota) = &self.budget {
            let now = self.shared.clock.now_ms();
            match fleet.admit(quota, now).await {
                Ok(Ok(id)) => admitted = Some((quota, id)),
                Ok(Err(hold)) => {
                    self.held_back(&hold, now);
                    return Next::Soon(hold.until_ms.saturating_sub(now).max(1));
                }
                Err(e) => return Next::Failed(no_refresh(&e)),
            }
        }
        let begun = match self.begin(fleet, lock, forced, wanted_ms).await {
            Ok(begun) => begun,
            Err(next) => {
                // Nothing was sent (another member's token was adopted, a
                // back-off): the request is not counted.
                if let Some((quota, id)) = admitted
                    && let Err(e) = fleet.cancel(quota, id).await
                {
                    tracing::warn!(profile = %self.name, "the fleet's budget counts a request not sent as under way for up to 5 minutes: {e}");
                }
                return next;
            }
        };
        let Some(exchange) = self.exchange(self.shared.clock.now_ms()) else {
            return Next::Failed("the profile has no token endpoint".into());
        };
        tracing::debug!(profile = %self.name, member = %fleet.member, "refreshing for the fleet");
        let send = self.send(exchange, &begun.credential);
        let result = self.holding(fleet, lock, send).await;
        if let Some((quota, id)) = admitted {
            let done = self.shared.clock.now_ms();
            if let Err(e) = fleet.settle(quota, id, done).await {
                tracing::warn!(profile = %self.name, "the fleet's budget counts the request as under way for up to 5 minutes: {e}");
            }
        }
        self.end(fleet, begun, result, uncommitted).await
    }

    /// Runs `work` (the request) while renewing the lock's lease every
    /// third of it: a holder waiting for an answer never lets the lock go
    /// (another member would find the refresh in flight, and a spent
    /// refresh token cannot be sent again). An answer that is ready wins
    /// over a renewal due at the same time (after a stop and continue).
    async fn holding<T>(&self, fleet: &Fleet, lock: &Lock, work: impl Future<Output = T>) -> T {
        let every = Duration::from_millis((fleet.lease_secs.saturating_mul(1_000) / 3).max(500));
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                biased;
                out = &mut work => return out,
                () = tokio::time::sleep(every) => {
                    let now = self.shared.clock.now_ms();
                    match fleet.renew(lock, now).await {
                        Ok(0) => tracing::warn!(
                            profile = %self.name,
                            "the fleet lock ended while a refresh was in flight; waiting for its answer"
                        ),
                        Err(e) => tracing::warn!(
                            profile = %self.name,
                            "cannot renew the fleet lock while a refresh is in flight: {e}"
                        ),
                        Ok(_) => {}
                    }
                }
            }
        }
    }

    /// Everything before the request: read again under the lock (the last
    /// holder may have just written), adopt what is fresh, refuse to
    /// replay a refresh whose answer was lost, mark this one in flight and
    /// renew the lease for the whole request. `Err`: what the round ends
    /// with instead.
    async fn begin(
        &self,
        fleet: &Fleet,
        lock: &Lock,
        forced: bool,
        wanted_ms: u64,
    ) -> Result<Begun, Next> {
        let now = self.shared.clock.now_ms();
        let (public, (secret, rev)) = match tokio::try_join!(
            fleet.read_public(&self.name, now),
            fleet.read_secret(&self.name)
        ) {
            Ok((Some(public), Some(secret))) => (public, secret),
            Ok(_) => return Err(Next::Failed("it is no longer in the fleet".into())),
            Err(e) => return Err(Next::Failed(no_refresh(&e))),
        };
        if let Some(why) = public.dead.as_ref().or(secret.dead.as_ref()) {
            self.fleet_dead(why);
            return Err(Next::Done);
        }
        if !public.signed && secret.generation > 0 {
            // Only a writer without the key drops the signature of a
            // record whose credential is of the signed format.
            let e = fleet.forged(&self.name, "none");
            tracing::error!(profile = %self.name, "{e}");
            return Err(Next::Failed(e.to_string()));
        }
        if public.signed && !forced && fresh_enough(&public, now, wanted_ms) {
            self.adopt(&public);
            return Err(Next::Done);
        }
        // The fleet backs off as one: after a failure, no member sends
        // before the shared back-off ends (a forced refresh excepted).
        if let Some(backoff) = secret
            .backoff
            .as_ref()
            .filter(|b| !forced && now < b.until_ms)
        {
            return Err(Next::BackingOff(checked(backoff, now)));
        }
        // The settings sealed with the credential must be those this
        // member would send it with; see `Fleet::open_credential`.
        let credential = fleet
            .open_credential(&self.name, &secret, &self.spec)
            .map_err(|e| Next::Failed(e.to_string()))?;
        let replay_safe = engine::replay_safe(&credential) || public.rotates == Some(false);
        if let Some(lost) = secret.inflight.as_ref().filter(|_| !replay_safe) {
            // Sent again only when the provider says it is still active.
            if let Err(why) = self.lost_in_fleet(fleet, &credential, lost, now).await {
                return Err(match why {
                    Lost::Dead(why) => self.write_dead(fleet, rev, &secret, &public, why).await,
                    Lost::AskLater(why) => Next::Failed(why),
                });
            }
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
            Ok(None) => return Err(Next::Soon(LOCKED_RETRY_MS)),
            Err(e) => return Err(Next::Failed(no_refresh(&e))),
        };
        if let Err(why) = self.lease_for_request(fleet, lock).await {
            let _ = fleet.commit(&self.name, rev, &secret, None).await;
            return Err(Next::Failed(why));
        }
        Ok(Begun {
            credential,
            secret,
            public,
            rev,
            marker,
            replay_safe,
        })
    }

    /// Renews the lease; `Err` (nothing may be sent) unless it now lasts
    /// the whole request.
    async fn lease_for_request(&self, fleet: &Fleet, lock: &Lock) -> Result<(), String> {
        let budget_ms = self.shared.http_timeout_ms + 1_000;
        let left_ms = fleet
            .renew(lock, self.shared.clock.now_ms())
            .await
            .map(|s| s.saturating_mul(1_000));
        match left_ms {
            Ok(ms) if ms >= budget_ms => Ok(()),
            Ok(0) => Err(
                "this member's fleet lock ended before the request could be sent (a stall or a \
                 suspend); nothing was sent"
                    .to_owned(),
            ),
            Ok(ms) => Err(format!(
                "the fleet lease ({}) is shorter than a token request may take ({}): raise \
                 lease_secs; nothing was sent",
                human_ms(ms),
                human_ms(budget_ms)
            )),
            Err(e) => Err(no_refresh(&e)),
        }
    }

    /// The answer, committed: the new records (served even when etcd
    /// cannot take them yet), a dead credential, a rotated refresh token
    /// that came without a usable token, or the marker removed when
    /// nothing was spent.
    async fn end(
        &self,
        fleet: &Fleet,
        begun: Begun,
        result: Result<Obtained, ProviderError>,
        uncommitted: &mut Option<Uncommitted>,
    ) -> Next {
        let Begun {
            credential,
            secret,
            public,
            rev,
            marker,
            replay_safe,
        } = begun;
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
                let committed = fleet
                    .commit(&self.name, rev, &pending.secret, Some(&pending.public))
                    .await;
                self.adopt(&pending.public);
                if !matches!(committed, Ok(Some(_))) {
                    *uncommitted = Box::pin(self.recommit(fleet, pending)).await;
                }
                Next::Done
            }
            Err(ProviderError::Dead(reason)) => {
                let why = format!(
                    "{reason}. {}",
                    self.provider().reauth_advice(&self.name, &self.spec)
                );
                self.write_dead(fleet, rev, &secret, &public, why).await
            }
            Err(ProviderError::Unanswered(m)) if !replay_safe => {
                if self
                    .endpoint
                    .as_ref()
                    .is_some_and(|e| e.introspection_url.is_some())
                {
                    // The marker stays: the next round, of any member, asks
                    // the provider (see `lost_in_fleet`).
                    return Next::Failed(format!("the answer to a refresh was lost ({m})"));
                }
                let why = format!(
                    "the answer to a refresh was lost ({m}); the provider may have rotated the \
                     refresh token, and sending it again could revoke the grant: add the credential \
                     again (`a365 add {} --shared --replace …`), or give the profile an \
                     introspection_url so that the fleet asks the provider",
                    self.name
                );
                self.write_dead(fleet, rev, &secret, &public, why).await
            }
            Err(e) => {
                // Judged with the fleet's count of failures in a row.
                let failures = secret
                    .backoff
                    .as_ref()
                    .map_or(0, |b| b.failures.min(MAX_SHARED_FAILURES))
                    .saturating_add(1);
                let advice = self.provider().reauth_advice(&self.name, &self.spec);
                match engine::judge(e, (failures, false), now, &advice, fastrand::f64()) {
                    Verdict::Dead { message, .. } => {
                        self.write_dead(fleet, rev, &secret, &public, message).await
                    }
                    Verdict::Retry {
                        retry_at_ms,
                        error,
                        rotated,
                    } => {
                        let backoff = Backoff {
                            until_ms: retry_at_ms,
                            failures,
                            error,
                        };
                        let back = (credential, secret, rotated, backoff.clone());
                        self.put_back(fleet, rev, back, now).await;
                        Next::BackingOff(backoff)
                    }
                }
            }
        }
    }

    /// After a failure: the credential goes back without the in-flight
    /// marker, with the new refresh token when the answer carried one, and
    /// with the fleet's back-off.
    async fn put_back(
        &self,
        fleet: &Fleet,
        rev: i64,
        (credential, secret, rotated, backoff): (Credential, Secret, Option<SecretString>, Backoff),
        now: i64,
    ) {
        let kept = match rotated {
            // No token, but a new refresh token: the old one is dead.
            Some(rt) => {
                let mut next = credential;
                next.refresh_token = Some(rt);
                next.updated_at_ms = now;
                let generation = crate::fleet::next_generation(secret.generation, now);
                fleet.seal(&self.name, &self.spec, &next, generation)
            }
            // Nothing was spent: the marker goes.
            None => Ok(secret),
        };
        match kept {
            Ok(kept) => {
                let kept = Secret {
                    backoff: Some(backoff),
                    ..kept
                };
                if !matches!(
                    fleet.commit(&self.name, rev, &kept, None).await,
                    Ok(Some(_))
                ) {
                    tracing::error!(profile = %self.name, "could not write the fleet's credential back after a failed refresh");
                }
            }
            Err(e) => tracing::error!(profile = %self.name, "{e}"),
        }
    }

    /// The records a good answer makes.
    pub(super) fn next_records(
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
        if rotates == Some(true)
            && let Some(old) = &credential.refresh_token
        {
            self.shared
                .spent
                .record(old, &self.name, now.div_euclid(1000));
        }
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
    pub(super) async fn recommit(
        &self,
        fleet: &Fleet,
        pending: Uncommitted,
    ) -> Option<Uncommitted> {
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
    pub(super) async fn write_dead(
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A back-off that an etcd writer forged is believed only within
    /// bounds: its wait, its count, and an error that is short and shows
    /// its control characters escaped.
    #[test]
    fn a_forged_shared_backoff_is_bounded() {
        let forged = Backoff {
            until_ms: i64::MAX,
            failures: u32::MAX,
            error: format!("\u{1b}[31mfake\nline{}", "x".repeat(100_000)),
        };
        let now = 1_000;
        let read = checked(&forged, now);
        let longest = crate::schedule::MAX_RETRY_AFTER.as_millis() as i64;
        assert_eq!(read.until_ms, now + longest);
        assert_eq!(read.failures, MAX_SHARED_FAILURES);
        assert!(!read.error.contains('\u{1b}') && !read.error.contains('\n'));
        assert!(read.error.len() < 400, "{}", read.error.len());
        // One more failure on top of it cannot overflow.
        assert_eq!(read.failures.saturating_add(1), MAX_SHARED_FAILURES + 1);
    }
}
