//! What clients ask of a profile's refresher, in one place (as
//! mini-redis's `db.rs` keeps its shared state next to one `Notify`): a
//! demand for a better token, a forced refresh, a stop, and the notify
//! that wakes the refresher for any of them.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Debug)]
pub(super) struct Mailbox {
    /// A client needs a better token than the one held.
    demand: AtomicBool,
    /// The longest `min_valid_ms` asked for since the refresher last
    /// looked: a demand that the token published meanwhile meets costs no
    /// request.
    wanted_ms: AtomicU64,
    /// When the refresher last took a client's demand (wall clock, ms):
    /// demands closer together than the demand floor start no refresh
    /// while the held token is valid.
    last_demand_ms: AtomicI64,
    /// `a365 refresh`: exchange now even if the token is fresh.
    force: AtomicBool,
    stopping: AtomicBool,
    wake: Notify,
}

/// What clients asked of the refresher since it last looked.
#[derive(Debug, Clone, Copy)]
pub(super) struct Asked {
    /// `a365 refresh`.
    pub forced: bool,
    /// The longest `min_valid_ms` a waiting client asked for.
    pub wanted_ms: u64,
    /// A client waits for a better token than the one held.
    pub demanded: bool,
}

impl Mailbox {
    pub(super) fn new() -> Mailbox {
        Mailbox {
            demand: AtomicBool::new(false),
            wanted_ms: AtomicU64::new(0),
            last_demand_ms: AtomicI64::new(i64::MIN),
            force: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    /// A client needs a token valid for `min_valid_ms`.
    pub(super) fn demand(&self, min_valid_ms: u64) {
        self.wanted_ms.fetch_max(min_valid_ms, Ordering::SeqCst);
        self.demand.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// `a365 refresh` (again, when a round only looked).
    pub(super) fn force(&self) {
        self.force.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    pub(super) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Returns once the refresher is told to stop; what else woke it
    /// stays in its flags for the next round.
    pub(super) async fn stopped(&self) {
        while !self.stopping() {
            self.wake.notified().await;
        }
    }

    /// Takes what was asked. `met` says whether the token held meets the
    /// demand (then the demand is dropped: the client looked before the
    /// token was published, and is woken to look again).
    pub(super) fn take(&self, now: i64, met: impl FnOnce(u64) -> bool) -> (Asked, bool) {
        let forced = self.force.swap(false, Ordering::SeqCst);
        let wanted_ms = self.wanted_ms.swap(0, Ordering::SeqCst);
        let mut demanded = self.demand.swap(false, Ordering::SeqCst);
        let mut dropped = false;
        if demanded && met(wanted_ms) {
            demanded = false;
            dropped = true;
        }
        if demanded {
            self.last_demand_ms.store(now, Ordering::SeqCst);
        }
        let asked = Asked {
            forced,
            wanted_ms,
            demanded,
        };
        (asked, dropped)
    }

    /// Whoever asked before or during an exchange is answered by it.
    pub(super) fn answered(&self) {
        self.demand.store(false, Ordering::SeqCst);
    }

    /// Whether a client waits for a refresh.
    pub(super) fn waiting(&self) -> bool {
        self.force.load(Ordering::SeqCst) || self.demand.load(Ordering::SeqCst)
    }

    /// How long ago the refresher last took a demand.
    pub(super) fn since_last_demand(&self, now: i64) -> i64 {
        now.saturating_sub(self.last_demand_ms.load(Ordering::SeqCst))
    }

    /// Until the first tick at or after `wake_at` (wall clock), or less
    /// when something is asked.
    pub(super) async fn wait_tick(&self, tick: &mut crate::tick::Waiter, wake_at: i64) {
        tokio::select! {
            _ = tick.until(wake_at) => {}
            _ = self.wake.notified() => {}
        }
    }

    /// Sleeps `ms`, or less when something is asked.
    pub(super) async fn wait(&self, ms: i64) {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms.max(0) as u64)) => {}
            _ = self.wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_demand_is_taken_once_and_dropped_when_the_held_token_meets_it() {
        let m = Mailbox::new();
        m.demand(5_000);
        m.demand(2_000);
        let (asked, dropped) = m.take(100, |wanted| wanted <= 1_000);
        assert!(asked.demanded && !dropped && !asked.forced);
        assert_eq!(asked.wanted_ms, 5_000, "the longest asked for");
        assert_eq!(m.since_last_demand(150), 50);
        let (asked, _) = m.take(200, |_| false);
        assert!(!asked.demanded, "taken once");
        m.demand(1_000);
        let (asked, dropped) = m.take(300, |wanted| wanted <= 1_000);
        assert!(!asked.demanded && dropped);
        assert_eq!(
            m.since_last_demand(300),
            200,
            "a dropped demand is not a taken one"
        );
        m.force();
        assert!(m.waiting());
        assert!(m.take(400, |_| true).0.forced);
        assert!(!m.waiting());
    }
}
