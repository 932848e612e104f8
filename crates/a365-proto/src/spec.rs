//! A profile's settings and secrets as `a365 add` sends them and
//! config.toml keeps them (the non-secret part).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Kind, WireSecret};

/// A name a shell, `docker --env-file` and Windows take for a variable:
/// letters, digits and `_`, not starting with a digit.
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Profile names become file names and TOML keys: 1 to 64 ASCII letters,
/// digits, `.`, `_` or `-`, not starting with `.`.
pub fn is_valid_profile_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddProfile {
    pub name: String,
    pub spec: ProfileSpec,
    pub secrets: Secrets,
    /// Replace an existing profile of that name instead of refusing.
    #[serde(default)]
    pub replace: bool,
    /// Only check the name and settings (no secrets are sent): what
    /// `a365 add` asks before the user types a secret.
    #[serde(default)]
    pub check_only: bool,
    /// Put the profile in the agent's fleet (etcd), for every member.
    #[serde(default)]
    pub shared: bool,
}

/// How a profile gets its token: the non-secret part, as in `config.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    pub kind: Kind,
    /// A named token endpoint (`altium365`, `altium365-gov`, ...).
    #[serde(default)]
    pub realm: Option<String>,
    /// An explicit token endpoint, instead of a realm.
    #[serde(default)]
    pub token_url: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    /// Scopes to request; empty means the server's default.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Send `secure=1` with token requests (Gov Cloud); `None` means the
    /// realm's default.
    #[serde(default)]
    pub secure: Option<bool>,
    /// Where the profile's secrets live; `None` means the agent's default.
    /// The agent records the store it chose here when it adds the profile.
    #[serde(default)]
    pub store: Option<StoreKind>,
    /// `authorization-code`: the authorize endpoint, when not the realm's
    /// (default: the token URL with `/token` replaced by `/authorize`).
    #[serde(default)]
    pub authorize_url: Option<String>,
    /// `authorization-code`: the registered loopback redirect (default
    /// `http://localhost:3000/login`).
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// `designer-cloud`: the instance, e.g. `https://company.designercloud.example`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// `designer-cloud`: lifetime of each renewed token, in seconds.
    #[serde(default)]
    pub renew_lifetime_secs: Option<u64>,
    /// How the client id and secret reach the token endpoint; `None` is
    /// [`ClientAuth::Post`].
    #[serde(default)]
    pub client_auth: Option<ClientAuth>,
    /// The RFC 7009 revocation endpoint `a365 remove` sends the refresh
    /// token to, when not the realm's.
    #[serde(default)]
    pub revocation_url: Option<String>,
    /// `authorization-code`: extra query parameters of the authorize
    /// request (`login_hint`, `audience`, `resource`, `prompt`, …). Never
    /// secrets: they pass through the browser.
    #[serde(default)]
    pub authorize_params: BTreeMap<String, String>,
    /// Extra form parameters of every token request (`audience`,
    /// `resource` of RFC 8707, …). Never secrets: they are kept in
    /// config.toml.
    #[serde(default)]
    pub token_params: BTreeMap<String, String>,
    /// `designer-cloud`: extra request headers (some deployments want
    /// `x-alteryx-workspace-gid`). Never secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The RFC 7662 introspection endpoint: where the agent asks whether
    /// a refresh token whose answer was lost is still active, instead of
    /// calling the credential dead.
    #[serde(default)]
    pub introspection_url: Option<String>,
    /// An Altium 365 sign-in: the workspace (id, URL or name) whose token
    /// `a365 token` gives when none is named.
    #[serde(default)]
    pub workspace: Option<String>,
    /// A workspace token's profile: the sign-in profile it was exchanged
    /// from (and is exchanged from again when it dies).
    #[serde(default)]
    pub workspace_of: Option<String>,
    /// A PEM bundle of CAs trusted, besides the platform's, for this
    /// profile's requests (a corporate CA); read again when it changes.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Token requests allowed per window for this profile's client id,
    /// by window (`"1s" = 2`, `"15m" = 200`): the agent never sends one
    /// that would break a window. Empty: Nexar's limits for Nexar's token
    /// endpoint, none elsewhere.
    #[serde(default)]
    pub limits: BTreeMap<String, u32>,
}

/// A budget window's length as `limits` writes it: a number and one unit
/// of `s`, `m`, `h`, `d` or `w` ("15m"), in seconds; at most a year.
pub fn window_secs(text: &str) -> Option<u64> {
    let unit = match text.chars().last()? {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return None,
    };
    let n: u64 = text[..text.len() - 1].parse().ok()?;
    let secs = n.checked_mul(unit)?;
    (1..=366 * 86_400).contains(&secs).then_some(secs)
}

impl ProfileSpec {
    /// What is wrong with `limits`, if anything: a typo there would
    /// quietly lift the budget it was meant to keep.
    pub fn limits_error(&self) -> Option<String> {
        let (window, count) = self
            .limits
            .iter()
            .find(|(w, n)| window_secs(w).is_none() || **n == 0)?;
        Some(format!(
            "limits: '{}' = {count} is not a window and a count of requests (a window is a \
             number and s, m, h, d or w, at most a year: \"15m\" = 200)",
            window.escape_default()
        ))
    }
}

/// `limits` as `a365 set` takes them: `1s=2,15m=200` (or spaces).
pub fn parse_limits(text: &str) -> Result<BTreeMap<String, u32>, String> {
    let mut limits = BTreeMap::new();
    for pair in text.split([' ', ',']).filter(|s| !s.is_empty()) {
        let bad = || {
            format!(
                "'{}' is not WINDOW=COUNT (a window is a number and s, m, h, d or w: 15m=200)",
                pair.escape_default()
            )
        };
        let (window, count) = pair.split_once('=').ok_or_else(bad)?;
        window_secs(window).ok_or_else(bad)?;
        let count: u32 = count.parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(format!("{window}={count}: a window must allow a request"));
        }
        limits.insert(window.to_owned(), count);
    }
    Ok(limits)
}

/// How a client with a secret authenticates at the token endpoint (RFC
/// 6749 §2.3.1). Append new methods at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAuth {
    /// `client_id` and `client_secret` in the form body, as Altium's
    /// Developer Center documents (`client_secret_post`).
    #[default]
    Post,
    /// HTTP Basic, which every server must support (`client_secret_basic`).
    Basic,
    /// HTTP Basic with the id and secret as they are, not form-encoded
    /// first as RFC 6749 §2.3.1 says: what many servers actually decode.
    /// Learned when a server refuses the encoded form, or chosen.
    BasicRaw,
}

impl ClientAuth {
    pub const ALL: [ClientAuth; 3] = [ClientAuth::Post, ClientAuth::Basic, ClientAuth::BasicRaw];

    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuth::Post => "post",
            ClientAuth::Basic => "basic",
            ClientAuth::BasicRaw => "basic-raw",
        }
    }

    pub fn parse(s: &str) -> Option<ClientAuth> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The places secrets can live. Append new stores at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// The OS keyring: Secret Service, Keychain or Credential Manager.
    Keyring,
    /// A 0600 file under `$XDG_STATE_HOME/a365/credentials/`.
    File,
    /// Nothing survives an agent restart.
    Memory,
}

impl StoreKind {
    pub const ALL: [StoreKind; 3] = [StoreKind::Keyring, StoreKind::File, StoreKind::Memory];

    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Keyring => "keyring",
            StoreKind::File => "file",
            StoreKind::Memory => "memory",
        }
    }

    pub fn parse(s: &str) -> Option<StoreKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Secrets for a new profile; which ones a kind needs is the agent's call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Secrets {
    #[serde(default)]
    pub client_secret: Option<WireSecret>,
    #[serde(default)]
    pub refresh_token: Option<WireSecret>,
    #[serde(default)]
    pub access_token: Option<WireSecret>,
    /// `designer-cloud`: a user's password, used once with `username` to
    /// create the first API token; never stored.
    #[serde(default)]
    pub password: Option<WireSecret>,
    #[serde(default)]
    pub username: Option<String>,
}

/// The settings `a365 set` changes, one at a time. Not the kind (a new
/// kind is a new profile: `add --replace`), nor the store (`store
/// migrate`), nor what the agent writes itself (`workspace_of`).
pub const SETTABLE: &[&str] = &[
    "realm",
    "token_url",
    "client_id",
    "scopes",
    "secure",
    "authorize_url",
    "redirect_uri",
    "base_url",
    "renew_lifetime_secs",
    "client_auth",
    "revocation_url",
    "introspection_url",
    "workspace",
    "ca_file",
    "limits",
];

impl ProfileSpec {
    /// Sets `key` to `value` as `a365 set` gives them; an empty value
    /// unsets it. Scopes are separated by spaces or commas.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let text = || (!value.is_empty()).then(|| value.to_owned());
        match key {
            "realm" => self.realm = text(),
            "token_url" => self.token_url = text(),
            "client_id" => self.client_id = text(),
            "authorize_url" => self.authorize_url = text(),
            "redirect_uri" => self.redirect_uri = text(),
            "base_url" => self.base_url = text(),
            "revocation_url" => self.revocation_url = text(),
            "introspection_url" => self.introspection_url = text(),
            "workspace" => self.workspace = text(),
            "ca_file" => self.ca_file = text(),
            "limits" => self.limits = parse_limits(value)?,
            "scopes" => {
                self.scopes = value
                    .split([' ', ','])
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            "secure" => {
                self.secure = match value {
                    "" => None,
                    "true" => Some(true),
                    "false" => Some(false),
                    _ => return Err(format!("secure is true or false, not '{value}'")),
                };
            }
            "renew_lifetime_secs" => {
                self.renew_lifetime_secs = match value {
                    "" => None,
                    n => Some(n.parse().map_err(|_| {
                        format!("renew_lifetime_secs is a number of seconds, not '{n}'")
                    })?),
                };
            }
            "client_auth" => {
                self.client_auth = match value {
                    "" => None,
                    v => Some(ClientAuth::parse(v).ok_or_else(|| {
                        format!("client_auth is post, basic or basic-raw, not '{v}'")
                    })?),
                };
            }
            _ => {
                return Err(format!(
                    "'{}' is not a setting `a365 set` changes (it changes: {})",
                    key.escape_default(),
                    SETTABLE.join(", ")
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod set_tests {
    use super::*;

    #[test]
    fn each_settable_key_is_set_and_unset() {
        let mut spec = ProfileSpec::default();
        for key in SETTABLE {
            let value = match *key {
                "secure" => "true",
                "renew_lifetime_secs" => "60",
                "client_auth" => "basic",
                "limits" => "1s=2",
                _ => "a",
            };
            spec.set(key, value).unwrap();
            spec.set(key, "").unwrap();
        }
        assert_eq!(spec, ProfileSpec::default());
        spec.set("scopes", "openid, offline_access a365:x").unwrap();
        assert_eq!(spec.scopes, ["openid", "offline_access", "a365:x"]);
        assert!(
            spec.set("kind", "static")
                .unwrap_err()
                .contains("changes: realm")
        );
        assert!(spec.set("secure", "yes").is_err());
        assert!(spec.set("renew_lifetime_secs", "-1").is_err());
    }
}
