//! Where a profile's token requests go: realms, URLs and the rules every
//! URL must meet (HTTPS, or plain HTTP to loopback only; one Altium cloud
//! per profile). Which of them a kind takes is its provider's to say
//! (`provider::Provider::endpoint`); the shared rules are here.

use a365_proto::ProfileSpec;

/// A profile's URLs do not make a usable endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EndpointError(pub String);

fn invalid(message: impl Into<String>) -> EndpointError {
    EndpointError(message.into())
}

/// Where a profile's token requests go, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// The token endpoint; for `designer-cloud`, `{base}/v4/apiAccessTokens`.
    pub token_url: reqwest::Url,
    /// Send `secure=1` (Gov Cloud).
    pub secure: bool,
    /// Altium Identity (either cloud, or a configured Altium realm): its
    /// specification's rules apply (no `scope` on a refresh, expiry 30 s
    /// early, HTTP Basic for a confidential login client).
    pub altium: bool,
    /// `authorization-code` only.
    pub login: Option<LoginEndpoint>,
    /// Where `a365 remove` revokes a refresh token (RFC 7009), if known.
    pub revocation_url: Option<reqwest::Url>,
    /// Where a refresh token of unknown fate is looked up (RFC 7662).
    pub introspection_url: Option<reqwest::Url>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoginEndpoint {
    pub authorize_url: reqwest::Url,
    /// A loopback `http` URL with a port, where the agent listens; or,
    /// with `actionwait`, Altium's AuthComplete page.
    pub redirect_uri: reqwest::Url,
    /// Altium's ActionWait: the code comes from a long poll there, not to
    /// a loopback listener (the browser can be on any device).
    pub actionwait: Option<reqwest::Url>,
}

impl Endpoint {
    /// A Gov Cloud secret never goes to a commercial endpoint, nor the
    /// other way round: every URL of a profile must be on one side.
    pub fn check_cloud(self) -> Result<Endpoint, EndpointError> {
        let token = Cloud::of(&self.token_url);
        let others = [
            ("authorize", self.login.as_ref().map(|l| &l.authorize_url)),
            ("revocation", self.revocation_url.as_ref()),
            ("introspection", self.introspection_url.as_ref()),
        ];
        for (what, url) in others {
            let Some(url) = url else { continue };
            let other = Cloud::of(url);
            if token != other && token != Cloud::Other && other != Cloud::Other {
                return Err(invalid(format!(
                    "the {what} URL ({}) and the token URL ({}) are on different Altium clouds \
                     (Gov and commercial): a secret must stay on one",
                    url.host_str().unwrap_or("?"),
                    self.token_url.host_str().unwrap_or("?")
                )));
            }
        }
        // A refresh token is revoked or looked up only on the cloud that
        // issued it (SECURITY.md): a third party's host is no revocation
        // or introspection endpoint of an Altium profile.
        let sent_to = [
            ("revocation", &self.revocation_url),
            ("introspection", &self.introspection_url),
        ];
        for (what, url) in sent_to {
            if let Some(url) = url
                && token != Cloud::Other
                && Cloud::of(url) != token
            {
                return Err(invalid(format!(
                    "the {what} URL ({}) is not on the Altium cloud of the token URL ({}): a \
                     refresh token is sent only where it was issued",
                    url.host_str().unwrap_or("?"),
                    self.token_url.host_str().unwrap_or("?")
                )));
            }
        }
        if self.secure && token == Cloud::Commercial {
            return Err(invalid(format!(
                "secure=1 is for Altium 365 Gov Cloud, but {} is a commercial endpoint: use \
                 realm altium365-gov, or turn secure off",
                self.token_url.host_str().unwrap_or("?")
            )));
        }
        Ok(self)
    }
}

/// The endpoint of an OAuth kind without a browser login (refresh,
/// client-credentials): a realm or a token URL, nothing else.
pub fn oauth(spec: &ProfileSpec) -> Result<Option<Endpoint>, EndpointError> {
    reject_login_fields(spec)?;
    let (token_url, secure) = token_endpoint(spec)?;
    Endpoint {
        revocation_url: revocation_url(spec)?,
        introspection_url: introspection_url(spec)?,
        altium: is_altium(&token_url),
        token_url,
        secure,
        login: None,
    }
    .check_cloud()
    .map(Some)
}

/// Whether `url` is Altium Identity's (either cloud).
pub fn is_altium(url: &reqwest::Url) -> bool {
    Cloud::of(url) != Cloud::Other
}

/// The token URL (from the realm or given) and whether to send
/// `secure=1`; refuses the fields of a Designer Cloud profile.
pub fn token_endpoint(spec: &ProfileSpec) -> Result<(reqwest::Url, bool), EndpointError> {
    let url = named_url(spec)?.ok_or_else(|| {
        invalid(format!(
            "a {} profile needs a realm ({}) or a token_url",
            spec.kind,
            crate::realm::names().join(", ")
        ))
    })?;
    let token_url = parse_url("token_url", &url)?;
    // Every grant at a Gov token endpoint carries secure=1 (SPEC §5.4).
    let secure = spec.secure.unwrap_or(Cloud::of(&token_url) == Cloud::Gov);
    Ok((token_url, secure))
}

/// The realm's URL or the given one (not both), if any; refuses the
/// fields of a Designer Cloud profile.
pub fn named_url(spec: &ProfileSpec) -> Result<Option<String>, EndpointError> {
    if spec.base_url.is_some() || spec.renew_lifetime_secs.is_some() {
        return Err(invalid(
            "base_url and renew_lifetime_secs are for designer-cloud profiles",
        ));
    }
    match (&spec.realm, &spec.token_url) {
        (Some(_), Some(_)) => Err(invalid("give either a realm or a token_url, not both")),
        (Some(realm), None) => realm_url(realm).map(Some),
        (None, Some(url)) => Ok(Some(url.clone())),
        (None, None) => Ok(None),
    }
}

/// The RFC 7009 endpoint: the profile's own, else its realm's. The realms
/// are IdentityServer token services (`/connect/token`), which serve
/// revocation at `/connect/revocation`; Altium's published integration
/// specification (altium-auth, SPEC §1 and §9) names that path for both
/// Altium clouds, with `token_type_hint=refresh_token`.
pub fn revocation_url(spec: &ProfileSpec) -> Result<Option<reqwest::Url>, EndpointError> {
    if let Some(url) = &spec.revocation_url {
        return parse_url("revocation_url", url).map(Some);
    }
    let Some(realm) = &spec.realm else {
        return Ok(None);
    };
    Ok(Some(crate::realm::find(realm)?.connect("revocation")))
}

/// The RFC 7662 endpoint, when the profile names one (IdentityServer's
/// wants an API resource's secret, not a client's: no realm default).
pub fn introspection_url(spec: &ProfileSpec) -> Result<Option<reqwest::Url>, EndpointError> {
    spec.introspection_url
        .as_ref()
        .map(|url| parse_url("introspection_url", url))
        .transpose()
}

/// Parameters a365 sends itself, or that carry secrets: never taken from
/// `authorize_params` or `token_params`.
const RESERVED_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code",
    "code_challenge",
    "code_challenge_method",
    "code_verifier",
    "grant_type",
    "secure",
    "nonce",
];

/// Headers a365 or HTTP sets itself: never taken from a profile's `headers`.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
];

/// Names that hold secrets (`client_secret`, `password`, `id_token_hint`,
/// `client_assertion`, …): config.toml and the browser are no place for them.
const SECRET_PARTS: &[&str] = &[
    "secret",
    "password",
    "passwd",
    "token",
    "assertion",
    "key",
    "credential",
    "bearer",
    "jwt",
];

/// Short names of secrets, refused as whole words of a name (split at `_`,
/// `-`, `.` and camel case) only: as substrings they would catch
/// `oauth_nonce`, `author` or `optional`.
const SECRET_WORDS: &[&str] = &["pwd", "otp", "auth"];

/// The words of a parameter or header name, in lower case: `X-Auth-User`,
/// `authCode` and `user_pwd` give `auth` and `pwd` among them.
fn name_words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        let boundary = matches!(c, '_' | '-' | '.') || (c.is_ascii_uppercase() && previous_lower);
        if boundary && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        if c.is_ascii_alphanumeric() {
            word.push(c.to_ascii_lowercase());
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// The extra parameters: only where the kind sends such a request, plain
/// names, short printable values, nothing a365 sends itself, no secrets.
pub fn check_params(spec: &ProfileSpec) -> Result<(), EndpointError> {
    let facts = spec.kind.facts();
    if !spec.authorize_params.is_empty() && !facts.browser_login {
        return Err(invalid(format!(
            "authorize_params are for authorization-code profiles, not {}",
            spec.kind
        )));
    }
    if !spec.token_params.is_empty() && !facts.sends_token_requests {
        return Err(invalid(format!(
            "token_params are for OAuth profiles, not {}",
            spec.kind
        )));
    }
    let workspace = [
        ("workspace", &spec.workspace),
        ("workspace_of", &spec.workspace_of),
    ];
    for (what, value) in workspace {
        let Some(value) = value else { continue };
        if spec.kind != a365_proto::Kind::AuthorizationCode {
            return Err(invalid(format!(
                "{what} is for Altium 365 sign-ins (authorization-code profiles), not {}",
                spec.kind
            )));
        }
        if value.is_empty() || value.len() > 2048 || value.chars().any(char::is_control) {
            return Err(invalid(format!(
                "{what} must be a workspace's id, URL or name, without control characters"
            )));
        }
    }
    if !spec.headers.is_empty() && !facts.takes_headers {
        return Err(invalid(format!(
            "headers are for designer-cloud profiles, not {}",
            spec.kind
        )));
    }
    for name in spec.headers.keys() {
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(invalid(format!(
                "header '{name}' is one a365 or HTTP sets itself"
            )));
        }
    }
    let all = [
        ("authorize", &spec.authorize_params),
        ("token", &spec.token_params),
        ("header", &spec.headers),
    ];
    for (which, params) in all {
        for (name, value) in params {
            check_param(which, name, value)?;
        }
    }
    Ok(())
}

fn check_param(which: &str, name: &str, value: &str) -> Result<(), EndpointError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.is_empty() || name.len() > 64 || !name.chars().all(plain) {
        return Err(invalid(format!(
            "{which} parameter name '{}' is not a plain name (letters, digits, _ - .)",
            name.escape_debug()
        )));
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED_PARAMS.contains(&lower.as_str()) {
        return Err(invalid(format!(
            "{which} parameter '{name}' is one a365 sends itself; use the matching setting \
             (--scope, --client-id, --redirect-uri, …)"
        )));
    }
    if SECRET_PARTS.iter().any(|part| lower.contains(part))
        || name_words(name)
            .iter()
            .any(|word| SECRET_WORDS.contains(&word.as_str()))
    {
        return Err(invalid(format!(
            "{which} parameter '{name}' looks like a secret: parameters are kept in config.toml \
             in plain text; secrets belong in the store (--secrets-from)"
        )));
    }
    if value.len() > 2048 || value.chars().any(char::is_control) {
        return Err(invalid(format!(
            "the value of {which} parameter '{name}' is longer than 2048 bytes or has control \
             characters"
        )));
    }
    Ok(())
}

/// Only OAuth profiles with a refresh token have revocation and
/// introspection endpoints.
pub fn reject_revocation_url(spec: &ProfileSpec) -> Result<(), EndpointError> {
    let given = [
        ("revocation_url", spec.revocation_url.is_some()),
        ("introspection_url", spec.introspection_url.is_some()),
    ];
    if let Some((what, _)) = given.iter().find(|(_, given)| *given) {
        return Err(invalid(format!(
            "{what} is for refresh and authorization-code profiles, not {}",
            spec.kind
        )));
    }
    Ok(())
}

/// Only an `authorization-code` profile logs in with a browser.
pub fn reject_login_fields(spec: &ProfileSpec) -> Result<(), EndpointError> {
    if spec.authorize_url.is_some() || spec.redirect_uri.is_some() {
        return Err(invalid(
            "authorize_url and redirect_uri are for authorization-code profiles",
        ));
    }
    Ok(())
}

/// Which Altium cloud a URL belongs to, by host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cloud {
    Gov,
    Commercial,
    Other,
}

/// Whose credential a profile holds, for advice on getting a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issuer {
    Altium,
    Nexar,
    /// Another server, by its host (empty when none is known).
    Other(String),
}

/// The issuer of `spec`'s credentials, from its realm or token URL.
pub fn issuer(spec: &ProfileSpec) -> Issuer {
    let url = match (&spec.realm, &spec.token_url) {
        (Some(realm), _) => realm_url(realm).ok(),
        (None, Some(url)) => Some(url.clone()),
        (None, None) => None,
    };
    let Some(url) = url.and_then(|u| reqwest::Url::parse(&u).ok()) else {
        return match spec.realm.as_deref() {
            None => Issuer::Other(String::new()),
            Some(_) => Issuer::Altium,
        };
    };
    let host = normal_host(&url).unwrap_or_default();
    if Cloud::of(&url) != Cloud::Other {
        Issuer::Altium
    } else if host == "nexar.com" || host.ends_with(".nexar.com") {
        Issuer::Nexar
    } else {
        Issuer::Other(host)
    }
}

impl Cloud {
    /// Altium's own hosts say their cloud; a configured Altium realm's
    /// other host is on the realm's cloud.
    fn of(url: &reqwest::Url) -> Cloud {
        match altium_host_is_gov(url) {
            Some(true) => Cloud::Gov,
            Some(false) => Cloud::Commercial,
            None => match crate::realm::owning(url) {
                Some(realm) if realm.gov => Cloud::Gov,
                Some(_) => Cloud::Commercial,
                None => Cloud::Other,
            },
        }
    }
}

/// Whether `url` is on Altium's Gov cloud (`…365-gov.altium.com`), its
/// commercial one (another `…altium.com`), or neither (`None`).
pub fn altium_host_is_gov(url: &reqwest::Url) -> Option<bool> {
    let host = normal_host(url).unwrap_or_default();
    let under = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
    if under("365-gov.altium.com") {
        Some(true)
    } else if under("altium.com") {
        Some(false)
    } else {
        None
    }
}

/// Whether `a` and `b` are on the same Altium cloud (or neither is
/// Altium's): what a secret sent to both may cross.
pub fn same_cloud(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    Cloud::of(a) == Cloud::of(b)
}

fn realm_url(realm: &str) -> Result<String, EndpointError> {
    crate::realm::find(realm).map(|r| r.token_url().to_string())
}

/// HTTPS only, except plain HTTP to a loopback host (tests, local servers).
/// The host is normalised here, once ([`normal_host`]), so that the URL
/// requests go to is the one every rule judged: the loopback check, the
/// never-proxied list and the Gov/commercial guard.
pub fn parse_url(what: &str, text: &str) -> Result<reqwest::Url, EndpointError> {
    let mut url = reqwest::Url::parse(text)
        .map_err(|e| invalid(format!("{what} '{text}' is not a URL: {e}")))?;
    if let Some(host) = normal_host(&url)
        && url.host_str() != Some(host.as_str())
    {
        if host.is_empty() || host.ends_with('.') {
            return Err(invalid(format!(
                "{what} '{text}' has an empty label in its host name"
            )));
        }
        url.set_host(Some(&host))
            .map_err(|e| invalid(format!("{what} '{text}': {e}")))?;
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(format!("{what} must not contain credentials")));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(invalid(format!(
            "{what} '{text}' uses plain http: only https is allowed, except for loopback hosts"
        ))),
        other => Err(invalid(format!("{what} scheme '{other}' is not https"))),
    }
}

pub fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = normal_host(url) else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A URL's host as every rule compares it: lower case, without one
/// trailing dot. `localhost.` and `auth.altium.com.` (fully qualified) are
/// the same hosts to DNS and TLS as without the root's dot; a rule that
/// saw the dot and one that did not once disagreed, and a loopback token
/// request went to a proxy in clear text. IP literals are as the URL has them.
pub(crate) fn normal_host(url: &reqwest::Url) -> Option<String> {
    let host = url.host_str()?;
    let lower = host.to_ascii_lowercase();
    Some(match lower.strip_suffix('.') {
        Some(bare) if !host.starts_with('[') => bare.to_owned(),
        _ => lower,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use a365_proto::Kind;

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

    /// Each realm revokes next to its token endpoint; a profile's own URL
    /// wins, and must be on the token endpoint's Altium cloud.
    #[test]
    fn revocation_urls() {
        let mut s = spec(Kind::Refresh);
        s.realm = Some("altium365-gov".into());
        let e = crate::provider::endpoint(&s).unwrap().unwrap();
        assert_eq!(
            e.revocation_url.unwrap().as_str(),
            "https://auth.365-gov.altium.com/connect/revocation"
        );
        s.revocation_url = Some("https://auth.altium.com/connect/revocation".into());
        let err = crate::provider::endpoint(&s).unwrap_err().to_string();
        assert!(err.contains("different Altium clouds"), "{err}");
        s.realm = None;
        s.token_url = Some("http://127.0.0.1:1/token".into());
        s.revocation_url = None;
        assert_eq!(
            crate::provider::endpoint(&s)
                .unwrap()
                .unwrap()
                .revocation_url,
            None
        );
    }

    #[test]
    fn realms_and_urls() {
        let mut s = spec(Kind::Refresh);
        assert!(
            crate::provider::endpoint(&s).is_err(),
            "refresh needs an endpoint"
        );
        s.realm = Some("altium365-gov".into());
        let e = crate::provider::endpoint(&s).unwrap().unwrap();
        assert!(e.secure);
        assert_eq!(
            e.token_url.as_str(),
            "https://auth.365-gov.altium.com/connect/token"
        );
        s.secure = Some(false);
        assert!(!crate::provider::endpoint(&s).unwrap().unwrap().secure);
        s.realm = Some("altium365".into());
        s.secure = None;
        assert!(!crate::provider::endpoint(&s).unwrap().unwrap().secure);
        s.realm = Some("mars".into());
        assert!(
            crate::provider::endpoint(&s)
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
            assert!(crate::provider::endpoint(&s).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com/t",
            "ftp://127.0.0.1/",
            "https://u:p@x.example/",
            "nope",
        ] {
            s.token_url = Some(bad.into());
            assert!(crate::provider::endpoint(&s).is_err(), "{bad}");
        }
        assert_eq!(
            crate::provider::endpoint(&spec(Kind::Static)).unwrap(),
            None
        );
    }

    /// `auth.altium.com.` and `AUTH.Altium.COM` are the commercial cloud:
    /// a trailing dot or other case once slipped past the Gov guard.
    #[test]
    fn the_cloud_guard_sees_through_a_trailing_dot_and_case() {
        for commercial in [
            "https://auth.altium.com./connect/token",
            "https://AUTH.Altium.COM/connect/token",
        ] {
            let url = reqwest::Url::parse(commercial).unwrap();
            assert_eq!(Cloud::of(&url), Cloud::Commercial, "{commercial}");
            let mut s = spec(Kind::Refresh);
            s.token_url = Some(commercial.into());
            s.secure = Some(true);
            let err = crate::provider::endpoint(&s).unwrap_err().to_string();
            assert!(err.contains("commercial endpoint"), "{commercial}: {err}");
        }
        // Two dots are no host name: refused, not guessed at.
        let mut s = spec(Kind::Refresh);
        s.token_url = Some("https://auth.altium.com../connect/token".into());
        let err = crate::provider::endpoint(&s).unwrap_err().to_string();
        assert!(err.contains("empty label"), "{err}");
        let gov = reqwest::Url::parse("https://auth.365-gov.altium.com./x").unwrap();
        assert_eq!(Cloud::of(&gov), Cloud::Gov);
        let mut s = spec(Kind::AuthorizationCode);
        s.token_url = Some("https://auth.365-gov.altium.com/connect/token".into());
        s.authorize_url = Some("https://auth.altium.com./connect/authorize".into());
        let err = crate::provider::endpoint(&s).unwrap_err().to_string();
        assert!(err.contains("different Altium clouds"), "{err}");
    }

    /// SECURITY.md: a refresh token is revoked only on its own Altium
    /// cloud; a Gov (or commercial) profile's revocation URL on a third
    /// party's host once passed, since "other" hosts were not compared.
    #[test]
    fn the_cloud_guard_keeps_revocation_on_the_same_altium_cloud() {
        for realm in ["altium365-gov", "altium365"] {
            let mut s = spec(Kind::Refresh);
            s.realm = Some(realm.into());
            s.revocation_url = Some("https://revoke.example.com/connect/revocation".into());
            let err = crate::provider::endpoint(&s).unwrap_err().to_string();
            assert!(err.contains("revocation URL"), "{realm}: {err}");
        }
        let mut s = spec(Kind::Refresh);
        s.realm = Some("altium365-gov".into());
        s.revocation_url = Some("https://auth.365-gov.altium.com/connect/revocation".into());
        crate::provider::endpoint(&s).unwrap();
        // A token server of one's own may revoke where it likes.
        s.realm = None;
        s.token_url = Some("https://id.example.org/token".into());
        s.revocation_url = Some("https://revoke.example.com/r".into());
        crate::provider::endpoint(&s).unwrap();
    }

    /// Names that carry credentials are refused as words of the name, so
    /// that `oauth_*`, `author` and `resource` still pass.
    #[test]
    fn credential_names_are_refused_and_plain_ones_pass() {
        for bad in [
            "passwd",
            "user_pwd",
            "userPwd",
            "otp",
            "otp-code",
            "credential",
            "client_credentials",
            "auth",
            "X-Auth-User",
            "authCode",
            "jwt",
            "id_jwt",
            "bearer",
            "X-Bearer",
            "client_secret",
            "api_key",
        ] {
            let err = check_param("token", bad, "v").unwrap_err().to_string();
            assert!(err.contains("looks like a secret"), "{bad}: {err}");
        }
        for good in [
            "audience",
            "resource",
            "prompt",
            "login_hint",
            "oauth_nonce",
            "author",
            "authority",
            "acr_values",
            "ui_locales",
            "X-Request-Id",
            "optional",
        ] {
            check_param("token", good, "v").unwrap_or_else(|e| panic!("{good}: {e}"));
        }
    }

    /// Requests go to the host every rule judged: `localhost.` is
    /// `localhost` for the loopback check, the proxy exemption (which sees
    /// the request's URL) and the cloud guard alike.
    #[test]
    fn host_names_are_normalised_once_at_parse_time() {
        for (given, host) in [
            ("http://localhost.:8/t", "localhost"),
            ("http://LOCALHOST.:8/t", "localhost"),
            ("http://127.0.0.1.:8/t", "127.0.0.1"),
            ("http://[::1]:8/t", "[::1]"),
            ("https://Auth.Altium.com./connect/token", "auth.altium.com"),
        ] {
            let url = parse_url("token_url", given).unwrap();
            assert_eq!(url.host_str(), Some(host), "{given}");
            assert!(url.scheme() == "https" || is_loopback(&url), "{given}");
        }
        assert!(parse_url("token_url", "http://localhost..:8/t").is_err());
        assert!(parse_url("token_url", "http://localhost.example.:8/t").is_err());
    }
}
