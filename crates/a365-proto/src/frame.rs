//! Reading whole messages off a stream, with the size limit checked before
//! anything is allocated. Synchronous for clients, async (feature `tokio`)
//! for the agent.

use std::io::{BufRead, Read};

use zeroize::Zeroizing;

use crate::{CodecError, MAX_FRAME};

/// The payload length a binary frame header announces, refused before any
/// allocation when over [`MAX_FRAME`].
pub fn frame_len(header: [u8; 4]) -> Result<usize, CodecError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(CodecError::TooLarge(len));
    }
    Ok(len)
}

/// Reads one binary frame's payload.
pub fn read_frame(r: &mut impl Read) -> Result<Zeroizing<Vec<u8>>, CodecError> {
    let mut header = [0u8; 4];
    r.read_exact(&mut header).map_err(eof_is_closed)?;
    let len = frame_len(header)?;
    let mut payload = Zeroizing::new(vec![0u8; len]);
    r.read_exact(&mut payload).map_err(eof_is_closed)?;
    Ok(payload)
}

/// Reads one JSON line (without its newline), at most [`MAX_FRAME`] bytes.
pub fn read_line(r: &mut impl BufRead) -> Result<Zeroizing<Vec<u8>>, CodecError> {
    let mut line = Zeroizing::new(Vec::new());
    let n = r.take(MAX_FRAME as u64 + 1).read_until(b'\n', &mut line)?;
    finish_line(line, n)
}

fn finish_line(mut line: Zeroizing<Vec<u8>>, n: usize) -> Result<Zeroizing<Vec<u8>>, CodecError> {
    if n == 0 {
        return Err(CodecError::Closed);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        return Ok(line);
    }
    if line.len() > MAX_FRAME {
        return Err(CodecError::TooLarge(line.len()));
    }
    // EOF in the middle of a line.
    Err(CodecError::Malformed(
        "connection closed in the middle of a line".into(),
    ))
}

fn eof_is_closed(e: std::io::Error) -> CodecError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        CodecError::Closed
    } else {
        CodecError::Io(e)
    }
}

#[cfg(feature = "tokio")]
mod nonblocking {
    use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt};
    use zeroize::Zeroizing;

    use super::{eof_is_closed, finish_line, frame_len};
    use crate::{CodecError, MAX_FRAME};

    /// Reads one binary frame's payload.
    pub async fn read_frame_async(
        r: &mut (impl AsyncRead + Unpin),
    ) -> Result<Zeroizing<Vec<u8>>, CodecError> {
        let mut header = [0u8; 4];
        r.read_exact(&mut header).await.map_err(eof_is_closed)?;
        let len = frame_len(header)?;
        let mut payload = Zeroizing::new(vec![0u8; len]);
        r.read_exact(&mut payload).await.map_err(eof_is_closed)?;
        Ok(payload)
    }

    /// Reads one JSON line (without its newline), at most [`MAX_FRAME`] bytes.
    pub async fn read_line_async(
        r: &mut (impl AsyncBufRead + Unpin),
    ) -> Result<Zeroizing<Vec<u8>>, CodecError> {
        let mut line = Zeroizing::new(Vec::new());
        let n = r
            .take(MAX_FRAME as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        finish_line(line, n)
    }
}

#[cfg(feature = "tokio")]
pub use nonblocking::{read_frame_async, read_line_async};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_header_is_refused_before_allocating() {
        let mut r: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut r),
            Err(CodecError::TooLarge(4_294_967_295))
        ));
        assert!(frame_len([0, 1, 0, 0]).is_ok());
        assert!(frame_len([0, 1, 0, 1]).is_err());
    }

    #[test]
    fn truncated_frame_is_closed() {
        let mut r: &[u8] = &[0, 0, 0, 10, 1, 2];
        assert!(matches!(read_frame(&mut r), Err(CodecError::Closed)));
    }

    #[test]
    fn lines() {
        let mut r: &[u8] = b"{\"a\":1}\n{\"b\"";
        assert_eq!(&read_line(&mut r).unwrap()[..], b"{\"a\":1}");
        assert!(matches!(read_line(&mut r), Err(CodecError::Malformed(_))));
        let long = vec![b'x'; MAX_FRAME + 10];
        assert!(matches!(
            read_line(&mut &long[..]),
            Err(CodecError::TooLarge(_))
        ));
    }
}
