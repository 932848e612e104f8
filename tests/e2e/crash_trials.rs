//! Crash trials: `kill -9` the agent at a random moment of a refresh
//! against a server that rotates refresh tokens (before the request, during
//! it, after the answer, during the store write), restart it, and check
//! that a token can still be obtained without re-authentication, and that
//! no refresh token is ever sent twice. A refresh cut short leaves its
//! refresh token of unknown fate: the agent asks the provider (RFC 7662)
//! whether it is still active before sending it again.
//!
//! `A365_CRASH_TRIALS` sets the number of trials (default 200); the counts
//! are printed (`cargo test --test e2e crash -- --nocapture`).

use std::time::Duration;

use a365_token_server::{ServerConfig, TokenServer};

use crate::harness::{Env, bin};

#[derive(Debug, Default)]
struct Counts {
    /// A token was obtainable after the restart.
    survived: usize,
    /// Dead after the restart, and the server never sent its answer: the
    /// one-time-use window no client can close.
    lost_before_answer: usize,
    /// Dead after the restart; the server had sent its answer but the
    /// agent had not read it: the same window, seen from the other side.
    lost_in_flight: usize,
    /// Dead after the restart though the agent had read the answer: killed
    /// between reading and saving it (microseconds, but not zero).
    lost_after_receipt: usize,
}

/// What a kill may cost, and when: nothing while the server has not
/// answered; after it rotated the refresh token, only a kill inside the
/// window between its answer and the agent's rename (which no client can
/// close entirely), in a small share of trials.
#[test]
fn kill_9_before_the_server_answers_never_costs_the_credential() {
    let trials: usize = std::env::var("A365_CRASH_TRIALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let server = TokenServer::start(ServerConfig {
        lifetime: Duration::from_secs(3600),
        ..ServerConfig::default()
    })
    .unwrap();
    let mut env = Env::new();
    // The agent logs "token response received" at debug: it tells the
    // trials where a kill landed.
    env.rust_log = "info,a365_agent::provider=debug".into();
    // The provider is asked about a refresh token of unknown fate a second
    // after it was sent (5 minutes by default).
    let agent_args = ["--answer-wait", "1", "--http-timeout", "1"];
    let mut agent = env.spawn_agent(&agent_args);
    agent.wait_ready(&env.socket);
    let introspection = ["--introspection-url", &server.introspection_url()];
    env.try_add_refresh("work", &server, &introspection).1.ok();
    let mut counts = Counts::default();
    for _ in 0..trials {
        let first_request = server.requests();
        let seen = agent.log().matches("token response received").count();
        // A forced refresh, and a kill somewhere in or around it.
        let client = env
            .command(bin("a365"))
            .args(["refresh", "work"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(fastrand::u64(0..25_000)));
        let log = agent.kill();
        let received = log.matches("token response received").count() > seen;
        let _ = client.wait_with_output();

        agent = env.spawn_agent(&agent_args);
        agent.wait_ready(&env.socket);
        // A refresh cut short is settled by asking the provider.
        assert!(
            crate::harness::wait_until(Duration::from_secs(10), || {
                let status = env.a365(&["status", "--json"]).ok().json();
                status[0]["state"] != "failing"
            }),
            "{}\n{}",
            agent.log(),
            env.a365(&["status", "--json"]).ok().stdout
        );
        let out = env.a365(&["refresh", "work"]);
        if out.code == 0 {
            counts.survived += 1;
            continue;
        }
        assert_eq!(
            out.code, 5,
            "only re-authentication may be asked: {}",
            out.stderr
        );
        // Which side of the answer did the kill land on?
        let answered = server.recorded()[first_request..]
            .iter()
            .any(|r| r.grant_type == "refresh_token" && r.status == 200);
        match (answered, received) {
            (_, true) => counts.lost_after_receipt += 1,
            (true, false) => counts.lost_in_flight += 1,
            (false, false) => counts.lost_before_answer += 1,
        }
        // Start the next trial from a working credential.
        let replace = [&introspection[..], &["--replace"]].concat();
        env.try_add_refresh("work", &server, &replace).1.ok();
    }
    println!("crash trials: {trials}: {counts:?}");
    assert_eq!(server.replays(), 0, "a refresh token was sent twice");
    // Some kills must have landed in each place, or the trials prove
    // little: before the request went out and after the answer was saved.
    assert!(counts.survived > 0, "{counts:?}");
    // A kill before the server rotated can never cost the credential.
    assert_eq!(counts.lost_before_answer, 0, "{counts:?}");
    // After it rotated, only a kill inside the few milliseconds between
    // its answer and the agent's rename can: a small share of trials
    // whose kill moments are spread over the whole refresh.
    assert!(
        counts.survived * 100 >= trials * 80,
        "most trials must survive: {counts:?}"
    );
}
