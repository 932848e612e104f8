//! Refreshing: before expiry, with rotation, across restarts, single flight.

use std::time::{Duration, Instant};

use a365_token_server::{Fault, ServerConfig, TokenServer};

use crate::harness::{Env, jwt_payload, wait_until};

fn server_with_lifetime(secs: u64) -> TokenServer {
    TokenServer::start(ServerConfig {
        lifetime: Duration::from_secs(secs),
        ..ServerConfig::default()
    })
    .unwrap()
}

#[test]
fn the_token_is_refreshed_before_it_expires_with_no_client_asking() {
    // Six seconds: the refresh is due 1.5 s before expiry, a margin that a
    // loaded CI machine cannot eat.
    let server = server_with_lifetime(6);
    let env = Env::new();
    let _agent = env.start_agent();
    let issued = Instant::now();
    env.add_refresh("work", &server);
    let first = env.token("work");
    let first_exp = jwt_payload(&first)["exp"].as_i64().unwrap();

    // No client asks; the agent refreshes on its own. (A request is
    // counted when it arrives, its token issued a moment later.)
    let renewed = || server.last_access_token().filter(|t| *t != first);
    assert!(
        wait_until(Duration::from_secs(8), || renewed().is_some()),
        "no proactive refresh"
    );
    let elapsed = issued.elapsed();
    let second = renewed().unwrap();
    assert!(
        elapsed < Duration::from_secs(6),
        "refreshed after the old token expired ({elapsed:?})"
    );
    // The server's clock agrees: the new token was issued before the old one's exp.
    assert!(jwt_payload(&second)["iat"].as_i64().unwrap() <= first_exp);
    // The server counts a request when it arrives; the agent serves the new
    // token once it has the response and has stored it.
    assert!(
        wait_until(Duration::from_secs(1), || env.token("work") == second),
        "the agent serves the new token"
    );
}

#[test]
fn a_rotated_refresh_token_is_stored_and_survives_restarts() {
    let server = server_with_lifetime(3600);
    let env = Env::new();
    let agent = env.start_agent();
    let original = env.add_refresh("work", &server);
    assert_eq!(server.requests(), 1);

    // The exchange rotated the refresh token: the store holds the new one,
    // and the server no longer takes the old one.
    let stored = env
        .stored_refresh_token("work")
        .expect("a stored refresh token");
    assert_ne!(stored, original);
    assert!(!server.is_refresh_token_valid(&original));
    assert!(server.is_refresh_token_valid(&stored));
    let token = env.token("work");

    // A clean stop, then a crash: each restart serves the cached token
    // without a token request.
    let (status, _) = agent.terminate();
    assert!(status.success());
    let agent = env.start_agent();
    assert_eq!(env.token("work"), token);
    assert_eq!(
        server.requests(),
        1,
        "a restart within the lifetime costs no token request"
    );
    agent.kill();
    let _agent = env.start_agent();
    assert_eq!(env.token("work"), token);
    assert_eq!(server.requests(), 1);

    // Once a refresh is needed, it uses the newest refresh token.
    env.a365(&["refresh", "work"]).ok();
    assert_eq!(server.requests(), 2);
    let presented = server.recorded().last().unwrap().refresh_token.clone();
    assert_eq!(presented.as_deref(), Some(stored.as_str()));
    let newest = env.stored_refresh_token("work").unwrap();
    assert_ne!(newest, stored);
    assert!(server.is_refresh_token_valid(&newest));
    assert_ne!(env.token("work"), token);
}

#[test]
fn two_hundred_clients_during_a_refresh_cost_one_token_request() {
    let server = server_with_lifetime(2);
    let env = Env::new();
    let agent = env.start_agent();
    env.add_refresh("work", &server);
    let cached = env.token("work");
    agent.terminate();
    // While the agent is down, its cached token expires; the next exchange
    // is slow, so every client arrives while it is in flight.
    crate::harness::wait_past_exp(&cached);
    server.set_lifetime(Duration::from_secs(3600));
    server.set_fault(Fault::Delay(Duration::from_millis(1500)), Some(1));
    let before = server.requests();
    let _agent = env.start_agent();

    let clients: Vec<_> = (0..200)
        .map(|_| {
            env.command(crate::harness::bin("a365"))
                .args(["token", "work"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut tokens = std::collections::HashSet::new();
    for child in clients {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokens.insert(String::from_utf8(out.stdout).unwrap());
    }
    assert_eq!(server.requests() - before, 1, "exactly one token request");
    assert_eq!(tokens.len(), 1, "every client got the same token");
}
