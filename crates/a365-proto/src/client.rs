//! A synchronous client: connect, send one request, read one response.
//! No async runtime, so `a365 token` starts fast.

use std::io::Write;
use std::path::{Path, PathBuf};

use interprocess::local_socket::Stream;
#[cfg(not(windows))]
use interprocess::local_socket::prelude::*;

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
    /// Another user's process listens there (or it cannot be told whose
    /// it is): nothing was sent to it.
    #[error(
        "refusing to talk to {path}: {}; another user may have created it first. Nothing was \
         sent. Stop it, or set A365_AGENT_SOCK to a path in a directory only you can write",
        listener(.reason)
    )]
    NotOurs {
        path: PathBuf,
        reason: crate::peer::NotMe,
    },
    #[error(transparent)]
    NoPath(#[from] path::NoSocketPath),
}

/// One connection to the agent, in the binary encoding.
#[derive(Debug)]
pub struct Client {
    stream: Stream,
    path: PathBuf,
    agent_pid: Option<u32>,
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
        #[cfg(windows)]
        let stream = crate::pipe::connect(socket).map_err(unreachable)?;
        #[cfg(not(windows))]
        let stream = {
            let name = path::socket_name(socket).map_err(unreachable)?;
            Stream::connect(name).map_err(unreachable)?
        };
        let agent_pid = check_server(&stream, socket)?;
        Ok(Self {
            stream,
            path: socket.to_owned(),
            agent_pid,
        })
    }

    /// The agent's process id, as the system reported it at connect.
    pub fn agent_pid(&self) -> Option<u32> {
        self.agent_pid
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

/// The listening process must run as our user.
fn check_server(stream: &Stream, socket: &Path) -> Result<Option<u32>, ClientError> {
    crate::peer::check(stream).map_err(|reason| ClientError::NotOurs {
        path: socket.to_owned(),
        reason,
    })
}

/// "the process listening there runs as uid 1001, not as you (uid 1000)".
fn listener(reason: &crate::peer::NotMe) -> String {
    match reason {
        crate::peer::NotMe::Other { who, me } => {
            format!("the process listening there runs as {who}, not as you ({me})")
        }
        unknown => format!("whose process listens there is unknown ({unknown})"),
    }
}
