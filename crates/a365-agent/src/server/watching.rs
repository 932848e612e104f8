//! A `watch` connection: `done`, then one `event` per change, until the
//! client closes or sends anything else.

use a365_proto::Response;
use a365_proto::codec::Encoding;
use a365_proto::frame::ZeroizingBufReader;
use interprocess::local_socket::tokio::Stream;
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;

use super::connection::write;
use crate::agent::Agent;

/// A `watch` connection: `done`, then one `event` per change of the
/// profile (or of all), until the client closes or sends anything else.
pub(super) async fn watch(
    agent: &Agent,
    profile: Option<String>,
    only: Option<&super::Forwarded>,
    reader: &mut ZeroizingBufReader<&Stream>,
    writer: &mut &Stream,
    encoding: Encoding,
    mut shutdown: watch::Receiver<bool>,
) {
    if let (Some(only), Some(name)) = (only, &profile)
        && !only.serves(name)
    {
        let reply = crate::agent::not_forwarded(name);
        let _ = write(writer, &Response::Error(reply), encoding).await;
        return;
    }
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
                Ok(event) if profile.as_ref().is_none_or(|p| *p == event.profile)
                    && only.is_none_or(|o| o.serves(&event.profile)) => {
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
