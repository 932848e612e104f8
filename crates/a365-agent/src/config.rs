//! `config.toml`: the non-secret settings of the agent and its profiles.
//!
//! The agent is the only writer (through `a365 add`/`remove`), and edits the
//! document in place with `toml_edit`, so a user's comments and layout survive.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use a365_proto::StoreKind;
use a365_proto::{Kind, ProfileSpec};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// Where the agent keeps things, resolved once from the XDG variables.
#[derive(Debug, Clone)]
pub struct Paths {
    pub config_file: PathBuf,
    /// `$XDG_STATE_HOME/a365`: the file store and logs.
    pub state_dir: PathBuf,
}

impl Paths {
    pub fn from_env() -> Result<Paths, ConfigError> {
        let dirs = directories::ProjectDirs::from("", "", "a365").ok_or_else(|| {
            ConfigError::Invalid("no home directory: set HOME or XDG_CONFIG_HOME".into())
        })?;
        let state_dir = dirs
            .state_dir()
            .unwrap_or_else(|| dirs.data_local_dir())
            .to_path_buf();
        Ok(Paths {
            config_file: dirs.config_dir().join("config.toml"),
            state_dir,
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where new profiles keep their secrets; unset means the OS keyring
    /// when one answers at start-up, else files.
    #[serde(default)]
    pub store: Option<StoreKind>,
    /// The profile `a365 token` uses when none is named.
    pub default_profile: Option<String>,
    /// Lifetime assumed for a token that states none (no `expires_in`, no
    /// JWT `exp`), in seconds.
    #[serde(default = "default_lifetime_secs")]
    pub default_lifetime_secs: u64,
    /// HTTP(S) proxy for token requests: a daemon started by systemd or
    /// launchd does not inherit the shell's `HTTPS_PROXY`.
    pub proxy: Option<String>,
    /// Run with `sh -c` on every event (refreshed, refresh-failed,
    /// needs-reauth, expires-soon, removed), the event in its environment.
    pub on_event: Option<String>,
    /// How many days before a token that cannot be renewed (a static
    /// token) expires, `expires-soon` is announced (daily).
    #[serde(default = "default_expires_soon_days")]
    pub expires_soon_days: u64,
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileSpec>,
}

fn default_expires_soon_days() -> u64 {
    14
}

fn default_lifetime_secs() -> u64 {
    3600
}

impl Config {
    pub fn default_lifetime(&self) -> Duration {
        Duration::from_secs(self.default_lifetime_secs)
    }

    /// Reads `path`; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Config::default_values());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.into(),
                    source,
                });
            }
        };
        let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.message().to_owned(),
        })?;
        for (name, spec) in &config.profiles {
            validate_name(name)?;
            Endpoint::resolve(spec).map_err(|e| ConfigError::Parse {
                path: path.into(),
                message: format!("profile '{name}': {e}"),
            })?;
        }
        Ok(config)
    }

    fn default_values() -> Config {
        Config {
            default_lifetime_secs: default_lifetime_secs(),
            expires_soon_days: default_expires_soon_days(),
            ..Config::default()
        }
    }
}

/// Profile names become file names and TOML keys: keep them plain.
pub fn validate_name(name: &str) -> Result<(), ConfigError> {
    if a365_proto::is_valid_profile_name(name) {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "invalid profile name '{}': use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'",
            name.escape_default()
        )))
    }
}

/// The named token endpoints; each realm's authorize endpoint is the same
/// URL ending in `/authorize`.
pub const REALMS: &[(&str, &str)] = &[
    ("altium365", "https://auth.altium.com/connect/token"),
    (
        "altium365-gov",
        "https://auth.365-gov.altium.com/connect/token",
    ),
    ("nexar", "https://identity.nexar.com/connect/token"),
];

/// Where Nexar registers its design apps' redirect.
pub const DEFAULT_REDIRECT: &str = "http://localhost:3000/login";
/// Nexar's scopes for a design app; `offline_access` asks for a refresh token.
pub const DEFAULT_LOGIN_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "design.domain",
    "user.access",
    "offline_access",
];
/// Nexar's supply API scope, asked for by client-credentials profiles.
pub const DEFAULT_SUPPLY_SCOPE: &str = "supply.domain";
/// Lifetime of a renewed Designer Cloud token when the profile sets none.
pub const DEFAULT_RENEW_LIFETIME_SECS: u64 = 30 * 24 * 3600;

/// Where a profile's token requests go, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// The token endpoint; for `designer-cloud`, `{base}/v4/apiAccessTokens`.
    pub token_url: reqwest::Url,
    /// Send `secure=1` (Gov Cloud).
    pub secure: bool,
    /// `authorization-code` only.
    pub login: Option<LoginEndpoint>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoginEndpoint {
    pub authorize_url: reqwest::Url,
    /// A loopback `http` URL with a port: where the agent listens.
    pub redirect_uri: reqwest::Url,
}

impl Endpoint {
    /// Resolves a profile's realm or explicit URLs; `None` for a kind that
    /// never calls a token endpoint.
    pub fn resolve(spec: &ProfileSpec) -> Result<Option<Endpoint>, ConfigError> {
        if spec.kind == Kind::DesignerCloud {
            return Self::designer_cloud(spec).map(Some);
        }
        if spec.base_url.is_some() || spec.renew_lifetime_secs.is_some() {
            return Err(ConfigError::Invalid(
                "base_url and renew_lifetime_secs are for designer-cloud profiles".into(),
            ));
        }
        let url = match (&spec.realm, &spec.token_url) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(
                    "give either a realm or a token_url, not both".into(),
                ));
            }
            (Some(realm), None) => Some(realm_url(realm)?),
            (None, Some(url)) => Some(url.as_str()),
            (None, None) => None,
        };
        let Some(url) = url else {
            if spec.kind != Kind::Static {
                return Err(ConfigError::Invalid(format!(
                    "a {} profile needs a realm ({}) or a token_url",
                    spec.kind,
                    REALMS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            return Ok(None);
        };
        if spec.kind == Kind::Static {
            // Named for `status` only: a static token is never exchanged.
            return Ok(None);
        }
        let token_url = parse_url("token_url", url)?;
        let secure = spec
            .secure
            .unwrap_or(spec.realm.as_deref() == Some("altium365-gov"));
        let login = match spec.kind {
            Kind::AuthorizationCode => Some(LoginEndpoint::resolve(spec, &token_url)?),
            _ => {
                if spec.authorize_url.is_some() || spec.redirect_uri.is_some() {
                    return Err(ConfigError::Invalid(
                        "authorize_url and redirect_uri are for authorization-code profiles".into(),
                    ));
                }
                None
            }
        };
        let endpoint = Endpoint {
            token_url,
            secure,
            login,
        };
        endpoint.check_cloud()?;
        Ok(Some(endpoint))
    }

    fn designer_cloud(spec: &ProfileSpec) -> Result<Endpoint, ConfigError> {
        if spec.realm.is_some() || spec.token_url.is_some() || spec.client_id.is_some() {
            return Err(ConfigError::Invalid(
                "a designer-cloud profile takes a base_url (its instance), not a realm, token_url \
                 or client id"
                    .into(),
            ));
        }
        let base = spec.base_url.as_deref().ok_or_else(|| {
            ConfigError::Invalid(
                "a designer-cloud profile needs the base_url of its instance (--base-url)".into(),
            )
        })?;
        let mut base = parse_url("base_url", base)?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let token_url = base
            .join("v4/apiAccessTokens")
            .map_err(|e| ConfigError::Invalid(format!("base_url: {e}")))?;
        Ok(Endpoint {
            token_url,
            secure: false,
            login: None,
        })
    }

    /// A Gov Cloud secret never goes to a commercial endpoint, nor the
    /// other way round: every URL of a profile must be on one side.
    fn check_cloud(&self) -> Result<(), ConfigError> {
        let token = Cloud::of(&self.token_url);
        if let Some(login) = &self.login {
            let authorize = Cloud::of(&login.authorize_url);
            if token != authorize && token != Cloud::Other && authorize != Cloud::Other {
                return Err(ConfigError::Invalid(format!(
                    "the authorize URL ({}) and the token URL ({}) are on different Altium clouds \
                     (Gov and commercial): a secret must stay on one",
                    login.authorize_url.host_str().unwrap_or("?"),
                    self.token_url.host_str().unwrap_or("?")
                )));
            }
        }
        if self.secure && token == Cloud::Commercial {
            return Err(ConfigError::Invalid(format!(
                "secure=1 is for Altium 365 Gov Cloud, but {} is a commercial endpoint: use \
                 realm altium365-gov, or turn secure off",
                self.token_url.host_str().unwrap_or("?")
            )));
        }
        Ok(())
    }
}

impl LoginEndpoint {
    fn resolve(spec: &ProfileSpec, token_url: &reqwest::Url) -> Result<Self, ConfigError> {
        let authorize_url = match &spec.authorize_url {
            Some(url) => parse_url("authorize_url", url)?,
            None => {
                let path = token_url.path();
                let Some(prefix) = path.strip_suffix("/token") else {
                    return Err(ConfigError::Invalid(
                        "give the authorize_url: it cannot be derived from a token URL that does \
                         not end in /token"
                            .into(),
                    ));
                };
                let mut url = token_url.clone();
                url.set_path(&format!("{prefix}/authorize"));
                url
            }
        };
        let text = spec.redirect_uri.as_deref().unwrap_or(DEFAULT_REDIRECT);
        let redirect_uri = reqwest::Url::parse(text)
            .map_err(|e| ConfigError::Invalid(format!("redirect_uri '{text}': {e}")))?;
        // RFC 8252 §7.3: the agent can only receive a loopback redirect.
        if redirect_uri.scheme() != "http"
            || !is_loopback(&redirect_uri)
            || redirect_uri.port().is_none()
        {
            return Err(ConfigError::Invalid(format!(
                "redirect_uri '{text}' must be http://localhost:PORT/… or http://127.0.0.1:PORT/… \
                 (the agent listens there)"
            )));
        }
        // The listener compares the path exactly; a query or fragment would
        // never match, and `:`, `*`, `{`, `}` read as patterns to people
        // and to routers.
        if redirect_uri.query().is_some()
            || redirect_uri.fragment().is_some()
            || redirect_uri.path().contains([':', '*', '{', '}'])
            || redirect_uri.path().starts_with("/start/")
        {
            return Err(ConfigError::Invalid(format!(
                "redirect_uri '{text}' must be a plain path without a query, a fragment, `:`, \
                 `*`, `{{` or `}}`, and not under /start/ (the agent's own login launcher)"
            )));
        }
        Ok(LoginEndpoint {
            authorize_url,
            redirect_uri,
        })
    }
}

/// Which Altium cloud a URL belongs to, by host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cloud {
    Gov,
    Commercial,
    Other,
}

impl Cloud {
    fn of(url: &reqwest::Url) -> Cloud {
        // `auth.altium.com.` (fully qualified) is the same host to DNS and
        // TLS: compare without the root's dot, in one case.
        let host = url
            .host_str()
            .unwrap_or("")
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let under = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
        if under("365-gov.altium.com") {
            Cloud::Gov
        } else if under("altium.com") {
            Cloud::Commercial
        } else {
            Cloud::Other
        }
    }
}

fn realm_url(realm: &str) -> Result<&'static str, ConfigError> {
    REALMS
        .iter()
        .find(|(name, _)| *name == realm)
        .map(|(_, url)| *url)
        .ok_or_else(|| {
            let known: Vec<_> = REALMS.iter().map(|(n, _)| *n).collect();
            ConfigError::Invalid(format!(
                "unknown realm '{realm}' (known: {}), or give a token_url",
                known.join(", ")
            ))
        })
}

/// The scopes a profile's token requests carry: its own, else its kind's
/// default on Nexar.
pub fn requested_scopes(spec: &ProfileSpec) -> Vec<String> {
    if !spec.scopes.is_empty() {
        return spec.scopes.clone();
    }
    let nexar = spec.realm.as_deref() == Some("nexar");
    match spec.kind {
        Kind::ClientCredentials if nexar => vec![DEFAULT_SUPPLY_SCOPE.into()],
        Kind::AuthorizationCode => DEFAULT_LOGIN_SCOPES.iter().map(|s| s.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// HTTPS only, except plain HTTP to a loopback host (tests, local servers).
fn parse_url(what: &str, text: &str) -> Result<reqwest::Url, ConfigError> {
    let url = reqwest::Url::parse(text)
        .map_err(|e| ConfigError::Invalid(format!("{what} '{text}' is not a URL: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::Invalid(format!(
            "{what} must not contain credentials"
        )));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(ConfigError::Invalid(format!(
            "{what} '{text}' uses plain http: only https is allowed, except for loopback hosts"
        ))),
        other => Err(ConfigError::Invalid(format!(
            "{what} scheme '{other}' is not https"
        ))),
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.trim_end_matches('.').eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Adds or replaces `[profiles.NAME]` in the document at `path`, keeping
/// everything else (comments included) as it was.
pub fn write_profile(path: &Path, name: &str, spec: &ProfileSpec) -> Result<(), ConfigError> {
    edit(path, |doc| {
        let profiles = doc
            .entry("profiles")
            .or_insert_with(|| {
                let mut t = toml_edit::Table::new();
                t.set_implicit(true);
                toml_edit::Item::Table(t)
            })
            .as_table_mut()
            .ok_or_else(|| {
                ConfigError::Invalid("'profiles' in the config is not a table".into())
            })?;
        let mut table = toml_edit::Table::new();
        table.insert("kind", toml_edit::value(spec.kind.as_str()));
        if let Some(realm) = &spec.realm {
            table.insert("realm", toml_edit::value(realm.as_str()));
        }
        if let Some(url) = &spec.token_url {
            table.insert("token_url", toml_edit::value(url.as_str()));
        }
        if let Some(id) = &spec.client_id {
            table.insert("client_id", toml_edit::value(id.as_str()));
        }
        if !spec.scopes.is_empty() {
            let scopes: toml_edit::Array = spec.scopes.iter().map(String::as_str).collect();
            table.insert("scopes", toml_edit::value(scopes));
        }
        if let Some(secure) = spec.secure {
            table.insert("secure", toml_edit::value(secure));
        }
        if let Some(store) = spec.store {
            table.insert("store", toml_edit::value(store.as_str()));
        }
        for (key, value) in [
            ("authorize_url", &spec.authorize_url),
            ("redirect_uri", &spec.redirect_uri),
            ("base_url", &spec.base_url),
        ] {
            if let Some(value) = value {
                table.insert(key, toml_edit::value(value.as_str()));
            }
        }
        if let Some(secs) = spec.renew_lifetime_secs {
            table.insert(
                "renew_lifetime_secs",
                toml_edit::value(i64::try_from(secs).unwrap_or(i64::MAX)),
            );
        }
        match profiles.get_mut(name).and_then(|item| item.as_table_mut()) {
            // Keep the comment above an existing profile.
            Some(existing) => {
                let decor = existing.decor().clone();
                *existing = table;
                *existing.decor_mut() = decor;
            }
            None => {
                profiles.insert(name, toml_edit::Item::Table(table));
            }
        }
        Ok(())
    })
}

/// Sets the top-level `store`: where new profiles keep their secrets.
pub fn write_default_store(path: &Path, store: StoreKind) -> Result<(), ConfigError> {
    edit(path, |doc| {
        match doc.get_mut("store") {
            // In place, so a comment above the key stays.
            Some(item) => *item = toml_edit::value(store.as_str()),
            None => {
                doc.insert("store", toml_edit::value(store.as_str()));
            }
        }
        Ok(())
    })
}

/// Removes `[profiles.NAME]`; true if it was there.
pub fn remove_profile(path: &Path, name: &str) -> Result<bool, ConfigError> {
    let mut removed = false;
    edit(path, |doc| {
        if let Some(profiles) = doc.get_mut("profiles").and_then(|p| p.as_table_mut()) {
            removed = profiles.remove(name).is_some();
        }
        if doc.get("default_profile").and_then(|v| v.as_str()) == Some(name) {
            doc.remove("default_profile");
        }
        Ok(())
    })?;
    Ok(removed)
}

fn edit(
    path: &Path,
    change: impl FnOnce(&mut toml_edit::DocumentMut) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.into(),
                source,
            });
        }
    };
    let mut doc: toml_edit::DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| ConfigError::Parse {
                path: path.into(),
                message: e.message().to_owned(),
            })?;
    change(&mut doc)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ConfigError::Write {
            path: dir.into(),
            source,
        })?;
    }
    a365_store::write_atomic(path, doc.to_string().as_bytes()).map_err(|source| {
        ConfigError::Write {
            path: path.into(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: Kind) -> ProfileSpec {
        ProfileSpec {
            kind,
            realm: None,
            token_url: None,
            client_id: Some("cid".into()),
            scopes: vec![],
            secure: None,
            ..Default::default()
        }
    }

    #[test]
    fn realms_and_urls() {
        let mut s = spec(Kind::Refresh);
        assert!(Endpoint::resolve(&s).is_err(), "refresh needs an endpoint");
        s.realm = Some("altium365-gov".into());
        let e = Endpoint::resolve(&s).unwrap().unwrap();
        assert!(e.secure);
        assert_eq!(
            e.token_url.as_str(),
            "https://auth.365-gov.altium.com/connect/token"
        );
        s.secure = Some(false);
        assert!(!Endpoint::resolve(&s).unwrap().unwrap().secure);
        s.realm = Some("altium365".into());
        s.secure = None;
        assert!(!Endpoint::resolve(&s).unwrap().unwrap().secure);
        s.realm = Some("mars".into());
        assert!(
            Endpoint::resolve(&s)
                .unwrap_err()
                .to_string()
                .contains("unknown realm 'mars'")
        );
        s.realm = None;
        for ok in [
            "http://127.0.0.1:9/t",
            "http://localhost/t",
            "http://[::1]:8/t",
            "https://x.example/t",
        ] {
            s.token_url = Some(ok.into());
            assert!(Endpoint::resolve(&s).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com/t",
            "ftp://127.0.0.1/",
            "https://u:p@x.example/",
            "nope",
        ] {
            s.token_url = Some(bad.into());
            assert!(Endpoint::resolve(&s).is_err(), "{bad}");
        }
        assert_eq!(Endpoint::resolve(&spec(Kind::Static)).unwrap(), None);
    }

    /// `auth.altium.com.` and `AUTH.Altium.COM` are the commercial cloud:
    /// a trailing dot or other case once slipped past the Gov guard.
    #[test]
    fn the_cloud_guard_sees_through_a_trailing_dot_and_case() {
        for commercial in [
            "https://auth.altium.com./connect/token",
            "https://AUTH.Altium.COM/connect/token",
            "https://auth.altium.com../connect/token",
        ] {
            let url = reqwest::Url::parse(commercial).unwrap();
            assert_eq!(Cloud::of(&url), Cloud::Commercial, "{commercial}");
            let mut s = spec(Kind::Refresh);
            s.token_url = Some(commercial.into());
            s.secure = Some(true);
            let err = Endpoint::resolve(&s).unwrap_err().to_string();
            assert!(err.contains("commercial endpoint"), "{commercial}: {err}");
        }
        let gov = reqwest::Url::parse("https://auth.365-gov.altium.com./x").unwrap();
        assert_eq!(Cloud::of(&gov), Cloud::Gov);
        let mut s = spec(Kind::AuthorizationCode);
        s.token_url = Some("https://auth.365-gov.altium.com/connect/token".into());
        s.authorize_url = Some("https://auth.altium.com./connect/authorize".into());
        let err = Endpoint::resolve(&s).unwrap_err().to_string();
        assert!(err.contains("different Altium clouds"), "{err}");
    }

    #[test]
    fn names() {
        for ok in ["work", "a.b-c_d", "X1"] {
            validate_name(ok).unwrap();
        }
        for bad in ["", ".x", "a/b", "../x", "a b", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn edits_keep_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "# my settings\nstore = \"file\"\nproxy = \"http://127.0.0.1:1\" # keep\n\n# the work profile\n[profiles.work]\nkind = \"static\"\n",
        )
        .unwrap();
        let mut s = spec(Kind::Refresh);
        s.realm = Some("altium365".into());
        s.scopes = vec!["openid".into()];
        s.store = Some(StoreKind::Keyring);
        write_profile(&path, "gov", &s).unwrap();
        write_profile(&path, "work", &s).unwrap();
        write_default_store(&path, StoreKind::Memory).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("# my settings"), "{text}");
        assert!(text.contains("# keep"), "{text}");
        assert!(
            text.contains("# the work profile\n[profiles.work]"),
            "{text}"
        );
        let config = Config::load(&path).unwrap();
        assert_eq!(config.store, Some(StoreKind::Memory));
        assert_eq!(config.profiles["gov"], s);
        assert_eq!(config.profiles["work"], s);
        assert!(remove_profile(&path, "gov").unwrap());
        assert!(!remove_profile(&path, "gov").unwrap());
        let config = Config::load(&path).unwrap();
        assert_eq!(config.profiles.len(), 1);
        assert_eq!(config.default_lifetime_secs, 3600);
    }

    #[test]
    fn bad_config_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "[profiles.x]\nkind = \"refresh\"\nrealm = \"mars\"\n",
        )
        .unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("profile 'x'") && err.contains("unknown realm"),
            "{err}"
        );
        std::fs::write(&path, "stroe = 1\n").unwrap();
        assert!(Config::load(&path).is_err());
        assert!(
            Config::load(&dir.path().join("missing.toml"))
                .unwrap()
                .profiles
                .is_empty()
        );
    }
}
