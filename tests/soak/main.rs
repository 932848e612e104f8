//! Soak: short-lived rotating tokens, 32 clients asking all the time with
//! random `min_valid`, and random server faults. Its own test binary, so
//! it runs alone after the end-to-end tests and no timing test shares the
//! CPU with it.
//!
//! Checked: no served token is expired or shorter-lived than asked (each is
//! checked against its JWT `exp` the moment it arrives); the only client
//! errors are "unavailable" during or right after an injected outage; and
//! without faults the token requests stay within 10 % of the minimum the
//! clients' `min_valid` makes necessary. `A365_SOAK_SECS` (default 30)
//! sets the length of each phase.
#![allow(clippy::unwrap_used)]

#[path = "../e2e/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use a365_proto::{Client, ErrorKind, Request, Response, TokenRequest};
use a365_token_server::{Fault, ServerConfig, TokenServer};

use harness::{Env, jwt_payload};

const CLIENTS: usize = 32;
const LIFETIME_MS: u64 = 2_000;
/// Clients ask for tokens valid this long at most.
const MAX_MIN_VALID_MS: u64 = 800;

#[derive(Debug, Default)]
struct Tally {
    served: AtomicU64,
    /// Expired, or valid for less than asked: must stay 0.
    bad_tokens: AtomicU64,
    /// "unavailable" while an outage was recent: documented and allowed.
    outage_errors: AtomicU64,
    /// Anything else: must stay empty.
    other_errors: Mutex<Vec<String>>,
    /// Each token served (by its `jti`): when a client first had it, and
    /// its `exp`.
    tokens: Mutex<HashMap<String, (i64, i64)>>,
}

fn now_ms() -> i64 {
    (harness::now_secs() * 1000.0) as i64
}

/// One client: ask, check, pause a little, again, until `stop`.
fn client(
    socket: std::path::PathBuf,
    stop: Arc<AtomicBool>,
    last_fault_ms: Arc<AtomicU64>,
    tally: Arc<Tally>,
) {
    let mut conn = Client::connect(&socket).unwrap();
    while !stop.load(Ordering::Relaxed) {
        let min_valid_ms = fastrand::u64(0..=MAX_MIN_VALID_MS);
        let request = Request::Token(TokenRequest {
            profile: Some("work".into()),
            min_valid_ms,
            scopes: vec![],
            workspace: None,
        });
        let asked_at = now_ms();
        match conn.call(&request) {
            Ok(Response::Token(reply)) => {
                let received = now_ms();
                let claims = jwt_payload(reply.token.expose());
                let exp_ms = claims["exp"].as_i64().unwrap() * 1000;
                tally.served.fetch_add(1, Ordering::Relaxed);
                // The agent judged it after the client asked: by its `exp`
                // (whole seconds, earlier than `expires_in` says), it had
                // to be valid for `min_valid` from then.
                if exp_ms < asked_at + min_valid_ms as i64 {
                    tally.bad_tokens.fetch_add(1, Ordering::Relaxed);
                }
                let jti = claims["jti"].as_str().unwrap_or_default().to_owned();
                tally
                    .tokens
                    .lock()
                    .unwrap()
                    .entry(jti)
                    .or_insert((received, exp_ms));
            }
            Ok(Response::Error(e)) if e.kind == ErrorKind::Unavailable => {
                let since_fault = asked_at - last_fault_ms.load(Ordering::Relaxed) as i64;
                // Back-off after a few failures is at most ~8 s, and the
                // profile's tokens live 2 s: past that, an outage is over.
                if since_fault < 12_000 {
                    tally.outage_errors.fetch_add(1, Ordering::Relaxed);
                } else {
                    tally
                        .other_errors
                        .lock()
                        .unwrap()
                        .push(format!("{since_fault} ms after a fault: {}", e.message));
                }
            }
            other => tally
                .other_errors
                .lock()
                .unwrap()
                .push(format!("{other:?}")),
        }
        std::thread::sleep(Duration::from_millis(fastrand::u64(1..10)));
    }
}

/// Runs clients for about `secs`; returns what they saw, the token
/// requests made meanwhile, and how long the clients really ran (ms).
fn run_phase(
    env: &Env,
    server: &TokenServer,
    secs: u64,
    faults: bool,
) -> (Arc<Tally>, usize, u128) {
    let stop = Arc::new(AtomicBool::new(false));
    let last_fault = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Tally::default());
    let before = server.requests();
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (socket, stop, last_fault, tally) = (
                env.socket.clone(),
                Arc::clone(&stop),
                Arc::clone(&last_fault),
                Arc::clone(&tally),
            );
            std::thread::spawn(move || client(socket, stop, last_fault, tally))
        })
        .collect();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(fastrand::u64(2_000..6_000)));
        if faults {
            let fault = match fastrand::u8(0..5) {
                0 => Fault::Status(503),
                1 => Fault::Drop,
                2 => Fault::RateLimited {
                    retry_after_secs: 1,
                },
                3 => Fault::Delay(Duration::from_millis(300)),
                _ => Fault::MalformedJson,
            };
            last_fault.store(now_ms() as u64, Ordering::Relaxed);
            server.set_fault(fault, Some(fastrand::usize(1..=3)));
        }
    }
    server.clear_fault();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    (
        tally,
        server.requests() - before,
        started.elapsed().as_millis(),
    )
}

fn soak_secs() -> u64 {
    std::env::var("A365_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

/// A token server with short-lived tokens, and an agent with one profile.
fn setup() -> (TokenServer, Env, harness::Agent) {
    let server = TokenServer::start(ServerConfig {
        lifetime: Duration::from_millis(LIFETIME_MS),
        ..ServerConfig::default()
    })
    .unwrap();
    let env = Env::new();
    // A dropped answer is settled by asking the provider (RFC 7662) a
    // second after the refresh was sent, not 5 minutes.
    let agent = env.spawn_agent(&["--answer-wait", "1", "--http-timeout", "1"]);
    agent.wait_ready(&env.socket);
    let introspection = ["--introspection-url", &server.introspection_url()];
    env.try_add_refresh("work", &server, &introspection).1.ok();
    (server, env, agent)
}

// The two phases run side by side (cargo runs a binary's tests in
// parallel), each with its own agent and token server: the clients mostly
// wait, so two phases fit on two cores, in half the wall time.

/// Without faults: correctness, and how many token requests it took.
#[test]
fn soak_clean() {
    let secs = soak_secs();
    let (server, env, agent) = setup();
    // Memory once the agent is warm (a quarter in), to compare with the end.
    let pid = agent.pid();
    let warm = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(secs / 4 + 1));
        vm_kib(pid, "VmRSS:")
    });
    let (clean, requests, ran_ms) = run_phase(&env, &server, secs, false);
    let warm_rss = warm.join().unwrap();
    // A token serves clients until fewer than MAX_MIN_VALID_MS remain by its
    // `exp`, which is whole seconds: each lives up to a second less than
    // LIFETIME_MS, by when in its second it was issued. The minimum counts
    // what the tokens served really gave.
    let minimum = {
        let tokens = clean.tokens.lock().unwrap();
        let usable: i64 = tokens
            .values()
            .map(|(first, exp)| (exp - first - MAX_MIN_VALID_MS as i64).max(1))
            .sum();
        let mean_usable = usable as f64 / tokens.len().max(1) as f64;
        ran_ms as f64 / mean_usable
    };
    println!(
        "soak, clean: {ran_ms} ms, {} tokens served, {requests} token requests (minimum {minimum:.1}), \
         {} bad, {} errors",
        clean.served.load(Ordering::Relaxed),
        clean.bad_tokens.load(Ordering::Relaxed),
        clean.outage_errors.load(Ordering::Relaxed)
    );
    assert_eq!(clean.bad_tokens.load(Ordering::Relaxed), 0, "{clean:?}");
    assert_eq!(clean.outage_errors.load(Ordering::Relaxed), 0, "{clean:?}");
    assert!(clean.other_errors.lock().unwrap().is_empty(), "{clean:?}");
    assert!(
        (requests as f64) <= minimum * 1.1 + 1.0,
        "{requests} requests for a minimum of {minimum:.0}"
    );
    assert!(!agent.log().contains("panicked"));
    let (rss, hwm) = (vm_kib(pid, "VmRSS:"), vm_kib(pid, "VmHWM:"));
    println!(
        "agent memory, clean soak: RSS {warm_rss} KiB a quarter in, {rss} KiB at the end, VmHWM {hwm} KiB"
    );
    // A token refreshed every 1.2 s, served thousands of times a second:
    // nothing may accumulate.
    assert!(
        rss <= warm_rss + 1024,
        "RSS grew from {warm_rss} KiB to {rss} KiB over the soak"
    );
}

/// A `/proc/PID/status` field in KiB.
fn vm_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// With faults: still never a bad token, only documented errors.
#[test]
fn soak_with_faults() {
    let secs = soak_secs();
    let (server, env, agent) = setup();
    let (faulty, requests, _) = run_phase(&env, &server, secs, true);
    println!(
        "soak, faults: {secs} s, {} tokens served, {requests} token requests, {faulty:?}",
        faulty.served.load(Ordering::Relaxed)
    );
    assert_eq!(faulty.bad_tokens.load(Ordering::Relaxed), 0, "{faulty:?}");
    assert!(faulty.other_errors.lock().unwrap().is_empty(), "{faulty:?}");
    assert!(!agent.log().contains("panicked"));
    println!(
        "agent RSS after the soak with faults: {} KiB",
        agent.rss_kib()
    );
}
