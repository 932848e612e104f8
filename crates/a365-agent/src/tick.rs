//! The agent's shared tick: one thread sleeps to each multiple of the tick
//! on the wall clock and wakes the waiters that are due. An idle agent's
//! periodic looks (each refresher's, the upgrade check, the idle give-back)
//! wait here rather than on tokio timers: tokio's timer wheel wakes its
//! driver as a far timer moves down its levels (about 4 s and 64 ms before
//! it fires), three wake-ups for every 30 s sleep.
//!
//! The thread itself decides whether anyone is due (a waiter's wall-clock
//! time has come, or its probe saw a change), so an idle agent wakes only
//! this thread, twice a minute, and not its runtime.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::Clock;

/// A cheap look the tick thread takes for a waiter at every tick (a file's
/// identity, an atomic); `true` wakes the waiter.
pub type Probe = Box<dyn Fn() -> bool + Send + Sync>;

/// One waiter's registration, read by the tick thread.
struct Slot {
    /// Wall-clock ms at which the waiter is due; `i64::MAX` while it is
    /// not waiting.
    wake_at: AtomicI64,
    /// The waiter waits now: its probe is asked only then (a probe that
    /// holds while its task is busy elsewhere must not wake the runtime).
    waiting: AtomicBool,
    probe: Option<Probe>,
    /// The probe fired since the waiter last looked.
    probed: AtomicBool,
}

/// The tick, as every task holds it.
#[derive(Clone)]
pub struct Tick {
    rx: watch::Receiver<i64>,
    slots: Arc<Mutex<Vec<Weak<Slot>>>>,
    clock: Arc<dyn Clock>,
    tick_ms: i64,
}

impl std::fmt::Debug for Tick {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tick")
            .field("tick_ms", &self.tick_ms)
            .finish()
    }
}

/// Starts the tick; it stops at the first tick after the last receiver is
/// dropped.
pub fn start(clock: Arc<dyn Clock>, tick_ms: i64) -> Tick {
    let tick_ms = tick_ms.max(1);
    let (tx, rx) = watch::channel(clock.now_ms());
    let slots: Arc<Mutex<Vec<Weak<Slot>>>> = Arc::default();
    let (looked_at, thread_clock) = (Arc::clone(&slots), Arc::clone(&clock));
    let spawned = std::thread::Builder::new()
        .name("a365-tick".into())
        .spawn(move || {
            loop {
                let now = thread_clock.now_ms();
                let until = tick_ms - now.rem_euclid(tick_ms);
                std::thread::sleep(Duration::from_millis(until as u64));
                if tx.is_closed() {
                    return;
                }
                let now = thread_clock.now_ms();
                if anyone_due(&looked_at, now) && tx.send(now).is_err() {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        // Then waiters fall back to their own timers (see `Waiter`).
        tracing::warn!("no tick thread ({e}): periodic looks use timers");
    }
    Tick {
        rx,
        slots,
        clock,
        tick_ms,
    }
}

/// Whether a waiter is due at `now` (each probe is asked once); drops the
/// registrations of waiters that are gone.
fn anyone_due(slots: &Mutex<Vec<Weak<Slot>>>, now: i64) -> bool {
    let Ok(mut slots) = slots.lock() else {
        return true;
    };
    slots.retain(|s| s.strong_count() > 0);
    let mut due = false;
    for slot in slots.iter().filter_map(Weak::upgrade) {
        if !slot.waiting.load(Ordering::SeqCst) {
            continue;
        }
        if slot.probe.as_ref().is_some_and(|probe| probe()) {
            slot.probed.store(true, Ordering::SeqCst);
            due = true;
        }
        due |= slot.wake_at.load(Ordering::SeqCst) <= now;
    }
    due
}

impl Tick {
    pub fn tick_ms(&self) -> i64 {
        self.tick_ms
    }

    /// A waiter for a task.
    pub fn waiter(&self) -> Waiter {
        self.register(None)
    }

    /// A waiter that `probe` also wakes, looked at on every tick by the
    /// tick thread.
    pub fn probing(&self, probe: Probe) -> Waiter {
        self.register(Some(probe))
    }

    fn register(&self, probe: Option<Probe>) -> Waiter {
        let slot = Arc::new(Slot {
            wake_at: AtomicI64::new(i64::MAX),
            waiting: AtomicBool::new(false),
            probe,
            probed: AtomicBool::new(false),
        });
        if let Ok(mut slots) = self.slots.lock() {
            slots.push(Arc::downgrade(&slot));
        }
        let mut rx = self.rx.clone();
        rx.mark_unchanged();
        Waiter {
            rx,
            slot,
            clock: Arc::clone(&self.clock),
            tick_ms: self.tick_ms,
        }
    }
}

/// Marks a slot not waiting when its wait ends or is dropped (a `select!`
/// that another branch won).
struct NotWaiting<'a>(&'a Slot);

impl Drop for NotWaiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.store(false, Ordering::SeqCst);
        self.0.wake_at.store(i64::MAX, Ordering::SeqCst);
    }
}

/// One task's view of the tick.
pub struct Waiter {
    rx: watch::Receiver<i64>,
    slot: Arc<Slot>,
    clock: Arc<dyn Clock>,
    tick_ms: i64,
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter").finish_non_exhaustive()
    }
}

impl Waiter {
    /// Until the last tick at or before wall-clock `wake_at_ms` (at once
    /// if that tick has come), or the tick at which the probe fires: the
    /// caller sleeps the rest, less than a tick, on a timer of its own.
    pub async fn until(&mut self, wake_at_ms: i64) {
        let wake_at_ms = wake_at_ms - wake_at_ms.rem_euclid(self.tick_ms);
        // Registered before the clock is read: a tick that looks in
        // between sees this waiter, so none falls between the two.
        self.slot.wake_at.store(wake_at_ms, Ordering::SeqCst);
        self.slot.waiting.store(true, Ordering::SeqCst);
        let _done = NotWaiting(&self.slot);
        if self.clock.now_ms() >= wake_at_ms || self.slot.probed.swap(false, Ordering::SeqCst) {
            return;
        }
        loop {
            if self.rx.changed().await.is_err() {
                // No tick thread: a timer to the next tick.
                let now = self.clock.now_ms();
                let until = self.tick_ms - now.rem_euclid(self.tick_ms);
                tokio::time::sleep(Duration::from_millis(until as u64)).await;
                break;
            }
            let now = *self.rx.borrow_and_update();
            if now >= wake_at_ms || self.slot.probed.swap(false, Ordering::SeqCst) {
                break;
            }
        }
    }

    /// Until the probe fires (or, without one, until the tick thread ends).
    pub async fn until_probed(&mut self) {
        self.until(i64::MAX).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[tokio::test]
    async fn only_a_due_waiter_or_a_probe_wakes_the_runtime() {
        let clock = Arc::new(ManualClock::new(1_000));
        let tick = start(Arc::clone(&clock) as Arc<dyn Clock>, 10);
        let mut rx = tick.rx.clone();
        rx.mark_unchanged();
        let mut far = tick.waiter();
        let waiting = tokio::spawn(async move { far.until(60_000).await });
        // Ten ticks go by: nobody is due, nothing is sent.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!rx.has_changed().unwrap());
        assert!(!waiting.is_finished());
        // The wall clock passes the waiter's time: the next tick wakes it.
        clock.advance(60_000);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        // A probe wakes its waiter whatever the time.
        let flag = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&flag);
        let mut probed = tick.probing(Box::new(move || seen.load(Ordering::SeqCst)));
        let waiting = tokio::spawn(async move { probed.until_probed().await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        flag.store(true, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
    }
}
