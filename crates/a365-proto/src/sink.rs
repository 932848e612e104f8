//! A file sink: a profile's token written to a file whenever it changes,
//! for tools that read a token from a file (a container, a service). The
//! agent writes it atomically; config.toml keeps sinks as `[[sink]]`
//! tables; `a365 sink add|list|remove` sends them.

use serde::{Deserialize, Serialize};

/// How the token is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SinkFormat {
    /// The token alone, with a trailing newline unless `newline = false`.
    #[default]
    Raw,
    /// `Authorization: Bearer TOKEN`, a line for `curl -H @FILE`.
    Header,
    /// `{"token": …, "expires_at": …, "scopes": […]}`.
    Json,
    /// `VAR=TOKEN` (and `VAR_EXPIRES_AT=…`), for `--env-file` and `source`.
    Env,
}

impl SinkFormat {
    pub const ALL: [(&'static str, SinkFormat); 4] = [
        ("raw", SinkFormat::Raw),
        ("header", SinkFormat::Header),
        ("json", SinkFormat::Json),
        ("env", SinkFormat::Env),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SinkFormat::Raw => "raw",
            SinkFormat::Header => "header",
            SinkFormat::Json => "json",
            SinkFormat::Env => "env",
        }
    }
}

fn yes() -> bool {
    true
}

/// One sink, as config.toml keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSink {
    /// What `sink list` and the logs call it (a profile-style name).
    pub name: String,
    /// The file written (absolute). Its directory must be writable by
    /// nobody but its owner (this user or root).
    pub path: String,
    /// Whose token is written.
    pub profile: String,
    /// An Altium 365 workspace (id, URL or name) of an Altium sign-in:
    /// that workspace's token is written.
    #[serde(default)]
    pub workspace: Option<String>,
    #[serde(default)]
    pub format: SinkFormat,
    /// A trailing newline after a raw token (some readers keep it).
    #[serde(default = "yes")]
    pub newline: bool,
    /// The variable of the `env` format (default `A365_TOKEN`).
    #[serde(default)]
    pub var: Option<String>,
    /// A group that may read the file (mode 0640, for a service running
    /// as another account); without one the file is 0600.
    #[serde(default)]
    pub group: Option<String>,
    /// Run with `sh -c` after each write (to reload a service), with
    /// `A365_SINK`, `A365_PROFILE` and `A365_SINK_PATH` set; never given
    /// the token.
    #[serde(default)]
    pub command: Option<String>,
}

/// A sink and how it is doing (`sink list`, `status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkStatus {
    pub sink: FileSink,
    /// The last write of a token (UTC epoch seconds).
    pub written_at: Option<i64>,
    /// The expiry of the token in the file (UTC epoch seconds).
    pub expires_at: Option<i64>,
    /// Writes since the agent started.
    pub writes: u64,
    /// Why the file holds no token now, or the last write failed
    /// (`None`: it holds the current token).
    pub error: Option<String>,
}
