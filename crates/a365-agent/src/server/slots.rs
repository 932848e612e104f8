//! The connection cap: a semaphore of slots, and the idle connections
//! that give theirs up, oldest first, so a client with a request is served
//! rather than refused by clients doing nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// Connections waiting for their next request, by age. At the cap, the
/// oldest is closed to make room: a client about to ask for a token must
/// not be refused because others hold connections open doing nothing (an
/// idle plugin reconnects when it needs to).
#[derive(Debug, Default)]
pub(super) struct Idle {
    next: std::sync::atomic::AtomicU64,
    waiting: std::sync::Mutex<std::collections::BTreeMap<u64, Arc<tokio::sync::Notify>>>,
}

/// A connection's place among the idle; leaves it when dropped.
pub(super) struct IdleTicket<'a> {
    idle: &'a Idle,
    id: u64,
    pub(super) evicted: Arc<tokio::sync::Notify>,
}

impl Idle {
    pub(super) fn enter(&self) -> IdleTicket<'_> {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let evicted = Arc::new(tokio::sync::Notify::new());
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.insert(id, Arc::clone(&evicted));
        }
        IdleTicket {
            idle: self,
            id,
            evicted,
        }
    }

    /// Tells the oldest idle connection to close; false if none is idle.
    fn evict_oldest(&self) -> bool {
        let oldest = self.waiting.lock().ok().and_then(|mut w| w.pop_first());
        match oldest {
            Some((_, evicted)) => {
                // A stored permit: works even before the connection waits.
                evicted.notify_one();
                true
            }
            None => false,
        }
    }
}

impl Drop for IdleTicket<'_> {
    fn drop(&mut self) {
        if let Ok(mut waiting) = self.idle.waiting.lock() {
            waiting.remove(&self.id);
        }
    }
}

/// A connection slot: a free one, else one an idle connection gives up
/// (closing the oldest; a just-accepted one may take a moment to count as
/// idle). `None` when every connection is busy for a second.
pub(super) async fn make_room(
    permits: &Arc<Semaphore>,
    idle: &Idle,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        if let Ok(permit) = Arc::clone(permits).try_acquire_owned() {
            return Some(permit);
        }
        let wait = if idle.evict_oldest() {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(10)
        };
        let until = (tokio::time::Instant::now() + wait).min(deadline);
        if let Ok(Ok(permit)) =
            tokio::time::timeout_at(until, Arc::clone(permits).acquire_owned()).await
        {
            return Some(permit);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_free_slot_is_taken_at_once() {
        let permits = Arc::new(Semaphore::new(2));
        let idle = Idle::default();
        let start = tokio::time::Instant::now();
        let a = make_room(&permits, &idle).await;
        let b = make_room(&permits, &idle).await;
        assert!(a.is_some() && b.is_some());
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn the_oldest_idle_connection_makes_room() {
        let permits = Arc::new(Semaphore::new(2));
        let idle = Idle::default();
        let old = make_room(&permits, &idle).await;
        let young = make_room(&permits, &idle).await;
        let old_ticket = idle.enter();
        let young_ticket = idle.enter();
        // What a connection does when told to go: drop its slot.
        let evicted = Arc::clone(&old_ticket.evicted);
        let holder = tokio::spawn(async move {
            evicted.notified().await;
            drop(old);
        });
        let third = make_room(&permits, &idle).await;
        assert!(third.is_some());
        holder.await.unwrap();
        // The younger one was left alone and is still waiting.
        assert_eq!(idle.waiting.lock().unwrap().len(), 1);
        assert!(idle.waiting.lock().unwrap().contains_key(&young_ticket.id));
        drop((young, old_ticket));
    }

    #[tokio::test(start_paused = true)]
    async fn busy_connections_are_not_evicted_and_the_newcomer_is_refused_after_a_second() {
        let permits = Arc::new(Semaphore::new(1));
        let idle = Idle::default();
        let busy = make_room(&permits, &idle).await;
        let start = tokio::time::Instant::now();
        assert!(make_room(&permits, &idle).await.is_none());
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        drop(busy);
    }

    #[test]
    fn a_ticket_leaves_the_idle_list_when_dropped() {
        let idle = Idle::default();
        let ticket = idle.enter();
        assert_eq!(idle.waiting.lock().unwrap().len(), 1);
        drop(ticket);
        assert!(idle.waiting.lock().unwrap().is_empty());
        assert!(!idle.evict_oldest());
    }
}
