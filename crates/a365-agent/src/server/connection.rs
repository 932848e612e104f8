//! One client's connection: the first byte picks the encoding, then
//! messages are read (each within the read timeout), handled and answered
//! in turn until the client goes, idles too long or the agent stops.

use std::sync::Arc;
use std::time::Duration;

use a365_proto::codec::{self, CodecError, Encoding, TokenReplyRef};
use a365_proto::frame::ZeroizingBufReader;
use a365_proto::{ErrorKind, Request, Response, frame};
use interprocess::local_socket::tokio::Stream;
use secrecy::ExposeSecret;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::watch;
use zeroize::Zeroizing;

use super::slots::Idle;
use super::{Access, Limits};
use crate::agent::{Agent, Answer};

/// Serves `stream` until it ends.
pub(super) async fn serve(
    stream: Stream,
    agent: Arc<Agent>,
    limits: &Limits,
    access: Access,
    idle: &Idle,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut reader = ZeroizingBufReader::with_capacity(4096, &stream);
    let mut writer = &stream;
    let Some(encoding) = sniff(&mut reader, &mut writer, limits, idle).await else {
        return;
    };
    loop {
        if !next_message_starts(&mut reader, limits, idle, &mut shutdown).await {
            return;
        }
        let Some(payload) = read_message(&mut reader, &mut writer, limits, encoding).await else {
            return;
        };
        let answer = match codec::decode_request(&payload, encoding).map(Request::clamped) {
            Ok(request) if access != Access::Full && !token_only(&request) => {
                let command = request.command();
                tracing::warn!(command, "refused on the token-only socket");
                let message = format!(
                    "this socket serves tokens only (token, status, ping, watch): run `{command}` \
                     where the agent runs"
                );
                Response::error(ErrorKind::PermissionDenied, message).into()
            }
            Ok(Request::Watch { profile }) => {
                let (reader, writer) = (&mut reader, &mut writer);
                let only = match &access {
                    Access::TokenOnly(forwarded) => Some(forwarded),
                    Access::Full => None,
                };
                super::watching::watch(&agent, profile, only, reader, writer, encoding, shutdown)
                    .await;
                return;
            }
            Ok(request @ (Request::AddProfile(_) | Request::UpdateSecret { .. }))
                if access == Access::Full =>
            {
                attended(&agent, request, &mut reader).await
            }
            Ok(request) => {
                tracing::trace!(?request, "request");
                handle(&agent, request, &access, None).await
            }
            Err(e) => {
                tracing::debug!("undecodable request: {e}");
                Response::error(ErrorKind::BadRequest, e.to_string()).into()
            }
        };
        if write_answer(&mut writer, &answer, encoding).await.is_err() {
            return;
        }
    }
}

/// What a token-only socket answers: nothing that changes the agent or
/// carries a secret in.
fn token_only(request: &Request) -> bool {
    matches!(
        request,
        Request::Token(_)
            | Request::Status
            | Request::StatusPage { .. }
            | Request::Ping
            | Request::Watch { .. }
    )
}

/// The encoding the client speaks, from its first byte; `None` (after
/// telling a client that speaks neither) when the connection is over.
async fn sniff(
    reader: &mut ZeroizingBufReader<&Stream>,
    writer: &mut &Stream,
    limits: &Limits,
    idle: &Idle,
) -> Option<Encoding> {
    let first = {
        let ticket = idle.enter();
        tokio::select! {
            r = tokio::time::timeout(limits.idle_timeout, reader.fill_buf()) => match r {
                Ok(Ok([first, ..])) => *first,
                _ => return None,
            },
            () = ticket.evicted.notified() => return None,
        }
    };
    let encoding = Encoding::sniff(first);
    if encoding.is_none() {
        tracing::debug!("closing a connection that speaks neither encoding");
        let refusal = Response::error(
            ErrorKind::BadRequest,
            CodecError::UnknownEncoding.to_string(),
        );
        let _ = write(writer, &refusal, Encoding::Binary).await;
    }
    encoding
}

/// Waits, counted as idle, for the next message to start; false when the
/// client went, idled past its timeout, was evicted, or the agent stops.
async fn next_message_starts(
    reader: &mut ZeroizingBufReader<&Stream>,
    limits: &Limits,
    idle: &Idle,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let ticket = idle.enter();
    tokio::select! {
        r = tokio::time::timeout(limits.idle_timeout, reader.fill_buf()) => {
            matches!(r, Ok(Ok(buf)) if !buf.is_empty())
        }
        _ = shutdown.wait_for(|stop| *stop) => false,
        () = ticket.evicted.notified() => {
            tracing::debug!("closed an idle connection to make room");
            false
        }
    }
}

/// One whole message within the read timeout; `None` when the connection
/// is over (a message that cannot be resynchronised is answered first).
async fn read_message(
    reader: &mut ZeroizingBufReader<&Stream>,
    writer: &mut &Stream,
    limits: &Limits,
    encoding: Encoding,
) -> Option<Zeroizing<Vec<u8>>> {
    let reading = async {
        match encoding {
            Encoding::Binary => frame::read_frame_async(reader).await,
            Encoding::Json => frame::read_line_async(reader).await,
        }
    };
    let why = match tokio::time::timeout(limits.read_timeout, reading).await {
        Ok(Ok(payload)) => return Some(payload),
        Ok(Err(e @ (CodecError::TooLarge(_) | CodecError::Malformed(_)))) => {
            tracing::debug!("bad message: {e}");
            e.to_string()
        }
        Ok(Err(_)) => return None,
        Err(_) => {
            tracing::debug!("a client took too long to send its message");
            "incomplete message: timed out".into()
        }
    };
    let _ = write(
        writer,
        &Response::error(ErrorKind::BadRequest, why),
        encoding,
    )
    .await;
    None
}

/// Runs a request whose client may hang up while it waits (`add`'s first
/// exchange): the agent is told, and keeps nothing unseen.
async fn attended(
    agent: &Agent,
    request: Request,
    reader: &mut ZeroizingBufReader<&Stream>,
) -> Answer {
    let (tell, hangup) = watch::channel(false);
    let work = handle(agent, request, &Access::Full, Some(hangup));
    tokio::pin!(work);
    tokio::select! {
        answer = &mut work => return answer,
        () = hung_up(reader) => {}
    }
    tracing::debug!("a client hung up while its request ran");
    let _ = tell.send(true);
    work.await
}

/// Resolves when the client closes its end; never if it sends more
/// (a next request, read after this one is answered).
async fn hung_up(reader: &mut ZeroizingBufReader<&Stream>) {
    match reader.fill_buf().await {
        Ok([]) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// Runs one request; a bug that panics (an overflow check, say) answers
/// that request with an error instead of closing the connection unsaid.
async fn handle(
    agent: &Agent,
    request: Request,
    access: &Access,
    hangup: crate::agent::Hangup,
) -> Answer {
    use futures_util::FutureExt as _;
    // Boxed: the handlers' state is large, and inline it would be part of
    // every idle connection's task (10,000 idle clients cost 13 KiB each
    // instead of 7.5).
    let answer: std::pin::Pin<Box<dyn std::future::Future<Output = Answer> + Send + '_>> =
        match access {
            Access::Full => Box::pin(agent.handle_attended(request, hangup)),
            Access::TokenOnly(forwarded) => Box::pin(agent.handle_forwarded(request, forwarded)),
        };
    match std::panic::AssertUnwindSafe(answer).catch_unwind().await {
        Ok(answer) => answer,
        Err(_) => {
            tracing::error!("a request failed inside the agent (a bug); the agent carries on");
            Response::error(
                ErrorKind::Internal,
                "the agent failed on this request (a bug: its log says more); other requests are \
                 served",
            )
            .into()
        }
    }
}

/// Writes an answer: a token straight from the profile's held one,
/// anything else as its message.
async fn write_answer(
    writer: &mut &Stream,
    answer: &Answer,
    encoding: Encoding,
) -> Result<(), CodecError> {
    match answer {
        Answer::Response(response) => write(writer, response, encoding).await,
        Answer::Token { profile, held } => {
            let reply = TokenReplyRef {
                profile: &profile.name,
                token: held.secret.expose_secret(),
                expires_at: held.expires_at_ms.map(|ms| ms.div_euclid(1000)),
                scopes: &held.scopes,
            };
            send(writer, &codec::encode_token_reply(&reply, encoding)?).await
        }
    }
}

/// Writes `response`; one over the message limit is replaced by an error
/// that says so (rather than a connection closed without a word).
pub(super) async fn write(
    writer: &mut &Stream,
    response: &Response,
    encoding: Encoding,
) -> Result<(), CodecError> {
    let bytes = match codec::encode_response(response, encoding) {
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
    send(writer, &bytes).await
}

/// A client that does not read its answer within 10 s is given up on.
async fn send(writer: &mut &Stream, bytes: &[u8]) -> Result<(), CodecError> {
    tokio::time::timeout(Duration::from_secs(10), writer.write_all(bytes))
        .await
        .map_err(|_| CodecError::Io(std::io::ErrorKind::TimedOut.into()))??;
    Ok(())
}
