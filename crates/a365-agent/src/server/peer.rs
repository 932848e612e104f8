//! Who is on the other end: only the agent's own user is served, and
//! anyone else is told so in their own encoding. One module for this
//! platform concern (peer credentials).

use std::time::Duration;

use a365_proto::codec::{self, Encoding};
use a365_proto::{ErrorKind, Response};
use interprocess::local_socket::tokio::Stream;
use tokio::io::AsyncWriteExt;

/// Only the agent's own user may talk to it.
pub(super) fn check(stream: &Stream) -> Result<(), a365_proto::peer::NotMe> {
    a365_proto::peer::check(stream).map(|_pid| ())
}

/// Answers once and closes, in the client's encoding if its first byte
/// arrives within a moment (a JSON plugin must be able to read why).
pub(super) async fn refuse(stream: Stream, kind: ErrorKind, message: &str) {
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
