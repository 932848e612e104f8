//! Exit codes, and the one place errors become them.

use std::process::ExitCode;

use a365_proto::{ClientError, ErrorKind, ErrorReply};

pub const FAILURE: u8 = 1;
pub const USAGE: u8 = 2;
pub const UNREACHABLE: u8 = 3;
pub const UNKNOWN_PROFILE: u8 = 4;
pub const NEEDS_REAUTH: u8 = 5;
pub const UNAVAILABLE: u8 = 6;
pub const MISSING_SCOPE: u8 = 7;
pub const INVALID_PROFILE: u8 = 8;
pub const PERMISSION_DENIED: u8 = 9;

pub const HELP: &str = "\
Exit codes:
  0  success
  1  other error
  2  usage error (bad flags, no way to read secrets)
  3  the agent is not reachable
  4  unknown profile
  5  the credential is dead: re-authenticate
  6  temporarily unavailable (token server down, rate limited, --min-valid not met)
  7  the token lacks a requested scope
  8  invalid profile settings
  9  permission denied";

/// Everything that can end a command, each with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Printed through [`crate::output::clean`]: it may quote a token server.
    #[error("{}", crate::output::clean(&.0.message, true))]
    Agent(ErrorReply),
    #[error("the agent answered something unexpected")]
    Unexpected,
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
    /// Whoever read our output stopped (`a365 status | head -1`): not an
    /// error, and nothing to say.
    #[error("standard output was closed")]
    StdoutClosed,
}

impl Error {
    pub fn code(&self) -> u8 {
        match self {
            Error::StdoutClosed => 0,
            Error::Usage(_) => USAGE,
            Error::Client(ClientError::Unreachable { .. }) => UNREACHABLE,
            Error::Client(ClientError::NotOurs { .. }) => PERMISSION_DENIED,
            Error::Client(_) | Error::Unexpected | Error::Other(_) => FAILURE,
            Error::Agent(reply) => match reply.kind {
                ErrorKind::UnknownProfile => UNKNOWN_PROFILE,
                ErrorKind::NeedsReauth => NEEDS_REAUTH,
                ErrorKind::Unavailable => UNAVAILABLE,
                ErrorKind::MissingScope => MISSING_SCOPE,
                ErrorKind::InvalidProfile => INVALID_PROFILE,
                ErrorKind::PermissionDenied => PERMISSION_DENIED,
                ErrorKind::BadRequest | ErrorKind::Internal => FAILURE,
            },
        }
    }

    /// Prints the error once, with a hint where there is one, and gives
    /// the exit code.
    pub fn report(&self) -> ExitCode {
        if let Error::StdoutClosed = self {
            return ExitCode::SUCCESS;
        }
        eprintln!("a365: {self}");
        if let Error::Client(ClientError::Unreachable { .. }) = self {
            eprintln!(
                "a365: start the agent with `a365-agent`, or `eval \"$(a365-agent --daemon)\"`"
            );
        }
        ExitCode::from(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_has_its_own_code() {
        let code = |kind| Error::Agent(ErrorReply::new(kind, "x")).code();
        assert_eq!(code(ErrorKind::UnknownProfile), 4);
        assert_eq!(code(ErrorKind::NeedsReauth), 5);
        assert_eq!(code(ErrorKind::Unavailable), 6);
        assert_eq!(code(ErrorKind::MissingScope), 7);
        assert_eq!(code(ErrorKind::InvalidProfile), 8);
        assert_eq!(code(ErrorKind::PermissionDenied), 9);
        assert_eq!(code(ErrorKind::Internal), 1);
        let unreachable = Error::Client(ClientError::Unreachable {
            path: "/x".into(),
            source: std::io::ErrorKind::NotFound.into(),
        });
        assert_eq!(unreachable.code(), 3);
        let squatted = Error::Client(ClientError::NotOurs {
            path: "/x".into(),
            reason: a365_proto::peer::NotMe::Other {
                who: "uid 1001".into(),
                me: "uid 1000".into(),
            },
        });
        assert_eq!(squatted.code(), 9);
        assert_eq!(Error::Usage("u".into()).code(), 2);
    }
}
