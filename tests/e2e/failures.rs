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
    // Every token request opens its own connection: none goes out on a
    // kept-alive one the server closed (which would leave its fate unknown).
    let out = env.a365(&["refresh", "work"]).code(6);
    assert!(out.stderr.contains("cannot connect"), "{out:?}");
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
    let url = server.token_url();
    let (rt, out) = env.try_add_refresh_with("work", &server, (secret, &url), &[]);
    out.ok();
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

/// A rotating server that answers a refresh after the HTTP timeout: the
/// answer is waited for (the refresh token may be spent once sent), taken,
/// and nothing is sent twice.
#[test]
fn a_slow_answer_to_a_rotating_refresh_is_waited_for_and_never_replayed() {
    let Session {
        server,
        env,
        agent: _agent,
    } = Session::start_with(ServerConfig::default(), &["--http-timeout", "1"]);
    let token = env.token("work");
    server.set_fault(Fault::Delay(Duration::from_secs(3)), Some(1));
    env.a365(&["refresh", "work"]).ok();
    assert_ne!(env.token("work"), token);
    assert_eq!(server.last_access_token().unwrap(), env.token("work"));
    assert_eq!(server.replays(), 0);
    let status = env.a365(&["status", "--json"]).ok().json();
    assert_eq!(status[0]["state"], "fresh", "{status}");
}

/// The agent killed while a refresh is in flight: after the restart the
/// refresh token it carried is not sent again (the server may have
/// rotated it); the profile says what happened and its access token is
/// served until it expires.
#[test]
fn a_refresh_cut_short_by_a_crash_is_not_sent_again() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let agent = env.start_agent();
    env.add_refresh("work", &server);
    let token = env.token("work");
    server.set_fault(Fault::Delay(Duration::from_secs(3)), Some(1));
    let before = server.requests();
    let mut refresh = env.refresh_in_background("work");
    assert!(crate::harness::wait_until(Duration::from_secs(5), || {
        server.requests() > before
    }));
    agent.kill();
    let _ = refresh.wait();
    let _agent = env.start_agent();
    let status = env.a365(&["status", "--json"]).ok().json();
    assert_eq!(status[0]["state"], "needs-reauth", "{status}");
    let said = status[0]["last_error"].as_str().unwrap_or_default();
    assert!(said.contains("the agent stopped before it came"), "{said}");
    assert_eq!(env.token("work"), token, "the held token is still served");
    let out = env.a365(&["refresh", "work"]).code(5);
    assert!(out.stderr.contains("does not send it again"), "{out:?}");
    assert_eq!(
        server.requests(),
        before + 1,
        "the refresh token was sent again"
    );
    assert_eq!(server.replays(), 0);
    // That the provider rotates was learned at `add`, and kept.
    assert_eq!(status[0]["rotates"], true, "{status}");
}

/// Where the provider was seen not to rotate, sending the same refresh
/// token again is harmless: a lost answer is retried.
#[test]
fn a_lost_answer_from_a_provider_that_does_not_rotate_is_retried() {
    let Session {
        server,
        env,
        agent: _agent,
    } = Session::start_with(
        ServerConfig {
            rotate: false,
            ..ServerConfig::default()
        },
        &[],
    );
    // The first refresh shows that the provider does not rotate.
    env.a365(&["refresh", "work"]).ok();
    server.set_fault(Fault::Drop, Some(1));
    let out = env.a365(&["refresh", "work"]).code(6);
    assert!(out.stderr.contains("closed the connection"), "{out:?}");
    env.a365(&["refresh", "work"]).ok();
}

/// With an introspection endpoint, a lost answer is settled by asking the
/// provider (RFC 7662) once it must be done with the request: a refresh
/// token still active is sent again, one that was spent is reported as
/// such. Nothing is sent twice.
#[test]
fn a_lost_answer_is_settled_by_asking_the_provider() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let agent = env.spawn_agent(&["--http-timeout", "1", "--answer-wait", "1"]);
    agent.wait_ready(&env.socket);
    let url = server.introspection_url();
    env.try_add_refresh("work", &server, &["--introspection-url", &url])
        .1
        .ok();
    let settled = |state: &str| {
        crate::harness::wait_until(Duration::from_secs(10), || {
            env.a365(&["status", "--json"]).ok().json()[0]["state"] == state
        })
    };
    // Read and dropped: the refresh token was not spent.
    let token = env.token("work");
    server.set_fault(Fault::Drop, Some(1));
    let out = env.a365(&["refresh", "work"]).code(6);
    assert!(out.stderr.contains("still active"), "{out:?}");
    assert_eq!(
        env.token("work"),
        token,
        "the held token is served meanwhile"
    );
    assert!(settled("fresh"));
    assert_ne!(env.token("work"), token);
    // No answer at all within the wait: asked at once, then sent again.
    server.set_fault(Fault::Hang, Some(1));
    let _ = env.a365(&["refresh", "work"]);
    assert!(settled("fresh"));
    // Rotated, then dropped: the provider says it was spent.
    server.set_fault(Fault::RotateThenDrop, Some(1));
    let _ = env.a365(&["refresh", "work"]);
    assert!(settled("needs-reauth"));
    let status = env.a365(&["status", "--json"]).ok().json();
    let said = status[0]["last_error"].as_str().unwrap_or_default();
    assert!(said.contains("no longer active"), "{said}");
    assert_eq!(server.replays(), 0);
    let asked = server
        .recorded()
        .iter()
        .filter(|r| r.grant_type == "introspection")
        .count();
    assert_eq!(asked, 3, "{:?}", server.recorded());
}

/// `add` refuses a credential whose first token request is refused, with
/// what the server said: a bare 400 names the client-auth method used and
/// the other one; a 404 asks whether this is the token endpoint.
#[test]
fn a_first_exchange_refused_fails_add_with_what_the_server_said() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let _agent = env.start_agent();
    server.set_fault(Fault::Bare(400), None);
    let (_, out) = env.try_add_refresh("bare", &server, &[]);
    assert_eq!(out.code, 5, "{out:?}");
    assert!(
        out.stderr.contains("HTTP 400, with an empty body"),
        "{out:?}"
    );
    assert!(out.stderr.contains("sent in the form body"), "{out:?}");
    assert!(out.stderr.contains("--client-auth basic"), "{out:?}");
    server.set_fault(Fault::Bare(404), None);
    let (_, out) = env.try_add_refresh("lost", &server, &[]);
    assert_eq!(out.code, 5, "{out:?}");
    assert!(
        out.stderr.contains("is this the token endpoint?"),
        "{out:?}"
    );
}
