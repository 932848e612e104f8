//! A token server that refuses, fails, limits or disappears, as the
//! binaries show it. What happens over time (back-off, Retry-After, a
//! dead credential left alone) is tested in-process, with a clock the test
//! moves: crates/a365-agent/tests/time_windows.rs.

use std::time::Duration;

use a365_token_server::{Fault, ServerConfig, TokenServer};

use crate::harness::{Env, Session};

#[test]
fn a_bad_refresh_token_is_reported_when_adding() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let _agent = env.start_agent();
    let secrets = r#"{"client_secret":"test-secret","refresh_token":"not-issued"}"#;
    let url = server.token_url();
    let args = [
        "add",
        "work",
        "--kind",
        "refresh",
        "--token-url",
        &url,
        "--client-id",
        "test-client",
        "--secrets-from",
        "-",
    ];
    let out = env.a365_with_stdin(&args, secrets.as_bytes()).code(5);
    assert!(out.stderr.contains("invalid_grant"), "{out:?}");
    let secrets = r#"{"client_secret":"wrong","refresh_token":"x"}"#;
    let out = env
        .a365_with_stdin(&[&args[..], &["--replace"]].concat(), secrets.as_bytes())
        .code(5);
    assert!(out.stderr.contains("client"), "{out:?}");
}

#[test]
fn a_token_server_that_is_down_is_temporarily_unavailable() {
    let Session {
        server,
        env,
        agent: _agent,
    } = Session::start(ServerConfig {
        lifetime: Duration::from_secs(3600),
        ..ServerConfig::default()
    });
    let token = env.token("work");
    server.shutdown();
    let out = env.a365(&["refresh", "work"]).code(6);
    // The agent may still hold a kept-alive connection whose close it has
    // not read yet: then the request goes out on it and the server's close
    // is the answer. Both say the server is down; neither is retried, as the
    // refresh may have been received.
    assert!(
        out.stderr.contains("cannot connect")
            || out
                .stderr
                .contains("closed the connection without answering"),
        "{out:?}"
    );
    assert_eq!(env.token("work"), token, "the cached token is still served");
}

/// A token server that puts a terminal escape and a header line in the
/// access token: `a365 token` never prints it (not as a token, not in an
/// error), and the error says what is wrong.
#[test]
fn an_access_token_with_escapes_or_a_header_line_is_never_printed() {
    let Session { server, env, agent } = Session::start(ServerConfig::default());
    server.set_fault(Fault::HostileToken, None);
    let refresh = env.a365(&["refresh", "work"]);
    let token = env.a365(&["token", "work", "--min-valid", "2h"]);
    let header = env.a365(&["token", "work", "--min-valid", "2h", "--format", "header"]);
    for out in [&refresh, &token, &header] {
        for text in [&out.stdout, &out.stderr] {
            assert!(
                !text.contains('\x1b') && !text.contains("X-Evil") && !text.contains('\r'),
                "{out:?}"
            );
        }
    }
    assert_ne!(token.code, 0, "{token:?}");
    assert!(
        refresh.stderr.contains("RFC 6750"),
        "the error says what is wrong: {refresh:?}"
    );
    let status = env.a365(&["status", "--json"]).ok();
    assert!(!status.stdout.contains("X-Evil"), "{status:?}");
    assert!(!agent.log().contains("X-Evil"));
}

/// A token server that quotes the request in `error_description`: the
/// client secret and refresh token, in every form they travelled in and in
/// pieces, appear nowhere (log at trace, status, `a365` errors); the `error`
/// code and the rest of the description are still shown.
#[test]
fn an_error_description_quoting_the_secrets_shows_none_of_them() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let secret = "Sx9+/ q&Z%-s3cr3t.value";
    let server = TokenServer::start(ServerConfig {
        clients: vec![("test-client".into(), secret.into())],
        ..ServerConfig::default()
    })
    .unwrap();
    let mut env = Env::new();
    env.rust_log = "trace".into();
    let agent = env.start_agent();
    let rt = server.issue_refresh_token("test-client");
    let secrets = serde_json::json!({"client_secret": secret, "refresh_token": rt}).to_string();
    let url = server.token_url();
    let args = [
        "add",
        "work",
        "--kind",
        "refresh",
        "--token-url",
        &url,
        "--client-id",
        "test-client",
        "--secrets-from",
        "-",
    ];
    env.a365_with_stdin(&args, secrets.as_bytes()).ok();
    server.set_fault(Fault::QuotingInvalidGrant, None);

    let refresh = env.a365(&["refresh", "work"]).code(5);
    let token = env.a365(&["token", "work", "--min-valid", "2h"]).code(5);
    let status = env.a365(&["status", "--json"]).ok();
    let forms = [
        secret.to_owned(),
        "Sx9%2B%2F+q%26Z%25-s3cr3t.value".to_owned(),
        b64(secret),
        b64(&format!("test-client:{secret}")),
        secret[6..].to_owned(),
        rt.clone(),
        rt[..8].to_owned(),
    ];
    let texts = [
        ("refresh", refresh.stderr.clone()),
        ("token", token.stderr.clone()),
        ("status", status.stdout.clone()),
        ("log", agent.log()),
    ];
    for (what, text) in &texts {
        for form in &forms {
            assert!(
                !text.contains(form.as_str()),
                "{what} shows {form:?}: {text}"
            );
        }
    }
    for out in [&refresh, &token] {
        assert!(out.stderr.contains("invalid_grant"), "{out:?}");
        assert!(
            out.stderr.contains("grant revoked by an administrator"),
            "the useful rest is shown: {out:?}"
        );
    }
}
