//! `a365-load`: the measuring half of `bench/run`. `bench/run` starts the
//! agents and servers; each subcommand here measures one thing and writes
//! JSON, and `report` turns those files into docs/performance.md.

mod control;
mod herd;
mod procfs;
mod proxy;
mod report;
mod scale;
mod stats;
mod throughput;
mod wire;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::wire::Mode;

/// Load generator and report writer for bench/run (a benchmark, not a test).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Throughput and latency: N persistent connections asking as fast as
    /// they can (one row per connection count).
    Load(LoadArgs),
    /// Thundering herd: many clients asking as their token expires.
    Herd(HerdArgs),
    /// Adds profiles over the socket (a refresh credential shared by all).
    Add(AddArgs),
    /// Scale in profiles: for each count, an agent started with that many
    /// profiles; its start-up, RSS, `a365 status`, a token request, an add.
    Scale(ScaleArgs),
    /// Idle cost: the agent's RSS and its threads' context switches over a window.
    Idle(IdleArgs),
    /// Memory of a365-agent (found by its socket) and of other programs,
    /// side by side.
    Memory(MemoryArgs),
    /// Idle wake-ups of a365-agent and of other programs over the same
    /// window, side by side.
    Wakeups(WakeupsArgs),
    /// Prints the pid of the a365-agent at a socket (asking it once, so
    /// that later measures of it need not).
    Pid(PidArgs),
    /// Proxy routes: a request through a route beside the same request
    /// sent straight to the upstream with the token (latency, then
    /// throughput with many connections), and the agent's memory.
    Proxy(ProxyArgs),
    /// Writes the markdown report of the JSON files in a directory.
    Report(ReportArgs),
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Cmd::Load(args) => args.run(),
        Cmd::Herd(args) => args.run(),
        Cmd::Add(args) => args.run(),
        Cmd::Scale(args) => args.run(),
        Cmd::Idle(args) => args.run(),
        Cmd::Memory(args) => args.run(),
        Cmd::Wakeups(args) => args.run(),
        Cmd::Pid(args) => {
            println!("{}", control::pid_at(&args.socket)?);
            Ok(())
        }
        Cmd::Report(args) => args.run(),
        Cmd::Proxy(args) => args.run(),
    }
}

#[derive(Debug, clap::Args)]
struct ProxyArgs {
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// The profile whose token the route adds.
    #[arg(long)]
    profile: String,
    /// The upstream's base URL (plain http on loopback).
    #[arg(long, value_name = "URL")]
    upstream: String,
    /// Sequential requests measured, each way.
    #[arg(long, default_value_t = 5000)]
    requests: usize,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// How long each throughput run lasts.
    #[arg(long, default_value = "5s", value_parser = a365_token_server::parse_duration)]
    duration: Duration,
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

impl ProxyArgs {
    fn run(self) -> anyhow::Result<()> {
        let outcome = proxy::run(&proxy::Options {
            socket: &self.socket,
            profile: &self.profile,
            upstream: &self.upstream,
            requests: self.requests,
            connections: self.connections,
            duration: self.duration,
        })?;
        eprintln!(
            "a365-load: proxy: p50 {:.0} µs vs {:.0} µs direct, p99 {:.0} µs vs {:.0} µs; {} connections: {:.0} req/s vs {:.0} direct; anonymous memory {} → {} KiB",
            outcome.proxied.p50_us,
            outcome.direct.p50_us,
            outcome.proxied.p99_us,
            outcome.direct.p99_us,
            outcome.connections,
            outcome.proxied_rps,
            outcome.direct_rps,
            outcome.anon_before_kib,
            outcome.anon_after_kib
        );
        write_json(&self.out, &outcome)
    }
}

#[derive(Debug, clap::Args)]
struct LoadArgs {
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    #[arg(long, value_enum)]
    mode: Mode,
    /// Connection counts, run one after the other.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64,256")]
    connections: Vec<usize>,
    /// How long each row runs ("5s", "500ms").
    #[arg(long, default_value = "5s", value_parser = a365_token_server::parse_duration)]
    duration: Duration,
    /// The profile to ask for (a365-agent only; default: the default profile).
    #[arg(long)]
    profile: Option<String>,
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

impl LoadArgs {
    fn run(self) -> anyhow::Result<()> {
        let LoadArgs {
            socket,
            mode,
            connections,
            duration,
            profile,
            out,
        } = self;
        raise_fd_limit();
        let mut rows = Vec::new();
        for connections in connections {
            let row = runtime()?.block_on(throughput::run(throughput::Options {
                socket: socket.clone(),
                mode,
                connections,
                duration,
                profile: profile.clone(),
            }))?;
            eprintln!(
                "a365-load: {} × {connections}: {:.0} req/s, p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs",
                mode.as_str(),
                row.requests_per_sec,
                row.latency.p50_us,
                row.latency.p99_us,
                row.latency.p999_us
            );
            rows.push(row);
        }
        write_json(&out, &rows)
    }
}

#[derive(Debug, clap::Args)]
struct HerdArgs {
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Lifetime of the herd profile's tokens.
    #[arg(long, default_value = "4s", value_parser = a365_token_server::parse_duration)]
    lifetime: Duration,
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

impl HerdArgs {
    fn run(self) -> anyhow::Result<()> {
        let HerdArgs {
            socket,
            clients,
            rounds,
            lifetime,
            out,
        } = self;
        raise_fd_limit();
        let outcome = runtime()?.block_on(herd::run(herd::Options {
            socket,
            clients,
            rounds,
            lifetime,
        }))?;
        eprintln!(
            "a365-load: herd of {clients}: token requests {:?}, p99 wait {:.0} µs",
            outcome.token_requests, outcome.wait.p99_us
        );
        write_json(&out, &outcome)
    }
}

#[derive(Debug, clap::Args)]
struct AddArgs {
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    #[arg(long)]
    count: usize,
    #[command(flatten)]
    credential: Credential,
}

impl AddArgs {
    fn run(self) -> anyhow::Result<()> {
        let AddArgs {
            socket,
            count,
            credential,
        } = self;
        control::add_profiles(
            &socket,
            count,
            &credential.token_url,
            &credential.client_id,
            &credential.secrets,
        )
    }
}

#[derive(Debug, clap::Args)]
struct ScaleArgs {
    /// The `a365-agent` to start.
    #[arg(long, value_name = "PATH")]
    agent: PathBuf,
    /// The `a365` to time `status` with.
    #[arg(long, value_name = "PATH")]
    a365: PathBuf,
    /// A directory for the agents' files.
    #[arg(long, value_name = "DIR")]
    work: PathBuf,
    #[arg(long, value_delimiter = ',', default_value = "10,1000,10000")]
    profiles: Vec<usize>,
    #[command(flatten)]
    credential: Credential,
    /// A response of the token server: the token every profile starts with.
    #[arg(long, value_name = "FILE")]
    token_response: PathBuf,
    #[arg(long, default_value_t = 20)]
    status_runs: usize,
    /// How long to measure token requests at each count.
    #[arg(long, default_value = "2s", value_parser = a365_token_server::parse_duration)]
    token_time: Duration,
    /// How long to count the idle agent's wake-ups at each count.
    #[arg(long, default_value = "10s", value_parser = a365_token_server::parse_duration)]
    idle_window: Duration,
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

impl ScaleArgs {
    fn run(self) -> anyhow::Result<()> {
        let ScaleArgs {
            agent,
            a365,
            work,
            profiles,
            credential,
            token_response,
            status_runs,
            token_time,
            idle_window,
            out,
        } = self;
        raise_fd_limit();
        let steps = runtime()?.block_on(scale::run(scale::Options {
            agent,
            a365,
            work,
            steps: profiles,
            token_url: credential.token_url,
            client_id: credential.client_id,
            secrets: credential.secrets,
            token_response,
            status_runs,
            token_time,
            idle_window,
        }))?;
        write_json(&out, &steps)
    }
}

#[derive(Debug, clap::Args)]
struct IdleArgs {
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    #[arg(long, default_value = "60s", value_parser = a365_token_server::parse_duration)]
    window: Duration,
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

impl IdleArgs {
    fn run(self) -> anyhow::Result<()> {
        let IdleArgs {
            socket,
            window,
            out,
        } = self;
        let pid = control::pid_at(&socket)?;
        let profiles = control::profile_count(&socket)?;
        let mut idle = procfs::idle(pid, window)?;
        idle.profiles = profiles;
        eprintln!(
            "a365-load: idle {:.0} s: {} switches, RSS {} KiB",
            idle.secs, idle.wakeups, idle.rss_kib
        );
        write_json(&out, &idle)
    }
}

#[derive(Debug, clap::Args)]
struct MemoryArgs {
    /// The a365-agent to measure: LABEL=SOCKET (asked for its pid: a
    /// request, which ends its idleness; give it with --pids to avoid it).
    #[arg(long, value_name = "LABEL=SOCKET")]
    agent: Option<String>,
    /// Another program: LABEL=PID[,PID…] (its processes are summed).
    #[arg(long = "pids", value_name = "LABEL=PIDS")]
    others: Vec<String>,
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

impl MemoryArgs {
    fn run(self) -> anyhow::Result<()> {
        let MemoryArgs { agent, others, out } = self;
        let mut all = Vec::new();
        for (label, pids) in programs(agent.as_deref(), &others)? {
            all.push(procfs::memory(&label, &pids)?);
        }
        write_json(&out, &all)
    }
}

/// The a365-agent (LABEL=SOCKET) and the others (LABEL=PID[,PID…]), as
/// labels and pids.
fn programs(agent: Option<&str>, others: &[String]) -> anyhow::Result<Vec<(String, Vec<u32>)>> {
    let split = |s: &str| {
        s.split_once('=')
            .map(|(l, v)| (l.to_owned(), v.to_owned()))
            .with_context(|| format!("'{s}' is not LABEL=VALUE"))
    };
    let mut all = Vec::new();
    if let Some(agent) = agent {
        let (label, socket) = split(agent)?;
        all.push((label, vec![control::pid_at(socket.as_ref())?]));
    }
    for other in others {
        let (label, pids) = split(other)?;
        let pids = pids
            .split([',', ' '])
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().with_context(|| format!("'{p}' is not a pid")))
            .collect::<anyhow::Result<Vec<u32>>>()?;
        all.push((label, pids));
    }
    Ok(all)
}

#[derive(Debug, clap::Args)]
struct PidArgs {
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
}

#[derive(Debug, clap::Args)]
struct WakeupsArgs {
    /// The a365-agent to watch: LABEL=SOCKET (see `memory`'s --agent).
    #[arg(long, value_name = "LABEL=SOCKET")]
    agent: Option<String>,
    /// Another program: LABEL=PID[,PID…] (its processes are summed).
    #[arg(long = "pids", value_name = "LABEL=PIDS")]
    others: Vec<String>,
    #[arg(long, default_value = "60s", value_parser = a365_token_server::parse_duration)]
    window: Duration,
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

impl WakeupsArgs {
    fn run(self) -> anyhow::Result<()> {
        let programs = programs(self.agent.as_deref(), &self.others)?;
        let all = procfs::wakeups(&programs, self.window)?;
        for w in &all {
            eprintln!(
                "{}: {} context switches in {:.0} s",
                w.label, w.switches, w.secs
            );
        }
        write_json(&self.out, &all)
    }
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    #[arg(long, value_name = "DIR")]
    results: PathBuf,
    /// The machine line: cores, CPU, kernel, date.
    #[arg(long)]
    machine: String,
    /// A binary to list with its size: LABEL=PATH (repeatable).
    #[arg(long = "binary", value_name = "LABEL=PATH")]
    binaries: Vec<String>,
    /// Seconds each load row ran (for the text).
    #[arg(long)]
    load_secs: Option<f64>,
    /// Mark the report as a smoke run.
    #[arg(long)]
    smoke: bool,
    /// Replace the generated part of this file (e.g. docs/performance.md)
    /// instead of only printing it.
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
}

impl ReportArgs {
    fn run(self) -> anyhow::Result<()> {
        let ReportArgs {
            results,
            machine,
            binaries,
            load_secs,
            smoke,
            write,
        } = self;
        let binaries = binaries
            .iter()
            .map(|b| binary_size(b))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let inputs = report::Inputs {
            machine,
            binaries,
            smoke,
            load_secs,
        };
        let generated = report::render(&results, &inputs)?;
        print!("{generated}");
        if let Some(path) = write {
            let doc = match std::fs::read_to_string(&path) {
                Ok(doc) => doc,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            };
            std::fs::write(&path, report::splice(&doc, &generated))
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }
}

/// The credential of added profiles.
#[derive(Debug, clap::Args)]
struct Credential {
    /// The token endpoint (a token server run with --no-rotate).
    #[arg(long, value_name = "URL")]
    token_url: String,
    #[arg(long)]
    client_id: String,
    /// `{"client_secret", "refresh_token"}`, as `a365-token-server --write-secrets` writes it.
    #[arg(long, value_name = "FILE")]
    secrets: PathBuf,
}

/// One thread drives every connection: the generator takes at most one
/// of the machine's cores.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

fn binary_size(spec: &str) -> anyhow::Result<(String, u64)> {
    let (label, path) = spec
        .split_once('=')
        .with_context(|| format!("--binary {spec}: expected LABEL=PATH"))?;
    let bytes = std::fs::metadata(path)
        .with_context(|| format!("--binary {spec}: cannot read {path}"))?
        .len();
    Ok((label.to_owned(), bytes))
}

/// A thousand connections need more descriptors than the usual soft limit.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}
