//! Encoding and decoding of whole messages: the only module that touches
//! bincode. Errors never quote the payload, which may hold a secret.

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use zeroize::Zeroizing;

use crate::{MAX_FRAME, OLDEST_JSON_VERSION, PROTOCOL_VERSION, Request, Response};

/// The two encodings a connection may speak; see the crate docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Binary,
    Json,
}

impl Encoding {
    /// Which encoding a connection speaks, from its first byte; `None` for
    /// anything else (garbage).
    pub fn sniff(first: u8) -> Option<Encoding> {
        match first {
            // The high byte of a length <= 64 KiB.
            0 => Some(Encoding::Binary),
            b'{' => Some(Encoding::Json),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("message of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error(
        "protocol version {0} is not supported (this side speaks {PROTOCOL_VERSION}): \
         use a365 and a365-agent from the same release"
    )]
    Version(u32),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("the first byte is neither a frame header nor '{{': not an a365 client")]
    UnknownEncoding,
    #[error("connection closed")]
    Closed,
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

const BINCODE: bincode::config::Configuration<
    bincode::config::BigEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_FRAME>,
> = bincode::config::standard()
    .with_big_endian()
    .with_variable_int_encoding()
    .with_limit::<MAX_FRAME>();

#[derive(Serialize, Deserialize)]
struct RequestEnvelope<T> {
    version: u32,
    request: T,
}

#[derive(Serialize, Deserialize)]
struct ResponseEnvelope<T> {
    version: u32,
    response: T,
}

#[derive(Deserialize)]
struct VersionOnly {
    version: Option<u32>,
}

/// The bytes that go on the wire for `request`: a whole frame or JSON line.
pub fn encode_request(
    request: &Request,
    encoding: Encoding,
) -> Result<Zeroizing<Vec<u8>>, CodecError> {
    encode(
        &RequestEnvelope {
            version: PROTOCOL_VERSION,
            request,
        },
        encoding,
    )
}

/// The bytes that go on the wire for `response`: a whole frame or JSON line.
pub fn encode_response(
    response: &Response,
    encoding: Encoding,
) -> Result<Zeroizing<Vec<u8>>, CodecError> {
    encode(
        &ResponseEnvelope {
            version: PROTOCOL_VERSION,
            response,
        },
        encoding,
    )
}

/// `Response::Token` built from borrowed parts, encoded exactly as the
/// owned one: the agent's hot path answers without copying the token, the
/// profile name or the scopes.
#[derive(Debug, Serialize)]
pub struct TokenReplyRef<'a> {
    pub profile: &'a str,
    /// The token: exposed here, on its way to the wire.
    pub token: &'a str,
    pub expires_at: Option<i64>,
    pub scopes: &'a [String],
}

/// The first variant of [`Response`], and only it: same index, same name.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum TokenResponseRef<'a> {
    Token(&'a TokenReplyRef<'a>),
}

/// The bytes of `Response::Token(reply)`, from borrowed parts.
pub fn encode_token_reply(
    reply: &TokenReplyRef<'_>,
    encoding: Encoding,
) -> Result<Zeroizing<Vec<u8>>, CodecError> {
    encode(
        &ResponseEnvelope {
            version: PROTOCOL_VERSION,
            response: TokenResponseRef::Token(reply),
        },
        encoding,
    )
}

/// Decodes a frame's payload (without its length) or a JSON line.
pub fn decode_request(payload: &[u8], encoding: Encoding) -> Result<Request, CodecError> {
    check_version(payload, encoding)?;
    decode::<RequestEnvelope<Request>>(payload, encoding).map(|e| e.request)
}

/// Decodes a frame's payload (without its length) or a JSON line.
pub fn decode_response(payload: &[u8], encoding: Encoding) -> Result<Response, CodecError> {
    check_version(payload, encoding)?;
    decode::<ResponseEnvelope<Response>>(payload, encoding).map(|e| e.response)
}

/// Encodes into a buffer allocated once at its final size: a buffer that
/// grew while a token was written into it would leave the old, unzeroed
/// copies behind in freed memory.
fn encode<T: Serialize>(value: &T, encoding: Encoding) -> Result<Zeroizing<Vec<u8>>, CodecError> {
    let size = encoded_size(value, encoding)?;
    if size > MAX_FRAME {
        return Err(CodecError::TooLarge(size));
    }
    // Frame header (4) or newline (1).
    let mut out = Zeroizing::new(Vec::with_capacity(size + 4));
    match encoding {
        Encoding::Binary => {
            out.extend_from_slice(&[0; 4]);
            bincode::serde::encode_into_std_write(value, &mut *out, BINCODE)
                .map_err(|e| CodecError::Malformed(e.to_string()))?;
            let len = out.len() - 4;
            if len > MAX_FRAME {
                return Err(CodecError::TooLarge(len));
            }
            let len = u32::try_from(len).map_err(|_| CodecError::TooLarge(len))?;
            out[..4].copy_from_slice(&len.to_be_bytes());
        }
        Encoding::Json => {
            serde_json::to_writer(&mut *out, value)
                .map_err(|e| CodecError::Malformed(e.to_string()))?;
            if out.len() > MAX_FRAME {
                return Err(CodecError::TooLarge(out.len()));
            }
            out.push(b'\n');
        }
    }
    Ok(out)
}

/// The payload's length, from a dry run that writes nothing.
fn encoded_size<T: Serialize>(value: &T, encoding: Encoding) -> Result<usize, CodecError> {
    let malformed = |e: &dyn std::fmt::Display| CodecError::Malformed(e.to_string());
    match encoding {
        Encoding::Binary => {
            let mut counter = bincode::enc::write::SizeWriter::default();
            bincode::serde::encode_into_writer(value, &mut counter, BINCODE)
                .map_err(|e| malformed(&e))?;
            Ok(counter.bytes_written)
        }
        Encoding::Json => {
            let mut counter = Counter(0);
            serde_json::to_writer(&mut counter, value).map_err(|e| malformed(&e))?;
            Ok(counter.0)
        }
    }
}

/// Counts the bytes written to it.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn check_version(payload: &[u8], encoding: Encoding) -> Result<(), CodecError> {
    let version = match encoding {
        Encoding::Binary => bincode::serde::decode_from_slice::<u32, _>(payload, BINCODE)
            .map(|(v, _)| Some(v))
            .map_err(|_| CodecError::Malformed("frame too short for a version".into()))?,
        Encoding::Json => {
            serde_json::from_slice::<VersionOnly>(payload)
                .map_err(json_error)?
                .version
        }
    };
    match version {
        Some(PROTOCOL_VERSION) => Ok(()),
        Some(v)
            if encoding == Encoding::Json
                && (OLDEST_JSON_VERSION..PROTOCOL_VERSION).contains(&v) =>
        {
            Ok(())
        }
        Some(other) => Err(CodecError::Version(other)),
        None => Err(CodecError::Malformed(
            "missing \"version\" (see docs/protocol.md)".into(),
        )),
    }
}

fn decode<T: DeserializeOwned>(payload: &[u8], encoding: Encoding) -> Result<T, CodecError> {
    match encoding {
        Encoding::Binary => {
            let (value, used) = bincode::serde::decode_from_slice::<T, _>(payload, BINCODE)
                .map_err(|e| CodecError::Malformed(bincode_error(&e)))?;
            if used != payload.len() {
                return Err(CodecError::Malformed(format!(
                    "{} unexpected bytes after the message",
                    payload.len() - used
                )));
            }
            Ok(value)
        }
        Encoding::Json => serde_json::from_slice(payload).map_err(json_error),
    }
}

/// Describes a JSON error by its category and position only: serde_json's
/// own message may quote a value, and a value may be a secret.
fn json_error(e: serde_json::Error) -> CodecError {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Syntax => "invalid JSON syntax",
        Category::Eof => "incomplete JSON",
        Category::Data => "JSON that is not a valid a365 message",
        Category::Io => "unreadable JSON",
    };
    CodecError::Malformed(format!(
        "{what} at line {} column {} (see docs/protocol.md)",
        e.line(),
        e.column()
    ))
}

/// bincode's decode errors name types and sizes, never the data itself,
/// except `OtherString`/`Utf8` variants which we summarize.
fn bincode_error(e: &bincode::error::DecodeError) -> String {
    use bincode::error::DecodeError as E;
    match e {
        E::UnexpectedEnd { .. } => "truncated message".into(),
        E::LimitExceeded => "message exceeds the size limit".into(),
        E::UnexpectedVariant { found, .. } => {
            format!("unknown variant {found} (is the agent older than the client?)")
        }
        // serde's own message for an enum index out of range; the rest of
        // its custom messages are not echoed.
        E::OtherString(msg) if msg.contains("variant index") => {
            "unknown variant (is the agent older than the client?)".into()
        }
        E::Utf8 { .. } => "invalid UTF-8 in a string".into(),
        E::InvalidBooleanValue(_) => "invalid boolean".into(),
        _ => "undecodable message".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, Kind, ProfileSpec, Secrets, TokenRequest, WireSecret};
    use secrecy::SecretString;

    fn token_request() -> Request {
        Request::Token(TokenRequest {
            profile: Some("work".into()),
            min_valid_ms: 300,
            scopes: vec!["a365:requirements".into()],
            workspace: None,
        })
    }

    fn frame_payload(bytes: &[u8]) -> &[u8] {
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        assert_eq!(len, bytes.len() - 4);
        &bytes[4..]
    }

    /// Pins the exact bytes: reordering variants or fields must fail here.
    #[test]
    fn binary_encoding_is_pinned() {
        let bytes = encode_request(&token_request(), Encoding::Binary).unwrap();
        let expected: &[u8] = &[
            0, 0, 0, 31, // length
            4,  // version
            0,  // Request::Token
            1, 4, b'w', b'o', b'r', b'k', // Some("work")
            251, 1, 44, // 300 as varint (u16 marker, big endian)
            1,  // one scope
            17, b'a', b'3', b'6', b'5', b':', b'r', b'e', b'q', b'u', b'i', b'r', b'e', b'm', b'e',
            b'n', b't', b's', //
            0,    // workspace: None
        ];
        assert_eq!(&bytes[..], expected);
        let ping = encode_request(&Request::Ping, Encoding::Binary).unwrap();
        assert_eq!(&ping[..], &[0, 0, 0, 2, 4, 5]);
        let shutdown = encode_request(&Request::Shutdown, Encoding::Binary).unwrap();
        assert_eq!(&shutdown[..], &[0, 0, 0, 2, 4, 6]);
        let page = encode_request(
            &Request::StatusPage {
                after: Some("a".into()),
            },
            Encoding::Binary,
        )
        .unwrap();
        assert_eq!(&page[..], &[0, 0, 0, 5, 4, 11, 1, 1, b'a']);
        let answer = encode_response(
            &Response::StatusPage {
                profiles: vec![],
                next: None,
            },
            Encoding::Binary,
        )
        .unwrap();
        assert_eq!(&answer[..], &[0, 0, 0, 4, 4, 7, 0, 0]);
    }

    #[test]
    fn json_encoding_is_pinned() {
        let bytes = encode_request(&token_request(), Encoding::Json).unwrap();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            "{\"version\":4,\"request\":{\"token\":{\"profile\":\"work\",\"min_valid_ms\":300,\
             \"scopes\":[\"a365:requirements\"],\"workspace\":null}}}\n"
        );
        let status = encode_request(&Request::Status, Encoding::Json).unwrap();
        assert_eq!(&status[..], b"{\"version\":4,\"request\":\"status\"}\n");
        let page = encode_request(&Request::StatusPage { after: None }, Encoding::Json).unwrap();
        assert_eq!(
            &page[..],
            b"{\"version\":4,\"request\":{\"status_page\":{\"after\":null}}}\n"
        );
    }

    #[test]
    fn json_fields_may_be_omitted() {
        let req =
            decode_request(br#"{"version":1,"request":{"token":{}}}"#, Encoding::Json).unwrap();
        assert_eq!(
            req,
            Request::Token(TokenRequest {
                profile: None,
                min_valid_ms: 0,
                scopes: vec![],
                workspace: None,
            })
        );
    }

    #[test]
    fn round_trips_in_both_encodings() {
        let add = Request::AddProfile(crate::AddProfile {
            name: "gov".into(),
            spec: ProfileSpec {
                kind: Kind::Refresh,
                realm: Some("altium365-gov".into()),
                token_url: None,
                client_id: Some("cid".into()),
                scopes: vec!["openid".into()],
                secure: Some(true),
                store: Some(crate::StoreKind::Keyring),
                ..Default::default()
            },
            secrets: Secrets {
                client_secret: Some(WireSecret::new(SecretString::from("s3cret"))),
                refresh_token: Some(WireSecret::new(SecretString::from("rt"))),
                access_token: None,
                ..Secrets::default()
            },
            replace: false,
            check_only: false,
            shared: false,
        });
        let responses = [
            Response::error(ErrorKind::NeedsReauth, "create a new token"),
            Response::Done {
                message: "ok".into(),
            },
            Response::Pong {
                protocol: 1,
                agent_version: "0.1.0".into(),
                pid: 42,
            },
        ];
        for enc in [Encoding::Binary, Encoding::Json] {
            let migrate = Request::MigrateStore {
                to: crate::StoreKind::File,
                profile: Some("work".into()),
            };
            for req in [
                token_request(),
                Request::Status,
                add.clone(),
                Request::Ping,
                migrate,
            ] {
                let bytes = encode_request(&req, enc).unwrap();
                let payload = match enc {
                    Encoding::Binary => frame_payload(&bytes),
                    Encoding::Json => &bytes[..],
                };
                assert_eq!(decode_request(payload, enc).unwrap(), req);
            }
            for resp in &responses {
                let bytes = encode_response(resp, enc).unwrap();
                let payload = match enc {
                    Encoding::Binary => frame_payload(&bytes),
                    Encoding::Json => &bytes[..],
                };
                assert_eq!(&decode_response(payload, enc).unwrap(), resp);
            }
        }
    }

    #[test]
    fn other_versions_are_refused_with_a_clear_error() {
        let err =
            decode_request(br#"{"version":5,"request":"status"}"#, Encoding::Json).unwrap_err();
        assert!(matches!(err, CodecError::Version(5)));
        assert_eq!(
            err.to_string(),
            "protocol version 5 is not supported (this side speaks 4): \
             use a365 and a365-agent from the same release"
        );
        assert!(matches!(
            decode_request(&[5, 4], Encoding::Binary),
            Err(CodecError::Version(5))
        ));
        // Binary is positional: a version-1 frame is refused, not misread.
        assert!(matches!(
            decode_request(&[1, 4], Encoding::Binary),
            Err(CodecError::Version(1))
        ));
        // JSON of version 1 (editor plugins) still decodes.
        assert_eq!(
            decode_request(br#"{"version":1,"request":"status"}"#, Encoding::Json).unwrap(),
            Request::Status
        );
        let missing = decode_request(br#"{"request":"status"}"#, Encoding::Json).unwrap_err();
        assert!(missing.to_string().contains("missing \"version\""));
    }

    #[test]
    fn unknown_variant_and_truncation_are_malformed() {
        let err = decode_request(&[4, 99], Encoding::Binary).unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
        let bytes = encode_request(&token_request(), Encoding::Binary).unwrap();
        let truncated = &bytes[4..bytes.len() - 3];
        assert!(
            decode_request(truncated, Encoding::Binary)
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
        let err = decode_request(br#"{"version":1,"request":"fly"}"#, Encoding::Json).unwrap_err();
        assert!(matches!(err, CodecError::Malformed(_)));
    }

    #[test]
    fn json_errors_do_not_quote_values() {
        let line = br#"{"version":1,"request":{"token":{"min_valid_ms":"hunter2-secret"}}}"#;
        let err = decode_request(line, Encoding::Json)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn sniffing() {
        assert_eq!(Encoding::sniff(0), Some(Encoding::Binary));
        assert_eq!(Encoding::sniff(b'{'), Some(Encoding::Json));
        assert_eq!(Encoding::sniff(b'G'), None);
        assert_eq!(Encoding::sniff(1), None);
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let s = Secrets {
            client_secret: Some(WireSecret::new(SecretString::from("topsecret"))),
            ..Default::default()
        };
        assert!(!format!("{s:?}").contains("topsecret"));
    }
}
