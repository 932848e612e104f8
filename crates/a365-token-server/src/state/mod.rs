//! What the server knows: clients, live refresh tokens, faults, a record
//! of every request.
//!
//! - here: the state itself, the record of every request, and the fault
//!   the next ones get;
//! - [`oauth`]: clients, refresh tokens, authorization codes and the
//!   grants that issue access tokens;
//! - [`designer`]: Designer Cloud's API tokens, and the knobs that make
//!   its endpoints misbehave.

mod actionwait;
mod designer;
mod oauth;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::ServerConfig;
use crate::fault::Fault;
pub(crate) use oauth::{Grant, PendingCode};

/// One request to `/connect/token` (or revocation, introspection).
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The endpoint's path (`/connect/token`).
    pub path: String,
    pub grant_type: String,
    pub client_id: Option<String>,
    /// `secure=1` was sent (Gov Cloud).
    pub secure: bool,
    /// The refresh token presented (test server: keeping it is fine).
    pub refresh_token: Option<String>,
    pub scope: Option<String>,
    /// The client authenticated with HTTP Basic.
    pub basic: bool,
    /// The `Authorization: Basic` pair, as sent (before any decoding).
    pub basic_pair: Option<(String, String)>,
    /// Every form field, as sent.
    pub form: std::collections::BTreeMap<String, String>,
    /// Form fields beyond the standard ones of the grant (`audience`,
    /// `resource`, …): what a profile's `token_params` sent.
    pub other: std::collections::BTreeMap<String, String>,
    /// The HTTP status sent; 0 while in flight and when none was sent
    /// (`Hang`, `Drop`, `RotateThenDrop`).
    pub status: u16,
    /// UTC epoch milliseconds of arrival.
    pub at_ms: i64,
}

/// The shared state of one server, for [`crate::serve`].
#[derive(Debug)]
pub struct State {
    pub(crate) issuer: String,
    /// One stderr line per request (the binary), never token values.
    log: bool,
    inner: Mutex<Inner>,
    /// Altium's ActionWait: sign-ins completed, polls, scripted answers.
    pub(crate) actionwait: actionwait::ActionWait,
    /// The mock API behind the tokens ([`crate::api`]).
    pub(crate) api: crate::api::Api,
}

#[derive(Debug)]
struct Inner {
    lifetime: Duration,
    rotate: bool,
    require_basic: bool,
    basic_raw: bool,
    scopes: Vec<String>,
    clients: HashMap<String, String>,
    /// Clients without a secret (PKCE only).
    public_clients: Vec<String>,
    /// Altium Identity: Gov Cloud, and the user's workspaces.
    gov: bool,
    workspaces: Vec<crate::MockWorkspace>,
    /// The scope each live refresh token was granted, kept on refresh.
    refresh_scopes: HashMap<String, String>,
    /// Live refresh token → client id.
    refresh_tokens: HashMap<String, String>,
    fault: Option<(Fault, Option<usize>)>,
    recorded: Vec<RecordedRequest>,
    access_issued: Vec<String>,
    refresh_issued: Vec<String>,
    /// Requests that presented a refresh token already spent: what a
    /// provider that revokes the grant on a replay would punish.
    replays: usize,
    /// Authorization codes not yet redeemed.
    codes: HashMap<String, PendingCode>,
    designer: designer::Designer,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The OS RNG failing is not something a test server can recover from.
    if getrandom::fill(&mut buf).is_err() {
        buf.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (now_ms() as u8).wrapping_add(i as u8));
    }
    URL_SAFE_NO_PAD.encode(buf)
}

impl State {
    pub fn new(config: &ServerConfig, issuer: String) -> State {
        State {
            issuer,
            log: false,
            inner: Mutex::new(Inner {
                lifetime: config.lifetime,
                rotate: config.rotate,
                require_basic: config.require_basic,
                basic_raw: config.basic_raw,
                scopes: config.scopes.clone(),
                clients: config.clients.iter().cloned().collect(),
                refresh_tokens: HashMap::new(),
                fault: None,
                recorded: Vec::new(),
                access_issued: Vec::new(),
                refresh_issued: Vec::new(),
                replays: 0,
                codes: HashMap::new(),
                designer: designer::Designer::default(),
                public_clients: config.public_clients.clone(),
                gov: config.gov,
                workspaces: config.workspaces.clone(),
                refresh_scopes: HashMap::new(),
            }),
            actionwait: actionwait::ActionWait::default(),
            api: crate::api::Api::default(),
        }
    }

    /// Logs one line per request to stderr: grant type, client id, status.
    pub fn with_stderr_log(mut self) -> State {
        self.log = true;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn requests(&self) -> usize {
        self.lock().recorded.len()
    }

    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.lock().recorded.clone()
    }

    pub fn clear_recorded(&self) {
        self.lock().recorded.clear();
    }

    /// Counts a request as it arrives (so hung ones count too); returns
    /// its index for [`State::finish`].
    pub(crate) fn begin(&self, request: RecordedRequest) -> usize {
        let mut inner = self.lock();
        inner.recorded.push(request);
        inner.recorded.len() - 1
    }

    /// Notes the status sent (0: none) and logs the request.
    pub(crate) fn finish(&self, index: usize, status: u16) {
        let mut inner = self.lock();
        let Some(record) = inner.recorded.get_mut(index) else {
            return;
        };
        record.status = status;
        if self.log {
            let status = match status {
                0 => "none (connection dropped or held)".to_owned(),
                s => s.to_string(),
            };
            eprintln!(
                "a365-token-server: grant_type={:?} client_id={:?} secure={} status={status}",
                record.grant_type,
                record.client_id.as_deref().unwrap_or(""),
                record.secure,
            );
        }
    }

    pub fn set_fault(&self, fault: Fault, times: Option<usize>) {
        self.lock().fault = Some((fault, times));
    }

    pub fn clear_fault(&self) {
        self.lock().fault = None;
    }

    /// The fault for this request, if any, counting it down.
    pub(crate) fn take_fault(&self) -> Option<Fault> {
        let mut inner = self.lock();
        let (fault, times) = inner.fault.clone()?;
        match times {
            Some(0) => {
                inner.fault = None;
                None
            }
            Some(n) => {
                inner.fault = if n == 1 {
                    None
                } else {
                    Some((fault.clone(), Some(n - 1)))
                };
                Some(fault)
            }
            None => Some(fault),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_count_down() {
        let state = State::new(&ServerConfig::default(), "http://x".into());
        state.set_fault(Fault::Status(500), Some(2));
        assert_eq!(state.take_fault(), Some(Fault::Status(500)));
        assert_eq!(state.take_fault(), Some(Fault::Status(500)));
        assert_eq!(state.take_fault(), None);
        state.set_fault(Fault::Hang, None);
        assert_eq!(state.take_fault(), Some(Fault::Hang));
        assert_eq!(state.take_fault(), Some(Fault::Hang));
    }
}
