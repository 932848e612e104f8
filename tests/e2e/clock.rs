//! The real agent binary under a wall-clock jump (libfaketime): a laptop
//! that wakes 8 h later never gets the token that expired in the meantime,
//! and a refresh starts at once; the clock set back, the newest token is
//! still served without another request. The timing rules themselves are
//! tested in-process (`time_windows`), with a manual clock.

use std::path::Path;
use std::time::Duration;

use a365_token_server::{ServerConfig, TokenServer};

use crate::harness::{Env, skip};

pub(crate) const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

#[test]
fn a_wall_clock_jump_never_serves_an_expired_token() {
    if !Path::new(FAKETIME_LIB).exists() {
        skip("libfaketime is not installed (Debian package faketime)");
        return;
    }
    let server = TokenServer::start(ServerConfig {
        lifetime: Duration::from_secs(3600),
        ..ServerConfig::default()
    })
    .unwrap();
    let env = Env::new();
    let offset = env.path("home/faketime");
    std::fs::write(&offset, "+0\n").unwrap();
    let mut cmd = env.command(crate::harness::bin("a365-agent"));
    // Only the wall clock moves; tokio's monotonic timers run on.
    cmd.env("LD_PRELOAD", FAKETIME_LIB)
        .env("FAKETIME_TIMESTAMP_FILE", &offset)
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    let agent = env.spawn_agent_command(cmd);
    agent.wait_ready(&env.socket);
    env.add_refresh("work", &server);
    let before = env.token("work");
    assert_eq!(server.requests(), 1);

    // The lid opens 8 hours later.
    std::fs::write(&offset, "+8h\n").unwrap();
    let woke = env.token("work");
    assert_ne!(woke, before, "the expired token was served");
    assert_eq!(server.requests(), 2, "a refresh started at once");
    assert_eq!(woke, server.last_access_token().unwrap());
    // `expires_in` counts from the agent's clock: fresh for another hour.
    let status = env.a365(&["status", "--json"]).ok().json();
    assert_eq!(status[0]["state"], "fresh", "{status}");

    // NTP sets the clock back: the newest token is still served, with no
    // request (its lifetime only grew). That nothing is re-armed early is
    // the in-process test `a_clock_set_back_keeps_the_newest_token…`.
    std::fs::write(&offset, "+0\n").unwrap();
    assert_eq!(env.token("work"), woke);
    assert_eq!(server.requests(), 2);
    assert!(!agent.log().contains("panicked"));
}
