//! Token request budgets: a token endpoint that limits requests per client
//! id (Nexar: 2 per second, 200 per 15 minutes, 3,000 per 12 hours and
//! 40,000 per week) locks out every user of that client id once a window
//! is broken. The agent counts the requests it sends in each window, per
//! client id, across profiles and restarts (and in fleet mode across
//! members, through etcd), and never sends one that would break a window:
//! the profile serves its current token and its refresher waits.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use a365_proto::{BudgetWindow, ProfileSpec, human_ms};
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// Nexar's limits for one application (its support article "Application
/// Access Token"), as (window in seconds, requests).
pub(crate) const NEXAR: [(u64, u32); 4] = [(1, 2), (900, 200), (43_200, 3_000), (604_800, 40_000)];

/// Nexar's token endpoint's host.
const NEXAR_IDENTITY: &str = "identity.nexar.com";

/// The windows of a budget, shortest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Limits(Vec<(u64, u32)>);

impl Limits {
    /// A profile's windows: its `limits`, else Nexar's at Nexar's token
    /// endpoint; `None` for an endpoint without a budget.
    pub(crate) fn of(spec: &ProfileSpec, token_url: &reqwest::Url) -> Option<Limits> {
        let mut windows: Vec<(u64, u32)> = spec
            .limits
            .iter()
            .filter_map(|(w, n)| Some((a365_proto::window_secs(w)?, *n)))
            .filter(|(_, n)| *n > 0)
            .collect();
        if windows.is_empty() && token_url.host_str() == Some(NEXAR_IDENTITY) {
            windows = NEXAR.to_vec();
        }
        windows.sort_unstable();
        (!windows.is_empty()).then_some(Limits(windows))
    }

    /// Every window of both.
    fn merged(&self, other: &Limits) -> Limits {
        let mut all = self.0.clone();
        all.extend(other.0.iter().copied());
        all.sort_unstable();
        all.dedup();
        Limits(all)
    }

    fn longest_ms(&self) -> i64 {
        self.0.last().map_or(0, |(secs, _)| ms(*secs))
    }
}

fn ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1_000)).unwrap_or(i64::MAX)
}

/// A request that may not be sent yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hold {
    /// The first instant it may be sent (UTC epoch ms).
    pub until_ms: i64,
    /// The window it would break.
    pub secs: u64,
    pub limit: u32,
}

impl Hold {
    pub(crate) fn message(&self, client_id: &str, now_ms: i64) -> String {
        format!(
            "the token endpoint allows client id {client_id} {} token requests per {}, and as \
             many were sent (by every profile of that client id): the next may be sent in {}",
            self.limit,
            human_ms(ms(self.secs)),
            human_ms(self.until_ms.saturating_sub(now_ms).max(0))
        )
    }
}

/// How far ahead of this clock a counted time may be (another member's
/// clock, a little ahead) and still count; one further ahead is forged or
/// from a clock that is wrong, and is dropped rather than let it hold
/// requests back for as long as it likes.
const AHEAD_MS: i64 = 10_000;
/// A request in flight longer than this was given up by an agent that
/// stopped (a crash): it counts as ended then.
const IN_FLIGHT_MS: i64 = 300_000;
/// A hold that waits on requests under way is looked at again this soon.
const IN_FLIGHT_RECHECK_MS: i64 = 5_000;

/// The requests a budget knows (UTC epoch ms) and what they allow: pure,
/// so that local and fleet budgets share it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ledger {
    /// When each answered (or failed) request ended.
    #[serde(default)]
    pub sent: Vec<i64>,
    /// Requests under way, by the instant each was admitted (its id,
    /// unique): each counts as happening now until it is settled, however
    /// long it takes.
    #[serde(default)]
    pub in_flight: Vec<i64>,
}

impl Ledger {
    /// Counts a request at `now` if every window allows it (its id); else
    /// when it may be sent.
    #[cfg(test)]
    pub(crate) fn admit(&mut self, limits: &Limits, now: i64) -> Result<i64, Hold> {
        self.admit_keeping(limits, limits, now)
    }

    /// Counts a request at `now` if every window of `limits` allows it
    /// (its id); else when it may be sent. The ledger keeps what the
    /// windows of `keep` (those of every profile of the client id) need.
    pub(crate) fn admit_keeping(
        &mut self,
        limits: &Limits,
        keep: &Limits,
        now: i64,
    ) -> Result<i64, Hold> {
        self.tidy(keep, now);
        let mut hold: Option<Hold> = None;
        for &(secs, limit) in &limits.0 {
            let since = now.saturating_sub(ms(secs));
            let mut inside: Vec<i64> = self.sent.iter().copied().filter(|t| *t > since).collect();
            inside.extend(self.in_flight.iter().map(|_| now));
            inside.sort_unstable();
            let limit_n = usize::try_from(limit).unwrap_or(usize::MAX);
            if inside.len() >= limit_n {
                // Allowed once enough of them have left the window; when
                // that waits on requests still under way, looked at again
                // soon (one may end, or be cancelled, long before that).
                let leaving = inside[inside.len() - limit_n];
                let mut until = leaving.saturating_add(ms(secs)).saturating_add(1);
                if leaving == now && !self.in_flight.is_empty() {
                    until = until.min(now.saturating_add(IN_FLIGHT_RECHECK_MS));
                }
                if hold.as_ref().is_none_or(|h| until > h.until_ms) {
                    hold = Some(Hold {
                        until_ms: until,
                        secs,
                        limit,
                    });
                }
            }
        }
        if let Some(hold) = hold {
            return Err(hold);
        }
        let mut id = now;
        while self.in_flight.contains(&id) {
            id = id.saturating_add(1);
        }
        self.in_flight.push(id);
        Ok(id)
    }

    /// The request admitted as `id` was answered (or given up) at `done`:
    /// it counts from then on. The server saw it somewhere between the
    /// two, so counting from the later keeps every window whole at the
    /// server, whatever the request's latency.
    pub(crate) fn settle(&mut self, id: i64, done: i64) {
        if let Some(pos) = self.in_flight.iter().position(|t| *t == id) {
            self.in_flight.swap_remove(pos);
            self.sent.push(done.max(id));
            self.sent.sort_unstable();
        }
    }

    /// The request admitted as `id` was not sent after all.
    pub(crate) fn cancel(&mut self, id: i64) {
        if let Some(pos) = self.in_flight.iter().position(|t| *t == id) {
            self.in_flight.swap_remove(pos);
        }
    }

    /// Each window and what is used of it at `now`.
    pub(crate) fn used(&self, limits: &Limits, now: i64) -> Vec<BudgetWindow> {
        let mut tidied = self.clone();
        tidied.tidy(limits, now);
        limits
            .0
            .iter()
            .map(|&(secs, limit)| {
                let since = now.saturating_sub(ms(secs));
                let done = tidied.sent.iter().filter(|t| **t > since).count();
                let used = done.saturating_add(tidied.in_flight.len());
                BudgetWindow {
                    secs,
                    limit,
                    used: u32::try_from(used).unwrap_or(u32::MAX),
                }
            })
            .collect()
    }

    /// Drops what no window sees any more, and what is too far ahead of
    /// `now` to be true; a request in flight for too long counts as ended.
    ///
    /// Profiles of one client id may name different windows: what any of
    /// them needs is kept (Nexar's week at least).
    fn tidy(&mut self, limits: &Limits, now: i64) {
        let ahead = now.saturating_add(AHEAD_MS);
        let stale = now.saturating_sub(IN_FLIGHT_MS);
        let (ended, going): (Vec<i64>, Vec<i64>) = self
            .in_flight
            .iter()
            .copied()
            .filter(|t| *t <= ahead)
            .partition(|t| *t < stale);
        self.in_flight = going;
        self.sent
            .extend(ended.into_iter().map(|t| t.saturating_add(IN_FLIGHT_MS)));
        let keep = limits.longest_ms().max(ms(NEXAR[3].0));
        let since = now.saturating_sub(keep);
        self.sent.retain(|t| *t > since && *t <= ahead);
        self.sent.sort_unstable();
        // More than the largest window allows is noise (or forged).
        let most = limits
            .0
            .iter()
            .map(|(_, n)| *n as usize)
            .chain([NEXAR[3].1 as usize])
            .max()
            .unwrap_or(0);
        if self.sent.len() > most {
            let cut = self.sent.len() - most;
            self.sent.drain(..cut);
        }
        self.in_flight.truncate(most);
    }
}

/// A profile's share of its client id's budget: the ledger they all
/// count in, and the windows this profile keeps to.
#[derive(Debug, Clone)]
pub(crate) struct Quota {
    pub(crate) budget: Arc<Budget>,
    pub(crate) limits: Limits,
}

impl Quota {
    /// Counts one token request, saved before it is sent (a crash loop
    /// counts every request it made): its id; else when it may be sent.
    /// The clock is read once this request's turn has come.
    pub(crate) async fn admit(&self, clock: &dyn crate::clock::Clock) -> Result<i64, Hold> {
        let keep = self.budget.keep();
        self.budget
            .amend(|ledger| ledger.admit_keeping(&self.limits, &keep, clock.now_ms()))
            .await
    }

    /// The request admitted as `id` ended at `done` ([`Ledger::settle`]).
    pub(crate) async fn settle(&self, id: i64, done: i64) {
        let settled = self.budget.amend(|ledger| {
            ledger.settle(id, done);
            Ok::<(), ()>(())
        });
        let _ = settled.await;
    }

    /// The request admitted as `id` was not sent.
    pub(crate) async fn cancel(&self, id: i64) {
        let cancelled = self.budget.amend(|ledger| {
            ledger.cancel(id);
            Ok::<(), ()>(())
        });
        let _ = cancelled.await;
    }

    pub(crate) fn used(&self, now: i64) -> Vec<BudgetWindow> {
        self.budget.lock().used(&self.limits, now)
    }
}

/// One client id's ledger on this agent.
#[derive(Debug)]
pub(crate) struct Budget {
    /// `host client-id`, what is counted together.
    key: String,
    client_id: String,
    ledger: Mutex<Ledger>,
    /// Every window any profile of the client id keeps to: what the
    /// ledger must remember.
    keep: Mutex<Limits>,
    /// One admission at a time, saved in the order decided.
    turn: tokio::sync::Mutex<()>,
    file: Option<PathBuf>,
}

/// A saved ledger and the budget it belongs to.
#[derive(Serialize, Deserialize)]
struct Saved {
    key: String,
    #[serde(flatten)]
    ledger: Ledger,
}

impl Budget {
    /// The digest that names this budget in files and in etcd (the client
    /// id is not a secret, but a key should not carry arbitrary text).
    pub(crate) fn id(&self) -> String {
        let digest = sha2::Sha256::digest(self.key.as_bytes());
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    pub(crate) fn client_id(&self) -> &str {
        &self.client_id
    }

    /// [`Budget::keep`].
    pub(crate) fn keep(&self) -> Limits {
        self.keep.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Applies `change` to the ledger, one change at a time, and saves
    /// the ledger it made (in the order the changes were made).
    async fn amend<T, E>(&self, change: impl FnOnce(&mut Ledger) -> Result<T, E>) -> Result<T, E> {
        let _turn = self.turn.lock().await;
        let (out, ledger) = {
            let mut ledger = self.lock();
            let out = change(&mut ledger)?;
            (out, ledger.clone())
        };
        self.save(ledger).await;
        Ok(out)
    }

    /// Takes what the fleet counted (it knows every member's requests).
    pub(crate) fn adopt(&self, ledger: Ledger) {
        *self.lock() = ledger;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn save(&self, ledger: Ledger) {
        let Some(file) = self.file.clone() else {
            return;
        };
        let saved = Saved {
            key: self.key.clone(),
            ledger,
        };
        let written = tokio::task::spawn_blocking(move || {
            let bytes = serde_json::to_vec(&saved).map_err(std::io::Error::other)?;
            if let Some(dir) = file.parent() {
                a365_store::create_private_dir(dir)?;
            }
            a365_store::write_atomic(&file, &bytes)
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(
                "cannot save the token request budget of client id {}: {e}; it is counted in \
                 memory until the agent stops",
                self.client_id
            ),
            Err(e) => tracing::warn!("saving a token request budget: {e}"),
        }
    }
}

/// Every budget of this agent, by client id.
#[derive(Debug)]
pub struct Budgets {
    /// `$XDG_STATE_HOME/a365/budget`; `None`: kept in memory only.
    dir: Option<PathBuf>,
    all: Mutex<HashMap<String, Arc<Budget>>>,
}

impl Budgets {
    pub fn new(state_dir: Option<PathBuf>) -> Budgets {
        Budgets {
            dir: state_dir.map(|d| d.join("budget")),
            all: Mutex::default(),
        }
    }

    /// The budget `spec`'s token requests count against, if its endpoint
    /// has one: one ledger per client id (at that host), whatever windows
    /// each profile keeps to. Read from its file the first time.
    pub(crate) fn of(&self, spec: &ProfileSpec, token_url: &reqwest::Url) -> Option<Quota> {
        let limits = Limits::of(spec, token_url)?;
        let client_id = spec.client_id.clone().unwrap_or_default();
        let key = format!("{} {client_id}", token_url.host_str().unwrap_or_default());
        let mut all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(budget) = all.get(&key) {
            let mut keep = budget.keep.lock().unwrap_or_else(|e| e.into_inner());
            *keep = keep.merged(&limits);
            drop(keep);
            return Some(Quota {
                budget: Arc::clone(budget),
                limits,
            });
        }
        let mut budget = Budget {
            key: key.clone(),
            client_id,
            ledger: Mutex::default(),
            keep: Mutex::new(limits.clone()),
            turn: tokio::sync::Mutex::new(()),
            file: None,
        };
        if let Some(dir) = &self.dir {
            let file = dir.join(format!("{}.json", budget.id()));
            if let Ok(bytes) = std::fs::read(&file)
                && let Ok(saved) = serde_json::from_slice::<Saved>(&bytes)
                && saved.key == key
            {
                let mut ledger = saved.ledger;
                // Under way when this file was written, by an agent that
                // stopped since (a crash): they ended by now.
                let now = jiff::Timestamp::now().as_millisecond();
                for id in std::mem::take(&mut ledger.in_flight) {
                    ledger.sent.push(now.max(id));
                }
                ledger.sent.sort_unstable();
                *budget.lock() = ledger;
            }
            budget.file = Some(file);
        }
        let budget = Arc::new(budget);
        all.insert(key, Arc::clone(&budget));
        Some(Quota { budget, limits })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(windows: &[(u64, u32)]) -> Limits {
        Limits(windows.to_vec())
    }

    #[test]
    fn never_breaks_a_window() {
        let limits = limits(&[(1, 2), (10, 5)]);
        let mut ledger = Ledger::default();
        let mut sent = Vec::new();
        // Everyone wants a token every 50 ms for a minute; each request
        // takes 30 ms.
        for step in 0..1_200 {
            let now = 1_000_000 + step * 50;
            if let Ok(id) = ledger.admit(&limits, now) {
                ledger.settle(id, now + 30);
                sent.push(now + 30);
            }
        }
        for (i, t) in sent.iter().enumerate() {
            let in_1s = sent[i..].iter().filter(|u| **u < t + 1_000).count();
            let in_10s = sent[i..].iter().filter(|u| **u < t + 10_000).count();
            assert!(
                in_1s <= 2 && in_10s <= 5,
                "at {t}: {in_1s} in 1 s, {in_10s} in 10 s"
            );
        }
        // And the budget is used: 5 per 10 s over a minute.
        assert!(sent.len() >= 30, "{}", sent.len());
    }

    #[test]
    fn a_request_counts_from_its_answer_and_as_now_until_then() {
        let limits = limits(&[(1, 1)]);
        let mut ledger = Ledger::default();
        let id = ledger.admit(&limits, 0).unwrap();
        // Still in flight 5 s later: it may reach the server any moment.
        assert_eq!(ledger.admit(&limits, 5_000).unwrap_err().until_ms, 6_001);
        // Answered at 5,400 ms: the server may have seen it at 5,399.
        ledger.settle(id, 5_400);
        assert_eq!(ledger.admit(&limits, 6_001).unwrap_err().until_ms, 6_401);
        assert!(ledger.admit(&limits, 6_401).is_ok());
        // Not sent after all: it does not count.
        let mut ledger = Ledger::default();
        let id = ledger.admit(&limits, 0).unwrap();
        ledger.cancel(id);
        assert!(ledger.admit(&limits, 1).is_ok());
        // A long window held by a request under way is looked at again
        // soon: it may be cancelled.
        let hour = super::Limits(vec![(3_600, 1)]);
        let mut ledger = Ledger::default();
        ledger.admit(&hour, 0).unwrap();
        assert_eq!(ledger.admit(&hour, 10).unwrap_err().until_ms, 5_010);
    }

    #[test]
    fn ids_are_unique_and_a_crashed_request_ends() {
        let limits = limits(&[(1, 5)]);
        let mut ledger = Ledger::default();
        let a = ledger.admit(&limits, 100).unwrap();
        let b = ledger.admit(&limits, 100).unwrap();
        assert_ne!(a, b);
        ledger.settle(b, 200);
        assert_eq!(ledger.in_flight, [a]);
        // Its agent stopped: counted as ended IN_FLIGHT_MS after it began.
        ledger.admit(&limits, 100 + IN_FLIGHT_MS + 1).unwrap();
        assert!(ledger.sent.contains(&(100 + IN_FLIGHT_MS)));
    }

    #[test]
    fn a_hold_says_when() {
        let limits = limits(&[(1, 2), (900, 3)]);
        let mut ledger = Ledger::default();
        for at in [0, 10] {
            let id = ledger.admit(&limits, at).unwrap();
            ledger.settle(id, at);
        }
        let hold = ledger.admit(&limits, 20).unwrap_err();
        assert_eq!((hold.until_ms, hold.secs), (1_001, 1));
        let id = ledger.admit(&limits, 1_001).unwrap();
        ledger.settle(id, 1_001);
        let hold = ledger.admit(&limits, 2_000).unwrap_err();
        assert_eq!((hold.until_ms, hold.secs, hold.limit), (900_001, 900, 3));
        let used = ledger.used(&limits, 2_000);
        assert_eq!(used[1].used, 3);
        let message = hold.message("cid", 2_000);
        assert!(
            message.contains("3 token requests per 15m") && message.contains("cid"),
            "{message}"
        );
    }

    #[test]
    fn future_and_forged_times_are_bounded() {
        let limits = limits(&[(1, 2), (10, 5)]);
        let now = 1_000_000_000_000;
        // Far ahead (forged, or a clock far off): dropped, not a hold.
        let mut ledger = Ledger {
            sent: vec![i64::MAX; 50_000],
            in_flight: vec![i64::MAX; 50_000],
        };
        assert!(ledger.admit(&limits, now).is_ok());
        // A little ahead (another member's clock): counted, for a window.
        let mut ledger = Ledger {
            sent: vec![now + 5_000; 50_000],
            in_flight: Vec::new(),
        };
        let hold = ledger.admit(&limits, now).unwrap_err();
        assert!(hold.until_ms <= now + 15_001, "{hold:?}");
        assert!(ledger.sent.len() <= 40_000);
        let mut ledger = Ledger {
            sent: vec![i64::MIN, -5, 0],
            in_flight: vec![i64::MIN],
        };
        let id = ledger.admit(&limits, now).unwrap();
        assert!(ledger.sent.is_empty(), "{ledger:?}");
        assert_eq!(ledger.in_flight, [id]);
    }

    #[test]
    fn profiles_of_one_client_id_share_one_ledger() {
        let budgets = Budgets::new(None);
        let nexar = reqwest::Url::parse("https://identity.nexar.com/connect/token").unwrap();
        let plain = ProfileSpec {
            client_id: Some("cid".into()),
            ..ProfileSpec::default()
        };
        let strict = ProfileSpec {
            limits: [("1h".into(), 1)].into(),
            ..plain.clone()
        };
        let a = budgets.of(&plain, &nexar).unwrap();
        let b = budgets.of(&strict, &nexar).unwrap();
        assert!(Arc::ptr_eq(&a.budget, &b.budget));
        assert_ne!(a.limits, b.limits);
        // What the ledger keeps serves both.
        let keep = a.budget.keep();
        assert!(keep.0.contains(&(3_600, 1)) && keep.0.contains(&NEXAR[3]));
    }

    #[test]
    fn nexar_by_host_and_limits_by_profile() {
        let nexar = reqwest::Url::parse("https://identity.nexar.com/connect/token").unwrap();
        let other = reqwest::Url::parse("https://auth.example/token").unwrap();
        let mut spec = ProfileSpec::default();
        assert_eq!(Limits::of(&spec, &nexar), Some(Limits(NEXAR.to_vec())));
        assert_eq!(Limits::of(&spec, &other), None);
        spec.limits = [("10s".into(), 5), ("1s".into(), 2)].into();
        assert_eq!(Limits::of(&spec, &other), Some(limits(&[(1, 2), (10, 5)])));
    }

    #[tokio::test]
    async fn counts_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let url = reqwest::Url::parse("https://auth.example/token").unwrap();
        let spec = ProfileSpec {
            client_id: Some("cid".into()),
            limits: [("1h".into(), 2)].into(),
            ..ProfileSpec::default()
        };
        // A restart reads the wall clock: the test's times are near it.
        let base = jiff::Timestamp::now().as_millisecond() - 5_000;
        let clock = crate::clock::ManualClock::new(base + 1_000);
        let budgets = Budgets::new(Some(dir.path().to_owned()));
        let quota = budgets.of(&spec, &url).unwrap();
        let id = quota.admit(&clock).await.unwrap();
        quota.settle(id, base + 1_100).await;
        clock.set(base + 2_000);
        // Under way when the agent stops: counted as ended at the restart.
        quota.admit(&clock).await.unwrap();
        let again = Budgets::new(Some(dir.path().to_owned()));
        let quota = again.of(&spec, &url).unwrap();
        assert_eq!(quota.used(base + 6_000)[0].used, 2);
        assert!(quota.budget.lock().in_flight.is_empty());
        clock.set(base + 6_000);
        assert!(quota.admit(&clock).await.is_err());
    }
}
