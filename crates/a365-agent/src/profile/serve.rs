//! What a client gets from a profile: the held token when it is good
//! enough, else a wait for the refresher's outcome (never a token request
//! of its own), or the reason no wait can help.

use std::sync::Arc;

use a365_proto::human_ms;

use super::{Held, Phase, Profile, Snapshot, TokenError, unavailable};

/// The least time between two refreshes that clients' demands start while
/// the held token is valid: a client asking for a `--min-valid` just under
/// the tokens' lifetime would otherwise spend a (rate-limited, rotating)
/// token request on every call. A quarter of the tokens' lifetime when
/// that is shorter (tokens of seconds, in tests and some deployments), so
/// demands cost at most four refreshes a lifetime.
pub(crate) const DEMAND_FLOOR_MS: i64 = 10_000;

fn demand_floor_ms(lifetime_ms: Option<i64>) -> i64 {
    lifetime_ms.map_or(DEMAND_FLOOR_MS, |l| (l / 4).clamp(0, DEMAND_FLOOR_MS))
}

/// Whether a client's request may start a refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demand {
    /// The agent's own socket: when the held token falls short of what
    /// the client asked (at most once per [`DEMAND_FLOOR_MS`]).
    Any,
    /// A forwarded token socket: never before the profile's normal
    /// refresh time while its token is valid.
    NotBeforeDue,
}

impl Profile {
    /// The held token if it stays valid `min_valid_ms` and has `scopes`;
    /// otherwise asks the refresher and waits for its outcome.
    pub async fn token(
        &self,
        min_valid_ms: u64,
        scopes: &[String],
    ) -> Result<Arc<Held>, TokenError> {
        self.token_with(min_valid_ms, scopes, Demand::Any).await
    }

    /// [`Profile::token`], for a client whose demands `demand` allows.
    pub async fn token_with(
        &self,
        min_valid_ms: u64,
        scopes: &[String],
        demand: Demand,
    ) -> Result<Arc<Held>, TokenError> {
        let mut rx = self.state.subscribe();
        let wait = self.shared.client_wait;
        let deadline = tokio::time::Instant::now() + wait;
        let mut asked_after: Option<u64> = None;
        loop {
            {
                // Looked at in place: no copy on the hot path, and the
                // borrow ends before any await.
                let snap = rx.borrow_and_update();
                let now = self.shared.clock.now_ms();
                if let Some(held) = snap
                    .token
                    .as_ref()
                    .filter(|h| h.valid_for(now, min_valid_ms))
                {
                    return self.reply(held, scopes);
                }
                if let Some(err) = self.why_not_now(&snap, now, min_valid_ms, asked_after) {
                    return Err(err);
                }
                if asked_after.is_none() {
                    if let Some(err) = self.may_not_demand(&snap, now, min_valid_ms, demand) {
                        return Err(err);
                    }
                    asked_after = Some(snap.attempts_done);
                    self.mailbox.demand(min_valid_ms);
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err(unavailable(format!("profile '{}' was removed", self.name)));
                }
                Err(_) => {
                    return Err(unavailable(format!(
                        "the token server has not answered for profile '{}' within {}",
                        self.name,
                        human_ms(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
                    )));
                }
            }
        }
    }

    /// Why a client's demand may not start a refresh now, while the held
    /// token is valid and no refresh is under way: see [`Demand`].
    fn may_not_demand(
        &self,
        snap: &Snapshot,
        now: i64,
        min_valid_ms: u64,
        demand: Demand,
    ) -> Option<TokenError> {
        let held = snap.token.as_ref().filter(|h| h.valid_for(now, 0))?;
        if snap.phase != Phase::Fresh {
            return None;
        }
        let remaining = human_ms(held.expires_at_ms.map_or(0, |exp| exp - now));
        let min_valid = human_ms(i64::try_from(min_valid_ms).unwrap_or(i64::MAX));
        let short = format!(
            "the token of profile '{}' is valid for {remaining}, less than --min-valid {min_valid}",
            self.name
        );
        if let (Demand::NotBeforeDue, Some(due)) = (demand, snap.next_refresh_at_ms)
            && due > now
        {
            return Some(unavailable(format!(
                "{short}; a token-only socket does not start a refresh before the profile's \
                 normal refresh time (in {})",
                human_ms(due - now)
            )));
        }
        let since = self.mailbox.since_last_demand(now);
        let floor = demand_floor_ms(held.lifetime_ms());
        if since < floor {
            return Some(unavailable(format!(
                "{short}; it was refreshed on demand {} ago, and the next refresh on demand may \
                 start in {}",
                human_ms(since),
                human_ms(floor - since)
            )));
        }
        None
    }

    /// The error to answer at once when waiting cannot help, `None` when a
    /// refresh may still bring a good enough token.
    fn why_not_now(
        &self,
        snap: &Snapshot,
        now: i64,
        min_valid_ms: u64,
        asked_after: Option<u64>,
    ) -> Option<TokenError> {
        if let Phase::NeedsReauth(message) = &snap.phase {
            return Some(TokenError::NeedsReauth(message.clone()));
        }
        let min_valid = human_ms(i64::try_from(min_valid_ms).unwrap_or(i64::MAX));
        let remaining = snap
            .token
            .as_ref()
            .and_then(|h| h.expires_at_ms)
            .map(|exp| exp - now);
        if !self.provider().renews() {
            return Some(match remaining {
                Some(ms) if ms <= 0 => TokenError::NeedsReauth(self.expired_static_message()),
                _ => unavailable(format!(
                    "the token of profile '{}' is valid for {} more, less than --min-valid {min_valid}; \
                     it cannot be refreshed (static token)",
                    self.name,
                    human_ms(remaining.unwrap_or(0)),
                )),
            });
        }
        let error = snap.last_error.as_deref().unwrap_or("unknown error");
        if let Phase::Failing { retry_at_ms } = snap.phase
            && (retry_at_ms > now || asked_after.is_some_and(|n| snap.attempts_done > n))
        {
            return Some(unavailable(format!(
                "no token for profile '{}' valid for {min_valid}: {error}; next attempt in {}",
                self.name,
                human_ms(retry_at_ms - now)
            )));
        }
        // No refresh can meet a guarantee longer than the tokens live: say
        // so at once instead of spending a (rate-limited) token request.
        let lifetime = snap.token.as_ref().and_then(|h| h.lifetime_ms());
        if let Some(lifetime) =
            lifetime.filter(|l| i64::try_from(min_valid_ms).unwrap_or(i64::MAX) >= *l)
        {
            return Some(unavailable(format!(
                "profile '{}' gets tokens valid for {}: --min-valid {min_valid} cannot be met",
                self.name,
                human_ms(lifetime),
            )));
        }
        let refreshed_since_asked = asked_after.is_some_and(|n| snap.attempts_done > n);
        if refreshed_since_asked && snap.phase == Phase::Fresh {
            return Some(unavailable(format!(
                "profile '{}' gets tokens valid for {}, less than --min-valid {min_valid}",
                self.name,
                human_ms(remaining.unwrap_or(0)),
            )));
        }
        None
    }

    /// `held`, if it carries every scope `wanted`.
    fn reply(&self, held: &Arc<Held>, wanted: &[String]) -> Result<Arc<Held>, TokenError> {
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|w| !held.scopes.iter().any(|s| s == *w))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(TokenError::MissingScope(format!(
                "the token of profile '{}' lacks scope {}; it has: {}",
                self.name,
                missing.join(", "),
                if held.scopes.is_empty() {
                    "no scopes".into()
                } else {
                    held.scopes.join(" ")
                }
            )));
        }
        Ok(Arc::clone(held))
    }

    /// Forces an exchange now and waits for its outcome (`a365 refresh`).
    pub async fn force_refresh(&self) -> Result<String, TokenError> {
        let mut rx = self.state.subscribe();
        let mut before = rx.borrow_and_update().clone();
        if let Phase::NeedsReauth(message) = &before.phase {
            return Err(TokenError::NeedsReauth(message.clone()));
        }
        if !self.provider().renews() {
            return Err(TokenError::NotForThisProfile(format!(
                "profile '{}' holds a static token: there is nothing to refresh",
                self.name
            )));
        }
        self.mailbox.force();
        let deadline = tokio::time::Instant::now() + self.shared.client_wait;
        loop {
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(unavailable("the profile was removed")),
                Err(_) => return Err(unavailable("the token server did not answer in time")),
            }
            let snap = rx.borrow_and_update().clone();
            if snap.attempts_done == before.attempts_done {
                continue;
            }
            // Another round began before this one's outcome was seen (the
            // watch keeps only the latest state): its outcome answers.
            if matches!(snap.phase, Phase::Refreshing | Phase::Empty) {
                before = snap;
                continue;
            }
            return match snap.phase {
                Phase::NeedsReauth(message) => Err(TokenError::NeedsReauth(message)),
                Phase::Failing { .. } => Err(unavailable(format!(
                    "refresh failed: {}",
                    snap.last_error.as_deref().unwrap_or("unknown error")
                ))),
                _ => {
                    let exp = snap.token.as_ref().and_then(|h| h.expires_at_ms);
                    let now = self.shared.clock.now_ms();
                    Ok(format!(
                        "profile '{}' refreshed; the new token expires in {}",
                        self.name,
                        exp.map(|e| human_ms(e - now))
                            .unwrap_or_else(|| "(no expiry)".into())
                    ))
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demands_refresh_at_most_every_ten_seconds_or_a_quarter_lifetime() {
        assert_eq!(demand_floor_ms(None), 10_000);
        assert_eq!(demand_floor_ms(Some(3_600_000)), 10_000);
        assert_eq!(demand_floor_ms(Some(2_000)), 500);
        assert_eq!(demand_floor_ms(Some(-5)), 0);
    }
}
