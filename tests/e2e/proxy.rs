//! Proxies: a daemon may need one to reach the token server, but a token
//! server on this machine's loopback is never reached through one (the
//! client secret would cross it in clear text).

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use a365_token_server::{ServerConfig, TokenServer};

use crate::harness::{Env, bin};

/// A "proxy" that counts the connections it gets and answers none.
fn counting_proxy() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            count.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (url, seen)
}

/// An agent whose environment names `proxy` for every scheme.
fn agent_behind(proxy: &str) -> (Env, crate::harness::Agent) {
    let env = Env::new();
    let mut cmd = env.command(bin("a365-agent"));
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy"] {
        cmd.env(var, proxy);
    }
    cmd.env_remove("NO_PROXY").env_remove("no_proxy");
    let agent = env.spawn_agent_command(cmd);
    agent.wait_ready(&env.socket);
    (env, agent)
}

#[test]
fn a_loopback_token_server_is_never_reached_through_a_proxy() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let (proxy, seen) = counting_proxy();
    let (env, agent) = agent_behind(&proxy);
    let out = env.try_add_refresh("work", &server, &[]).1.ok();
    // The user is told what plain HTTP means, even on loopback.
    assert!(
        out.stderr
            .contains("is plain HTTP: any local user who listens on that port first"),
        "{}",
        out.stderr
    );
    assert!(env.token("work").len() > 20);
    assert_eq!(seen.load(Ordering::SeqCst), 0, "the proxy saw a request");
    drop(agent);

    // The same with the proxy set in config.toml.
    let config = std::fs::read_to_string(env.config_file()).unwrap();
    std::fs::write(env.config_file(), format!("proxy = \"{proxy}\"\n{config}")).unwrap();
    let _agent = env.start_agent();
    env.a365(&["refresh", "work"]).ok();
    assert!(env.token("work").len() > 20);
    assert_eq!(seen.load(Ordering::SeqCst), 0, "the proxy saw a request");
}

/// `localhost.` (fully qualified) is loopback for the plain-HTTP rule, so
/// it must be for the proxy rule too: the client secret once went to the
/// proxy in clear text. Host names are normalised once, before every rule.
#[test]
fn a_trailing_dot_loopback_token_server_is_never_reached_through_a_proxy() {
    let server = TokenServer::start(ServerConfig::default()).unwrap();
    let (proxy, seen) = counting_proxy();
    let (env, _agent) = agent_behind(&proxy);
    let url = format!("http://localhost.:{}/connect/token", server.addr().port());
    let (_, out) = env.try_add_refresh_at("work", &server, &url, &[]);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "the proxy saw a request: {out:?}"
    );
    out.ok();
    assert!(env.token("work").len() > 20);
    assert_eq!(seen.load(Ordering::SeqCst), 0, "the proxy saw a request");
}
