//! What a client may send the agent (and an agent a client): the bytes of a
//! connection, read the way the agent reads them — sniff the first byte,
//! then frames or JSON lines — and every payload decoded as a request and as
//! a response in both encodings.
//!
//! Invariants checked, besides "never panics":
//! - `frame_len` accepts exactly the lengths up to `MAX_FRAME`, unchanged;
//! - `sniff` picks binary for 0x00, JSON for `{`, nothing else;
//! - `read_frame` returns exactly the announced bytes, or `Closed` when the
//!   stream ends early, or `TooLarge` before allocating;
//! - `read_line` returns a line without `\n` of at most `MAX_FRAME` bytes;
//! - a decoded message re-encodes, in both encodings, to bytes that decode
//!   to the same value (only `TooLarge` may stop a re-encoding, and never in
//!   the encoding it came in, except for JSON: omitted fields come back);
//! - decode errors are short fixed texts that never quote the payload.
#![no_main]

use std::io::Cursor;

use a365_proto::codec::{decode_request, decode_response, encode_request, encode_response};
use a365_proto::frame::{frame_len, read_frame, read_line};
use a365_proto::{CodecError, Encoding, MAX_FRAME, Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 4 {
        let header = [data[0], data[1], data[2], data[3]];
        let announced = u32::from_be_bytes(header) as usize;
        match frame_len(header) {
            Ok(len) => assert!(len == announced && len <= MAX_FRAME),
            Err(CodecError::TooLarge(len)) => assert!(len == announced && len > MAX_FRAME),
            Err(e) => panic!("frame_len failed otherwise: {e}"),
        }
    }

    // The payload on its own, whatever the stream would have looked like.
    for encoding in [Encoding::Binary, Encoding::Json] {
        check_payload(data, encoding);
    }

    let Some(&first) = data.first() else { return };
    match Encoding::sniff(first) {
        Some(Encoding::Binary) => {
            assert_eq!(first, 0);
            read_frames(data);
        }
        Some(Encoding::Json) => {
            assert_eq!(first, b'{');
            read_lines(data);
        }
        None => assert!(first != 0 && first != b'{'),
    }
});

/// The agent's loop over a binary connection: frame after frame until the
/// stream ends or a frame is refused.
fn read_frames(data: &[u8]) {
    let mut stream = Cursor::new(data);
    loop {
        let at = stream.position() as usize;
        let rest = &data[at..];
        match read_frame(&mut stream) {
            Ok(payload) => {
                let len = frame_len([rest[0], rest[1], rest[2], rest[3]])
                    .expect("a frame was read, so its length was accepted");
                assert_eq!(&payload[..], &rest[4..4 + len]);
                assert_eq!(stream.position() as usize, at + 4 + len);
                check_payload(&payload, Encoding::Binary);
            }
            Err(CodecError::Closed) => {
                let short_header = rest.len() < 4;
                assert!(
                    short_header
                        || rest.len() - 4
                            < u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize,
                    "Closed although the whole frame was there"
                );
                return;
            }
            Err(CodecError::TooLarge(len)) => {
                assert!(len > MAX_FRAME);
                return;
            }
            Err(e) => panic!("read_frame failed otherwise on a byte slice: {e}"),
        }
    }
}

/// The agent's loop over a JSON connection: line after line.
fn read_lines(data: &[u8]) {
    let mut stream = Cursor::new(data);
    loop {
        let at = stream.position() as usize;
        match read_line(&mut stream) {
            Ok(line) => {
                assert!(line.len() <= MAX_FRAME);
                assert!(!line.contains(&b'\n'));
                assert_eq!(&line[..], &data[at..at + line.len()]);
                assert_eq!(data[at + line.len()], b'\n');
                check_payload(&line, Encoding::Json);
            }
            Err(CodecError::Closed) => {
                assert_eq!(at, data.len());
                return;
            }
            Err(CodecError::Malformed(_)) => {
                // EOF in the middle of a line.
                assert!(!data[at..].contains(&b'\n'));
                return;
            }
            Err(CodecError::TooLarge(len)) => {
                assert!(len > MAX_FRAME);
                return;
            }
            Err(e) => panic!("read_line failed otherwise on a byte slice: {e}"),
        }
    }
}

fn check_payload(payload: &[u8], encoding: Encoding) {
    match decode_request(payload, encoding) {
        Ok(request) => {
            for to in [Encoding::Binary, Encoding::Json] {
                let bytes = encode_request(&request, to);
                let Some(bytes) = allowed(bytes, payload, encoding, to) else {
                    continue;
                };
                let again: Request = decode_request(strip(&bytes, to), to)
                    .unwrap_or_else(|e| panic!("{encoding:?} -> {to:?} re-encoding: {e}"));
                assert_eq!(again, request, "{encoding:?} -> {to:?} round trip");
            }
        }
        Err(e) => check_error(&e, payload),
    }
    match decode_response(payload, encoding) {
        Ok(response) => {
            for to in [Encoding::Binary, Encoding::Json] {
                let bytes = encode_response(&response, to);
                let Some(bytes) = allowed(bytes, payload, encoding, to) else {
                    continue;
                };
                let again: Response = decode_response(strip(&bytes, to), to)
                    .unwrap_or_else(|e| panic!("{encoding:?} -> {to:?} re-encoding: {e}"));
                assert_eq!(again, response, "{encoding:?} -> {to:?} round trip");
            }
        }
        Err(e) => check_error(&e, payload),
    }
}

/// A re-encoding may only fail by being over the limit: binary → JSON
/// escapes grow strings, JSON → JSON brings back omitted fields. Binary →
/// binary never grows: bincode's own encoding is its shortest.
fn allowed<B: std::ops::Deref<Target = Vec<u8>>>(
    bytes: Result<B, CodecError>,
    payload: &[u8],
    from: Encoding,
    to: Encoding,
) -> Option<B> {
    match bytes {
        Ok(bytes) => {
            if from == Encoding::Binary && to == Encoding::Binary {
                assert!(bytes.len() - 4 <= payload.len(), "bincode re-encoding grew");
            }
            Some(bytes)
        }
        Err(CodecError::TooLarge(len)) => {
            assert!(len > MAX_FRAME);
            assert!(
                !(from == Encoding::Binary && to == Encoding::Binary),
                "a decoded frame does not fit a frame again"
            );
            None
        }
        Err(e) => panic!("a decoded message does not re-encode ({from:?} -> {to:?}): {e}"),
    }
}

/// The payload inside what `encode_*` put on the wire.
fn strip(bytes: &[u8], encoding: Encoding) -> &[u8] {
    match encoding {
        Encoding::Binary => {
            let len = frame_len([bytes[0], bytes[1], bytes[2], bytes[3]])
                .expect("our own frame header is within the limit");
            assert_eq!(len, bytes.len() - 4);
            &bytes[4..]
        }
        Encoding::Json => {
            assert_eq!(bytes.last(), Some(&b'\n'));
            let line = &bytes[..bytes.len() - 1];
            assert!(!line.contains(&b'\n'), "a JSON message spans two lines");
            line
        }
    }
}

/// Decode errors name what was wrong and where, never the data: they are
/// logged and sent back, and a payload may hold a secret.
fn check_error(e: &CodecError, payload: &[u8]) {
    let text = e.to_string();
    assert!(text.len() <= 200, "long decode error: {text}");
    match e {
        CodecError::Version(_) => {}
        CodecError::Malformed(what) => {
            const KNOWN: &[&str] = &[
                "invalid JSON syntax at line ",
                "incomplete JSON at line ",
                "JSON that is not a valid a365 message at line ",
                "unreadable JSON at line ",
                "missing \"version\" (see docs/protocol.md)",
                "frame too short for a version",
                "truncated message",
                "message exceeds the size limit",
                "unknown variant",
                "invalid UTF-8 in a string",
                "invalid boolean",
                "undecodable message",
            ];
            assert!(
                KNOWN.iter().any(|k| what.starts_with(k))
                    || what.ends_with(" unexpected bytes after the message"),
                "unexpected decode error text: {what:?} for {} bytes",
                payload.len()
            );
        }
        other => panic!("decoding a slice failed otherwise: {other}"),
    }
}
