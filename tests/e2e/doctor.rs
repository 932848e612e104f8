//! `a365 doctor`: one line per check, exit 0 when nothing failed; it never
//! spends a refresh token (the token server sees no token request).

use std::path::Path;

use a365_token_server::{Fault, ServerConfig, TokenServer};

use crate::harness::{Env, skip};

fn lines(out: &crate::harness::Out) -> Vec<&str> {
    out.stdout.lines().collect()
}

#[test]
fn doctor_checks_each_profile_without_spending_a_refresh_token() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let _agent = env.start_agent();
    env.add_refresh("work", &server);
    let held = env.stored_refresh_token("work").unwrap();
    let requests = server.requests();

    let out = env.a365(&["doctor"]).ok();
    let found = lines(&out);
    for expected in [
        "ok    agent: a365-agent ",
        "ok    files: ",
        "ok    work: settings: refresh token endpoint http://127.0.0.1:",
        "ok    work: store: file",
        "ok    work: token: held, valid for ",
        "ok    work: rotation: the provider rotates refresh tokens",
        "ok    work: DNS: 127.0.0.1 is 127.0.0.1",
        "ok    work: 127.0.0.1: plain HTTP, allowed to a loopback host only",
        "ok    work: clock: within a minute of 127.0.0.1",
    ] {
        assert!(
            found.iter().any(|l| l.starts_with(expected)),
            "no line starting {expected:?}:\n{}",
            out.stdout
        );
    }
    assert_eq!(server.requests(), requests, "no token request");
    assert!(server.is_refresh_token_valid(&held));

    let out = env.a365(&["doctor", "work", "--json"]).ok();
    let checks: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(checks.iter().all(|c| c["verdict"] == "pass"), "{checks:?}");
    env.a365(&["doctor", "nope"]).code(4);
}

/// A dead credential and an unreachable token server each fail a check
/// (exit 1) and say what is wrong; the other checks still run.
#[test]
fn doctor_names_what_fails() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let gone = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let _agent = env.start_agent();
    env.add_refresh("dead", &server);
    server.set_fault(Fault::InvalidGrant, None);
    env.a365(&["refresh", "dead"]).code(5);
    env.add_refresh("away", &gone);
    gone.shutdown();

    let out = env.a365(&["doctor"]).code(1);
    assert!(out.stderr.contains("checks failed"), "{}", out.stderr);
    let found = lines(&out);
    assert!(
        found
            .iter()
            .any(|l| l.starts_with("FAIL  dead: token: needs re-authentication")),
        "{}",
        out.stdout
    );
    assert!(
        found
            .iter()
            .any(|l| l.starts_with("FAIL  away: ") && l.contains("127.0.0.1")),
        "{}",
        out.stdout
    );
    assert!(
        found.iter().any(|l| l.starts_with("ok    dead: DNS")),
        "{}",
        out.stdout
    );
}

/// An agent whose clock runs 5 minutes ahead (libfaketime) is told so,
/// from the token server's `Date` header.
#[test]
fn doctor_sees_clock_skew() {
    if !Path::new(crate::clock::FAKETIME_LIB).exists() {
        skip("libfaketime is not installed (Debian package faketime)");
        return;
    }
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let mut cmd = env.command(crate::harness::bin("a365-agent"));
    cmd.env("LD_PRELOAD", crate::clock::FAKETIME_LIB)
        .env("FAKETIME", "+5m")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    let agent = env.spawn_agent_command(cmd);
    agent.wait_ready(&env.socket);
    env.add_refresh("work", &server);
    let out = env.a365(&["doctor"]).ok();
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("warn  work: clock: this machine is 5m")
                && l.contains("ahead of 127.0.0.1")),
        "{}",
        out.stdout
    );
}
