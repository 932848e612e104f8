//! The messages. Serde's default external tagging only: bincode cannot
//! decode `tag`, `untagged`, `flatten` or `skip_serializing_if`. Field
//! defaults (`#[serde(default)]`) only matter to JSON clients that omit them.

use serde::{Deserialize, Serialize};

use crate::{AddProfile, ClientAuth, Kind, Secrets, StoreKind, WireSecret};

/// What a client asks. Append new variants at the end.
// One request lives per connection at a time: its size does not matter,
// and boxing would show in every client's code.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// The current access token of `profile` (or the default profile),
    /// valid for at least `min_valid_ms` and carrying every scope in `scopes`.
    Token(TokenRequest),
    /// Every profile's state.
    Status,
    /// Create a profile: settings go to the config file, secrets to the store.
    AddProfile(AddProfile),
    /// Delete a profile, its settings and its secrets; first revoke its
    /// credential at the provider (RFC 7009, or delete a Designer Cloud
    /// token) unless `keep_remote`.
    RemoveProfile {
        name: String,
        #[serde(default)]
        keep_remote: bool,
    },
    /// Force a new token exchange now (the API answered 401).
    Refresh { profile: Option<String> },
    /// Liveness and version check.
    Ping,
    /// Stop the agent (what SIGTERM does; for platforms without signals).
    Shutdown,
    /// Move the secrets of `profile` (or of every profile) to the store
    /// `to`, and make it the default store for new profiles.
    MigrateStore {
        to: StoreKind,
        profile: Option<String>,
    },
    /// Start a browser login for an `authorization-code` profile: the agent
    /// listens on the profile's loopback redirect and answers with the URL
    /// to open. Abandoned after `timeout_ms`. `select_workspace`, for an
    /// Altium 365 sign-in: `strict` or `optional` has Altium's page ask
    /// for a workspace (`none`, or absent: a global token).
    Login {
        profile: String,
        timeout_ms: u64,
        #[serde(default)]
        select_workspace: Option<String>,
    },
    /// Wait for the login `Login` started to finish (or fail).
    LoginWait { profile: String },
    /// Subscribe to the events of `profile` (or of all profiles): the agent
    /// answers `done`, then one `event` per change, until the client closes.
    Watch { profile: Option<String> },
    /// The profiles' states one page at a time, by name, starting after
    /// `after` (from the first when `None`): what `status` gives, for any
    /// number of profiles, each page within the message size limit.
    StatusPage {
        #[serde(default)]
        after: Option<String>,
    },
    /// Check what could keep `profile` (or every profile) from getting
    /// tokens: endpoints, DNS, TLS, clock, settings, store. Spends no
    /// refresh token and sends no secret.
    Doctor {
        #[serde(default)]
        profile: Option<String>,
    },
    /// The agent's binary may have been replaced on disk (a package
    /// upgrade): if it was, stop the way `shutdown` does, once nothing
    /// would be lost, so that the service manager or the next client
    /// starts the new binary; if not, `bad_request`.
    Restart,
    /// Like `LoginWait`, but the new credential is held, not kept: the
    /// answer names the account that signed in, so that the user sees it
    /// is theirs before `LoginKeep` keeps it.
    LoginReview { profile: String },
    /// Keeps the credential a `LoginReview` answered for, or with `keep:
    /// false` discards it (the profile goes on as it was).
    LoginKeep { profile: String, keep: bool },
    /// The Altium 365 workspaces the user of `profile` (an Altium
    /// sign-in) belongs to.
    Workspaces { profile: Option<String> },
    /// Make `profile` the one `token` uses when none is named (kept as
    /// `default_profile` in config.toml).
    SetDefault { profile: String },
    /// Change one setting of `profile` (one of [`crate::SETTABLE`]; an
    /// empty `value` unsets it): checked, written to config.toml, and the
    /// profile goes on with its credential.
    Set {
        profile: String,
        key: String,
        value: String,
    },
    /// Replace the secrets given (the others stay) of `profile`, checked
    /// by a first exchange as `add --replace` is: refused, the profile
    /// keeps the ones it had.
    UpdateSecret { profile: String, secrets: Secrets },
    /// Start serving a proxy route and keep it in config.toml (`replace`:
    /// in place of the route of that name).
    ProxyAdd {
        route: crate::ProxyRoute,
        replace: bool,
    },
    /// Stop a proxy route and remove it from config.toml.
    ProxyRemove { name: String },
    /// Every proxy route and how it is doing.
    ProxyList,
    /// Start writing a file sink and keep it in config.toml (`replace`:
    /// in place of the sink of that name).
    SinkAdd {
        sink: crate::FileSink,
        replace: bool,
    },
    /// Stop a file sink, remove it from config.toml and delete its file.
    SinkRemove { name: String },
    /// Every file sink and how it is doing.
    SinkList,
}

/// The longest `min_valid_ms` that means anything: a year and a day.
/// Longer asks are treated as this (and fail as "not valid that long").
pub const MAX_MIN_VALID_MS: u64 = 366 * 24 * 3600 * 1000;
/// A browser login waits at least a second and at most an hour.
pub const LOGIN_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 1_000..=3_600_000;

impl Request {
    /// The command that sends this request, for messages.
    pub fn command(&self) -> &'static str {
        match self {
            Request::Token(_) => "a365 token",
            Request::Status | Request::StatusPage { .. } => "a365 status",
            Request::AddProfile(_) => "a365 add",
            Request::RemoveProfile { .. } => "a365 remove",
            Request::Refresh { .. } => "a365 refresh",
            Request::Ping => "a365 ping",
            Request::Shutdown => "a365-agent --kill",
            Request::MigrateStore { .. } => "a365 store migrate",
            Request::Login { .. }
            | Request::LoginWait { .. }
            | Request::LoginReview { .. }
            | Request::LoginKeep { .. } => "a365 login",
            Request::Watch { .. } => "a365 watch",
            Request::Doctor { .. } => "a365 doctor",
            Request::Restart => "a restart on upgrade",
            Request::Workspaces { .. } => "a365 workspaces",
            Request::SetDefault { .. } => "a365 default",
            Request::Set { .. } => "a365 set",
            Request::UpdateSecret { .. } => "a365 add --update-secret",
            Request::ProxyAdd { .. } => "a365 proxy add",
            Request::ProxyRemove { .. } => "a365 proxy remove",
            Request::ProxyList => "a365 proxy list",
            Request::SinkAdd { .. } => "a365 sink add",
            Request::SinkRemove { .. } => "a365 sink remove",
            Request::SinkList => "a365 sink list",
        }
    }

    /// Every number a client sent, brought into the range the agent works
    /// in. Applied once, where a request enters the agent, so no later
    /// arithmetic sees 2^64 - 1 milliseconds.
    pub fn clamped(self) -> Request {
        match self {
            Request::Token(mut token) => {
                token.min_valid_ms = token.min_valid_ms.min(MAX_MIN_VALID_MS);
                Request::Token(token)
            }
            Request::Login {
                profile,
                timeout_ms,
                select_workspace,
            } => Request::Login {
                profile,
                timeout_ms: timeout_ms.clamp(*LOGIN_TIMEOUT_MS.start(), *LOGIN_TIMEOUT_MS.end()),
                select_workspace,
            },
            other => other,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRequest {
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub min_valid_ms: u64,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// An Altium 365 workspace (its id, URL or name): the token of that
    /// workspace, exchanged from the profile's sign-in.
    #[serde(default)]
    pub workspace: Option<String>,
}

/// One Altium 365 workspace of the signed-in user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    /// Its id (`authId`): what its tokens' scope names.
    pub id: String,
    pub name: String,
    pub url: String,
    /// Where it is hosted (`US GovCloud` for Altium's Gov Cloud).
    pub location: String,
    /// In Altium's Gov Cloud: its tokens come from the Gov endpoint.
    pub gov: bool,
    /// The profile that holds its token, once one was asked for.
    pub profile: Option<String>,
}

/// What the agent answers. Append new variants at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Token(TokenReply),
    Status(Vec<ProfileStatus>),
    /// A request that changes something succeeded; `message` says what.
    Done {
        message: String,
    },
    Pong {
        protocol: u32,
        agent_version: String,
        pid: u32,
    },
    Error(ErrorReply),
    /// A login started: open `url` in a browser, then send `login_wait`.
    LoginUrl {
        url: String,
    },
    /// Something happened to a profile (after `watch`).
    Event(Event),
    /// A page of `status_page`: ask again with `after: next` until `next`
    /// is `None`.
    StatusPage {
        profiles: Vec<ProfileStatus>,
        next: Option<String>,
    },
    /// The findings of `doctor`, one per check.
    Doctor(Vec<Check>),
    /// The answer to `workspaces`.
    Workspaces(Vec<Workspace>),
    /// The answer to `proxy_list`.
    Routes(Vec<crate::RouteStatus>),
    /// The answer to `sink_list`.
    Sinks(Vec<crate::SinkStatus>),
}

/// One finding of `doctor`: what was checked, the verdict, and what was
/// seen (with the fix, when it failed). Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What it is about: `agent`, `store`, or a profile's name.
    pub subject: String,
    pub verdict: Verdict,
    pub detail: String,
}

/// Append new verdicts at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    /// Works now, but worth attention (a token that expires within days).
    Warn,
    /// Stops tokens from coming.
    Fail,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        }
    }
}

/// What a watcher is told. Never holds a secret: a plugin that wants the new
/// token asks for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub profile: String,
    pub kind: EventKind,
    /// The token's expiry after the event (UTC epoch seconds), if known.
    pub expires_at: Option<i64>,
    /// For a person: what happened.
    pub message: String,
}

/// Append new kinds at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A new token is being served.
    Refreshed,
    /// A refresh failed; the agent retries with back-off.
    RefreshFailed,
    /// The credential is dead: the user must act.
    NeedsReauth,
    /// A token that cannot be renewed expires soon.
    ExpiresSoon,
    /// The profile was removed.
    Removed,
    /// A proxy route's upstream refused the token; the agent refreshed it
    /// and sent the request again.
    Replayed,
    /// A token request was held back: sending it would break the token
    /// endpoint's request budget (Nexar's limits, or the profile's
    /// `limits`); the current token is served meanwhile.
    HeldBack,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Refreshed => "refreshed",
            EventKind::RefreshFailed => "refresh-failed",
            EventKind::NeedsReauth => "needs-reauth",
            EventKind::ExpiresSoon => "expires-soon",
            EventKind::Removed => "removed",
            EventKind::Replayed => "replayed",
            EventKind::HeldBack => "held-back",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenReply {
    pub profile: String,
    pub token: WireSecret,
    /// UTC, seconds since the epoch; `None` for a token without expiry.
    pub expires_at: Option<i64>,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileStatus {
    pub name: String,
    pub kind: Kind,
    pub realm: Option<String>,
    pub token_url: Option<String>,
    /// One of [`state`]'s values.
    pub state: String,
    /// UTC epoch seconds of the held token's expiry.
    pub expires_at: Option<i64>,
    /// UTC epoch seconds of the next planned refresh.
    pub next_refresh_at: Option<i64>,
    pub scopes: Vec<String>,
    /// From the `a365:workspace:{uuid}` scope of the token.
    pub workspace: Option<String>,
    pub last_error: Option<String>,
    /// Where its secrets live: `keyring`, `file` or `memory`.
    pub store: String,
    /// Scopes the profile asks for that its token lacks.
    pub scopes_not_granted: Vec<String>,
    pub is_default: bool,
    /// Whether the provider rotates refresh tokens, as seen at this
    /// agent's last refresh (the one returned differed from the one sent);
    /// `None` until a refresh with a refresh token has been seen.
    #[serde(default)]
    pub rotates: Option<bool>,
    /// Whose token it is (a JWT's `preferred_username`, `email` or `sub`).
    #[serde(default)]
    pub account: Option<String>,
    /// A profile shared through a fleet (its store is `fleet`): the member
    /// that wrote the token served.
    #[serde(default)]
    pub refreshed_by: Option<String>,
    /// How the client id and secret reach the token endpoint: the
    /// configured method, or the one the server was seen to accept
    /// (`basic-raw` when it refused RFC 6749's encoding); `None` for a
    /// kind without a client secret.
    #[serde(default)]
    pub client_auth: Option<ClientAuth>,
    /// The held token stated no lifetime (no `expires_in`, no JWT `exp`):
    /// the lifetime assumed for it, in seconds (`default_lifetime_secs`).
    #[serde(default)]
    pub assumed_lifetime_secs: Option<u64>,
    /// The token endpoint's request budget for this client id (Nexar's
    /// limits, or the profile's `limits`): each window and what is used.
    #[serde(default)]
    pub budget: Vec<BudgetWindow>,
}

/// One window of a token endpoint's request budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetWindow {
    /// Its length in seconds.
    pub secs: u64,
    /// Token requests allowed in any such window.
    pub limit: u32,
    /// Sent in the last `secs` seconds, by every profile of the client id
    /// (in fleet mode, by every member).
    pub used: u32,
}

/// The values of [`ProfileStatus::state`]. Strings on the wire, so a
/// client of an older release shows a new one as it is; values are only
/// ever added.
pub mod state {
    /// No token yet; the first is being fetched.
    pub const EMPTY: &str = "empty";
    /// A token is held and valid.
    pub const FRESH: &str = "fresh";
    /// The held token has expired (a static token, or a clock jump the
    /// refresher has not caught up with).
    pub const EXPIRED: &str = "expired";
    /// A refresh is in flight; the held token is still served.
    pub const REFRESHING: &str = "refreshing";
    /// The last refresh failed; the next is planned (`next_refresh_at`).
    pub const FAILING: &str = "failing";
    /// The credential is dead: `last_error` says what to do.
    pub const NEEDS_REAUTH: &str = "needs-reauth";
    /// Its settings in the config file cannot be used: `last_error` names
    /// the file, line, table and key. Not served until fixed or replaced.
    pub const BROKEN: &str = "broken";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub kind: ErrorKind,
    /// For a person: what happened and what to do. Never holds a secret.
    pub message: String,
}

/// Why a request failed; each maps to one documented exit code of `a365`.
/// Append new kinds at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Malformed or unsupported request (includes a protocol mismatch).
    BadRequest,
    UnknownProfile,
    /// The credential is dead: the user must create a new one.
    NeedsReauth,
    /// No token good enough right now; retrying later may work.
    Unavailable,
    /// The token lacks a requested scope.
    MissingScope,
    /// The peer is not the agent's user.
    PermissionDenied,
    /// The profile settings or secrets given are invalid.
    InvalidProfile,
    /// The agent failed on its side (e.g. the store could not be written).
    Internal,
}

impl ErrorReply {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl Response {
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        Response::Error(ErrorReply::new(kind, message))
    }
}
