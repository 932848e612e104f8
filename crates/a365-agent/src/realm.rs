//! Realms: the named deployments a profile's requests go to. Three are
//! built in (Altium 365, its Gov Cloud, Nexar); `[realms.NAME]` in
//! config.toml adds others (an Altium Dev tier, an on-premises Altium
//! Enterprise Server) or points a built-in one elsewhere, as tests do. A
//! realm is an IdentityServer token service: its token, authorize,
//! revocation and userinfo endpoints are under `{base_url}/connect/`.
//! Nothing else (no environment variable) re-points a realm.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::Deserialize;

use crate::endpoint::{EndpointError, parse_url};

/// `[realms.NAME]` of config.toml.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealmConfig {
    /// The token service's origin (`https://auth.example.com`).
    pub base_url: String,
    /// An Altium Gov Cloud deployment: every grant carries `secure=1`, and
    /// its secrets never meet a commercial one's.
    #[serde(default)]
    pub gov: bool,
    /// Altium's ActionWait service, for the sign-in whose browser can be on
    /// any device (an on-premises server: `{origin}/actionwait`).
    pub actionwait_url: Option<String>,
    /// Where ActionWait sign-ins redirect (`…/api/AuthComplete`).
    pub auth_complete_url: Option<String>,
    /// The GraphQL API that lists the user's workspaces.
    pub api_url: Option<String>,
    /// The realm of this deployment's Gov Cloud: where its sign-ins'
    /// tokens for Gov Cloud workspaces are exchanged.
    pub gov_realm: Option<String>,
}

/// A realm, its URLs checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Realm {
    pub name: String,
    pub base: reqwest::Url,
    pub gov: bool,
    /// An Altium deployment (Altium Identity's rules apply: SPEC §5).
    pub altium: bool,
    pub actionwait: Option<reqwest::Url>,
    pub auth_complete: Option<reqwest::Url>,
    pub api: Option<reqwest::Url>,
    /// Where this cloud's sign-ins exchange tokens of Gov Cloud
    /// workspaces (the Commercial→Gov bridge, SPEC §6).
    pub gov_realm: Option<String>,
}

impl Realm {
    /// `{base}/connect/{what}`.
    pub fn connect(&self, what: &str) -> reqwest::Url {
        let mut url = self.base.clone();
        let path = format!("{}/connect/{what}", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url
    }

    pub fn token_url(&self) -> reqwest::Url {
        self.connect("token")
    }
}

/// A built-in realm.
struct BuiltIn {
    name: &'static str,
    base: &'static str,
    gov: bool,
    actionwait: Option<&'static str>,
    api: Option<&'static str>,
}

const BUILT_IN: &[BuiltIn] = &[
    BuiltIn {
        name: "altium365",
        base: "https://auth.altium.com",
        gov: false,
        actionwait: Some(ACTIONWAIT),
        api: Some(API),
    },
    // A Gov user signs in through the commercial ActionWait and
    // AuthComplete too (SPEC §4.2): a Gov-host callback is not registered.
    // No workspace list for a Gov Cloud sign-in until Altium names its
    // endpoint: the commercial one would get the Gov token (sign in on
    // the commercial cloud, which reaches Gov workspaces by exchange).
    BuiltIn {
        name: "altium365-gov",
        base: "https://auth.365-gov.altium.com",
        gov: true,
        actionwait: Some(ACTIONWAIT),
        api: None,
    },
    BuiltIn {
        name: "nexar",
        base: "https://identity.nexar.com",
        gov: false,
        actionwait: None,
        api: None,
    },
];

/// Altium's ActionWait service, for both clouds (SPEC §1.1).
const ACTIONWAIT: &str = "https://actionwait.altium.com/await";

/// The GraphQL API that lists a user's workspaces, asked with the global
/// token of either cloud's sign-in. Altium's specification (SPEC §7)
/// still marks this endpoint as to be confirmed; Altium's API
/// documentation names the regional `https://{region}.365.altium.com/api/graphql`.
const API: &str = "https://use.365.altium.com/api/graphql";

/// Where an ActionWait sign-in of Altium 365 redirects, for both clouds:
/// the Altium-hosted completion page of the commercial host.
const AUTH_COMPLETE: &str = "https://auth.altium.com/api/AuthComplete";

/// The realms in force: the built-in ones, as config.toml amends them.
static TABLE: RwLock<Option<Arc<Vec<Realm>>>> = RwLock::new(None);

fn built_in() -> Vec<Realm> {
    BUILT_IN
        .iter()
        .map(|b| {
            let altium = b.actionwait.is_some();
            let url = |u: &str| reqwest::Url::parse(u).expect("a built-in URL");
            Realm {
                name: b.name.into(),
                base: url(b.base),
                gov: b.gov,
                altium,
                actionwait: b.actionwait.map(url),
                auth_complete: altium.then(|| url(AUTH_COMPLETE)),
                api: b.api.map(url),
                gov_realm: (altium && !b.gov).then(|| "altium365-gov".into()),
            }
        })
        .collect()
}

/// Checks `configured` and makes it the table every lookup sees. A
/// built-in name keeps its cloud: `[realms.altium365]` cannot be Gov.
pub fn configure(configured: &BTreeMap<String, RealmConfig>) -> Result<(), EndpointError> {
    let table = resolve(configured)?;
    *TABLE.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(table));
    Ok(())
}

/// The table `configured` makes, checked.
pub fn resolve(configured: &BTreeMap<String, RealmConfig>) -> Result<Vec<Realm>, EndpointError> {
    let mut table = built_in();
    for (name, config) in configured {
        let what = |field: &str| format!("realms.{name}.{field}");
        let optional = |field: &str, value: &Option<String>| {
            value
                .as_deref()
                .map(|v| parse_url(&what(field), v))
                .transpose()
        };
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if name.is_empty() || name.len() > 64 || !name.chars().all(plain) {
            return Err(EndpointError(format!(
                "realm name '{}' is not a plain name (letters, digits, _ - .)",
                name.escape_debug()
            )));
        }
        // Configured realms are Altium deployments (Dev tiers, Altium
        // Enterprise Server): Altium Identity's rules apply to them.
        let realm = Realm {
            name: name.clone(),
            base: parse_url(&what("base_url"), &config.base_url)?,
            gov: config.gov,
            altium: true,
            actionwait: optional("actionwait_url", &config.actionwait_url)?,
            auth_complete: optional("auth_complete_url", &config.auth_complete_url)?,
            api: optional("api_url", &config.api_url)?,
            gov_realm: config.gov_realm.clone(),
        };
        check_altium_hosts(name, &realm)?;
        match table.iter_mut().find(|r| r.name == *name) {
            Some(known) if known.gov != realm.gov => {
                return Err(EndpointError(format!(
                    "[realms.{name}] sets gov = {}, but {name} is {} Cloud: a built-in realm keeps \
                     its cloud",
                    realm.gov,
                    if known.gov { "a Gov" } else { "a commercial" }
                )));
            }
            // An override keeps what it does not restate.
            Some(known) => {
                let old = known.clone();
                *known = Realm {
                    altium: old.altium,
                    actionwait: realm.actionwait.or(old.actionwait),
                    auth_complete: realm.auth_complete.or(old.auth_complete),
                    api: realm.api.or(old.api),
                    gov_realm: realm.gov_realm.or(old.gov_realm),
                    ..realm
                };
            }
            None => table.push(realm),
        }
    }
    // Where Gov Cloud workspaces are exchanged: a Gov realm, or nothing.
    for realm in &table {
        if let Some(gov) = &realm.gov_realm
            && !table.iter().any(|r| &r.name == gov && r.gov)
        {
            return Err(EndpointError(format!(
                "[realms.{}] gov_realm = \"{gov}\" names no Gov realm (one with gov = true)",
                realm.name
            )));
        }
    }
    Ok(table)
}

/// Altium's own hosts say their cloud; a realm cannot say otherwise.
fn check_altium_hosts(name: &str, realm: &Realm) -> Result<(), EndpointError> {
    let urls = [
        Some(&realm.base),
        realm.actionwait.as_ref(),
        realm.api.as_ref(),
    ];
    for url in urls.into_iter().flatten() {
        match crate::endpoint::altium_host_is_gov(url) {
            Some(gov) if gov != realm.gov && url == &realm.base => {
                return Err(EndpointError(format!(
                    "[realms.{name}] sets gov = {}, but {} is on Altium's {} cloud",
                    realm.gov,
                    url.host_str().unwrap_or("?"),
                    if gov { "Gov" } else { "commercial" }
                )));
            }
            Some(true) if !realm.gov => {
                return Err(EndpointError(format!(
                    "[realms.{name}] is commercial, but {} is on Altium's Gov cloud",
                    url.host_str().unwrap_or("?")
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

fn table() -> Arc<Vec<Realm>> {
    if let Some(table) = TABLE.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return Arc::clone(table);
    }
    Arc::new(built_in())
}

/// The realm named `name`.
pub fn find(name: &str) -> Result<Realm, EndpointError> {
    let table = table();
    table
        .iter()
        .find(|r| r.name == name)
        .cloned()
        .ok_or_else(|| {
            let known: Vec<&str> = table.iter().map(|r| r.name.as_str()).collect();
            EndpointError(format!(
                "unknown realm '{name}' (known: {}), or give a token_url",
                known.join(", ")
            ))
        })
}

/// The names of the realms in force.
pub fn names() -> Vec<String> {
    table().iter().map(|r| r.name.clone()).collect()
}

/// The Altium realm whose token service is at `url`'s origin, else one
/// whose ActionWait or API is there: its cloud decides where `url`
/// belongs.
pub fn owning(url: &reqwest::Url) -> Option<Realm> {
    let origin = url.origin();
    let table = table();
    let altium = || table.iter().filter(|r| r.altium);
    altium()
        .find(|r| r.base.origin() == origin)
        .or_else(|| {
            altium().find(|r| {
                [r.actionwait.as_ref(), r.api.as_ref()]
                    .into_iter()
                    .flatten()
                    .any(|u| u.origin() == origin)
            })
        })
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(base: &str, gov: bool) -> RealmConfig {
        RealmConfig {
            base_url: base.into(),
            gov,
            actionwait_url: None,
            auth_complete_url: None,
            api_url: None,
            gov_realm: None,
        }
    }

    #[test]
    fn configured_realms_amend_the_built_in_ones() {
        let mut configured = BTreeMap::new();
        configured.insert("dev".into(), config("https://auth.dev.example", false));
        configured.insert("altium365".into(), config("http://127.0.0.1:9", false));
        let table = resolve(&configured).unwrap();
        let altium = table.iter().find(|r| r.name == "altium365").unwrap();
        assert_eq!(
            altium.token_url().as_str(),
            "http://127.0.0.1:9/connect/token"
        );
        assert!(altium.altium, "still Altium's");
        assert!(table.iter().any(|r| r.name == "dev"));
        assert!(table.iter().any(|r| r.name == "nexar"));

        let mut gov = BTreeMap::new();
        gov.insert("altium365".into(), config("http://127.0.0.1:9", true));
        let err = resolve(&gov).unwrap_err().to_string();
        assert!(err.contains("keeps its cloud"), "{err}");
        let mut flipped = BTreeMap::new();
        flipped.insert(
            "altium365".into(),
            config("https://auth.365-gov.altium.com", false),
        );
        let err = resolve(&flipped).unwrap_err().to_string();
        assert!(err.contains("Gov"), "an Altium host says its cloud: {err}");
        let mut dangling = BTreeMap::new();
        let mut dev = config("https://auth.dev.example", false);
        dev.gov_realm = Some("nexar".into());
        dangling.insert("dev".into(), dev);
        let err = resolve(&dangling).unwrap_err().to_string();
        assert!(err.contains("names no Gov realm"), "{err}");
        let mut plain = BTreeMap::new();
        plain.insert("x".into(), config("http://example.com", false));
        let err = resolve(&plain).unwrap_err().to_string();
        assert!(err.contains("realms.x.base_url"), "{err}");
        let mut odd = BTreeMap::new();
        odd.insert("a b".into(), config("https://example.com", false));
        assert!(resolve(&odd).is_err());
    }
}
