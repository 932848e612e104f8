//! A synchronous client: connect, send one request, read one response.
//! No async runtime, so `a365 token` starts fast.

use std::io::Write;
use std::path::{Path, PathBuf};

use interprocess::local_socket::{Stream, prelude::*};

use crate::codec::{self, CodecError, Encoding};
use crate::{Request, Response, frame, path};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no agent is listening at {path}: {source}")]
    Unreachable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("talking to the agent at {path}: {source}")]
    Protocol { path: PathBuf, source: CodecError },
    /// Another user's process listens there: nothing was sent to it.
    #[error(
        "refusing to talk to {path}: the process listening there runs as uid {uid}, not as you \
         (uid {me}); another user may have created it first. Nothing was sent. Stop it, or set \
         A365_AGENT_SOCK to a path in a directory only you can write"
    )]
    NotOurs { path: PathBuf, uid: u32, me: u32 },
    #[error(transparent)]
    NoPath(#[from] path::NoSocketPath),
}

/// One connection to the agent, in the binary encoding.
#[derive(Debug)]
pub struct Client {
    stream: Stream,
    path: PathBuf,
}

impl Client {
    /// Connects to the socket at [`path::socket_path`].
    pub fn connect_default() -> Result<Self, ClientError> {
        Self::connect(&path::socket_path()?)
    }

    /// Connects, and checks that the agent runs as this user before
    /// anything is sent: a socket someone else created first must never
    /// receive a secret nor hand us a token of its choosing.
    pub fn connect(socket: &Path) -> Result<Self, ClientError> {
        let unreachable = |source| ClientError::Unreachable {
            path: socket.to_owned(),
            source,
        };
        let name = path::socket_name(socket).map_err(unreachable)?;
        let stream = Stream::connect(name).map_err(unreachable)?;
        check_server(&stream, socket)?;
        Ok(Self {
            stream,
            path: socket.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends `request` and waits for the answer.
    pub fn call(&mut self, request: &Request) -> Result<Response, ClientError> {
        let protocol = |source| ClientError::Protocol {
            path: self.path.clone(),
            source,
        };
        let bytes = codec::encode_request(request, Encoding::Binary).map_err(protocol)?;
        let written = self.stream.write_all(&bytes);
        // An agent that refuses us (another user, too many connections)
        // answers and closes at once, maybe before our write: its answer
        // is still there to read, and says more than "broken pipe".
        let payload = match (written, frame::read_frame(&mut self.stream)) {
            (_, Ok(payload)) => payload,
            (Err(e), Err(_)) => return Err(protocol(CodecError::Io(e))),
            (Ok(()), Err(e)) => return Err(protocol(e)),
        };
        codec::decode_response(&payload, Encoding::Binary).map_err(protocol)
    }

    /// Reads one more response: the events that follow a `watch`.
    pub fn next_response(&mut self) -> Result<Response, ClientError> {
        let protocol = |source| ClientError::Protocol {
            path: self.path.clone(),
            source,
        };
        let payload = frame::read_frame(&mut self.stream).map_err(protocol)?;
        codec::decode_response(&payload, Encoding::Binary).map_err(protocol)
    }
}

/// The listening process must run as our effective user.
#[cfg(unix)]
fn check_server(stream: &Stream, socket: &Path) -> Result<(), ClientError> {
    use interprocess::local_socket::traits::StreamCommon as _;
    let me = rustix::process::geteuid().as_raw();
    let creds = stream
        .peer_creds()
        .map_err(|source| ClientError::Unreachable {
            path: socket.to_owned(),
            source,
        })?;
    match creds.euid() {
        Some(uid) if uid == me => Ok(()),
        // u32::MAX: the kernel did not say; treat it as not ours.
        other => Err(ClientError::NotOurs {
            path: socket.to_owned(),
            uid: other.unwrap_or(u32::MAX),
            me,
        }),
    }
}

#[cfg(not(unix))]
fn check_server(_stream: &Stream, _socket: &Path) -> Result<(), ClientError> {
    Ok(())
}
