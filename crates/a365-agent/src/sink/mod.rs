//! File sinks: a profile's current token kept in a file, for tools that
//! read one (a container's secret file, a service's token file). One file
//! per concern:
//!
//! - [`place`]: where a sink may write (a directory nobody else can write);
//! - [`write`]: what is written, and how (atomically, 0600 or 0640).
//!
//! Each sink is one task: it asks the agent for the token as any client
//! does, writes it when it changed, and sleeps until an event of its
//! profile or the token's expiry. A dead profile's file is emptied, so
//! that a reader fails loudly instead of sending a dead token.

mod place;
mod write;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use a365_proto::{ErrorKind, EventKind, FileSink, SinkStatus};
use secrecy::ExposeSecret;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::agent::{Agent, Answer};
use crate::profile::Held;

/// Whether `sink` may be written as it says: its place and its variable.
pub(crate) fn check(sink: &FileSink) -> Result<place::Place, String> {
    write::check_var(sink)?;
    place::Place::check(sink)
}

/// How long a sink waits before asking again after an answer that was
/// neither a token nor a verdict (a refresh failing), or a failed write;
/// doubled each time up to [`RETRY_MAX`].
const RETRY: Duration = Duration::from_secs(30);
const RETRY_MAX: Duration = Duration::from_secs(600);
/// How often a sink of a dead profile asks again: a login or a new
/// credential brings it back without an event the sink would see.
const DEAD_POLL: Duration = Duration::from_secs(60);

/// The sinks being written.
#[derive(Debug, Default)]
pub struct Sinks {
    running: Mutex<BTreeMap<String, Running>>,
}

#[derive(Debug)]
struct Running {
    status: Arc<Mutex<SinkStatus>>,
    task: JoinHandle<()>,
    /// Held while the file is written; `true` once the sink is stopped,
    /// so that no write already on its way lands after that.
    gate: Arc<tokio::sync::Mutex<bool>>,
}

/// A sink taken out of service, to be stopped ([`Replaced::stop`]).
#[derive(Debug)]
pub(crate) struct Replaced(Running);

impl Replaced {
    /// Stops it: a write under way finishes first (awaited, not blocking
    /// the runtime, for a slow disk), none starts after. Its settings.
    pub(crate) async fn stop(self) -> FileSink {
        self.0.task.abort();
        *self.0.gate.lock().await = true;
        lock(&self.0.status).sink.clone()
    }
}

impl Sinks {
    /// Checks where `sink` writes and starts keeping it, in place of the
    /// sink of its name (returned, to be stopped); the first write happens
    /// in the background, as soon as the profile has a token.
    pub(crate) fn start(
        &self,
        agent: &Arc<Agent>,
        sink: FileSink,
    ) -> Result<Option<Replaced>, String> {
        let place = check(&sink)?;
        let status = Arc::new(Mutex::new(SinkStatus {
            sink: sink.clone(),
            written_at: None,
            expires_at: None,
            writes: 0,
            error: Some("not written yet".into()),
        }));
        let events = agent.shared().events.subscribe();
        let gate = Arc::new(tokio::sync::Mutex::new(false));
        let keeper = Keeper {
            agent: Arc::downgrade(agent),
            sink: sink.clone(),
            place,
            status: Arc::clone(&status),
            written: None,
            gate: Arc::clone(&gate),
            retry: RETRY,
        };
        let task = tokio::spawn(keeper.run(events));
        let running = Running { status, task, gate };
        Ok(self.replace(sink.name, running))
    }

    fn replace(&self, name: String, running: Running) -> Option<Replaced> {
        let old = self.lock().insert(name, running)?;
        old.task.abort();
        Some(Replaced(old))
    }

    /// A sink that could not start: listed with why, not written.
    pub(crate) fn failed(&self, sink: FileSink, why: String) -> Option<Replaced> {
        tracing::error!(sink = %sink.name, "not written: {why}");
        let status = Arc::new(Mutex::new(SinkStatus {
            sink: sink.clone(),
            written_at: None,
            expires_at: None,
            writes: 0,
            error: Some(why),
        }));
        let task = tokio::spawn(async {});
        let gate = Arc::new(tokio::sync::Mutex::new(true));
        self.replace(sink.name, Running { status, task, gate })
    }

    /// Stops keeping `name` (a write under way finishes first); its
    /// settings, if it was kept.
    pub(crate) async fn stop(&self, name: &str) -> Option<FileSink> {
        let running = self.lock().remove(name)?;
        Some(Replaced(running).stop().await)
    }

    pub(crate) fn get(&self, name: &str) -> Option<FileSink> {
        self.lock().get(name).map(|r| lock(&r.status).sink.clone())
    }

    pub(crate) fn list(&self) -> Vec<SinkStatus> {
        self.lock()
            .values()
            .map(|r| lock(&r.status).clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn lock(status: &Mutex<SinkStatus>) -> std::sync::MutexGuard<'_, SinkStatus> {
    status.lock().unwrap_or_else(|e| e.into_inner())
}

/// One sink's task.
struct Keeper {
    agent: Weak<Agent>,
    sink: FileSink,
    place: place::Place,
    status: Arc<Mutex<SinkStatus>>,
    /// The token in the file (`None`: none, or the file was emptied).
    written: Option<Arc<Held>>,
    /// [`Running::gate`].
    gate: Arc<tokio::sync::Mutex<bool>>,
    /// The next wait after a failure.
    retry: Duration,
}

/// What the agent said when asked for the token.
enum Asked {
    Token {
        profile: String,
        held: Arc<Held>,
    },
    /// The profile cannot give a token until the user acts, or is gone.
    Dead(String),
    /// Not now (a refresh failing, the agent stopping): ask again later.
    NotNow(String),
}

impl Keeper {
    async fn run(mut self, mut events: broadcast::Receiver<a365_proto::Event>) {
        loop {
            let asked = self.ask().await;
            let (watched, wake) =
                match asked {
                    Asked::Token { profile, held } => {
                        let changed = self.written.as_ref().is_none_or(|w| {
                            w.secret.expose_secret() != held.secret.expose_secret()
                        });
                        let written = !changed || self.write(&held).await;
                        let mut wake = held.expires_at_ms.map(|exp| {
                            let now = self.now_ms();
                            Duration::from_millis(u64::try_from(exp - now).unwrap_or(0) + 1_000)
                        });
                        if written {
                            self.retry = RETRY;
                        } else {
                            // Written again soon: a full disk, a directory
                            // being repaired.
                            wake = Some(wake.map_or(self.retry, |w| w.min(self.retry)));
                            self.retry = (self.retry * 2).min(RETRY_MAX);
                        }
                        (profile, wake)
                    }
                    Asked::Dead(why) => {
                        self.empty(why).await;
                        (self.sink.profile.clone(), Some(DEAD_POLL))
                    }
                    Asked::NotNow(why) => {
                        // A token past its expiry is dead to every reader.
                        let expired = self.written.as_ref().is_some_and(|w| {
                            w.expires_at_ms.is_some_and(|exp| exp <= self.now_ms())
                        });
                        if expired {
                            self.empty(format!("the token expired and none came: {why}"))
                                .await;
                        }
                        // Backing off: asking may start a workspace exchange.
                        let wait = self.retry;
                        self.retry = (self.retry * 2).min(RETRY_MAX);
                        (self.sink.profile.clone(), Some(wait))
                    }
                };
            if !self.wait(&mut events, &watched, wake).await {
                return;
            }
        }
    }

    /// The agent's clock (the one its tokens' expiries are judged by).
    fn now_ms(&self) -> i64 {
        match self.agent.upgrade() {
            Some(agent) => agent.shared().clock.now_ms(),
            None => jiff::Timestamp::now().as_millisecond(),
        }
    }

    async fn ask(&self) -> Asked {
        let Some(agent) = self.agent.upgrade() else {
            return Asked::NotNow("the agent is stopping".into());
        };
        let request = a365_proto::Request::Token(a365_proto::TokenRequest {
            profile: Some(self.sink.profile.clone()),
            min_valid_ms: 0,
            scopes: Vec::new(),
            workspace: self.sink.workspace.clone(),
        });
        match agent.handle(request).await {
            Answer::Token { profile, held } => Asked::Token {
                profile: profile.name.clone(),
                held,
            },
            Answer::Response(a365_proto::Response::Error(e)) => match e.kind {
                ErrorKind::NeedsReauth | ErrorKind::UnknownProfile | ErrorKind::InvalidProfile => {
                    Asked::Dead(e.message)
                }
                _ => Asked::NotNow(e.message),
            },
            Answer::Response(_) => Asked::NotNow("the agent answered something else".into()),
        }
    }

    /// Sleeps until an event that may change what the file should hold,
    /// or `wake`; false when the agent is gone.
    async fn wait(
        &self,
        events: &mut broadcast::Receiver<a365_proto::Event>,
        watched: &str,
        wake: Option<Duration>,
    ) -> bool {
        let sleep = tokio::time::sleep(wake.unwrap_or(Duration::from_secs(86_400)));
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return true,
                event = events.recv() => match event {
                    Ok(e) if e.profile == watched || e.profile == self.sink.profile => {
                        if matches!(
                            e.kind,
                            EventKind::Refreshed | EventKind::NeedsReauth | EventKind::Removed
                        ) {
                            return true;
                        }
                    }
                    Ok(_) => {}
                    // Missed events: ask again, whatever they were.
                    Err(broadcast::error::RecvError::Lagged(_)) => return true,
                    Err(broadcast::error::RecvError::Closed) => return false,
                },
            }
        }
    }

    /// Writes `held`'s token; false when it could not be.
    async fn write(&mut self, held: &Arc<Held>) -> bool {
        let content = match write::render(&self.sink, held) {
            Ok(content) => content,
            Err(why) => {
                self.empty(why).await;
                return true;
            }
        };
        let started = std::time::Instant::now();
        let result = self.put(content).await;
        let now = self.now_ms().div_euclid(1000);
        match result {
            Ok(()) => {
                tracing::debug!(
                    sink = %self.sink.name,
                    micros = started.elapsed().as_micros() as u64,
                    "written"
                );
                self.written = Some(Arc::clone(held));
                {
                    let mut status = lock(&self.status);
                    status.written_at = Some(now);
                    status.expires_at = held.expires_at_ms.map(|ms| ms.div_euclid(1000));
                    status.writes += 1;
                    status.error = None;
                }
                self.after_write().await;
                true
            }
            Err(why) => {
                tracing::warn!(sink = %self.sink.name, "cannot write {}: {why}", self.sink.path);
                lock(&self.status).error = Some(why);
                false
            }
        }
    }

    /// Replaces the file with `content`, unless the sink was stopped.
    async fn put(&self, content: zeroize::Zeroizing<Vec<u8>>) -> Result<(), String> {
        let (place, gate) = (self.place.clone(), Arc::clone(&self.gate));
        let done = tokio::task::spawn_blocking(move || {
            let stopped = gate.blocking_lock();
            match *stopped {
                true => Ok(()),
                false => place.write(&content),
            }
        })
        .await;
        done.unwrap_or_else(|e| Err(format!("the write panicked: {e}")))
    }

    /// The file holds no token: its profile is dead or gone.
    async fn empty(&mut self, why: String) {
        let already = lock(&self.status).error.as_deref() == Some(why.as_str());
        if self.written.is_none() && already {
            return;
        }
        let result = self.put(zeroize::Zeroizing::new(Vec::new())).await;
        self.written = None;
        let mut status = lock(&self.status);
        status.expires_at = None;
        match result {
            Ok(()) => {
                tracing::warn!(sink = %self.sink.name, "emptied {}: {why}", self.sink.path);
                status.error = Some(why);
            }
            Err(e) => {
                tracing::error!(sink = %self.sink.name, "cannot empty {}: {e}", self.sink.path);
                status.error = Some(format!("{why}; and the file could not be emptied: {e}"));
            }
        }
    }

    /// The sink's `command`, after a write (never given the token).
    async fn after_write(&self) {
        let Some(command) = self.sink.command.clone() else {
            return;
        };
        let envs = vec![
            ("A365_SINK", self.sink.name.clone()),
            ("A365_PROFILE", self.sink.profile.clone()),
            ("A365_SINK_PATH", self.sink.path.clone()),
        ];
        let what = format!("sink '{}' command", self.sink.name);
        let _ =
            tokio::task::spawn_blocking(move || crate::events::run_command(&what, &command, &envs))
                .await;
    }
}
