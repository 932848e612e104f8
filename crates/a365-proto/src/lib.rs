//! The a365 wire protocol, defined once for the agent and every client.
//!
//! A connection carries one of two encodings, chosen by the client's first byte:
//!
//! * **binary** (`a365` itself): frames of a 4-byte big-endian length (at most
//!   [`MAX_FRAME`]) followed by a bincode payload. The first byte of a frame is
//!   therefore always `0x00`.
//! * **JSON** (editor plugins): one JSON object per line, first byte `{`.
//!
//! Both carry the same [`Request`] / [`Response`] messages inside an envelope
//! that names [`PROTOCOL_VERSION`]; see `docs/protocol.md`.
//!
//! Variants are only ever *appended*: reordering changes the bincode bytes,
//! and the tests in [`codec`] pin the exact encoding.

pub mod client;
pub mod codec;
pub mod frame;
pub mod handles;
mod human;
pub mod kind;
pub mod message;
pub mod path;
pub mod peer;
#[cfg(windows)]
pub mod pipe;
mod route;
mod secret;
mod sink;
pub mod spec;

pub use client::{Client, ClientError};
pub use codec::{CodecError, Encoding};
pub use human::{human_ms, is_format_char, plain_http_note, visible};
pub use kind::{AskedSecret, Facts, Kind, SecretField};
pub use message::*;
pub use route::{PRESETS, ProxyRoute, ROUTE_SECRET_HEADER, RouteStatus, preset};
pub use secret::WireSecret;
pub use sink::{FileSink, SinkFormat, SinkStatus};
pub use spec::*;

/// Version of the message set. Checked on every message, separately from the
/// crate version, so a client and an agent of different releases fail with a
/// clear error instead of mis-decoding each other.
/// 2: `ProfileSpec` gained `client_auth`, `revocation_url`,
/// `authorize_params`, `token_params` and `headers`; `Secrets` gained
/// `password` and `username`; `RemoveProfile` gained
/// `keep_remote`; `AddProfile` gained `check_only`; `Doctor`, `Restart`,
/// `LoginReview` and `LoginKeep` were added.
/// 3: `ProfileSpec` gained `introspection_url`.
/// 4: `ProfileStatus` gained `client_auth` and `assumed_lifetime_secs`;
/// `ClientAuth` gained `basic-raw`; `TokenRequest` gained `workspace`,
/// `ProfileSpec` `workspace` and `workspace_of`; `Login`
/// `select_workspace`; `Workspaces` (request and response) and
/// `SetDefault` were added.
pub const PROTOCOL_VERSION: u32 = 4;

/// The oldest version a JSON message may name. JSON is self-describing and
/// every field added since has a default, so clients written for it (the
/// editor plugins in `docs/examples/`) keep working; the binary encoding,
/// positional, needs the exact version.
pub const OLDEST_JSON_VERSION: u32 = 1;

/// Largest frame or JSON line either side accepts, checked before allocating.
pub const MAX_FRAME: usize = 64 * 1024;
