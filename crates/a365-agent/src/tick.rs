//! The agent's shared tick: one thread sleeps to each multiple of the tick
//! on the wall clock and wakes whoever waits for it. An idle agent's
//! periodic looks (each refresher's, the upgrade check, the idle give-back)
//! wait here rather than on tokio timers: tokio's timer wheel wakes its
//! driver as a far timer moves down its levels (about 4 s and 64 ms before
//! it fires), three wake-ups for every 30 s sleep, where this thread wakes
//! once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::Clock;

/// Starts the tick; it stops at the first tick after the last receiver
/// is dropped. Each tick sends its wall-clock time (ms).
pub fn start(clock: Arc<dyn Clock>, tick_ms: i64) -> watch::Receiver<i64> {
    let tick_ms = tick_ms.max(1);
    let (tx, rx) = watch::channel(clock.now_ms());
    let spawned = std::thread::Builder::new()
        .name("a365-tick".into())
        .spawn(move || {
            loop {
                let now = clock.now_ms();
                let until = tick_ms - now.rem_euclid(tick_ms);
                std::thread::sleep(Duration::from_millis(until as u64));
                if tx.send(clock.now_ms()).is_err() {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        // Then waiters fall back to their own timers (see `Waiter`).
        tracing::warn!("no tick thread ({e}): periodic looks use timers");
    }
    rx
}

/// One waiter's view of the tick: a tick that fell while it was busy
/// still wakes its next wait, so none is missed.
#[derive(Debug)]
pub struct Waiter {
    rx: watch::Receiver<i64>,
    tick_ms: i64,
}

impl Waiter {
    pub fn new(rx: &watch::Receiver<i64>, tick_ms: i64) -> Waiter {
        let mut rx = rx.clone();
        rx.mark_unchanged();
        Waiter {
            rx,
            tick_ms: tick_ms.max(1),
        }
    }

    /// Until the next tick (at once if one fell since the last wait).
    pub async fn next(&mut self) {
        if self.rx.changed().await.is_err() {
            // No tick thread: a timer to the same instant.
            let now = jiff::Timestamp::now().as_millisecond();
            let until = self.tick_ms - now.rem_euclid(self.tick_ms);
            tokio::time::sleep(Duration::from_millis(until as u64)).await;
        }
    }
}
