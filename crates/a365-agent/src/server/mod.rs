//! Accepting clients: one task per connection, the peer checked first, a
//! cap on connections (the oldest idle one makes room), and a graceful
//! drain on shutdown.
//!
//! - [`connection`]: one client's messages, in its encoding;
//! - [`slots`]: the connection cap and the idle connections that make room;
//! - [`peer`]: who is on the other end (the agent's own user only);
//! - [`watching`]: a connection that streams events.

mod connection;
mod peer;
mod slots;
mod watching;

use std::sync::Arc;
use std::time::Duration;

use a365_proto::ErrorKind;
use interprocess::local_socket::tokio::{Listener, Stream};
use interprocess::local_socket::traits::tokio::Listener as _;
use tokio::sync::{Semaphore, watch};

use crate::agent::Agent;
use slots::{Idle, make_room};

/// What a socket's clients may ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Everything: the agent's own socket.
    Full,
    /// `token`, `status`, `ping` and `watch` only: a socket to forward to
    /// other machines or containers, over which no secret but access
    /// tokens ever travels and nothing can be changed. No request on it
    /// starts a refresh before a profile's normal refresh time, and its
    /// `status` carries no error text.
    TokenOnly(Forwarded),
}

/// The profiles a token-only socket serves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Forwarded {
    /// Only these (`--token-socket-profile`); empty: every profile.
    pub profiles: Arc<[String]>,
}

impl Forwarded {
    pub fn serves(&self, name: &str) -> bool {
        self.profiles.is_empty() || self.profiles.iter().any(|p| p == name)
    }
}

/// Connection limits.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Once a message has started, the rest must arrive within this.
    pub read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            idle_timeout: Duration::from_secs(300),
            read_timeout: Duration::from_secs(10),
        }
    }
}

/// The connection cap and the idle connections that can make room.
struct Slots {
    permits: Arc<Semaphore>,
    idle: Arc<Idle>,
}

/// One accepted connection: checks the peer, takes a slot, serves it.
async fn admit(
    stream: Stream,
    agent: Arc<Agent>,
    limits: Limits,
    access: Access,
    slots: Slots,
    shutdown: watch::Receiver<bool>,
) {
    // Before a slot is taken or an idle client evicted: another user must
    // not be able to push our own clients out.
    if let Err(reason) = peer::check(&stream) {
        tracing::warn!("refused a connection: {reason}");
        let message = "the agent serves only its own user";
        peer::refuse(stream, ErrorKind::PermissionDenied, message).await;
        return;
    }
    let Some(permit) = make_room(&slots.permits, &slots.idle).await else {
        tracing::warn!(
            limit = limits.max_connections,
            "too many busy connections; refusing one"
        );
        let message = "the agent has too many connections; try again";
        peer::refuse(stream, ErrorKind::Unavailable, message).await;
        return;
    };
    connection::serve(stream, agent, &limits, access, &slots.idle, shutdown).await;
    drop(permit);
}

/// Serves until `shutdown` turns true, then waits (at most 30 s) for the
/// requests in flight to finish.
pub async fn serve(
    listener: Listener,
    agent: Arc<Agent>,
    limits: Limits,
    access: Access,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let idle = Arc::new(Idle::default());
    let mut backoff = Duration::from_millis(10);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let stream = match stream {
            Ok(stream) => {
                backoff = Duration::from_millis(10);
                stream
            }
            Err(e) => {
                // Out of file descriptors and the like: don't spin.
                tracing::warn!("accept failed: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let slots = Slots {
            permits: Arc::clone(&permits),
            idle: Arc::clone(&idle),
        };
        let (agent, limits, shutdown) = (Arc::clone(&agent), limits.clone(), shutdown.clone());
        tokio::spawn(admit(
            stream,
            agent,
            limits,
            access.clone(),
            slots,
            shutdown,
        ));
    }
    drop(listener);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(Duration::from_secs(30), permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("some requests were still running at shutdown");
    }
}
