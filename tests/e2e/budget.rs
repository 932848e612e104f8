//! A token endpoint's request budget (Nexar's four windows, scaled down
//! here with `limits`): 50 profiles of one client id that all want tokens
//! at once never break a window, clients that cannot wait are told why,
//! `status` shows what is left, and the counts survive a restart (which
//! itself costs no token request while the stored tokens are valid).

use std::time::Duration;

use a365_token_server::{ServerConfig, TokenServer};

use crate::harness::{Env, now_secs, wait_until};

const PROFILES: usize = 50;
/// (window, requests): 2 per second, 5 per 10 seconds.
const WINDOWS: [(i64, usize); 2] = [(1_000, 2), (10_000, 5)];

/// When `server` received each token request since `started_ms`, sorted.
pub(crate) fn sent_since(server: &TokenServer, started_ms: i64) -> Vec<i64> {
    let mut times: Vec<i64> = server
        .recorded()
        .iter()
        .filter(|r| r.at_ms >= started_ms)
        .map(|r| r.at_ms)
        .collect();
    times.sort_unstable();
    times
}

/// Every window of `times` (ms, sorted) holds at most its limit.
pub(crate) fn within(times: &[i64]) -> Result<(), String> {
    for (i, t) in times.iter().enumerate() {
        for (span, limit) in WINDOWS {
            let n = times[i..].iter().take_while(|u| **u < t + span).count();
            if n > limit {
                return Err(format!("{n} requests in {span} ms from {t}: {times:?}"));
            }
        }
    }
    Ok(())
}

#[test]
fn fifty_profiles_of_one_client_id_stay_within_its_budget() {
    let server = TokenServer::start(ServerConfig {
        lifetime: Duration::from_secs(6),
        ..ServerConfig::default()
    })
    .unwrap();
    let env = Env::new();
    let agent = env.start_agent();
    for i in 0..PROFILES {
        env.add_refresh(&format!("p{i}"), &server);
    }
    agent.terminate();
    // Every profile gets the (scaled) windows.
    let config = std::fs::read_to_string(env.config_file()).unwrap();
    let mut limited = String::new();
    for line in config.lines() {
        limited.push_str(line);
        limited.push('\n');
        if line.starts_with("[profiles.") {
            limited.push_str("limits = { \"1s\" = 2, \"10s\" = 5 }\n");
        }
    }
    std::fs::write(env.config_file(), limited).unwrap();

    // A restart serves the stored tokens: not one request.
    let sent = server.requests();
    let started_ms = (now_secs() * 1000.0) as i64;
    let agent = env.start_agent();
    let status = env.a365(&["status", "--json"]).ok().json();
    assert_eq!(status.as_array().unwrap().len(), PROFILES);
    assert_eq!(server.requests(), sent, "a restart sent token requests");
    let windows = &status[0]["budget"];
    assert_eq!(windows[0]["secs"], 1);
    assert_eq!(windows[1]["limit"], 5);

    // Every token expires within 6 s: all 50 want one at once.
    let mut told = None;
    assert!(wait_until(Duration::from_secs(30), || {
        let status = env.a365(&["status", "--json"]).ok().json();
        let held = status.as_array().unwrap().iter().find(|p| {
            p["state"] == "failing"
                && p["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("5 token requests per 10s"))
        });
        if let Some(p) = held {
            let name = p["name"].as_str().unwrap().to_owned();
            let out = env.a365(&["token", &name, "--min-valid", "2s"]);
            if out.code == 6 {
                told = Some(out.stderr);
                return true;
            }
        }
        false
    }));
    let told = told.unwrap();
    assert!(told.contains("next may be sent in"), "{told}");
    std::thread::sleep(Duration::from_secs(12));

    // The counts continue after a restart.
    agent.terminate();
    let agent = env.start_agent();
    let status = env.a365(&["status", "--json"]).ok().json();
    let used = status[0]["budget"][1]["used"].as_u64().unwrap();
    assert!(
        used > 0,
        "the 10 s window forgot its requests: {}",
        status[0]["budget"]
    );
    std::thread::sleep(Duration::from_secs(8));
    let log = agent.terminate().1;
    assert!(log.contains("token request held back"), "{log}");

    let times = sent_since(&server, started_ms);
    within(&times).unwrap();
    // And the budget was used, not just respected.
    assert!(times.len() >= 12, "{} requests in about 35 s", times.len());
    eprintln!(
        "budget: {} token requests in {:.1} s by {PROFILES} profiles of one client id (2 per 1 s \
         and 5 per 10 s allowed)",
        times.len(),
        (times[times.len() - 1] - times[0]) as f64 / 1000.0
    );
}
