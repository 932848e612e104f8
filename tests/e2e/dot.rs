//! The provider-facing tests against django-oauth-toolkit (`tests/dot/`),
//! a second independent OAuth server, from another ecosystem than
//! node-oidc-provider: refresh tokens rotate and a replayed one revokes
//! its family (RFC 9700's reuse detection), PKCE is required, OpenID
//! logins carry a nonce, and the client secret holds `+ / : %` and a space
//! (sent form-encoded in the body or in HTTP Basic, as RFC 6749 says, which
//! this server decodes). Its quirks: opaque access tokens, and an
//! introspection endpoint that knows access tokens only (so no profile
//! here names one: it would call every refresh token inactive).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Env, Out, bin, free_port, skip};
use crate::oidc::{Provider, login, replay_revokes_the_grant};

/// The client secret of its confidential clients (`tests/dot/server.py`).
const SECRET: &str = "a+b/c:d% e";

fn dot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dot")
}

/// django-oauth-toolkit with `env` set; `None` (with the reason) when its
/// virtualenv is missing, except under `CI=true`, which makes it.
fn start(env: &[(&str, &str)]) -> Option<Provider> {
    let python = dot_dir().join(".venv/bin/python");
    if !python.exists() {
        skip(
            "django-oauth-toolkit is not installed (python3 -m venv tests/dot/.venv && \
             tests/dot/.venv/bin/pip install -r tests/dot/requirements.txt)",
        );
        return None;
    }
    let mut command = Command::new(python);
    command
        .arg(dot_dir().join("server.py"))
        .envs(env.iter().copied());
    let redirect = format!("http://127.0.0.1:{}/login", free_port());
    let provider = Provider::spawn(command, redirect, SECRET);
    let issuer = provider.issuer.clone();
    Some(provider.at(format!("{issuer}/token/"), format!("{issuer}/authorize/")))
}

/// The token requests the server saw: (grant type, `basic` or `post`,
/// HTTP status).
fn token_log(provider: &Provider) -> Vec<(String, String, u16)> {
    let url = format!("{}/test/log", provider.issuer.trim_end_matches("/o"));
    let out = Command::new("curl").args(["-s", &url]).output().unwrap();
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    log.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["grant_type"].as_str().unwrap().to_owned(),
                r["auth"].as_str().unwrap().to_owned(),
                r["status"].as_u64().unwrap() as u16,
            )
        })
        .collect()
}

/// A login through the server's pages, then refreshes: each rotates the
/// refresh token, saved before use; a restart serves the stored token
/// without a request; the id and secret went as the profile says.
fn login_and_rotate(provider: &Provider, client: &str, secret: Option<&str>, auth: &str) {
    let env = Env::new();
    let agent = env.start_agent();
    let mut extra = vec!["--scope", "openid"];
    if secret.is_some() {
        extra.extend(["--client-auth", auth]);
    }
    provider.add_login(&env, client, secret, &extra);
    let out = login(&env).ok();
    assert!(
        out.stderr.contains("renewed with its refresh token"),
        "{}",
        out.stderr
    );
    let first = env.stored_refresh_token("design").unwrap();
    env.a365(&["refresh", "design"]).ok();
    let second = env.stored_refresh_token("design").unwrap();
    assert_ne!(first, second, "rotated");
    env.a365(&["refresh", "design"]).ok();
    let held = env.token("design");
    let status = env.a365(&["status", "--json"]).ok().json();
    assert_eq!(status[0]["rotates"], true, "{status}");
    let expected_auth = secret.map(|_| auth);
    assert_eq!(status[0]["client_auth"].as_str(), expected_auth, "{status}");
    drop(agent.terminate());
    let _agent = env.start_agent();
    assert_eq!(env.token("design"), held, "served from the store");
    let log = token_log(provider);
    let grants: Vec<&str> = log.iter().map(|(g, _, _)| g.as_str()).collect();
    assert_eq!(
        grants,
        ["authorization_code", "refresh_token", "refresh_token"],
        "{log:?}"
    );
    assert!(log.iter().all(|(_, _, status)| *status == 200), "{log:?}");
    if secret.is_some() {
        assert!(log.iter().all(|(_, a, _)| a == auth), "{log:?}");
    }
}

#[test]
fn a_login_with_the_secret_in_the_form_body() {
    if let Some(provider) = start(&[]) {
        login_and_rotate(&provider, "login-client", Some(SECRET), "post");
    }
}

#[test]
fn a_login_with_the_secret_in_http_basic() {
    if let Some(provider) = start(&[]) {
        login_and_rotate(&provider, "login-client", Some(SECRET), "basic");
    }
}

/// A public client: PKCE and the OpenID nonce, no secret.
#[test]
fn a_login_of_a_public_pkce_client() {
    if let Some(provider) = start(&[]) {
        login_and_rotate(&provider, "public-client", None, "post");
    }
}

/// Client credentials over both methods; an opaque token whose
/// `expires_in` says its lifetime, reused across a restart.
#[test]
fn client_credentials_in_the_body_and_in_http_basic() {
    let Some(provider) = start(&[]) else {
        return;
    };
    for auth in ["post", "basic"] {
        let env = Env::new();
        let agent = env.start_agent();
        provider
            .add_client_credentials(&env, &["--client-auth", auth])
            .ok();
        let token = env.token("api");
        let status = env.a365(&["status", "--json"]).ok().json();
        assert_eq!(status[0]["client_auth"], auth, "{status}");
        assert_eq!(status[0]["assumed_lifetime_secs"], serde_json::Value::Null);
        let left = status[0]["expires_at"].as_i64().unwrap() - crate::harness::now_secs() as i64;
        assert!((3590..=3600).contains(&left), "{left}");
        drop(agent.terminate());
        let _agent = env.start_agent();
        assert_eq!(env.token("api"), token);
    }
    let log = token_log(&provider);
    let seen: Vec<(&str, &str)> = log
        .iter()
        .map(|(g, a, _)| (g.as_str(), a.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("client_credentials", "post"),
            ("client_credentials", "basic")
        ]
    );
}

/// Another holder replays a refresh token the agent already spent: the
/// server revokes the whole family, and the agent's next refresh meets
/// `invalid_grant`: "log in again" (exit 5), never retried.
#[test]
fn a_replayed_refresh_token_revokes_the_family_and_the_agent_asks_for_a_login() {
    if let Some(provider) = start(&[]) {
        replay_revokes_the_grant(&provider, "login-client", SECRET);
    }
}

/// `a365 remove` revokes the refresh token (RFC 7009) with the secret in
/// HTTP Basic; the server then refuses it.
#[test]
fn remove_revokes_the_refresh_token() {
    let Some(provider) = start(&[]) else {
        return;
    };
    let env = Env::new();
    let _agent = env.start_agent();
    let revocation = format!("{}/revoke_token/", provider.issuer);
    provider.add_login(
        &env,
        "login-client",
        Some(SECRET),
        &["--client-auth", "basic", "--revocation-url", &revocation],
    );
    login(&env).ok();
    let held = env.stored_refresh_token("design").unwrap();
    let out = env.a365(&["remove", "design"]).ok();
    assert!(
        out.stderr
            .contains("its refresh token was revoked at 127.0.0.1"),
        "{}",
        out.stderr
    );
    assert_eq!(provider.replay("login-client", SECRET, &held), 400);
}

/// The server takes 6 s to answer a refresh, three times the agent's HTTP
/// timeout: the agent waits for the answer (the refresh token may be
/// spent) instead of sending it again, and the server sees one request.
/// The rotated token works: no reuse was detected.
#[test]
fn a_slow_answer_to_a_rotating_refresh_is_waited_for_never_replayed() {
    let Some(provider) = start(&[("TOKEN_DELAY_MS", "6000")]) else {
        return;
    };
    let env = Env::new();
    let agent = env.spawn_agent(&["--http-timeout", "2"]);
    agent.wait_ready(&env.socket);
    provider.add_login(&env, "login-client", Some(SECRET), &[]);
    login(&env).ok();
    let first = env.stored_refresh_token("design").unwrap();
    let out = Out::from(
        env.command(bin("a365"))
            .args(["refresh", "design"])
            .output()
            .unwrap(),
    )
    .ok();
    assert!(!out.stderr.contains("error"), "{}", out.stderr);
    assert_ne!(env.stored_refresh_token("design").unwrap(), first);
    env.a365(&["refresh", "design"]).ok();
    let refreshes: Vec<u16> = token_log(&provider)
        .into_iter()
        .filter(|(g, _, _)| g == "refresh_token")
        .map(|(_, _, status)| status)
        .collect();
    assert_eq!(
        refreshes,
        [200, 200],
        "one request per refresh, each answered"
    );
}
