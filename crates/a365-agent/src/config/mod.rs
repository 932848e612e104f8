//! `config.toml`: the non-secret settings of the agent and its profiles.
//!
//! The agent is the only writer (through `a365 add`/`remove`), and edits the
//! document in place ([`edit`]), so a user's comments and layout survive.
//! Where each profile's requests go is [`crate::endpoint`]'s.

mod edit;
mod read;

pub use edit::{
    in_background, remove_profile, remove_route, remove_sink, write_default_profile,
    write_default_store, write_profile, write_route, write_sink,
};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use a365_proto::ProfileSpec;
pub use a365_proto::StoreKind;

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
    #[error(transparent)]
    Unsafe(#[from] crate::strict::StrictError),
}

impl From<crate::endpoint::EndpointError> for ConfigError {
    fn from(e: crate::endpoint::EndpointError) -> ConfigError {
        ConfigError::Invalid(e.0)
    }
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
    /// launchd does not inherit the shell's `HTTPS_PROXY`. (Written
    /// `proxy = "URL"` before `[[proxy]]` named routes.)
    pub https_proxy: Option<String>,
    /// Local routes that forward to an API with a profile's token
    /// (`[[proxy]]`, read by [`read`]).
    #[serde(skip)]
    pub routes: Vec<a365_proto::ProxyRoute>,
    /// Files kept holding a profile's current token (`[[sink]]`).
    #[serde(default, rename = "sink")]
    pub sinks: Vec<a365_proto::FileSink>,
    /// A PEM bundle of CAs trusted, besides the platform's, for every
    /// profile without a `ca_file` of its own; read again when it changes.
    pub ca_file: Option<PathBuf>,
    /// Run with `sh -c` on every event (refreshed, refresh-failed,
    /// needs-reauth, expires-soon, removed), the event in its environment.
    pub on_event: Option<String>,
    /// How many days before a token that cannot be renewed (a static
    /// token) expires, `expires-soon` is announced (daily).
    #[serde(default = "default_expires_soon_days")]
    pub expires_soon_days: u64,
    /// A second socket that answers only token, status, ping and watch:
    /// the one to forward (`ssh -R`) or bind-mount into a container.
    pub token_socket: Option<PathBuf>,
    /// The profiles the token socket serves (empty: every profile).
    #[serde(default)]
    pub token_socket_profiles: Vec<String>,
    /// Fleet mode: profiles shared with other machines through etcd.
    pub fleet: Option<crate::fleet::FleetConfig>,
    /// Deployments beyond the built-in realms (`[realms.NAME]`).
    #[serde(default)]
    pub realms: BTreeMap<String, crate::realm::RealmConfig>,
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileSpec>,
    /// Profiles whose table could not be read, with why (file, line,
    /// table, key): listed by `status` and `doctor`, never served.
    #[serde(skip)]
    pub broken: BTreeMap<String, Broken>,
}

/// A profile whose settings cannot be used.
#[derive(Debug, Clone)]
pub struct Broken {
    /// Its `kind`, when that much could be read.
    pub kind: Option<a365_proto::Kind>,
    /// Why, naming the file, line, table and key.
    pub why: String,
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

    /// Reads `path`, from the very file the StrictModes checks passed
    /// ([`crate::strict::read_config`]); a missing file is an empty
    /// configuration.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let Some(text) = crate::strict::read_config(path)? else {
            return Ok(Config::default_values());
        };
        let mut config = read::parse(path, &text)?;
        if let Some(ca) = config.ca_file.as_ref().filter(|ca| !ca.is_absolute()) {
            return Err(ConfigError::Parse {
                path: path.into(),
                message: format!("ca_file '{}' must be an absolute path", ca.display()),
            });
        }
        // The realms in force from here on: the profiles below name them.
        crate::realm::configure(&config.realms).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        // A profile the agent cannot serve costs that profile only.
        let unusable: Vec<(String, String)> = config
            .profiles
            .iter()
            .filter_map(|(name, spec)| {
                let why = match validate_name(name) {
                    Err(e) => e.to_string(),
                    Ok(()) => crate::provider::endpoint(spec).err()?.to_string(),
                };
                Some((name.clone(), why))
            })
            .collect();
        for (name, why) in unusable {
            let why = format!("{}: [profiles.{name}]: {why}", path.display());
            tracing::error!("{why}");
            let kind = config.profiles.remove(&name).map(|spec| spec.kind);
            config.broken.insert(name, Broken { kind, why });
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn bad_config_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "[profiles.x]\nkind = \"refresh\"\nrealm = \"mars\"\n",
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        let err = &config.broken["x"].why;
        assert!(
            err.contains("[profiles.x]") && err.contains("unknown realm"),
            "{err}"
        );
        assert!(config.profiles.is_empty());
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
