//! a365-agent: holds API credentials in memory and keeps every profile's
//! access token fresh, serving it over a private local socket.
//!
//! `main.rs` is thin; [`run`] is what tests and the binary call, with
//! the clock and the shutdown signal as parameters.

pub mod actionwait;
pub mod agent;
mod body;
pub mod budget;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod endpoint;
pub mod events;
pub mod expiry;
pub mod fleet;
pub mod http;
pub mod install;
#[cfg(target_os = "macos")]
pub mod launchd;
pub mod logging;
pub mod login;
pub mod notify;
pub mod profile;
pub mod provider;
pub mod proxy;
pub mod realm;
pub mod resident;
pub mod schedule;
pub mod server;
pub mod shared;
pub mod sink;
pub mod socket;
pub mod spent;
pub mod stores;
pub mod strict;
pub mod tick;
pub mod upgrade;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{Config, Paths};

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Socket(#[from] socket::SocketError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Strict(#[from] strict::StrictError),
    #[error("cannot open the store: {0}")]
    Store(#[from] a365_store::StoreError),
    #[error("cannot set up HTTP: {0}")]
    Http(String),
    #[error("cannot listen for signals: {0}")]
    Signals(std::io::Error),
}

#[derive(Debug, Clone)]
pub struct Options {
    pub socket: PathBuf,
    /// A second socket that serves tokens only, for forwarding (`ssh -R`)
    /// or bind-mounting into a container; else config's `token_socket`.
    pub token_socket: Option<PathBuf>,
    /// The profiles the token socket serves (`--token-socket-profile`);
    /// empty: config's `token_socket_profiles`, else every profile.
    pub token_socket_profiles: Vec<String>,
    pub paths: Paths,
    pub limits: server::Limits,
    pub timeouts: Timeouts,
}

/// The waits of the agent, in one place so that tests can shorten them.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// One token request, from connecting to the last byte of the answer.
    pub http: Duration,
    /// How long a client waits for a refresh before being told to retry.
    pub client_wait: Duration,
    /// How long `add` waits for a new profile's first exchange.
    pub add_wait: Duration,
    /// Every refresher looks at the wall clock at least this often:
    /// tokio's timers stand still while the machine sleeps.
    pub tick: Duration,
    /// How long a sent refresh token's answer is waited for (at least
    /// `http`).
    pub answer_wait: Duration,
    /// How often to look whether an upgrade replaced the agent's binary;
    /// `None` (in-process agents, tests) never.
    pub upgrade_check: Option<Duration>,
    /// After an interval this long without work, the code pages are given
    /// back ([`resident`]); `None` never.
    pub release_code: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            http: Duration::from_secs(20),
            client_wait: Duration::from_secs(25),
            add_wait: Duration::from_secs(25),
            tick: Duration::from_secs(30),
            answer_wait: Duration::from_secs(300),
            upgrade_check: None,
            release_code: None,
        }
    }
}

/// Runs the agent until `shutdown` completes or a client asks it to stop:
/// binds the socket (or serves the one systemd passed), loads profiles,
/// tells systemd it is ready, serves, then drains requests, lets refreshes
/// in flight finish and removes the socket it bound itself. Time is
/// `clock`'s: tests run the agent in-process with a manual one.
pub async fn run(
    options: Options,
    inherited: Option<socket::Inherited>,
    clock: Arc<dyn clock::Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    strict::check_paths(&options.paths)?;
    let config = Config::load(&options.paths.config_file)?;
    let fleet = open_fleet(&config, &options.paths, options.timeouts.http)?;
    let listener = listen(&options.socket, inherited).await?;
    let token_socket = options.token_socket.clone().or(config.token_socket.clone());
    let token_listener = match &token_socket {
        Some(path) => Some(listen_for_tokens(path).await?),
        None => None,
    };
    let shared = Arc::new(shared_state(&options, &config, clock)?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = stop_tx.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let tick = shared.tick.clone();
    let agent = agent::Agent::start(
        &config,
        options.paths.clone(),
        shared,
        stop_tx,
        options.timeouts.add_wait,
        fleet,
    )
    .await;
    if let Some(every) = options.timeouts.upgrade_check {
        upgrade::watch(Arc::clone(&agent), every, stop_rx.clone());
    }
    if let Some(every) = options.timeouts.release_code {
        resident::give_back_when_idle(every, &tick);
    }
    // The socket listens already: clients that connect from now on are served.
    notify::ready();
    let mut stopping = stop_rx.clone();
    tokio::spawn(async move {
        if stopping.wait_for(|stop| *stop).await.is_ok() {
            notify::stopping();
        }
    });
    let forwarded = server::Forwarded {
        profiles: match options.token_socket_profiles.is_empty() {
            true => config.token_socket_profiles.clone().into(),
            false => options.token_socket_profiles.clone().into(),
        },
    };
    let token_only = token_listener.map(|listener| {
        let (agent, limits, stop) = (Arc::clone(&agent), options.limits.clone(), stop_rx.clone());
        tokio::spawn(server::serve(
            listener,
            agent,
            limits,
            server::Access::TokenOnly(forwarded),
            stop,
        ))
    });
    server::serve(
        listener,
        Arc::clone(&agent),
        options.limits.clone(),
        server::Access::Full,
        stop_rx,
    )
    .await;
    if let Some(task) = token_only {
        let _ = task.await;
    }
    agent.stop_profiles().await;
    // Our listeners unlinked their socket files when they closed, before
    // the drain (`reclaim_name`): a file there now is a newer agent's.
    tracing::info!("stopped");
    Ok(())
}

/// The token socket: token requests only, for forwarding.
async fn listen_for_tokens(
    path: &std::path::Path,
) -> Result<interprocess::local_socket::tokio::Listener, RunError> {
    let listener = socket::bind(path).await?;
    tracing::info!(socket = %path.display(), "listening for token requests only");
    Ok(listener)
}

/// What every profile's task shares, and the tick thread they wait on.
fn shared_state(
    options: &Options,
    config: &Config,
    clock: Arc<dyn clock::Clock>,
) -> Result<shared::Shared, RunError> {
    let tick_ms = i64::try_from(options.timeouts.tick.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    Ok(shared::Shared {
        http: http::Clients::new(config, options.timeouts.http)?,
        events: events::Events::default(),
        tick: tick::start(Arc::clone(&clock), tick_ms),
        clock,
        default_lifetime: config.default_lifetime(),
        client_wait: options.timeouts.client_wait,
        http_timeout_ms: i64::try_from(options.timeouts.http.as_millis()).unwrap_or(i64::MAX),
        answer_wait: options.timeouts.answer_wait.max(options.timeouts.http),
        tick_ms,
        spent: spent::Spent::new(Some(options.paths.state_dir.clone())),
        budgets: budget::Budgets::new(Some(options.paths.state_dir.clone())),
    })
}

/// The fleet of `[fleet]`, its settings checked; `None` without one.
fn open_fleet(
    config: &Config,
    paths: &config::Paths,
    http_timeout: Duration,
) -> Result<Option<Arc<fleet::Fleet>>, RunError> {
    let Some(settings) = &config.fleet else {
        return Ok(None);
    };
    let invalid = |m: String| RunError::Config(config::ConfigError::Invalid(m));
    let seen = paths.state_dir.join("fleet-seen.json");
    let fleet = fleet::Fleet::open(settings, Some(seen)).map_err(|e| invalid(e.to_string()))?;
    // The lock's lease must outlast a whole token request, with room.
    let needed = http_timeout.as_secs() + 2;
    if fleet.lease_secs < needed {
        return Err(invalid(format!(
            "[fleet]: lease_secs = {} is shorter than a token request may take (the HTTP timeout, {} s, \
             plus 2 s): set lease_secs to {needed} or more",
            fleet.lease_secs,
            http_timeout.as_secs()
        )));
    }
    tracing::info!(member = %fleet.member, role = ?fleet.role, "fleet mode on");
    if let Some(key) = fleet.signing_public_key() {
        tracing::info!("the fleet's public key (consumers' public_key): {key}");
    }
    Ok(Some(Arc::new(fleet)))
}

/// The listening socket: the one systemd (or launchd) passed, else our own.
async fn listen(
    socket: &std::path::Path,
    inherited: Option<socket::Inherited>,
) -> Result<interprocess::local_socket::tokio::Listener, RunError> {
    let pid = std::process::id();
    Ok(match inherited {
        Some(inherited) => {
            let path = inherited.path().unwrap_or_else(|| socket.to_owned());
            let listener = inherited.into_listener()?;
            tracing::info!(socket = %path.display(), pid, "listening on the socket systemd or launchd passed");
            listener
        }
        None => {
            let listener = socket::bind(socket).await?;
            tracing::info!(socket = %socket.display(), pid, "listening");
            listener
        }
    })
}

/// Completes on SIGTERM or SIGINT (Ctrl-C where there are no signals);
/// SIGHUP is logged and ignored: a closed terminal must not stop a
/// backgrounded agent. Call within the runtime.
pub fn signals() -> Result<impl Future<Output = ()> + Send + 'static, RunError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
        let mut int = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
        let mut hup = signal(SignalKind::hangup()).map_err(RunError::Signals)?;
        Ok(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                    _ = int.recv() => tracing::info!("SIGINT: shutting down"),
                    _ = hup.recv() => {
                        tracing::info!("SIGHUP ignored");
                        continue;
                    }
                }
                return;
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async move {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
