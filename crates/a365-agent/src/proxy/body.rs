//! Bodies through a route: a request body kept whole (up to a bound) so
//! that it can be sent again, else streamed; an answer read far enough to
//! see whether it refuses the token, then streamed on.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

/// The largest request body kept for a replay; a larger one streams and
/// is sent once.
pub(crate) const REPLAYABLE: usize = 1 << 20;

/// The most of an answer read to look for a GraphQL token error.
pub(crate) const INSPECTED: usize = 64 << 10;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body on its way to the upstream.
pub(crate) enum Outgoing {
    /// All of it, sent as many times as needed.
    Whole(Bytes),
    /// Too large (or failed) to keep: sent once.
    Streamed(reqwest::Body),
}

/// Reads `body` into memory up to [`REPLAYABLE`] bytes (when its declared
/// length allows); a longer body goes on streaming, what was read first.
pub(crate) async fn take<B>(mut body: B, declared: Option<u64>) -> Result<Outgoing, BoxError>
where
    B: Body + Send + Sync + Unpin + 'static,
    B::Data: Into<Bytes>,
    B::Error: Into<BoxError>,
{
    if body.is_end_stream() {
        return Ok(Outgoing::Whole(Bytes::new()));
    }
    if declared.is_some_and(|n| n > REPLAYABLE as u64) {
        return Ok(Outgoing::Streamed(reqwest::Body::wrap(body)));
    }
    let mut kept = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Into::into)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers: not forwarded
        };
        kept.extend_from_slice(&data.into());
        if kept.len() > REPLAYABLE {
            let prefix = kept.freeze();
            return Ok(Outgoing::Streamed(reqwest::Body::wrap(Prefixed::new(
                prefix, body,
            ))));
        }
    }
    Ok(Outgoing::Whole(kept.freeze()))
}

/// `prefix`, then the rest of a body: what was read ahead, not lost.
pub(crate) struct Prefixed<B> {
    prefix: Option<Bytes>,
    rest: B,
}

impl<B> Prefixed<B> {
    pub(crate) fn new(prefix: Bytes, rest: B) -> Prefixed<B> {
        Prefixed {
            prefix: Some(prefix).filter(|p| !p.is_empty()),
            rest,
        }
    }
}

impl<B> Body for Prefixed<B>
where
    B: Body + Unpin,
    B::Data: Into<Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        match Pin::new(&mut self.rest).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame.map_data(Into::into)))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let first = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + first);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + first);
        }
        hint
    }
}

/// Reads `answer` up to [`INSPECTED`] bytes: `Ok` with all of it when it
/// ends by then, else `Err` with the answer whose body streams on (from
/// its first byte).
pub(crate) async fn read_small(
    mut answer: reqwest::Response,
) -> Result<(http::response::Parts, Bytes), http::Response<reqwest::Body>> {
    let mut kept = BytesMut::new();
    loop {
        match answer.chunk().await {
            Ok(Some(chunk)) => {
                kept.extend_from_slice(&chunk);
                if kept.len() > INSPECTED {
                    let (parts, rest) = http::Response::from(answer).into_parts();
                    let body = reqwest::Body::wrap(Prefixed::new(kept.freeze(), rest));
                    return Err(http::Response::from_parts(parts, body));
                }
            }
            Ok(None) => {
                let (parts, _) = http::Response::from(answer).into_parts();
                return Ok((parts, kept.freeze()));
            }
            Err(e) => {
                // What came, then the error: the client sees a cut answer,
                // as it would have without the proxy.
                let (parts, _) = http::Response::from(answer).into_parts();
                let failed = http_body_util::StreamBody::new(futures_util::stream::iter([
                    Ok::<_, BoxError>(Frame::data(kept.freeze())),
                    Err(Box::new(e) as BoxError),
                ]));
                return Err(http::Response::from_parts(
                    parts,
                    reqwest::Body::wrap(failed),
                ));
            }
        }
    }
}
