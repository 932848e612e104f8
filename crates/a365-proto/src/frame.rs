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
    loop {
        let buf = r.fill_buf()?;
        let (used, done) = take_line_part(&mut line, buf);
        r.consume(used);
        if done {
            break;
        }
    }
    let n = line.len();
    finish_line(line, n)
}

/// Appends `buf` up to and including a newline to `line`, at most
/// [`MAX_FRAME`] + 1 bytes in all; returns the bytes used and whether the
/// line is over (newline, limit, or end of input).
fn take_line_part(line: &mut Zeroizing<Vec<u8>>, buf: &[u8]) -> (usize, bool) {
    if buf.is_empty() {
        return (0, true);
    }
    let room = MAX_FRAME + 1 - line.len();
    let (used, newline) = match buf.iter().position(|&b| b == b'\n') {
        Some(i) if i < room => (i + 1, true),
        _ => (buf.len().min(room), false),
    };
    extend_zeroizing(line, &buf[..used]);
    (used, newline || line.len() > MAX_FRAME)
}

/// `line.extend_from_slice(data)`, but a buffer too small is replaced by a
/// larger one and wiped, never reallocated: `Vec`'s own growth frees the
/// old copy (maybe a secret) unzeroed.
pub fn extend_zeroizing(line: &mut Zeroizing<Vec<u8>>, data: &[u8]) {
    if line.capacity() - line.len() < data.len() {
        let wanted = (line.len() + data.len()).max(line.capacity() * 2).max(256);
        let mut bigger = Zeroizing::new(Vec::with_capacity(wanted));
        bigger.extend_from_slice(line);
        // The old buffer is zeroized as it drops.
        *line = bigger;
    }
    line.extend_from_slice(data);
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
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, ReadBuf};
    use zeroize::Zeroizing;

    use super::{eof_is_closed, finish_line, frame_len, take_line_part};
    use crate::CodecError;

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
        loop {
            let buf = r.fill_buf().await?;
            let (used, done) = take_line_part(&mut line, buf);
            r.consume(used);
            if done {
                break;
            }
        }
        let n = line.len();
        finish_line(line, n)
    }

    /// A read buffer that is wiped when dropped, unlike tokio's
    /// `BufReader`: the agent reads secrets (a client secret in an
    /// `add`) through it.
    #[derive(Debug)]
    pub struct ZeroizingBufReader<R> {
        inner: R,
        buf: Zeroizing<Box<[u8]>>,
        pos: usize,
        filled: usize,
    }

    impl<R> ZeroizingBufReader<R> {
        pub fn with_capacity(capacity: usize, inner: R) -> Self {
            ZeroizingBufReader {
                inner,
                buf: Zeroizing::new(vec![0u8; capacity].into_boxed_slice()),
                pos: 0,
                filled: 0,
            }
        }
    }

    impl<R: AsyncRead + Unpin> AsyncBufRead for ZeroizingBufReader<R> {
        fn poll_fill_buf(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<&[u8]>> {
            let this = self.get_mut();
            if this.pos >= this.filled {
                let mut read = ReadBuf::new(&mut this.buf[..]);
                std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
                this.filled = read.filled().len();
                this.pos = 0;
            }
            Poll::Ready(Ok(&this.buf[this.pos..this.filled]))
        }

        fn consume(self: Pin<&mut Self>, amt: usize) {
            let this = self.get_mut();
            this.pos = (this.pos + amt).min(this.filled);
        }
    }

    impl<R: AsyncRead + Unpin> AsyncRead for ZeroizingBufReader<R> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let available = std::task::ready!(self.as_mut().poll_fill_buf(cx))?;
            let n = available.len().min(out.remaining());
            out.put_slice(&available[..n]);
            self.consume(n);
            Poll::Ready(Ok(()))
        }
    }
}

#[cfg(feature = "tokio")]
pub use nonblocking::{ZeroizingBufReader, read_frame_async, read_line_async};

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
