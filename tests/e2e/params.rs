//! A profile's extra authorize and token parameters (`audience`,
//! `resource` of RFC 8707, `login_hint`, `prompt`): sent with every
//! request of their kind, kept in config.toml across restarts, and
//! refused where they would carry a secret or clash with what a365 sends.

use std::collections::BTreeMap;

use a365_token_server::{ServerConfig, TokenServer};

use crate::harness::Env;

#[test]
fn token_params_go_with_every_token_request_across_restarts() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let agent = env.start_agent();
    let extra = [
        "--token-param",
        "audience=https://api.example",
        "--token-param",
        "resource=https://api.example/v1",
    ];
    env.try_add_refresh("work", &server, &extra).1.ok();
    env.a365(&["refresh", "work"]).ok();
    drop(agent.terminate());
    let config = std::fs::read_to_string(env.config_file()).unwrap();
    assert!(
        config.contains(
            r#"token_params = { audience = "https://api.example", resource = "https://api.example/v1" }"#
        ),
        "{config}"
    );
    let _agent = env.start_agent();
    env.a365(&["refresh", "work"]).ok();
    let expected = BTreeMap::from([
        ("audience".to_owned(), "https://api.example".to_owned()),
        ("resource".to_owned(), "https://api.example/v1".to_owned()),
    ]);
    let recorded = server.recorded();
    assert_eq!(recorded.len(), 3, "{recorded:?}");
    assert!(
        recorded
            .iter()
            .all(|r| r.status == 200 && r.other == expected),
        "{recorded:?}"
    );
}

/// Each refusal comes before any secret is read or sent (exit 2 from the
/// client, 8 from the agent), and names what to do instead.
#[test]
fn parameters_that_are_secrets_or_a365s_own_are_refused() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let _agent = env.start_agent();
    let refused = [
        (
            &["--token-param", "client_secret=x"][..],
            8,
            "looks like a secret",
        ),
        (
            &["--token-param", "api_key=x"][..],
            8,
            "looks like a secret",
        ),
        (
            &["--token-param", "user_pwd=x"][..],
            8,
            "looks like a secret",
        ),
        (
            &["--token-param", "otp=123456"][..],
            8,
            "looks like a secret",
        ),
        (
            &["--token-param", "grant_type=password"][..],
            8,
            "a365 sends itself",
        ),
        (&["--token-param", "Scope=x"][..], 8, "a365 sends itself"),
        (&["--token-param", "a b=x"][..], 8, "not a plain name"),
        (
            &["--token-param", "audience=a\u{7}b"][..],
            8,
            "control characters",
        ),
        (
            &["--authorize-param", "login_hint=me"][..],
            8,
            "for authorization-code profiles",
        ),
        (&["--token-param", "audience"][..], 2, "expected NAME=VALUE"),
        (
            &["--token-param", "audience=a", "--token-param", "audience=b"][..],
            2,
            "given twice",
        ),
    ];
    for (extra, code, says) in refused {
        let (_, out) = env.try_add_refresh("work", &server, extra);
        let out = out.code(code);
        assert!(out.stderr.contains(says), "{extra:?}: {}", out.stderr);
    }
    assert!(server.recorded().is_empty(), "nothing was sent");
}
