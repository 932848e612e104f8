//! A token server that refuses, fails, limits or disappears.

use std::time::Duration;

use a365_token_server::{Fault, ServerConfig, TokenServer};

use crate::harness::{Env, Session, wait_until};

#[test]
fn invalid_grant_means_reauthenticate_and_stop_asking() {
    let Session {
        server,
        env,
        agent: _agent,
    } = Session::start(ServerConfig::default());
    server.set_fault(Fault::InvalidGrant, None);

    let out = env.a365(&["refresh", "work"]).code(5);
    assert!(out.stderr.contains("invalid_grant"), "{out:?}");
    assert!(
        out.stderr.contains("Admin → Developer"),
        "says what to do: {out:?}"
    );
    let requests = server.requests();

    // The still-valid token is served; one that must outlive it is not.
    env.a365(&["token", "work"]).ok();
    let out = env.a365(&["token", "work", "--min-valid", "2h"]).code(5);
    assert!(out.stderr.contains("Admin → Developer"), "{out:?}");
    env.a365(&["refresh", "work"]).code(5);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        server.requests(),
        requests,
        "no more requests for a dead credential"
    );
    let status = env.a365(&["status", "--json"]).ok().json();
    assert_eq!(status[0]["state"], "needs-reauth");
}

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
fn server_errors_back_off_and_the_cached_token_is_served_while_valid() {
    let Session {
        server,
        env,
        agent: _agent,
    } = Session::start(ServerConfig::default());
    let token = env.token("work");

    server.set_fault(Fault::Status(500), None);
    let before = server.requests();
    let out = env.a365(&["refresh", "work"]).code(6);
    assert!(out.stderr.contains("HTTP 500"), "{out:?}");
    // Retries back off (about 1 s, 2 s, 4 s…), not a tight loop.
    std::thread::sleep(Duration::from_millis(3500));
    let retries = server.requests() - before;
    assert!((2..=4).contains(&retries), "{retries} requests in 3.5 s");
    // The held token is still good for the default --min-valid.
    assert_eq!(env.a365(&["token", "work"]).ok().stdout.trim_end(), token);
    // A guarantee it cannot give fails at once, with the documented code.
    let out = env.a365(&["token", "work", "--min-valid", "2h"]).code(6);
    assert!(out.stderr.contains("HTTP 500"), "{out:?}");
    let status = env.a365(&["status", "--json"]).ok().json();
    assert_eq!(status[0]["state"], "failing");
    assert!(
        status[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("HTTP 500")
    );

    // Recovery.
    server.clear_fault();
    env.a365(&["refresh", "work"]).ok();
    assert_ne!(env.token("work"), token);
}

#[test]
fn retry_after_is_honoured() {
    let Session {
        server,
        env,
        agent: _agent,
    } = Session::start(ServerConfig::default());
    server.set_fault(
        Fault::RateLimited {
            retry_after_secs: 3,
        },
        None,
    );
    let before = server.requests();
    let out = env.a365(&["refresh", "work"]).code(6);
    assert!(out.stderr.contains("429"), "{out:?}");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(server.requests() - before, 1, "nothing before Retry-After");
    server.clear_fault();
    assert!(
        wait_until(Duration::from_secs(3), || server.requests() - before == 2),
        "retried after it"
    );
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
