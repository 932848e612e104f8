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
             many were sent (by every profile of that client id): the next may be sent in {}; \
             the current token is served meanwhile",
            self.limit,
            human_ms(ms(self.secs)),
            human_ms(self.until_ms.saturating_sub(now_ms).max(0))
        )
    }
}

/// The send times a budget knows (UTC epoch ms), oldest first, and what
/// they allow: pure, so that local and fleet budgets share it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ledger {
    pub sent: Vec<i64>,
}

impl Ledger {
    /// Counts a request at `now` if every window allows it; else when it
    /// may be sent.
    pub(crate) fn admit(&mut self, limits: &Limits, now: i64) -> Result<(), Hold> {
        self.tidy(limits, now);
        let mut hold: Option<Hold> = None;
        for &(secs, limit) in &limits.0 {
            let since = now.saturating_sub(ms(secs));
            let inside: Vec<i64> = self.sent.iter().copied().filter(|t| *t > since).collect();
            let limit_n = usize::try_from(limit).unwrap_or(usize::MAX);
            if inside.len() >= limit_n {
                // Allowed once enough of them have left the window.
                let leaving = inside[inside.len() - limit_n];
                let until = leaving.saturating_add(ms(secs)).saturating_add(1);
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
        self.sent.push(now);
        Ok(())
    }

    /// The request counted at `at` was answered (or given up) at `done`:
    /// it is counted from then on. The server saw it somewhere between
    /// the two, so counting from the later keeps every window whole at
    /// the server, whatever the request's latency.
    pub(crate) fn settle(&mut self, at: i64, done: i64) {
        if let Some(pos) = self.sent.iter().rposition(|t| *t == at) {
            self.sent[pos] = done.max(at);
            self.sent.sort_unstable();
        }
    }

    /// Each window and what is used of it at `now`.
    pub(crate) fn used(&self, limits: &Limits, now: i64) -> Vec<BudgetWindow> {
        limits
            .0
            .iter()
            .map(|&(secs, limit)| {
                let since = now.saturating_sub(ms(secs));
                let used = self
                    .sent
                    .iter()
                    .filter(|t| **t > since && **t <= now)
                    .count();
                BudgetWindow {
                    secs,
                    limit,
                    used: u32::try_from(used).unwrap_or(u32::MAX),
                }
            })
            .collect()
    }

    /// Drops what no window sees any more; a time ahead of `now` (the
    /// clock was set back, or a record came from a member whose clock is
    /// ahead) counts as now, so that it is neither lost nor counted for
    /// longer than a window.
    fn tidy(&mut self, limits: &Limits, now: i64) {
        let since = now.saturating_sub(limits.longest_ms());
        for t in &mut self.sent {
            *t = (*t).min(now);
        }
        self.sent.retain(|t| *t > since);
        self.sent.sort_unstable();
        // More than the longest window allows is noise (or forged).
        let most = limits.0.iter().map(|(_, n)| *n as usize).max().unwrap_or(0);
        if self.sent.len() > most {
            let cut = self.sent.len() - most;
            self.sent.drain(..cut);
        }
    }
}

/// One client id's budget on this agent.
#[derive(Debug)]
pub(crate) struct Budget {
    /// `host client-id`, what is counted together.
    key: String,
    client_id: String,
    pub(crate) limits: Limits,
    ledger: Mutex<Ledger>,
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

    /// Counts one token request at `now`, saved before it is sent (a
    /// crash loop counts every request it made); else when it may be.
    pub(crate) async fn admit(&self, now: i64) -> Result<(), Hold> {
        let _turn = self.turn.lock().await;
        let ledger = {
            let mut ledger = self.lock();
            ledger.admit(&self.limits, now)?;
            ledger.clone()
        };
        self.save(ledger).await;
        Ok(())
    }

    /// The request admitted at `at` ended at `done` ([`Ledger::settle`]).
    pub(crate) async fn settle(&self, at: i64, done: i64) {
        let _turn = self.turn.lock().await;
        let ledger = {
            let mut ledger = self.lock();
            ledger.settle(at, done);
            ledger.clone()
        };
        self.save(ledger).await;
    }

    /// Takes what the fleet counted (it knows every member's requests).
    pub(crate) fn adopt(&self, ledger: Ledger) {
        *self.lock() = ledger;
    }

    pub(crate) fn used(&self, now: i64) -> Vec<BudgetWindow> {
        self.lock().used(&self.limits, now)
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
                std::fs::create_dir_all(dir)?;
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
    /// has one. Read from its file the first time.
    pub(crate) fn of(&self, spec: &ProfileSpec, token_url: &reqwest::Url) -> Option<Arc<Budget>> {
        let limits = Limits::of(spec, token_url)?;
        let client_id = spec.client_id.clone().unwrap_or_default();
        let key = format!("{} {client_id}", token_url.host_str().unwrap_or_default());
        let mut all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(budget) = all.get(&key).filter(|b| b.limits == limits) {
            return Some(Arc::clone(budget));
        }
        let mut budget = Budget {
            key: key.clone(),
            client_id,
            limits,
            ledger: Mutex::default(),
            turn: tokio::sync::Mutex::new(()),
            file: None,
        };
        if let Some(dir) = &self.dir {
            let file = dir.join(format!("{}.json", budget.id()));
            if let Ok(bytes) = std::fs::read(&file)
                && let Ok(saved) = serde_json::from_slice::<Saved>(&bytes)
                && saved.key == key
            {
                *budget.lock() = saved.ledger;
            }
            budget.file = Some(file);
        }
        let budget = Arc::new(budget);
        all.insert(key, Arc::clone(&budget));
        Some(budget)
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
        // Everyone wants a token every 50 ms for a minute.
        for step in 0..1_200 {
            let now = 1_000_000 + step * 50;
            if ledger.admit(&limits, now).is_ok() {
                sent.push(now);
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
    fn a_request_counts_from_its_answer() {
        let limits = limits(&[(1, 1)]);
        let mut ledger = Ledger::default();
        ledger.admit(&limits, 0).unwrap();
        // Answered 400 ms later: the server may have seen it at 399.
        ledger.settle(0, 400);
        assert_eq!(ledger.admit(&limits, 1_001).unwrap_err().until_ms, 1_401);
        assert!(ledger.admit(&limits, 1_401).is_ok());
    }

    #[test]
    fn a_hold_says_when() {
        let limits = limits(&[(1, 2), (900, 3)]);
        let mut ledger = Ledger::default();
        assert!(ledger.admit(&limits, 0).is_ok());
        assert!(ledger.admit(&limits, 10).is_ok());
        let hold = ledger.admit(&limits, 20).unwrap_err();
        assert_eq!((hold.until_ms, hold.secs), (1_001, 1));
        assert!(ledger.admit(&limits, 1_001).is_ok());
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
        let mut ledger = Ledger {
            sent: vec![i64::MAX; 1_000],
        };
        // Counted as now, at most as many as the longest window allows.
        let hold = ledger.admit(&limits, 50_000).unwrap_err();
        assert!(hold.until_ms <= 60_001, "{hold:?}");
        assert!(ledger.sent.len() <= 5);
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
        let budgets = Budgets::new(Some(dir.path().to_owned()));
        let budget = budgets.of(&spec, &url).unwrap();
        budget.admit(1_000).await.unwrap();
        budget.admit(2_000).await.unwrap();
        let again = Budgets::new(Some(dir.path().to_owned()));
        let budget = again.of(&spec, &url).unwrap();
        assert_eq!(budget.used(3_000)[0].used, 2);
        assert!(budget.admit(3_000).await.is_err());
    }
}
