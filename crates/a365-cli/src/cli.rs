//! The command line, as clap sees it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit;

/// Hands out the API tokens that `a365-agent` keeps fresh.
/// The release and the commit it was built from; the wire protocol's
/// version is separate (`a365 ping`).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("A365_COMMIT"), ")");

#[derive(Debug, Parser)]
#[command(name = "a365", version = VERSION, after_long_help = exit::HELP)]
pub struct Cli {
    /// The agent's socket.
    #[arg(long, global = true, env = a365_proto::path::SOCKET_ENV, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the current access token (for scripts: `$(a365 token)`).
    Token(TokenArgs),
    /// Show every profile's kind, state and expiry in 80 columns, with a
    /// note for each one that has something to say; everything about one
    /// profile with PROFILE, every column with --wide.
    Status {
        /// Only this profile, in detail.
        profile: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Every column (rotation, account, workspace, store, scopes).
        #[arg(long, conflicts_with = "profile")]
        wide: bool,
    },
    /// Show the default profile (the one `a365 token` uses when none is
    /// named), or make PROFILE the default (kept as default_profile in
    /// config.toml).
    Default { profile: Option<String> },
    /// Add a profile; secrets are prompted for (hidden) or read with --secrets-from.
    Add(AddArgs),
    /// Change one setting of a profile, keeping its credential (an empty
    /// VALUE unsets it). KEY: realm, token_url, client_id, scopes, secure,
    /// authorize_url, redirect_uri, base_url, renew_lifetime_secs,
    /// client_auth, revocation_url, introspection_url, workspace, ca_file.
    Set {
        profile: String,
        key: String,
        value: String,
    },
    /// Remove a profile and its secrets, revoking its credential at the
    /// provider first (the refresh token at the revocation endpoint, a
    /// Designer Cloud token deleted); the secrets go either way.
    Remove {
        profile: String,
        /// Leave the credential valid at the provider (only the local
        /// copy is deleted).
        #[arg(long)]
        keep_remote: bool,
    },
    /// Force a new token exchange now (the API answered 401).
    Refresh {
        #[arg(env = "A365_PROFILE")]
        profile: Option<String>,
    },
    /// Run a command with the token in its environment as A365_TOKEN.
    Exec(ExecArgs),
    /// The Altium 365 workspaces of a sign-in profile's user: id, name,
    /// location, URL, and the profile that holds its token once asked
    /// for (`a365 token PROFILE --workspace ID`).
    Workspaces {
        #[arg(env = "A365_PROFILE")]
        profile: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Where secrets are kept: the OS keyring, files or memory.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Local routes to an API that add a profile's token: point a GraphQL
    /// IDE, Power Query, an MCP server or a script at the route's URL and
    /// it never holds a token that expires. Only your user may use them.
    #[command(subcommand)]
    Proxy(ProxyCommand),
    /// Files kept holding a profile's current token, for tools that read
    /// one (a container's secret file, a service's token file): rewritten
    /// atomically on every refresh, emptied when the profile needs you.
    #[command(subcommand)]
    Sink(SinkCommand),
    /// Log in with a browser (authorization-code profiles): opens $BROWSER
    /// and prints the URL, then waits for the sign-in to finish. Altium 365
    /// sign-ins end on Altium's own page and reach the agent through
    /// Altium's ActionWait, so the browser can be on any device: from an
    /// SSH session, a container or a CI runner, open the printed URL
    /// anywhere. Other providers redirect to the agent on this machine.
    Login {
        profile: String,
        /// Give up if the sign-in has not finished by then.
        #[arg(long, value_name = "DURATION", default_value = "3m", value_parser = parse_duration_ms)]
        timeout: u64,
        /// Only print the URL.
        #[arg(long)]
        no_browser: bool,
        /// Altium 365: have Altium's page ask for a workspace (strict: one
        /// must be chosen; optional: it may be skipped; none: a token for
        /// every workspace, by `a365 token --workspace`).
        #[arg(long, value_name = "HOW", value_parser = ["none", "strict", "optional"])]
        select_workspace: Option<String>,
    },
    /// Check what could keep a profile (or every profile) from getting
    /// tokens: the agent, file permissions, settings, store, DNS, TLS,
    /// clock skew, token lifetime. Spends no refresh token. Exit 0 when
    /// nothing failed.
    Doctor {
        profile: Option<String>,
        /// One JSON object per check.
        #[arg(long)]
        json: bool,
    },
    /// Check that the agent answers; print its version and pid.
    #[command(hide = true)]
    Ping,
    /// Print profile events as they happen (refreshed, refresh-failed,
    /// needs-reauth, expires-soon, removed) until interrupted.
    Watch {
        profile: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// The profile names, one a line, for shell completion (never starts
    /// an agent).
    #[command(name = "__profiles", hide = true)]
    Profiles,
    /// Print a shell completion script (profile names too): `a365
    /// completions bash > …`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one per command into --out-dir.
    Man {
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Profile name (default: $A365_PROFILE, else the agent's default).
    #[arg(env = "A365_PROFILE")]
    pub profile: Option<String>,
    /// The printed token is valid at least this long, or the command fails.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration_ms)]
    pub min_valid: u64,
    /// Fail unless the token carries this scope (repeatable).
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Raw)]
    pub format: Format,
    /// An Altium 365 sign-in profile: the token of this workspace (its id,
    /// URL or name; see `a365 workspaces`), exchanged from the sign-in's
    /// the first time, then kept and renewed like any other.
    #[arg(long, value_name = "WORKSPACE")]
    pub workspace: Option<String>,
    /// The variable --format env, powershell or cmd sets (default
    /// A365_TOKEN).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["nexar", "altium"])]
    pub var: Option<String>,
    /// --format env, powershell or cmd sets NEXAR_TOKEN.
    #[arg(long, conflicts_with = "altium")]
    pub nexar: bool,
    /// --format env, powershell or cmd sets ALTIUM365_TOKEN.
    #[arg(long)]
    pub altium: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The token and a newline.
    Raw,
    /// `Authorization: Bearer <token>`
    Header,
    /// Token, expiry (epoch seconds and RFC 3339), scopes, profile.
    Json,
    /// `export A365_TOKEN='…'` lines, for `eval "$(a365 token --format env)"`.
    Env,
    /// `$env:A365_TOKEN = '…'` lines, for
    /// `a365 token --format powershell | Invoke-Expression`.
    Powershell,
    /// `set "A365_TOKEN=…"` lines, for
    /// `for /f "delims=" %i in ('a365 token --format cmd') do %i`.
    Cmd,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    pub profile: String,
    /// How tokens are obtained; asked for on a terminal when left out.
    #[arg(long, value_parser = ["static", "refresh", "client-credentials", "authorization-code", "designer-cloud"])]
    pub kind: Option<String>,
    /// Named token endpoint: altium365, altium365-gov, nexar.
    #[arg(long, conflicts_with = "token_url")]
    pub realm: Option<String>,
    /// Explicit token endpoint (https; http only for loopback).
    #[arg(long, value_name = "URL")]
    pub token_url: Option<String>,
    /// authorization-code: the authorize endpoint, if not the realm's.
    #[arg(long, value_name = "URL")]
    pub authorize_url: Option<String>,
    /// authorization-code: the registered loopback redirect
    /// (default http://localhost:3000/login).
    #[arg(long, value_name = "URL")]
    pub redirect_uri: Option<String>,
    /// designer-cloud: the instance's base URL.
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// designer-cloud: lifetime of each renewed token.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
    pub renew_lifetime: Option<u64>,
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    /// Scope to request (repeatable).
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// Send secure=1 with token requests (default: on for altium365-gov).
    #[arg(long, overrides_with = "no_secure")]
    pub secure: bool,
    #[arg(long)]
    pub no_secure: bool,
    /// How the client id and secret reach the token server: in the form
    /// body (post, the default) or as HTTP Basic (basic; a server that
    /// refuses them form-encoded is asked once with them as they are, and
    /// that is kept: basic-raw).
    #[arg(long, value_enum, value_name = "METHOD")]
    pub client_auth: Option<ClientAuthArg>,
    /// Where `a365 remove` revokes the refresh token (RFC 7009), when not
    /// the realm's.
    #[arg(long, value_name = "URL")]
    pub revocation_url: Option<String>,
    /// Where the agent asks (RFC 7662) whether a refresh token whose
    /// answer was lost is still active; without one such a credential
    /// needs re-authentication.
    #[arg(long, value_name = "URL")]
    pub introspection_url: Option<String>,
    /// An Altium 365 sign-in: the workspace (id, URL or name) whose token
    /// `a365 token` gives for this profile when none is named.
    #[arg(long, value_name = "WORKSPACE")]
    pub workspace: Option<String>,
    /// A PEM file of CAs to trust, besides the system's, for this
    /// profile's requests (a corporate CA); read again whenever it changes.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<String>,
    /// An extra parameter of the browser login's authorize request
    /// (repeatable): login_hint, audience, resource, prompt (an empty
    /// prompt= sends none instead of prompt=consent). Never a secret.
    #[arg(long = "authorize-param", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub authorize_params: Vec<(String, String)>,
    /// designer-cloud: an extra request header (repeatable), such as
    /// x-alteryx-workspace-gid=…. Never a secret.
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub headers: Vec<(String, String)>,
    /// designer-cloud: create the first API token as this user; the
    /// password is asked for (hidden), used once and never kept.
    #[arg(long, value_name = "NAME")]
    pub username: Option<String>,
    /// An extra parameter of every token request (repeatable): audience,
    /// resource (RFC 8707). Never a secret.
    #[arg(long = "token-param", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub token_params: Vec<(String, String)>,
    /// Token requests allowed per window for this client id, e.g.
    /// `1s=2,15m=200` (Nexar's limits apply at Nexar by default): the
    /// agent never sends one that would break a window.
    #[arg(long, value_name = "WINDOW=COUNT,…", value_parser = a365_proto::parse_limits)]
    pub limits: Option<std::collections::BTreeMap<String, u32>>,
    /// Overwrite an existing profile of that name.
    #[arg(long)]
    pub replace: bool,
    /// Share it with every agent of the fleet (`[fleet]` in config.toml):
    /// its credential goes to etcd, sealed with the fleet key, and this
    /// machine keeps none of it.
    #[arg(long, conflicts_with = "store")]
    pub shared: bool,
    /// Where to keep its secrets (default: the agent's default store, the
    /// OS keyring when one is available).
    #[arg(long, value_enum)]
    pub store: Option<Store>,
    /// JSON object with client_secret, refresh_token, access_token, or
    /// for a kind with one secret that secret alone; `-` is stdin.
    #[arg(long, value_name = "FILE|-")]
    pub secrets_from: Option<PathBuf>,
    /// Replace only this secret of the existing profile (asked for
    /// hidden, or read with --secrets-from); its settings and other
    /// secrets stay. A new refresh token or client secret is proven by an
    /// exchange first, and refused, the profile keeps the one it had.
    #[arg(
        long,
        value_name = "SECRET",
        value_parser = ["client-secret", "refresh-token", "access-token"],
        conflicts_with_all = [
            "kind", "realm", "token_url", "authorize_url", "redirect_uri", "base_url",
            "renew_lifetime", "client_id", "scopes", "secure", "no_secure", "client_auth",
            "revocation_url", "introspection_url", "workspace", "ca_file", "authorize_params",
            "token_params", "headers", "replace", "shared", "store", "username", "limits",
        ],
    )]
    pub update_secret: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ProxyCommand {
    /// Serve a route: requests to its local URL go to the API with the
    /// profile's current token (refreshed and replayed once when the API
    /// says it expired). NAME `nexar` (https://api.nexar.com/graphql/) or
    /// `altium` (a workspace's API: give --workspace HOST) needs no
    /// --upstream.
    Add {
        name: String,
        /// Whose token is added (default: the default profile).
        #[arg(long, env = "A365_PROFILE")]
        profile: Option<String>,
        /// The API's base URL (https; plain http for loopback only).
        #[arg(long, value_name = "URL")]
        upstream: Option<String>,
        /// 127.0.0.1:PORT, [::1]:PORT or unix:/path (default: a free
        /// port, kept from then on).
        #[arg(long, value_name = "ADDRESS")]
        listen: Option<String>,
        /// An Altium 365 workspace of a sign-in profile: its token (and,
        /// for `altium`, its host as the upstream).
        #[arg(long)]
        workspace: Option<String>,
        /// A header added to every request ('Name: value'; not a secret:
        /// it is kept in config.toml).
        #[arg(long, value_name = "'NAME: VALUE'")]
        header: Vec<String>,
        /// Every client must send the route's secret header, even your own
        /// processes.
        #[arg(long)]
        require_secret: bool,
        /// A browser origin (https://ide.example) whose pages may use the
        /// route (a browser-based GraphQL IDE); requests from other pages
        /// are refused. Repeatable.
        #[arg(long, value_name = "ORIGIN")]
        allow_origin: Vec<String>,
        /// Replace the route of that name.
        #[arg(long)]
        replace: bool,
    },
    /// Every route: its URL, profile, requests and replays; everything
    /// about one (its secret header too) with NAME.
    List {
        name: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Stop a route and remove it from config.toml.
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum SinkCommand {
    /// Keep PATH holding the profile's token: written atomically (a
    /// reader never sees part of one), 0600 (0640 with --group), in a
    /// directory only you (or root) can write.
    Add {
        name: String,
        /// The file (absolute, or relative to here).
        #[arg(long)]
        path: PathBuf,
        /// Whose token (default: the default profile).
        #[arg(long, env = "A365_PROFILE")]
        profile: Option<String>,
        /// An Altium 365 workspace of a sign-in profile: its token.
        #[arg(long)]
        workspace: Option<String>,
        /// raw (the token), header (`Authorization: Bearer …`), json
        /// (token, expires_at, scopes) or env (`VAR=token`).
        #[arg(long, default_value = "raw", value_parser = parse_sink_format)]
        format: a365_proto::SinkFormat,
        /// No newline after the token (raw and header).
        #[arg(long)]
        no_newline: bool,
        /// The variable of the env format (default A365_TOKEN).
        #[arg(long, value_name = "NAME")]
        var: Option<String>,
        /// A group that may read the file (mode 0640), for a service that
        /// runs as another user; you must be a member.
        #[arg(long)]
        group: Option<String>,
        /// Run with `sh -c` after each write (to reload a service); it
        /// gets A365_SINK, A365_PROFILE and A365_SINK_PATH, never the token.
        #[arg(long, value_name = "COMMAND")]
        command: Option<String>,
        /// Replace the sink of that name.
        #[arg(long)]
        replace: bool,
    },
    /// Every sink: its file, profile, last write, and why it holds no
    /// token when it holds none.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Stop keeping a sink, remove it from config.toml and delete its file
    /// (nothing keeps it fresh any more).
    Remove { name: String },
}

fn parse_sink_format(text: &str) -> Result<a365_proto::SinkFormat, String> {
    a365_proto::SinkFormat::ALL
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, format)| *format)
        .ok_or_else(|| format!("'{text}' is not a sink format: raw, header, json or env"))
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Move secrets to another store (saved there before the old copy is
    /// deleted); without a profile, every profile moves and new ones follow.
    Migrate {
        #[arg(long, value_enum)]
        to: Store,
        /// Only this profile.
        profile: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Store {
    /// The OS keyring: Secret Service, Keychain or Credential Manager.
    Keyring,
    /// A 0600 file under $XDG_STATE_HOME/a365/credentials.
    File,
    /// Memory only: lost when the agent stops.
    Memory,
}

impl From<Store> for a365_proto::StoreKind {
    fn from(store: Store) -> Self {
        match store {
            Store::Keyring => a365_proto::StoreKind::Keyring,
            Store::File => a365_proto::StoreKind::File,
            Store::Memory => a365_proto::StoreKind::Memory,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientAuthArg {
    /// client_id and client_secret in the form body (client_secret_post).
    Post,
    /// HTTP Basic authentication (client_secret_basic), each form-encoded
    /// first as RFC 6749 §2.3.1 says.
    Basic,
    /// HTTP Basic with the id and secret as they are (what many servers
    /// decode).
    BasicRaw,
}

impl From<ClientAuthArg> for a365_proto::ClientAuth {
    fn from(auth: ClientAuthArg) -> Self {
        match auth {
            ClientAuthArg::Post => a365_proto::ClientAuth::Post,
            ClientAuthArg::Basic => a365_proto::ClientAuth::Basic,
            ClientAuthArg::BasicRaw => a365_proto::ClientAuth::BasicRaw,
        }
    }
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Profile name (default: $A365_PROFILE, else the agent's default).
    #[arg(env = "A365_PROFILE")]
    pub profile: Option<String>,
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration_ms)]
    pub min_valid: u64,
    /// A variable holding a token, under the name a tool reads:
    /// NAME=PROFILE or NAME=PROFILE:WORKSPACE (an Altium 365 workspace's
    /// token). Repeatable: several profiles at once. With --env, A365_TOKEN
    /// is not set unless named.
    #[arg(long, value_name = "NAME=PROFILE[:WORKSPACE]")]
    pub env: Vec<String>,
    /// NEXAR_TOKEN holds the profile's token (what Nexar's examples and
    /// many MCP servers read).
    #[arg(long)]
    pub nexar: bool,
    /// ALTIUM365_TOKEN holds the profile's token (what Altium 365 API
    /// scripts and agent skills read, with ALTIUM365_WORKSPACE_URL, which
    /// you set).
    #[arg(long)]
    pub altium: bool,
    /// Send this signal (HUP, USR1, …) to the command after each refresh
    /// of its profiles, so that it asks for its token again (Unix).
    #[arg(long, value_name = "SIGNAL")]
    pub refresh_signal: Option<String>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

/// The arguments of `a365 token` or `a365 token PROFILE` with no flags,
/// exactly as clap would read them (profile else `$A365_PROFILE`, the
/// default `--min-valid`, raw output); `None` for anything else.
pub fn plain_token_args() -> Option<TokenArgs> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != "token" {
        return None;
    }
    let profile = match args.next() {
        None => std::env::var("A365_PROFILE").ok().filter(|p| !p.is_empty()),
        Some(arg) => {
            let arg = arg.into_string().ok()?;
            if arg.starts_with('-') || args.next().is_some() {
                return None;
            }
            Some(arg)
        }
    };
    Some(TokenArgs {
        profile,
        min_valid: DEFAULT_MIN_VALID_MS,
        scopes: Vec::new(),
        format: Format::Raw,
        workspace: None,
        var: None,
        nexar: false,
        altium: false,
    })
}

/// `--min-valid`'s default, 5 s: what the fast path of `token` uses too.
const DEFAULT_MIN_VALID_MS: u64 = 5_000;

/// "90s", "5m", "1h30m", "250ms" or plain seconds → milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    if let Ok(secs) = text.parse::<u64>() {
        return secs.checked_mul(1000).ok_or_else(|| "too long".into());
    }
    let d: jiff::SignedDuration = text
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (try 30s, 5m, 1h)"))?;
    if d.is_negative() {
        return Err("a duration cannot be negative".into());
    }
    u64::try_from(d.as_millis()).map_err(|_| "too long".into())
}

/// `NAME=VALUE` of `--authorize-param` and `--token-param`.
fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!(
            "expected NAME=VALUE, got '{}'",
            text.escape_debug()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("5m"), Ok(300_000));
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("90"), Ok(90_000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("0s"), Ok(0));
        assert!(parse_duration_ms("soon").is_err());
        assert!(parse_duration_ms("-5m").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
        // The fast path of `token` agrees with clap's defaults.
        let Command::Token(args) = Cli::parse_from(["a365", "token", "work"]).command else {
            panic!("not token");
        };
        assert_eq!(args.min_valid, DEFAULT_MIN_VALID_MS);
        assert_eq!(args.format, Format::Raw);
        assert!(args.scopes.is_empty());
    }
}
