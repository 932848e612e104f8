//! Reading an HTTP answer with a bound: a token server or an etcd member
//! that sends without end must not grow the agent's memory without end.

use zeroize::Zeroizing;

/// Why an answer could not be read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Longer than the bound.
    TooLarge,
    /// The connection ended or timed out before the end.
    Cut { timed_out: bool },
}

/// The whole body, at most `max` bytes, in a buffer wiped when dropped
/// (token answers carry secrets; no partial copy is left behind).
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Zeroizing<Vec<u8>>, BodyError> {
    let mut body = Zeroizing::new(Vec::with_capacity(2048));
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > max {
                    return Err(BodyError::TooLarge);
                }
                a365_proto::frame::extend_zeroizing(&mut body, &chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(BodyError::Cut {
                    timed_out: e.is_timeout(),
                });
            }
        }
    }
}
