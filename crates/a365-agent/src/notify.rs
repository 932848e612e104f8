//! Tells systemd (`Type=notify`) when the agent is ready and when it is
//! stopping, so `systemctl start` returns only once clients are served.
//! Without `NOTIFY_SOCKET` (any other way of running it) these do nothing.

/// `READY=1`: the socket serves.
pub fn ready() {
    send("READY=1", &[sd_state::READY]);
}

/// `STOPPING=1`: shutdown has begun; requests in flight still finish.
pub fn stopping() {
    send("STOPPING=1", &[sd_state::STOPPING]);
}

#[cfg(target_os = "linux")]
mod sd_state {
    pub const READY: sd_notify::NotifyState<'static> = sd_notify::NotifyState::Ready;
    pub const STOPPING: sd_notify::NotifyState<'static> = sd_notify::NotifyState::Stopping;
}

#[cfg(target_os = "linux")]
fn send(what: &str, states: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    match sd_notify::notify(states) {
        Ok(()) => tracing::debug!("told systemd {what}"),
        Err(e) => tracing::warn!("cannot tell systemd {what}: {e}"),
    }
}

#[cfg(not(target_os = "linux"))]
mod sd_state {
    pub const READY: () = ();
    pub const STOPPING: () = ();
}

#[cfg(not(target_os = "linux"))]
fn send(_what: &str, _states: &[()]) {}
