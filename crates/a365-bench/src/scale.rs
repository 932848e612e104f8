//! Scale in profiles: for each count, an agent that starts with that many
//! profiles, then its start-up time, memory, `a365 status`, a token
//! request and one more add over the socket.
//!
//! The profiles are written before the agent starts, as the agent itself
//! keeps them (config.toml, and the file store with a cached token), so it
//! loads them as after a restart: adding 10,000 over the socket would take
//! many minutes, since each add rewrites config.toml.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use a365_proto::{Client, Kind, ProfileSpec, Request, Response, StoreKind};
use a365_store::{Credential, FileStore, Store};
use anyhow::{Context, bail};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::control::{self, SecretsFile};
use crate::procfs;
use crate::throughput::{self, Outcome};
use crate::wire::Mode;

#[derive(Debug, Clone)]
pub struct Options {
    pub agent: PathBuf,
    /// The `a365` binary to time `status` with.
    pub a365: PathBuf,
    /// Each count gets its own directory here.
    pub work: PathBuf,
    /// Profile counts.
    pub steps: Vec<usize>,
    pub token_url: String,
    pub client_id: String,
    pub secrets: PathBuf,
    /// A token response of the server (`curl … /connect/token`): the cached
    /// token every profile starts with.
    pub token_response: PathBuf,
    pub status_runs: usize,
    pub token_time: Duration,
    /// How long to count the idle agent's context switches.
    pub idle_window: Duration,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusOutput {
    Bytes(usize),
    Failed(String),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Step {
    pub profiles: usize,
    /// From starting the agent to its first answer, in ms.
    pub start_ms: f64,
    pub rss_kib: u64,
    /// Median wall time of `a365 status`, in ms; `None` when it failed.
    pub status_median_ms: Option<f64>,
    /// Bytes `a365 status` printed, or what it said when it failed.
    pub status_output: StatusOutput,
    /// One connection asking for the first profile's token.
    pub token: Outcome,
    /// One more profile added over the socket, in ms.
    pub add_ms: f64,
    /// Context switches of the idle agent (all threads), per minute.
    pub idle_switches_per_min: f64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: i64,
    #[serde(default)]
    scope: String,
}

pub async fn run(options: Options) -> anyhow::Result<Vec<Step>> {
    let mut steps = Vec::new();
    for &profiles in &options.steps {
        let dir = options.work.join(format!("scale-{profiles}"));
        populate(&options, &dir, profiles)?;
        let started = Instant::now();
        let agent = Agent::start(&options.agent, &dir)?;
        let start_ms = started.elapsed().as_secs_f64() * 1e3;
        let rss_kib = procfs::sample(agent.pid())?.rss_kib;
        let (status_median_ms, status_output) = match status_output(&options, &agent.socket)? {
            StatusOutput::Bytes(n) => (
                Some(time_status(&options, &agent.socket)?),
                StatusOutput::Bytes(n),
            ),
            failed => (None, failed),
        };
        let token = throughput::run(throughput::Options {
            socket: agent.socket.clone(),
            mode: Mode::Bincode,
            connections: 1,
            duration: options.token_time,
            profile: Some(control::profile_name(0)),
        })
        .await?;
        let idle = procfs::idle(agent.pid(), options.idle_window)?;
        let idle_switches_per_min = idle.wakeups as f64 * 60.0 / idle.secs;
        let add_ms = {
            let secrets = SecretsFile::read(&options.secrets)?;
            let mut client = Client::connect(&agent.socket)?;
            let one = Instant::now();
            control::add_refresh_profile(
                &mut client,
                "added",
                &options.token_url,
                &options.client_id,
                &secrets.client_secret,
                &secrets.refresh_token,
            )?;
            one.elapsed().as_secs_f64() * 1e3
        };
        eprintln!(
            "a365-load: {profiles} profiles: started in {start_ms:.0} ms, RSS {rss_kib} KiB, \
             status {}, token p50 {:.1} µs, one more add {add_ms:.1} ms, \
             {idle_switches_per_min:.0} switches/min idle",
            status_median_ms.map_or("failed".into(), |ms| format!("{ms:.2} ms")),
            token.latency.p50_us
        );
        agent.stop()?;
        steps.push(Step {
            profiles,
            start_ms,
            rss_kib,
            status_median_ms,
            status_output,
            token,
            add_ms,
            idle_switches_per_min,
        });
    }
    Ok(steps)
}

/// Writes `config.toml` with `count` refresh profiles in the file store,
/// and each one's credential with the same cached token.
fn populate(options: &Options, dir: &Path, count: usize) -> anyhow::Result<()> {
    #[derive(Serialize)]
    struct ConfigFile {
        store: StoreKind,
        profiles: BTreeMap<String, ProfileSpec>,
    }
    let secrets = SecretsFile::read(&options.secrets)?;
    let text = std::fs::read_to_string(&options.token_response)
        .with_context(|| format!("reading {}", options.token_response.display()))?;
    let token: TokenResponse =
        serde_json::from_str(&text).context("the token response is not one")?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_millis() as i64;
    let credential = Credential {
        client_secret: Some(SecretString::from(secrets.client_secret)),
        refresh_token: Some(SecretString::from(secrets.refresh_token)),
        access_token: Some(SecretString::from(token.access_token)),
        access_expires_at_ms: Some(now_ms + token.expires_in * 1000),
        access_scopes: token.scope.split_whitespace().map(str::to_owned).collect(),
        updated_at_ms: now_ms,
        ..Credential::default()
    };
    let spec = ProfileSpec {
        kind: Kind::Refresh,
        token_url: Some(options.token_url.clone()),
        client_id: Some(options.client_id.clone()),
        store: Some(StoreKind::File),
        ..ProfileSpec::default()
    };
    let store = FileStore::open(dir.join("state/a365"))?;
    let mut profiles = BTreeMap::new();
    for i in 0..count {
        let name = control::profile_name(i);
        store.save(&name, &credential)?;
        profiles.insert(name, spec.clone());
    }
    let config = toml::to_string(&ConfigFile {
        store: StoreKind::Memory,
        profiles,
    })
    .context("writing the config")?;
    let config_dir = dir.join("config/a365");
    std::fs::create_dir_all(&config_dir)?;
    std::fs::write(config_dir.join("config.toml"), config)?;
    Ok(())
}

/// An agent of its own in `dir` (its XDG directories and socket).
struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Agent {
    /// Starts it and waits until it answers.
    fn start(binary: &Path, dir: &Path) -> anyhow::Result<Agent> {
        let run = dir.join("run");
        std::fs::create_dir_all(&run)?;
        let socket = run.join("agent.sock");
        let log = std::fs::File::create(dir.join("agent.log"))?;
        let child = Command::new(binary)
            .arg("--socket")
            .arg(&socket)
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("XDG_STATE_HOME", dir.join("state"))
            .env("XDG_RUNTIME_DIR", &run)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut agent = Agent { child, socket };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let pong = Client::connect(&agent.socket).and_then(|mut c| c.call(&Request::Ping));
            if let Ok(Response::Pong { .. }) = pong {
                return Ok(agent);
            }
            if let Some(status) = agent.child.try_wait()? {
                bail!(
                    "the agent exited ({status}); see {}",
                    dir.join("agent.log").display()
                );
            }
            if Instant::now() > deadline {
                bail!("the agent did not answer within 2 minutes");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks it to stop and waits.
    fn stop(mut self) -> anyhow::Result<()> {
        let mut client = Client::connect(&self.socket)?;
        client.call(&Request::Shutdown)?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What `a365 status` prints: its size, or its error.
fn status_output(options: &Options, socket: &Path) -> anyhow::Result<StatusOutput> {
    let out = status_command(options, socket)
        .output()
        .context("running a365 status")?;
    Ok(if out.status.success() {
        StatusOutput::Bytes(out.stdout.len())
    } else {
        StatusOutput::Failed(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    })
}

fn status_command(options: &Options, socket: &Path) -> Command {
    let mut command = Command::new(&options.a365);
    command
        .arg("status")
        .env("A365_AGENT_SOCK", socket)
        .env("NO_COLOR", "1");
    command
}

/// The median wall time of `status_runs` runs of `a365 status` after two
/// warm-ups, in ms.
fn time_status(options: &Options, socket: &Path) -> anyhow::Result<f64> {
    let run = || -> anyhow::Result<Duration> {
        let started = Instant::now();
        let status = status_command(options, socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("running {}", options.a365.display()))?;
        if !status.success() {
            bail!("a365 status failed: {status}");
        }
        Ok(started.elapsed())
    };
    for _ in 0..2 {
        run()?;
    }
    let mut times = (0..options.status_runs.max(1))
        .map(|_| run())
        .collect::<anyhow::Result<Vec<_>>>()?;
    times.sort_unstable();
    Ok(times[times.len() / 2].as_secs_f64() * 1e3)
}
