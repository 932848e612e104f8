//! The thundering herd: many clients ask for a token at the moment it
//! expires. The agent must make exactly one token request for all of them.
//!
//! To put every request at that moment, the agent is frozen (SIGSTOP, what
//! a suspended laptop is to it) right after a refresh, until past the
//! token's expiry; meanwhile every connected client sends its request. On
//! SIGCONT the agent finds an expired token, its own refresh overdue and
//! all the requests waiting. The wait is measured from SIGCONT.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use a365_proto::{Client, Request, Response};
use a365_token_server::{ServerConfig, TokenServer};
use anyhow::{Context, bail};
use rustix::process::{Pid, Signal, kill_process};
use serde::{Deserialize, Serialize};

use crate::control;
use crate::stats::Summary;
use crate::wire::{self, Answer, Conn, Mode};

const PROFILE: &str = "herd";
const CLIENT_ID: &str = "herd";

#[derive(Debug, Clone)]
pub struct Options {
    pub socket: PathBuf,
    pub clients: usize,
    pub rounds: usize,
    /// Token lifetime: long enough that the agent's own refresh (a quarter
    /// of it before expiry) cannot come between the refresh and the freeze.
    pub lifetime: Duration,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Outcome {
    pub clients: usize,
    /// Token requests the server received in each round.
    pub token_requests: Vec<usize>,
    /// Distinct tokens served in each round (1: everyone got the new one).
    pub distinct_tokens: Vec<usize>,
    /// Answers that were errors or held an expired token, over all rounds.
    pub bad_answers: usize,
    /// From SIGCONT to each client's answer, over all rounds.
    pub wait: Summary,
}

pub async fn run(options: Options) -> anyhow::Result<Outcome> {
    let secret = a365_token_server::random_secret();
    let server = TokenServer::start(ServerConfig {
        lifetime: options.lifetime,
        clients: vec![(CLIENT_ID.into(), secret.clone())],
        ..ServerConfig::default()
    })
    .context("starting the token server")?;
    let mut control = Client::connect(&options.socket)?;
    let pid = Pid::from_raw(control::agent_pid(&mut control)?)
        .context("the agent sent an invalid pid")?;
    let refresh_token = server.issue_refresh_token(CLIENT_ID);
    control::add_refresh_profile(
        &mut control,
        PROFILE,
        &server.token_url(),
        CLIENT_ID,
        &secret,
        &refresh_token,
    )?;

    let mut outcome = Outcome {
        clients: options.clients,
        token_requests: Vec::new(),
        distinct_tokens: Vec::new(),
        bad_answers: 0,
        wait: Summary::default(),
    };
    let mut waits = Vec::new();
    let result = async {
        let request = wire::token_request_valid_for(Some(PROFILE), 0);
        let mut conns = Vec::with_capacity(options.clients);
        for _ in 0..options.clients {
            let mut conn = Conn::open(&options.socket, Mode::Bincode, &request).await?;
            conn.call().await.context("first request")?;
            conns.push(conn);
        }
        for _ in 0..options.rounds {
            let round = one_round(&mut control, &server, pid, conns, options.lifetime).await?;
            conns = round.conns;
            outcome.token_requests.push(round.token_requests);
            outcome.distinct_tokens.push(round.distinct_tokens);
            outcome.bad_answers += round.bad_answers;
            waits.extend(round.waits);
        }
        anyhow::Ok(())
    }
    .await;
    let removed = control.call(&Request::RemoveProfile {
        name: PROFILE.into(),
        keep_remote: true,
    });
    result?;
    removed?;
    outcome.wait = Summary::of(&mut waits);
    Ok(outcome)
}

struct Round {
    conns: Vec<Conn>,
    token_requests: usize,
    distinct_tokens: usize,
    bad_answers: usize,
    waits: Vec<Duration>,
}

async fn one_round(
    control: &mut Client,
    server: &TokenServer,
    pid: Pid,
    conns: Vec<Conn>,
    lifetime: Duration,
) -> anyhow::Result<Round> {
    // A fresh token, then freeze at once: the agent's own refresh is due
    // only after three quarters of the lifetime (less jitter).
    match control.call(&Request::Refresh {
        profile: Some(PROFILE.into()),
    })? {
        Response::Done { .. } => {}
        other => bail!("refresh failed: {other:?}"),
    }
    let refreshed = Instant::now();
    let frozen = Frozen::stop(pid)?;
    // A request already on its way still counts before the herd.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = server.requests();
    tokio::time::sleep_until((refreshed + lifetime + Duration::from_millis(300)).into()).await;

    let mut conns = conns;
    for conn in &mut conns {
        conn.send().await?;
    }
    let woken = Instant::now();
    drop(frozen);
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            tokio::spawn(async move {
                let answer = conn.receive().await;
                (conn, answer, woken.elapsed())
            })
        })
        .collect();
    let now_secs = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    };
    let mut round = Round {
        conns: Vec::with_capacity(tasks.len()),
        token_requests: 0,
        distinct_tokens: 0,
        bad_answers: 0,
        waits: Vec::with_capacity(tasks.len()),
    };
    let mut tokens = HashSet::new();
    for task in tasks {
        let (conn, answer, waited) = task.await.context("a client task panicked")?;
        match answer? {
            Answer::Token(reply) if reply.expires_at.is_none_or(|exp| exp > now_secs()) => {
                tokens.insert(reply.token.expose().to_owned());
            }
            _ => round.bad_answers += 1,
        }
        round.waits.push(waited);
        round.conns.push(conn);
    }
    round.token_requests = server.requests() - before;
    round.distinct_tokens = tokens.len();
    Ok(round)
}

/// The agent, stopped until dropped (also when the bench fails halfway:
/// it must not leave the agent frozen).
struct Frozen(Pid);

impl Frozen {
    fn stop(pid: Pid) -> anyhow::Result<Frozen> {
        kill_process(pid, Signal::STOP).context("SIGSTOP to the agent")?;
        Ok(Frozen(pid))
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = kill_process(self.0, Signal::CONT);
    }
}
