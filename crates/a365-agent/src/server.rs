//! Accepting clients: one task per connection, a cap on connections, a
//! peer check, both encodings, and a graceful drain on shutdown.

use std::sync::Arc;
use std::time::Duration;

use a365_proto::codec::{self, CodecError, Encoding};
use a365_proto::frame::ZeroizingBufReader;
use a365_proto::{ErrorKind, Request, Response, frame};
use interprocess::local_socket::tokio::{Listener, Stream};
use interprocess::local_socket::traits::StreamCommon as _;
use interprocess::local_socket::traits::tokio::Listener as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, watch};

use crate::agent::Agent;

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

/// Connections waiting for their next request, by age. At the cap, the
/// oldest is closed to make room: a client about to ask for a token must
/// not be refused because others hold connections open doing nothing (an
/// idle plugin reconnects when it needs to).
#[derive(Debug, Default)]
struct Idle {
    next: std::sync::atomic::AtomicU64,
    waiting: std::sync::Mutex<std::collections::BTreeMap<u64, Arc<tokio::sync::Notify>>>,
}

/// A connection's place among the idle; leaves it when dropped.
struct IdleTicket<'a> {
    idle: &'a Idle,
    id: u64,
    evicted: Arc<tokio::sync::Notify>,
}

impl Idle {
    fn enter(&self) -> IdleTicket<'_> {
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

/// Serves until `shutdown` turns true, then waits (at most 30 s) for the
/// requests in flight to finish.
pub async fn serve(
    listener: Listener,
    agent: Arc<Agent>,
    limits: Limits,
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
        let (agent, limits, shutdown) = (Arc::clone(&agent), limits.clone(), shutdown.clone());
        let (permits, idle) = (Arc::clone(&permits), Arc::clone(&idle));
        tokio::spawn(async move {
            // Before a slot is taken or an idle client evicted: another
            // user must not be able to push our own clients out.
            if let Err(reason) = check_peer(&stream) {
                tracing::warn!("refused a connection: {reason}");
                refuse(
                    stream,
                    ErrorKind::PermissionDenied,
                    "the agent serves only its own user",
                )
                .await;
                return;
            }
            let Some(permit) = make_room(&permits, &idle).await else {
                tracing::warn!(
                    limit = limits.max_connections,
                    "too many busy connections; refusing one"
                );
                refuse(
                    stream,
                    ErrorKind::Unavailable,
                    "the agent has too many connections; try again",
                )
                .await;
                return;
            };
            connection(stream, agent, &limits, &idle, shutdown).await;
            drop(permit);
        });
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

/// A connection slot: a free one, else one an idle connection gives up
/// (closing the oldest; a just-accepted one may take a moment to count as
/// idle). `None` when every connection is busy for a second.
async fn make_room(
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

/// Answers once and closes, in the client's encoding if its first byte
/// arrives within a moment (a JSON plugin must be able to read why).
async fn refuse(stream: Stream, kind: ErrorKind, message: &str) {
    use tokio::io::AsyncReadExt as _;
    let mut reader = &stream;
    let mut buf = zeroize::Zeroizing::new([0u8; 4096]);
    let first = tokio::time::timeout(Duration::from_millis(200), reader.read(&mut buf[..])).await;
    let encoding = match first {
        Ok(Ok(n)) if n > 0 => Encoding::sniff(buf[0]).unwrap_or(Encoding::Binary),
        _ => Encoding::Binary,
    };
    // Read what else it sent (one message at most): closing on unread
    // bytes resets the connection, and the client would lose our answer.
    let mut left = a365_proto::MAX_FRAME + 4;
    while left > 0 {
        match tokio::time::timeout(Duration::from_millis(20), reader.read(&mut buf[..])).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => break,
        }
    }
    if let Ok(bytes) = codec::encode_response(&Response::error(kind, message), encoding) {
        let mut writer = &stream;
        let _ = tokio::time::timeout(Duration::from_secs(1), writer.write_all(&bytes)).await;
    }
}

async fn connection(
    stream: Stream,
    agent: Arc<Agent>,
    limits: &Limits,
    idle: &Idle,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut reader = ZeroizingBufReader::with_capacity(4096, &stream);
    let mut writer = &stream;
    // The first byte says which encoding the client speaks.
    let first = {
        let ticket = idle.enter();
        tokio::select! {
            r = tokio::time::timeout(limits.idle_timeout, reader.fill_buf()) => match r {
                Ok(Ok([first, ..])) => *first,
                _ => return,
            },
            () = ticket.evicted.notified() => return,
        }
    };
    let Some(encoding) = Encoding::sniff(first) else {
        tracing::debug!("closing a connection that speaks neither encoding");
        let _ = write(
            &mut writer,
            &Response::error(
                ErrorKind::BadRequest,
                CodecError::UnknownEncoding.to_string(),
            ),
            Encoding::Binary,
        )
        .await;
        return;
    };
    loop {
        // Wait (idle) for the next message to start, unless shutting down.
        let started = {
            let ticket = idle.enter();
            tokio::select! {
                r = tokio::time::timeout(limits.idle_timeout, reader.fill_buf()) => matches!(r, Ok(Ok(buf)) if !buf.is_empty()),
                _ = shutdown.wait_for(|stop| *stop) => false,
                () = ticket.evicted.notified() => {
                    tracing::debug!("closed an idle connection to make room");
                    false
                }
            }
        };
        if !started {
            return;
        }
        let payload =
            match tokio::time::timeout(limits.read_timeout, read(&mut reader, encoding)).await {
                Ok(Ok(payload)) => payload,
                Ok(Err(CodecError::Closed)) => return,
                Ok(Err(e @ (CodecError::TooLarge(_) | CodecError::Malformed(_)))) => {
                    // The stream can't be resynchronised: answer and close.
                    tracing::debug!("bad message: {e}");
                    let _ = write(
                        &mut writer,
                        &Response::error(ErrorKind::BadRequest, e.to_string()),
                        encoding,
                    )
                    .await;
                    return;
                }
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::debug!("a client took too long to send its message");
                    let _ = write(
                        &mut writer,
                        &Response::error(ErrorKind::BadRequest, "incomplete message: timed out"),
                        encoding,
                    )
                    .await;
                    return;
                }
            };
        let response = match codec::decode_request(&payload, encoding).map(Request::clamped) {
            Ok(Request::Watch { profile }) => {
                watch(
                    &agent,
                    profile,
                    &mut reader,
                    &mut writer,
                    encoding,
                    shutdown,
                )
                .await;
                return;
            }
            Ok(request) => {
                tracing::trace!(?request, "request");
                handle(&agent, request).await
            }
            Err(e) => {
                tracing::debug!("undecodable request: {e}");
                Response::error(ErrorKind::BadRequest, e.to_string())
            }
        };
        if write(&mut writer, &response, encoding).await.is_err() {
            return;
        }
    }
}

/// A `watch` connection: `done`, then one `event` per change of the
/// profile (or of all), until the client closes or sends anything else.
async fn watch(
    agent: &Agent,
    profile: Option<String>,
    reader: &mut ZeroizingBufReader<&Stream>,
    writer: &mut &Stream,
    encoding: Encoding,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut events = match agent.watch(profile.as_deref()) {
        Ok(events) => events,
        Err(reply) => {
            let _ = write(writer, &Response::Error(reply), encoding).await;
            return;
        }
    };
    let what = profile
        .as_deref()
        .map_or("all profiles".to_owned(), |p| format!("profile '{p}'"));
    let done = Response::Done {
        message: format!("watching {what}"),
    };
    if write(writer, &done, encoding).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) if profile.as_ref().is_none_or(|p| *p == event.profile) => {
                    if write(writer, &Response::Event(event), encoding).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!("a watcher missed {n} events");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            // EOF, or a client that sends anything: the watch is over.
            // (Outputs mapped to `()`: the guards they hold are not Send.)
            () = async { let _ = reader.fill_buf().await; } => return,
            () = async { let _ = shutdown.wait_for(|stop| *stop).await; } => return,
        }
    }
}

/// Runs one request; a bug that panics (an overflow check, say) answers
/// that request with an error instead of closing the connection unsaid.
async fn handle(agent: &Agent, request: Request) -> Response {
    use futures_util::FutureExt as _;
    match std::panic::AssertUnwindSafe(agent.handle(request))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(_) => {
            tracing::error!("a request failed inside the agent (a bug); the agent carries on");
            Response::error(
                ErrorKind::Internal,
                "the agent failed on this request (a bug: its log says more); other requests are \
                 served",
            )
        }
    }
}

async fn read(
    reader: &mut ZeroizingBufReader<&Stream>,
    encoding: Encoding,
) -> Result<zeroize::Zeroizing<Vec<u8>>, CodecError> {
    match encoding {
        Encoding::Binary => frame::read_frame_async(reader).await,
        Encoding::Json => frame::read_line_async(reader).await,
    }
}

async fn write(
    writer: &mut &Stream,
    response: &Response,
    encoding: Encoding,
) -> Result<(), CodecError> {
    let bytes = match codec::encode_response(response, encoding) {
        // Say so rather than close without a word (a status of many
        // hundreds of profiles is over the limit of a message).
        Err(CodecError::TooLarge(len)) => {
            tracing::warn!("an answer of {len} bytes is over the limit of a message");
            let refusal = Response::error(
                ErrorKind::Internal,
                format!(
                    "the answer is {len} bytes, over the {}-byte limit of a message",
                    a365_proto::MAX_FRAME
                ),
            );
            codec::encode_response(&refusal, encoding)?
        }
        other => other?,
    };
    tokio::time::timeout(Duration::from_secs(10), writer.write_all(&bytes))
        .await
        .map_err(|_| CodecError::Io(std::io::ErrorKind::TimedOut.into()))??;
    Ok(())
}

/// Only the agent's own user may talk to it.
fn check_peer(stream: &Stream) -> Result<(), String> {
    #[cfg(unix)]
    {
        let creds = stream
            .peer_creds()
            .map_err(|e| format!("cannot read peer credentials: {e}"))?;
        let me = rustix::process::geteuid().as_raw();
        match creds.euid() {
            Some(uid) if uid == me => Ok(()),
            Some(uid) => Err(format!(
                "peer uid {uid} (pid {:?}) is not the agent's uid {me}",
                creds.pid()
            )),
            None => Err("the peer's uid is unknown".into()),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = stream;
        Ok(())
    }
}
