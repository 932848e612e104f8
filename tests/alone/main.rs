//! Tests that measure time: their own test binary, so that they run alone
//! after the end-to-end tests, not with six other tests on two cores.
#![allow(clippy::unwrap_used)]

#[path = "../e2e/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use a365_token_server::ServerConfig;

use crate::harness::Env;

/// Ten thousand connections held open (half of them stalled mid-header)
/// cost the agent bounded memory, and a well-behaved client's round trip
/// stays within twice its normal latency.
#[test]
fn ten_thousand_idle_connections_do_not_slow_other_clients() {
    const HELD: usize = 10_000;
    crate::harness::raise_fd_limit();
    let server = a365_token_server::TokenServer::start(ServerConfig::default()).unwrap();
    let env = Env::new();
    let agent = env.spawn_agent(&["--max-connections", "12000"]);
    agent.wait_ready(&env.socket);
    env.add_refresh("work", &server);
    let mut client = a365_proto::Client::connect(&env.socket).unwrap();
    let normal = median_round_trip(&mut client);
    let before = agent.rss_kib();

    let idle: Vec<UnixStream> = (0..HELD).map(|_| env.connect_raw()).collect();
    for stream in idle.iter().step_by(2) {
        (&*stream).write_all(&[0, 0]).unwrap();
    }
    // Every one of them is accepted and held: the agent answers on the
    // last one opened.
    let mut last = env.connect_raw();
    last.write_all(
        &a365_proto::codec::encode_request(
            &a365_proto::Request::Ping,
            a365_proto::Encoding::Binary,
        )
        .unwrap(),
    )
    .unwrap();
    let mut header = [0u8; 4];
    last.read_exact(&mut header).unwrap();

    let loaded = median_round_trip(&mut client);
    let after = agent.rss_kib();
    eprintln!(
        "{HELD} idle connections: RSS {before} KiB -> {after} KiB; \
         token round trip median {normal:?} -> {loaded:?}"
    );
    // A held connection costs its task, a 4 KiB read buffer and its timers:
    // memory grows with the connections (up to the cap), by a bounded amount
    // each (about 7.5 KiB in a debug build).
    let per_connection = (after.saturating_sub(before)) / HELD as u64;
    assert!(
        per_connection <= 12,
        "memory grew from {before} KiB to {after} KiB: {per_connection} KiB a connection"
    );
    // Twice normal, with 200 µs of slack for a busy 2-core machine where
    // the normal round trip is a few tens of microseconds.
    assert!(
        loaded <= normal * 2 + Duration::from_micros(200),
        "round trip {normal:?} became {loaded:?}"
    );
    assert!(!agent.log().contains("refusing"), "{}", agent.log());
    drop(idle);
    env.a365(&["token", "work"]).ok();
}

/// The median of 500 token requests on one persistent connection.
fn median_round_trip(client: &mut a365_proto::Client) -> Duration {
    let request = a365_proto::Request::Token(a365_proto::TokenRequest {
        profile: Some("work".into()),
        min_valid_ms: 0,
        scopes: Vec::new(),
        workspace: None,
    });
    let mut times: Vec<Duration> = (0..500)
        .map(|_| {
            let start = std::time::Instant::now();
            match client.call(&request).unwrap() {
                a365_proto::Response::Token(_) => {}
                other => panic!("{other:?}"),
            }
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}
