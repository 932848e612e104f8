//! Closed-loop load: N persistent connections, each sending its next
//! request as soon as the last answer arrived, for a fixed time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::stats::Summary;
use crate::wire::{self, Answer, Conn, Mode};

#[derive(Debug, Clone)]
pub struct Options {
    pub socket: PathBuf,
    pub mode: Mode,
    pub connections: usize,
    pub duration: Duration,
    /// a365 profile to ask for (default profile when `None`).
    pub profile: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Outcome {
    pub mode: String,
    pub connections: usize,
    pub requests: usize,
    /// Error answers and broken connections.
    pub errors: usize,
    pub secs: f64,
    pub requests_per_sec: f64,
    pub latency: Summary,
}

pub async fn run(options: Options) -> anyhow::Result<Outcome> {
    let request = wire::token_request(options.profile.as_deref());
    // Connect and warm up every connection first: the measured part is
    // steady state, not connection set-up.
    let mut conns = Vec::with_capacity(options.connections);
    for _ in 0..options.connections {
        let mut conn = Conn::open(&options.socket, options.mode, &request).await?;
        if let Answer::Refused(why) = conn.call().await.context("first request")? {
            anyhow::bail!("the agent refused the request: {why}");
        }
        conns.push(conn);
    }
    let start = Arc::new(tokio::sync::Barrier::new(options.connections + 1));
    let mut tasks = Vec::with_capacity(options.connections);
    for conn in conns {
        let start = Arc::clone(&start);
        let duration = options.duration;
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            drive(conn, Instant::now() + duration).await
        }));
    }
    start.wait().await;
    let began = Instant::now();
    let mut samples = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (mut latencies, failed) = task.await.context("a connection task panicked")?;
        samples.append(&mut latencies);
        errors += failed;
    }
    let secs = began.elapsed().as_secs_f64();
    let requests = samples.len();
    Ok(Outcome {
        mode: options.mode.as_str().into(),
        connections: options.connections,
        requests,
        errors,
        secs,
        requests_per_sec: requests as f64 / secs,
        latency: Summary::of(&mut samples),
    })
}

/// One connection's loop: its latencies and how many calls failed.
async fn drive(mut conn: Conn, until: Instant) -> (Vec<Duration>, usize) {
    let mut latencies = Vec::with_capacity(64 * 1024);
    let mut errors = 0;
    loop {
        let sent = Instant::now();
        if sent >= until {
            break;
        }
        match conn.call().await {
            Ok(Answer::Token(_) | Answer::Identities) => latencies.push(sent.elapsed()),
            Ok(Answer::Refused(_)) => errors += 1,
            Err(_) => {
                errors += 1;
                break;
            }
        }
    }
    (latencies, errors)
}
