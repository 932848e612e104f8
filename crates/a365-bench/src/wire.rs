//! One persistent connection to an agent, asking the same question again
//! and again: a token from `a365-agent` (binary frames or JSON lines, the
//! messages of a365-proto), or the identities from `ssh-agent`.

use std::path::Path;

use a365_proto::codec::{self, Encoding};
use a365_proto::{Request, Response, TokenReply, TokenRequest, frame};
use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// What a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// a365-agent, binary frames (what `a365` speaks).
    Bincode,
    /// a365-agent, JSON lines (what editor plugins speak).
    Json,
    /// ssh-agent: SSH_AGENTC_REQUEST_IDENTITIES.
    SshAgent,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Bincode => "bincode",
            Mode::Json => "json",
            Mode::SshAgent => "ssh-agent",
        }
    }
}

/// SSH_AGENTC_REQUEST_IDENTITIES: a uint32 length (1), then message type 11.
const SSH_REQUEST_IDENTITIES: [u8; 5] = [0, 0, 0, 1, 11];
/// SSH_AGENT_IDENTITIES_ANSWER.
const SSH_IDENTITIES_ANSWER: u8 = 12;
/// ssh-agent's own limit on a message.
const SSH_MAX_MESSAGE: usize = 256 * 1024;

/// What one call got back.
#[derive(Debug)]
pub enum Answer {
    Token(TokenReply),
    /// ssh-agent's identities (not decoded further).
    Identities,
    /// The agent answered with an error (counted, not fatal).
    Refused(String),
}

#[derive(Debug)]
pub struct Conn {
    stream: BufReader<UnixStream>,
    mode: Mode,
    request: Vec<u8>,
}

/// The token request `a365 token PROFILE` sends (with its default
/// `--min-valid 5s`).
pub fn token_request(profile: Option<&str>) -> Request {
    token_request_valid_for(profile, 5_000)
}

pub fn token_request_valid_for(profile: Option<&str>, min_valid_ms: u64) -> Request {
    Request::Token(TokenRequest {
        profile: profile.map(str::to_owned),
        min_valid_ms,
        scopes: Vec::new(),
        workspace: None,
    })
}

impl Conn {
    /// Connects; `request` is ignored for ssh-agent, which is always asked
    /// for its identities.
    pub async fn open(socket: &Path, mode: Mode, request: &Request) -> anyhow::Result<Conn> {
        let stream = UnixStream::connect(socket)
            .await
            .with_context(|| format!("connecting to {}", socket.display()))?;
        let request = match mode {
            Mode::Bincode => codec::encode_request(request, Encoding::Binary)?.to_vec(),
            Mode::Json => codec::encode_request(request, Encoding::Json)?.to_vec(),
            Mode::SshAgent => SSH_REQUEST_IDENTITIES.to_vec(),
        };
        Ok(Conn {
            stream: BufReader::with_capacity(8192, stream),
            mode,
            request,
        })
    }

    /// Sends the request without waiting for the answer (see [`Conn::receive`]).
    pub async fn send(&mut self) -> anyhow::Result<()> {
        self.stream
            .get_mut()
            .write_all(&self.request)
            .await
            .context("sending")
    }

    /// Reads and checks one answer.
    pub async fn receive(&mut self) -> anyhow::Result<Answer> {
        match self.mode {
            Mode::Bincode | Mode::Json => {
                let (payload, encoding) = match self.mode {
                    Mode::Json => (
                        frame::read_line_async(&mut self.stream).await?,
                        Encoding::Json,
                    ),
                    _ => (
                        frame::read_frame_async(&mut self.stream).await?,
                        Encoding::Binary,
                    ),
                };
                match codec::decode_response(&payload, encoding)? {
                    Response::Token(reply) => Ok(Answer::Token(reply)),
                    Response::Error(e) => {
                        Ok(Answer::Refused(format!("{:?}: {}", e.kind, e.message)))
                    }
                    other => bail!("unexpected answer to a token request: {other:?}"),
                }
            }
            Mode::SshAgent => {
                let mut header = [0u8; 4];
                self.stream
                    .read_exact(&mut header)
                    .await
                    .context("reading")?;
                let len = u32::from_be_bytes(header) as usize;
                if len == 0 || len > SSH_MAX_MESSAGE {
                    bail!("ssh-agent announced a message of {len} bytes");
                }
                let mut payload = vec![0u8; len];
                self.stream
                    .read_exact(&mut payload)
                    .await
                    .context("reading")?;
                match payload[0] {
                    SSH_IDENTITIES_ANSWER => Ok(Answer::Identities),
                    other => Ok(Answer::Refused(format!("ssh-agent message type {other}"))),
                }
            }
        }
    }

    /// One request and its answer.
    pub async fn call(&mut self) -> anyhow::Result<Answer> {
        self.send().await?;
        self.receive().await
    }
}
