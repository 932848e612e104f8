//! What happens to profiles, told to whoever listens: `watch` clients (an
//! editor plugin reloading its token), the log, and the user's `on_event`
//! command. Events never carry a secret.

use std::time::Duration;

use a365_proto::{Event, EventKind};
use tokio::sync::broadcast;

/// A watcher this far behind misses events (and is told it lagged).
const BACKLOG: usize = 256;
/// An `on_event` command still running after this is killed.
const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(BACKLOG).0,
        }
    }
}

impl Events {
    pub fn emit(
        &self,
        profile: &str,
        kind: EventKind,
        expires_at_ms: Option<i64>,
        message: String,
    ) {
        match kind {
            EventKind::Refreshed | EventKind::Removed | EventKind::Replayed => {
                tracing::debug!(profile, event = kind.as_str(), "{message}")
            }
            _ => tracing::warn!(profile, event = kind.as_str(), "{message}"),
        }
        let _ = self.tx.send(Event {
            profile: profile.to_owned(),
            kind,
            expires_at: expires_at_ms.map(|ms| ms.div_euclid(1000)),
            message,
        });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Runs `command` (with `sh -c`) for every event, one at a time, with
    /// the event in its environment: `A365_EVENT`, `A365_PROFILE`,
    /// `A365_EXPIRES_AT`, `A365_MESSAGE`. Its output goes to the log.
    pub fn spawn_hook(&self, command: String) {
        let mut rx = self.subscribe();
        tokio::spawn(async move {
            loop {
                let event = match rx.recv().await {
                    Ok(event) => event,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!("on_event: {n} events skipped (the command is too slow)");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let command = command.clone();
                let _ = tokio::task::spawn_blocking(move || run_hook(&command, &event)).await;
            }
        });
    }
}

fn run_hook(command: &str, event: &Event) {
    let envs = [
        ("A365_EVENT", event.kind.as_str().to_owned()),
        ("A365_PROFILE", event.profile.clone()),
        (
            "A365_EXPIRES_AT",
            event.expires_at.map(|e| e.to_string()).unwrap_or_default(),
        ),
        ("A365_MESSAGE", event.message.clone()),
    ];
    run_command(
        &format!("on_event ({})", event.kind.as_str()),
        command,
        &envs,
    );
}

/// Runs a user's `command` with `sh -c` and `envs`, never handing it a
/// token (not even an `A365_TOKEN` the agent inherited); its failure and
/// the start of its error output go to the log, as `what`. Killed after
/// [`HOOK_TIMEOUT`].
pub(crate) fn run_command(what: &str, command: &str, envs: &[(&str, String)]) {
    let mut child = match std::process::Command::new("sh")
        .args(["-c", command])
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .env_remove("A365_TOKEN")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            tracing::warn!("{what}: cannot run `{command}`: {e}");
            return;
        }
    };
    let started = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return,
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    use std::io::Read;
                    let _ = (&mut stderr).take(4096).read_to_string(&mut err);
                }
                tracing::warn!("{what}: the command failed ({status}): {}", err.trim());
                return;
            }
            Ok(None) if started.elapsed() > HOOK_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                tracing::warn!(
                    "{what}: the command was killed after {} s",
                    HOOK_TIMEOUT.as_secs()
                );
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                tracing::warn!("{what}: {e}");
                return;
            }
        }
    }
}
