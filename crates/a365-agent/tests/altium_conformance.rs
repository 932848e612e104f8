//! Altium's own conformance vectors (`tests/altium-auth/vectors.json`, from
//! the public repository AltiumDeveloper/altium-auth) run against a365's
//! code through its in-process seam: the authorize URL it builds, the
//! requests its providers send (recorded by our token server acting as
//! Altium Identity, commercial and Gov, the realms pointed at it by
//! configuration) and what it makes of each scripted answer, and its
//! ActionWait poll, its userinfo read, and the claims of the tokens it
//! ends up holding. Every vector either passes or is listed in
//! `NOT_APPLICABLE` with the reason; a vector or group this test does not
//! know fails it.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use a365_agent::provider::{self, Exchange, oauth};
use a365_agent::realm::{self, RealmConfig};
use a365_proto::{Kind, ProfileSpec};
use a365_store::Credential;
use a365_token_server::{Fault, MockWorkspace, RecordedRequest, ServerConfig, TokenServer};
use secrecy::SecretString;
use serde_json::Value;

/// Vectors that do not apply to a365, and why (none, in version 0.1.0).
const NOT_APPLICABLE: &[(&str, &str)] = &[];

/// The mock clouds, and the public names of Altium's hosts mapped to them.
struct Mock {
    commercial: TokenServer,
    gov: TokenServer,
    http: reqwest::Client,
}

impl Mock {
    fn start() -> Mock {
        let workspace = |id: &str, gov: bool| MockWorkspace {
            id: id.into(),
            name: id.into(),
            gov,
        };
        let config = |gov: bool| ServerConfig {
            clients: vec![("test-client-id".into(), "s3cret".into())],
            public_clients: vec!["test-client-id".into(), "gov-client".into()],
            gov,
            workspaces: vec![workspace("ws-123", false), workspace("gov-ws", true)],
            ..ServerConfig::default()
        };
        let mock = Mock {
            commercial: TokenServer::start(config(false)).unwrap(),
            gov: TokenServer::start(config(true)).unwrap(),
            http: reqwest::Client::new(),
        };
        let c = mock.commercial.base_url();
        let realm = |base: &str, gov: bool| RealmConfig {
            base_url: base.into(),
            gov,
            actionwait_url: Some(format!("{c}/await")),
            auth_complete_url: Some(format!("{c}/api/AuthComplete")),
            api_url: None,
            gov_realm: None,
        };
        let mut realms = BTreeMap::new();
        realms.insert("altium365".into(), realm(&c, false));
        realms.insert("altium365-gov".into(), realm(&mock.gov.base_url(), true));
        realm::configure(&realms).unwrap();
        mock
    }

    /// A URL of the vectors, on the mock.
    fn local(&self, url: &str) -> String {
        url.replace("https://auth.365-gov.altium.com", &self.gov.base_url())
            .replace("https://auth.altium.com", &self.commercial.base_url())
            .replace("https://actionwait.altium.com", &self.commercial.base_url())
    }

    /// A URL of the mock, by the public name of its host.
    fn public(&self, url: &str) -> String {
        url.replace(&self.gov.base_url(), "https://auth.365-gov.altium.com")
            .replace(&self.commercial.base_url(), "https://auth.altium.com")
    }

    /// The last request either cloud recorded, and its URL by public name.
    fn last_request(&self) -> (String, RecordedRequest) {
        let last = |server: &TokenServer| server.recorded().into_iter().last();
        match (last(&self.commercial), last(&self.gov)) {
            (Some(r), None) => (format!("https://auth.altium.com{}", r.path), r),
            (None, Some(r)) => (format!("https://auth.365-gov.altium.com{}", r.path), r),
            other => panic!("expected one request, on one cloud: {other:?}"),
        }
    }

    fn reset(&self) {
        for server in [&self.commercial, &self.gov] {
            server.clear_fault();
            server.clear_recorded();
        }
    }
}

/// The profile a vector's `config` describes: the realm's endpoints, or
/// the ones it names.
fn spec(mock: &Mock, config: &Value) -> ProfileSpec {
    let token_endpoint = config["tokenEndpoint"].as_str().map(|u| mock.local(u));
    ProfileSpec {
        kind: Kind::AuthorizationCode,
        realm: token_endpoint.is_none().then(|| "altium365".into()),
        token_url: token_endpoint,
        client_id: config["clientId"].as_str().map(str::to_owned),
        scopes: config["scopes"]
            .as_str()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        ..ProfileSpec::default()
    }
}

fn pkce(state: &str, verifier: &str) -> provider::Pkce {
    provider::Pkce {
        verifier: SecretString::from(verifier.to_owned()),
        challenge: "c".repeat(43),
        state: state.into(),
        nonce: "n".into(),
    }
}

/// `expect` of an `authorizeUrl` vector against the URL a365 builds.
fn authorize_url(mock: &Mock, vector: &Value) -> Result<(), String> {
    let options = &vector["options"];
    let mut spec = spec(mock, &vector["config"]);
    if let Some(select) = options["selectWorkspace"].as_str() {
        spec.authorize_params
            .insert("selectWorkspace".into(), select.into());
    }
    let endpoint = provider::endpoint(&spec)
        .map_err(|e| e.to_string())?
        .unwrap();
    let mut login = endpoint.login.clone().unwrap();
    if let Some(redirect) = options["redirectUri"].as_str() {
        login.redirect_uri = redirect.parse().unwrap();
    }
    let pkce = pkce(
        options["state"].as_str().unwrap_or("s"),
        options["codeVerifier"].as_str().unwrap_or("v"),
    );
    let browser = provider::of(Kind::AuthorizationCode).browser().unwrap();
    let url = browser.authorize_url(&spec, &login, &pkce);
    let expect = &vector["expect"];
    let origin = mock.public(&url.origin().ascii_serialization());
    check_eq("origin", expect["origin"].as_str(), Some(origin.as_str()))?;
    check_eq("pathname", expect["pathname"].as_str(), Some(url.path()))?;
    let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    check_params("query", &query, &expect["query"], &expect["queryAbsent"])
}

/// A `tokenRequest` vector: the operation against the scripted answer,
/// then the request recorded and the outcome.
async fn token_request(mock: &Mock, vector: &Value) -> Result<(), String> {
    let config = &vector["config"];
    let input = &vector["input"];
    let spec = spec(mock, config);
    let endpoint = provider::endpoint(&spec)
        .map_err(|e| e.to_string())?
        .unwrap();
    script(mock, &endpoint.token_url, &vector["mockResponse"]);
    let now_ms = now_ms();
    let exchange = Exchange {
        now_ms,
        ..exchange(mock, &endpoint, &spec)
    };
    let secret = config["clientSecret"]
        .as_str()
        .map(|s| SecretString::from(s.to_owned()));
    let mut credential = Credential {
        client_secret: secret.clone(),
        ..Credential::default()
    };
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let outcome: Result<(String, i64), String> = match vector["operation"].as_str() {
        Some("exchangeCode") => {
            let browser = provider::of(Kind::AuthorizationCode).browser().unwrap();
            let redirect: reqwest::Url = match input["redirectUri"].as_str() {
                Some(url) => url.parse().unwrap(),
                None => endpoint.login.clone().unwrap().redirect_uri,
            };
            let pkce = pkce("s", &text(&input["codeVerifier"]));
            let call = exchange.call(&credential);
            browser
                .redeem(
                    call,
                    &spec,
                    secret.as_ref(),
                    &text(&input["code"]),
                    &redirect,
                    &pkce,
                )
                .await
                .map(|a| fresh(a.fresh))
                .map_err(|e| e.to_string())
        }
        Some("refreshToken") => {
            credential.refresh_token = Some(SecretString::from(text(&input["refreshToken"])));
            provider::of(Kind::AuthorizationCode)
                .obtain(exchange, &credential)
                .await
                .map(|o| {
                    use secrecy::ExposeSecret;
                    let token = o.access_token.expose_secret().to_owned();
                    (token, o.expires_at_ms.unwrap_or_default())
                })
                .map_err(|e| e.to_string())
        }
        Some("signIntoWorkspace") => {
            let client = oauth::Client {
                id: exchange.client_id(),
                secret: secret.as_ref(),
            };
            let subject = SecretString::from(text(&input["baseAccessToken"]));
            provider::workspace::exchange(
                exchange.call(&credential),
                client,
                &subject,
                &text(&input["workspaceAuthId"]),
                &spec.scopes,
            )
            .await
            .map(|a| fresh(a.fresh))
            .map_err(|e| e.to_string())
        }
        other => return Err(format!("unknown operation {other:?}")),
    };
    check_request(mock, &vector["expectRequest"], config)?;
    check_outcome(vector, outcome, now_ms)
}

fn fresh(fresh: provider::Fresh) -> (String, i64) {
    use secrecy::ExposeSecret;
    (
        fresh.access_token.expose_secret().to_owned(),
        fresh.expires_at_ms,
    )
}

/// What one exchange of the vectors may use: the mock, now.
fn exchange<'a>(
    mock: &'a Mock,
    endpoint: &'a a365_agent::endpoint::Endpoint,
    spec: &'a ProfileSpec,
) -> Exchange<'a> {
    Exchange {
        profile: "conformance",
        http: &mock.http,
        endpoint,
        spec,
        now_ms: now_ms(),
        default_lifetime: Duration::from_secs(3600),
        answer_wait: Duration::from_secs(10),
    }
}

/// The next request to the cloud of `url` gets the vector's answer.
fn script(mock: &Mock, url: &reqwest::Url, response: &Value) {
    mock.reset();
    let server = match url.origin().ascii_serialization() == mock.gov.base_url() {
        true => &mock.gov,
        false => &mock.commercial,
    };
    let body = match &response["json"] {
        Value::Null => response["text"].as_str().unwrap_or_default().to_owned(),
        json => json.to_string(),
    };
    let status = response["status"].as_u64().unwrap_or(200) as u16;
    server.set_fault(Fault::Answer(status, body), Some(1));
}

/// `expectRequest` against the request the mock recorded.
fn check_request(mock: &Mock, expect: &Value, config: &Value) -> Result<(), String> {
    if expect.is_null() {
        return Ok(());
    }
    let (url, request) = mock.last_request();
    check_eq("endpoint", expect["endpoint"].as_str(), Some(url.as_str()))?;
    // The mock serves POST only at these paths: a recorded request is one.
    check_eq("method", expect["method"].as_str(), Some("POST"))?;
    match expect["authorization"].as_str() {
        None => {}
        Some("none") if request.basic_pair.is_some() => {
            return Err(format!("an Authorization header was sent: {request:?}"));
        }
        Some("none") => {}
        Some("basic(clientId:clientSecret)") => {
            let want = (
                config["clientId"].as_str().unwrap_or_default().to_owned(),
                config["clientSecret"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
            check_eq("Basic", Some(&want), request.basic_pair.as_ref())?;
        }
        Some(other) => return Err(format!("unknown authorization matcher {other}")),
    }
    check_params(
        "body",
        &request.form,
        &expect["bodyParams"],
        &expect["bodyParamsAbsent"],
    )
}

/// `expectResult` or `expectErrorContains` against what a365 made of it.
fn check_outcome(
    vector: &Value,
    outcome: Result<(String, i64), String>,
    now_ms: i64,
) -> Result<(), String> {
    if let Some(wanted) = vector["expectErrorContains"].as_str() {
        return match outcome {
            Err(e) if e.contains(wanted) => Ok(()),
            other => Err(format!("expected an error with {wanted:?}, got {other:?}")),
        };
    }
    let (token, expires_at_ms) = outcome?;
    let result = &vector["expectResult"];
    check_eq(
        "access_token",
        result["access_token"].as_str(),
        Some(&token),
    )?;
    match result["expires_at"].as_str() {
        None | Some("<any>") => Ok(()),
        Some(matcher) => {
            let (offset, tolerance) = epoch_within(matcher)?;
            let at = expires_at_ms.div_euclid(1000) - now_ms.div_euclid(1000);
            match (at - offset).abs() <= tolerance {
                true => Ok(()),
                false => Err(format!("expires_at is now + {at} s, not {matcher}")),
            }
        }
    }
}

/// `epochWithin:<offset>:<tolerance>`.
fn epoch_within(matcher: &str) -> Result<(i64, i64), String> {
    let mut parts = matcher
        .strip_prefix("epochWithin:")
        .unwrap_or("")
        .split(':');
    let number = |p: Option<&str>| p.and_then(|n| n.parse::<i64>().ok());
    match (number(parts.next()), number(parts.next())) {
        (Some(offset), Some(tolerance)) => Ok((offset, tolerance)),
        _ => Err(format!("unknown matcher {matcher}")),
    }
}

/// The `revocation` vectors: the revocation request a365 sends, and a
/// refresh of the revoked token refused with `invalid_grant`.
async fn revocation(mock: &Mock, vector: &Value) -> Result<(), String> {
    let spec = spec(mock, &vector["config"]);
    let endpoint = provider::endpoint(&spec)
        .map_err(|e| e.to_string())?
        .unwrap();
    script(mock, &endpoint.token_url, &vector["mockResponse"]);
    let exchange = exchange(mock, &endpoint, &spec);
    let rt = vector["input"]["refreshToken"].as_str().unwrap_or("RT");
    let credential = Credential {
        refresh_token: Some(SecretString::from(rt.to_owned())),
        ..Credential::default()
    };
    if vector["expectRequest"].is_null() {
        // Revoked: the next refresh with it is refused.
        let refused = provider::of(Kind::AuthorizationCode)
            .obtain(exchange, &credential)
            .await
            .map(|_| (String::new(), 0))
            .map_err(|e| e.to_string());
        return check_outcome(vector, refused, 0);
    }
    match provider::refresh::revoke_refresh_token(exchange, &credential).await {
        provider::Revocation::Done(_) => {}
        other => return Err(format!("not revoked: {other:?}")),
    }
    check_request(mock, &vector["expectRequest"], &vector["config"])
}

/// The `userinfo` vector: a365 reads every claim the schema names from
/// the userinfo endpoint, with a token of the sign-in, and names the user.
async fn userinfo(mock: &Mock, vector: &Value) -> Result<(), String> {
    let spec = spec(mock, &serde_json::json!({ "clientId": "test-client-id" }));
    let endpoint = provider::endpoint(&spec)
        .map_err(|e| e.to_string())?
        .unwrap();
    mock.reset();
    let exchange = exchange(mock, &endpoint, &spec);
    let credential = Credential {
        client_secret: Some(SecretString::from("s3cret")),
        ..Credential::default()
    };
    let token = provider::of(Kind::ClientCredentials)
        .obtain(exchange, &credential)
        .await
        .map_err(|e| e.to_string())?
        .access_token;
    let url: reqwest::Url = format!("{}/connect/userinfo", mock.commercial.base_url())
        .parse()
        .unwrap();
    let claims = provider::userinfo::claims(&mock.http, &url, &token)
        .await
        .map_err(|e| e.to_string())?;
    for name in vector["expectClaims"].as_array().into_iter().flatten() {
        let name = name.as_str().unwrap_or_default();
        if !claims.contains_key(name) {
            return Err(format!("claim {name} was not read: {claims:?}"));
        }
    }
    match provider::userinfo::display(&claims) {
        Some(_) => Ok(()),
        None => Err("no name of the user among the claims".into()),
    }
}

/// A `liveClaims` vector: its scenario played through a365 against the
/// mock (a sign-in on the commercial cloud, then a workspace's token by
/// exchange at the endpoint a365 chooses for it), and the claims of the
/// token a365 ends up holding.
async fn live_claims(mock: &Mock, vector: &Value) -> Result<(), String> {
    mock.reset();
    let public = serde_json::json!({ "clientId": "test-client-id", "scopes": "openid profile" });
    let global = sign_in(mock, &public).await?;
    let token = match vector["id"].as_str() {
        Some("claims-global-commercial") => global,
        Some(id) => {
            let gov = id.ends_with("-gov");
            let mut config = public.clone();
            if gov {
                config["tokenEndpoint"] = "https://auth.365-gov.altium.com/connect/token".into();
            }
            let spec = spec(mock, &config);
            let endpoint = provider::endpoint(&spec)
                .map_err(|e| e.to_string())?
                .unwrap();
            let exchange = exchange(mock, &endpoint, &spec);
            let client = oauth::Client {
                id: "test-client-id",
                secret: None,
            };
            let workspace = if gov { "gov-ws" } else { "ws-123" };
            let subject = SecretString::from(global);
            let credential = Credential::default();
            let answer = provider::workspace::exchange(
                exchange.call(&credential),
                client,
                &subject,
                workspace,
                &spec.scopes,
            )
            .await
            .map_err(|e| e.to_string())?;
            fresh(answer.fresh).0
        }
        None => return Err("no id".into()),
    };
    let payload = token.split('.').nth(1).unwrap_or_default();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let expect = &vector["accessTokenClaims"];
    let iss = claims["iss"].as_str().map(|i| mock.public(i));
    check_eq("iss", expect["iss"].as_str(), iss.as_deref())?;
    let scopes: Vec<&str> = claims["scope"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for part in expect["scopeContains"].as_array().into_iter().flatten() {
        let part = part.as_str().unwrap_or_default();
        if !scopes.iter().any(|s| s.contains(part)) {
            return Err(format!("no scope has {part:?}: {scopes:?}"));
        }
    }
    for claim in ["secure", "workspaceId"] {
        match (expect[claim].as_str(), &claims[claim]) {
            (Some("<absent>"), Value::Null) | (Some("<present>"), Value::String(_)) | (None, _) => {
            }
            (Some(want), got) if got.as_str() == Some(want) => {}
            (want, got) => return Err(format!("{claim}: {got}, not {want:?}")),
        }
    }
    Ok(())
}

/// A sign-in on the commercial cloud as a365 makes it: its authorize URL
/// (answered by the mock at once), then its code exchange.
async fn sign_in(mock: &Mock, config: &Value) -> Result<String, String> {
    let spec = spec(mock, config);
    let endpoint = provider::endpoint(&spec)
        .map_err(|e| e.to_string())?
        .unwrap();
    let login = endpoint.login.clone().unwrap();
    let pkce = provider::Pkce::generate().map_err(|e| e.to_string())?;
    let browser = provider::of(Kind::AuthorizationCode).browser().unwrap();
    let url = browser.authorize_url(&spec, &login, &pkce);
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = no_redirects
        .get(url)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let location = answer
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| reqwest::Url::parse(l).ok())
        .ok_or("the authorize endpoint did not redirect")?;
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| format!("no code: {location}"))?;
    let exchange = exchange(mock, &endpoint, &spec);
    let call = exchange.call(&Credential::default());
    browser
        .redeem(call, &spec, None, &code, &login.redirect_uri, &pkce)
        .await
        .map(|a| fresh(a.fresh).0)
        .map_err(|e| e.to_string())
}

/// An `actionWait` vector: its answers to the polls, then the outcome.
async fn action_wait(mock: &Mock, vector: &Value) -> Result<(), String> {
    let token = "5b1c2f4e-7a3d-4e9b-8c21-0f6d5e4a3b2c";
    let answers = vector["pollResponses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let body = match &r["json"] {
                Value::Null => r["text"].as_str().unwrap_or_default().to_owned(),
                json => json.to_string().replace("<stateEchoesToken>", token),
            };
            (r["status"].as_u64().unwrap_or(200) as u16, body)
        })
        .collect();
    mock.commercial.script_actionwait(answers);
    let url: reqwest::Url = mock
        .local("https://actionwait.altium.com/await")
        .parse()
        .unwrap();
    let got =
        a365_agent::actionwait::wait_for_code(&mock.http, &url, token, Duration::from_secs(20))
            .await
            .map_err(|e| e.to_string());
    let expect = &vector["expect"];
    match (expect["outcome"].as_str(), got) {
        (Some("code"), Ok(code)) => check_eq("code", expect["code"].as_str(), Some(&code)),
        (Some("errorContains"), Err(e)) => {
            let wanted = expect["errorContains"].as_str().unwrap_or_default();
            match e.contains(wanted) {
                true => Ok(()),
                false => Err(format!("error {e:?} lacks {wanted:?}")),
            }
        }
        (outcome, got) => Err(format!("expected {outcome:?}, got {got:?}")),
    }
}

/// Exact values, `<any>` and `contains:…` in `want`; none of `absent`.
fn check_params(
    what: &str,
    got: &BTreeMap<String, String>,
    want: &Value,
    absent: &Value,
) -> Result<(), String> {
    for (name, matcher) in want.as_object().into_iter().flatten() {
        let matcher = matcher.as_str().unwrap_or_default();
        let value = got
            .get(name)
            .ok_or(format!("{what}: {name} is missing: {got:?}"))?;
        let ok = match (matcher, matcher.strip_prefix("contains:")) {
            ("<any>", _) => true,
            (_, Some(part)) => value.contains(part),
            (exact, None) => value == exact,
        };
        if !ok {
            return Err(format!("{what}: {name} is {value:?}, not {matcher:?}"));
        }
    }
    for name in absent.as_array().into_iter().flatten() {
        let name = name.as_str().unwrap_or_default();
        if got.contains_key(name) {
            return Err(format!("{what}: {name} must be absent: {got:?}"));
        }
    }
    Ok(())
}

fn check_eq<T: PartialEq + std::fmt::Debug + ?Sized>(
    what: &str,
    want: Option<&T>,
    got: Option<&T>,
) -> Result<(), String> {
    match want {
        Some(want) if Some(want) != got => Err(format!("{what}: {got:?}, not {want:?}")),
        _ => Ok(()),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn every_altium_conformance_vector() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/altium-auth/vectors.json");
    let vectors: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        vectors["version"], "0.1.0",
        "the copy's version, as its README says"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mock = Mock::start();
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    let mut skipped = Vec::new();
    let groups = [
        "authorizeUrl",
        "tokenRequest",
        "revocation",
        "userinfo",
        "actionWait",
        "liveClaims",
    ];
    for (group, list) in vectors.as_object().unwrap() {
        let Some(list) = list.as_array() else {
            continue;
        };
        assert!(
            groups.contains(&group.as_str()),
            "a group this test does not know: {group}"
        );
        for vector in list {
            let id = vector["id"].as_str().unwrap().to_owned();
            if let Some((_, why)) = NOT_APPLICABLE.iter().find(|(v, _)| *v == id) {
                skipped.push(format!("{id}: {why}"));
                continue;
            }
            let outcome = match group.as_str() {
                "authorizeUrl" => authorize_url(&mock, vector),
                "tokenRequest" => runtime.block_on(token_request(&mock, vector)),
                "revocation" => runtime.block_on(revocation(&mock, vector)),
                "actionWait" => runtime.block_on(action_wait(&mock, vector)),
                "userinfo" => runtime.block_on(userinfo(&mock, vector)),
                "liveClaims" => runtime.block_on(live_claims(&mock, vector)),
                other => Err(format!("no runner for {other}")),
            };
            match outcome {
                Ok(()) => passed.push(id),
                Err(e) => failed.push(format!("{id}: {e}")),
            }
        }
    }
    eprintln!("passed {}: {}", passed.len(), passed.join(", "));
    eprintln!(
        "not applicable {}:\n  {}",
        skipped.len(),
        skipped.join("\n  ")
    );
    assert!(failed.is_empty(), "failed:\n  {}", failed.join("\n  "));
    assert_eq!(
        passed.len() + skipped.len(),
        25,
        "every vector of version 0.1.0"
    );
    assert_eq!(skipped.len(), NOT_APPLICABLE.len());
}
