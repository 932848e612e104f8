//! One profile: its current token, published through a `watch` channel so
//! readers never wait on a lock, and one refresher task that is the only
//! place a token request is made (single flight by construction).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use a365_proto::{
    ErrorKind, ErrorReply, EventKind, Kind, ProfileSpec, ProfileStatus, StoreKind, TokenReply,
    WireSecret,
};
use a365_store::{Credential, Store};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{self, Endpoint};
use crate::provider::{self, ProviderError, oauth::Call, refresh::RefreshCredential};
use crate::{jwt, schedule};

/// How long a client waits for a refresh before being told to retry later.
const WAIT: Duration = Duration::from_secs(25);
/// Even with nothing due, the refresher looks at the wall clock this often
/// (at multiples of it, so all profiles at once): tokio's timers stand
/// still while the machine sleeps.
const TICK_MS: i64 = 30_000;

/// What every profile shares.
#[derive(Debug)]
pub struct Shared {
    pub http: reqwest::Client,
    pub events: crate::events::Events,
    pub clock: Arc<dyn Clock>,
    pub default_lifetime: Duration,
}

/// The store that holds a profile's secrets, or why it cannot be used.
#[derive(Debug, Clone)]
pub struct Placed {
    pub kind: StoreKind,
    pub store: Result<Arc<dyn Store>, String>,
}

/// What a refresh of any kind brought.
struct Obtained {
    access_token: SecretString,
    /// `None`: never expires (a Designer Cloud token with no `expiredAt`).
    expires_at_ms: Option<i64>,
    scopes: Vec<String>,
    refresh_token: Option<SecretString>,
    /// Designer Cloud: the new token's id.
    token_id: Option<String>,
}

/// A token being served.
#[derive(Debug)]
pub struct Held {
    pub secret: SecretString,
    /// UTC epoch ms; `None` for a token that states no expiry.
    pub expires_at_ms: Option<i64>,
    pub scopes: Vec<String>,
    /// When it was obtained (UTC epoch ms): with the expiry, its lifetime.
    pub obtained_at_ms: i64,
}

impl Held {
    /// How long tokens of this profile live, judging by this one.
    fn lifetime_ms(&self) -> Option<i64> {
        self.expires_at_ms.map(|exp| exp - self.obtained_at_ms)
    }

    fn valid_for(&self, now_ms: i64, min_valid_ms: u64) -> bool {
        let min = i64::try_from(min_valid_ms).unwrap_or(i64::MAX);
        self.expires_at_ms
            .is_none_or(|exp| exp > now_ms.saturating_add(min))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// No token yet; one is being fetched.
    Empty,
    Fresh,
    Refreshing,
    /// The last attempt failed; the next is due at `retry_at_ms`.
    Failing {
        retry_at_ms: i64,
    },
    /// The credential is dead; the message tells the user what to do.
    NeedsReauth(String),
}

/// The published state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub token: Option<Arc<Held>>,
    pub phase: Phase,
    pub last_error: Option<String>,
    pub next_refresh_at_ms: Option<i64>,
    /// Finished refresh attempts, so a waiting client knows one completed.
    pub attempts_done: u64,
}

#[derive(Debug)]
pub struct Profile {
    pub name: String,
    pub spec: ProfileSpec,
    endpoint: Option<Endpoint>,
    /// Where its secrets are saved, rotated refresh tokens included.
    pub placed: Placed,
    shared: Arc<Shared>,
    state: watch::Sender<Snapshot>,
    wake: Notify,
    /// A client needs a better token than the one held.
    demand: AtomicBool,
    /// The longest `min_valid_ms` asked for since the last refresh: a
    /// demand that the token published meanwhile meets costs no request.
    demand_min_valid_ms: std::sync::atomic::AtomicU64,
    /// `a365 refresh`: exchange now even if the token is fresh.
    force: AtomicBool,
    stopping: AtomicBool,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Profile {
    /// Builds the profile from what the store holds and starts its
    /// refresher. A cached access token that is still valid is served
    /// without any token request.
    pub fn start(
        name: String,
        spec: ProfileSpec,
        endpoint: Option<Endpoint>,
        placed: Placed,
        loaded: Result<Option<Credential>, String>,
        shared: Arc<Shared>,
    ) -> Arc<Profile> {
        let now = shared.clock.now_ms();
        let initial = initial_snapshot(&name, &spec, placed.kind, &loaded, now);
        let credential = loaded.ok().flatten();
        let profile = Arc::new(Profile {
            name,
            spec,
            endpoint,
            placed,
            shared,
            state: watch::Sender::new(initial),
            wake: Notify::new(),
            demand: AtomicBool::new(false),
            demand_min_valid_ms: std::sync::atomic::AtomicU64::new(0),
            force: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            task: Mutex::new(None),
        });
        // A login profile that never logged in has nothing to refresh yet.
        let refreshes = match profile.spec.kind {
            Kind::Static => false,
            Kind::AuthorizationCode => credential
                .as_ref()
                .is_some_and(|c| c.access_token.is_some() || c.refresh_token.is_some()),
            _ => true,
        };
        if let (true, Some(credential)) = (refreshes, credential) {
            let handle = tokio::spawn(Arc::clone(&profile).refresher(credential));
            if let Ok(mut task) = profile.task.lock() {
                *task = Some(handle);
            }
        }
        profile
    }

    pub fn snapshot(&self) -> Snapshot {
        self.state.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.state.subscribe()
    }

    /// Stops the refresher, letting a refresh in flight finish and persist.
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        let handle = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }

    /// The held token if it stays valid `min_valid_ms` and has `scopes`;
    /// otherwise asks the refresher and waits for its outcome.
    pub async fn token(
        &self,
        min_valid_ms: u64,
        scopes: &[String],
    ) -> Result<TokenReply, ErrorReply> {
        let mut rx = self.state.subscribe();
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut asked_after: Option<u64> = None;
        loop {
            {
                // Looked at in place: no copy on the hot path, and the
                // borrow ends before any await.
                let snap = rx.borrow_and_update();
                let now = self.shared.clock.now_ms();
                if let Some(held) = snap
                    .token
                    .as_ref()
                    .filter(|h| h.valid_for(now, min_valid_ms))
                {
                    return self.reply(held, scopes);
                }
                if let Some(err) = self.why_not_now(&snap, now, min_valid_ms, asked_after) {
                    return Err(err);
                }
                if asked_after.is_none() {
                    asked_after = Some(snap.attempts_done);
                    self.demand_min_valid_ms
                        .fetch_max(min_valid_ms, Ordering::SeqCst);
                    self.demand.store(true, Ordering::SeqCst);
                    self.wake.notify_one();
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err(unavailable(format!("profile '{}' was removed", self.name)));
                }
                Err(_) => {
                    return Err(unavailable(format!(
                        "the token server has not answered for profile '{}' within {} s",
                        self.name,
                        WAIT.as_secs()
                    )));
                }
            }
        }
    }

    /// The error to answer at once when waiting cannot help, `None` when a
    /// refresh may still bring a good enough token.
    fn why_not_now(
        &self,
        snap: &Snapshot,
        now: i64,
        min_valid_ms: u64,
        asked_after: Option<u64>,
    ) -> Option<ErrorReply> {
        if let Phase::NeedsReauth(message) = &snap.phase {
            return Some(ErrorReply::new(ErrorKind::NeedsReauth, message.clone()));
        }
        let remaining = snap
            .token
            .as_ref()
            .and_then(|h| h.expires_at_ms)
            .map(|exp| exp - now);
        if self.spec.kind == Kind::Static {
            return Some(match remaining {
                Some(ms) if ms <= 0 => {
                    ErrorReply::new(ErrorKind::NeedsReauth, self.expired_static_message())
                }
                _ => unavailable(format!(
                    "the token of profile '{}' is valid for {} more, less than --min-valid {}; it cannot be \
                     refreshed (static token)",
                    self.name,
                    human_ms(remaining.unwrap_or(0)),
                    human_ms(i64::try_from(min_valid_ms).unwrap_or(i64::MAX))
                )),
            });
        }
        let error = snap.last_error.as_deref().unwrap_or("unknown error");
        if let Phase::Failing { retry_at_ms } = snap.phase
            && (retry_at_ms > now || asked_after.is_some_and(|n| snap.attempts_done > n))
        {
            return Some(unavailable(format!(
                "no token for profile '{}' valid for {}: {error}; next attempt in {}",
                self.name,
                human_ms(i64::try_from(min_valid_ms).unwrap_or(i64::MAX)),
                human_ms(retry_at_ms - now)
            )));
        }
        // No refresh can meet a guarantee longer than the tokens live: say
        // so at once instead of spending a (rate-limited) token request.
        let lifetime = snap.token.as_ref().and_then(|h| h.lifetime_ms());
        if let Some(lifetime) =
            lifetime.filter(|l| i64::try_from(min_valid_ms).unwrap_or(i64::MAX) >= *l)
        {
            return Some(unavailable(format!(
                "profile '{}' gets tokens valid for {}: --min-valid {} cannot be met",
                self.name,
                human_ms(lifetime),
                human_ms(i64::try_from(min_valid_ms).unwrap_or(i64::MAX))
            )));
        }
        let refreshed_since_asked = asked_after.is_some_and(|n| snap.attempts_done > n);
        if refreshed_since_asked && snap.phase == Phase::Fresh {
            return Some(unavailable(format!(
                "profile '{}' gets tokens valid for {}, less than --min-valid {}",
                self.name,
                human_ms(remaining.unwrap_or(0)),
                human_ms(i64::try_from(min_valid_ms).unwrap_or(i64::MAX))
            )));
        }
        None
    }

    fn reply(&self, held: &Held, wanted: &[String]) -> Result<TokenReply, ErrorReply> {
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|w| !held.scopes.iter().any(|s| s == *w))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(ErrorReply::new(
                ErrorKind::MissingScope,
                format!(
                    "the token of profile '{}' lacks scope {}; it has: {}",
                    self.name,
                    missing.join(", "),
                    if held.scopes.is_empty() {
                        "no scopes".into()
                    } else {
                        held.scopes.join(" ")
                    }
                ),
            ));
        }
        Ok(TokenReply {
            profile: self.name.clone(),
            token: WireSecret::new(held.secret.clone()),
            expires_at: held.expires_at_ms.map(|ms| ms.div_euclid(1000)),
            scopes: held.scopes.clone(),
        })
    }

    /// Forces an exchange now and waits for its outcome (`a365 refresh`).
    pub async fn force_refresh(&self) -> Result<String, ErrorReply> {
        let mut rx = self.state.subscribe();
        let before = rx.borrow_and_update().clone();
        if let Phase::NeedsReauth(message) = &before.phase {
            return Err(ErrorReply::new(ErrorKind::NeedsReauth, message.clone()));
        }
        if self.spec.kind == Kind::Static {
            return Err(ErrorReply::new(
                ErrorKind::InvalidProfile,
                format!(
                    "profile '{}' holds a static token: there is nothing to refresh",
                    self.name
                ),
            ));
        }
        self.force.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(unavailable("the profile was removed")),
                Err(_) => return Err(unavailable("the token server did not answer in time")),
            }
            let snap = rx.borrow_and_update().clone();
            if snap.attempts_done == before.attempts_done {
                continue;
            }
            return match snap.phase {
                Phase::NeedsReauth(message) => {
                    Err(ErrorReply::new(ErrorKind::NeedsReauth, message))
                }
                Phase::Failing { .. } => Err(unavailable(format!(
                    "refresh failed: {}",
                    snap.last_error.as_deref().unwrap_or("unknown error")
                ))),
                _ => {
                    let exp = snap.token.as_ref().and_then(|h| h.expires_at_ms);
                    let now = self.shared.clock.now_ms();
                    Ok(format!(
                        "profile '{}' refreshed; the new token expires in {}",
                        self.name,
                        exp.map(|e| human_ms(e - now))
                            .unwrap_or_else(|| "(no expiry)".into())
                    ))
                }
            };
        }
    }

    pub fn status(&self, is_default: bool) -> ProfileStatus {
        let snap = self.snapshot();
        let now = self.shared.clock.now_ms();
        let token = snap.token.as_deref();
        let expired = token
            .and_then(|t| t.expires_at_ms)
            .is_some_and(|exp| exp <= now);
        let state = match &snap.phase {
            Phase::Empty => "empty",
            Phase::Fresh if expired => "expired",
            Phase::Fresh => "fresh",
            Phase::Refreshing => "refreshing",
            Phase::Failing { .. } => "failing",
            Phase::NeedsReauth(_) => "needs-reauth",
        };
        let scopes = token.map(|t| t.scopes.clone()).unwrap_or_default();
        ProfileStatus {
            name: self.name.clone(),
            kind: self.spec.kind,
            realm: self.spec.realm.clone(),
            token_url: self.endpoint.as_ref().map(|e| e.token_url.to_string()),
            state: state.into(),
            expires_at: token
                .and_then(|t| t.expires_at_ms)
                .map(|ms| ms.div_euclid(1000)),
            next_refresh_at: snap.next_refresh_at_ms.map(|ms| ms.div_euclid(1000)),
            workspace: jwt::workspace(&scopes),
            scopes_not_granted: match token {
                Some(held) => self
                    .spec
                    .scopes
                    .iter()
                    .filter(|s| !held.scopes.contains(s))
                    .cloned()
                    .collect(),
                None => Vec::new(),
            },
            scopes,
            last_error: match &snap.phase {
                Phase::NeedsReauth(message) => Some(message.clone()),
                _ => snap.last_error.clone(),
            },
            store: match &self.placed.store {
                Ok(_) => self.placed.kind.to_string(),
                Err(_) => format!("{} (unavailable)", self.placed.kind),
            },
            is_default,
        }
    }

    fn expired_static_message(&self) -> String {
        format!(
            "the static token of profile '{0}' has expired: create a new token in Altium 365 (Admin → \
             Developer), then run `a365 add {0} --kind static --replace`",
            self.name
        )
    }

    /// The refresher: sleeps until the next refresh is due (checking the
    /// wall clock at least every [`TICK_MS`]) or until woken by a client.
    /// It lives as long as its profile, mostly asleep: the work it awaits
    /// (an HTTP exchange, a save) is boxed, so that each idle profile's
    /// task holds only the loop's state (0.6 KiB instead of 1.4 KiB).
    async fn refresher(self: Arc<Self>, mut credential: Credential) {
        let mut failures = 0u32;
        let mut unsaved = false;
        // Deleting replaced Designer Cloud tokens: when, and after how many
        // failures (backing off from 2 s to an hour).
        let mut retire_at = self.shared.clock.now_ms();
        let mut retire_failures = 0u32;
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            if unsaved {
                unsaved = Box::pin(self.persist(&credential)).await.is_err();
            }
            if !unsaved
                && !credential.retired_token_ids.is_empty()
                && self.shared.clock.now_ms() >= retire_at
            {
                if Box::pin(self.retire_old_tokens(&mut credential))
                    .await
                    .is_ok()
                {
                    retire_failures = 0;
                } else {
                    retire_failures = retire_failures.saturating_add(1);
                    let wait = (1_000i64 << retire_failures.min(12)).min(3_600_000);
                    retire_at = self.shared.clock.now_ms() + wait;
                }
            }
            let now = self.shared.clock.now_ms();
            let snap = self.snapshot();
            let forced = self.force.swap(false, Ordering::SeqCst);
            let wanted_ms = self.demand_min_valid_ms.swap(0, Ordering::SeqCst);
            let mut demanded = self.demand.swap(false, Ordering::SeqCst);
            if demanded
                && snap.phase == Phase::Fresh
                && snap
                    .token
                    .as_ref()
                    .is_some_and(|h| h.valid_for(now, wanted_ms))
            {
                // The client looked before the latest token was published:
                // wake it to look again instead of asking the server.
                demanded = false;
                self.state.send_modify(|_| {});
            }
            let due = match &snap.phase {
                Phase::NeedsReauth(_) => None,
                Phase::Empty => Some(now),
                Phase::Failing { retry_at_ms } => Some(*retry_at_ms),
                Phase::Fresh | Phase::Refreshing => snap.next_refresh_at_ms,
            };
            let backing_off =
                matches!(snap.phase, Phase::Failing { retry_at_ms } if retry_at_ms > now);
            let dead = matches!(snap.phase, Phase::NeedsReauth(_));
            if !dead && (forced || due.is_some_and(|d| d <= now) || (demanded && !backing_off)) {
                let outcome = Box::pin(self.refresh_once(&mut credential, &mut failures)).await;
                unsaved = outcome.is_err();
                continue;
            }
            let due = match credential.retired_token_ids.is_empty() {
                true => due,
                false => Some(due.map_or(retire_at, |d| d.min(retire_at))),
            };
            // The tick falls on a multiple of TICK_MS of the wall clock, the
            // same instant for every profile: an idle agent wakes twice a
            // minute, not twice per profile.
            let tick = TICK_MS - now.rem_euclid(TICK_MS);
            let sleep_ms = due.map_or(tick, |d| (d - now).clamp(0, tick));
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(sleep_ms as u64)) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// One token request and its consequences. A rotated refresh token (or
    /// a renewed Designer Cloud token) is saved, fsync'd, before the new
    /// access token is published. `Err` means the new credential could not
    /// be saved and is held in memory.
    async fn refresh_once(
        &self,
        credential: &mut Credential,
        failures: &mut u32,
    ) -> Result<(), ()> {
        let Some(endpoint) = &self.endpoint else {
            return Ok(());
        };
        let now = self.shared.clock.now_ms();
        if self.spec.kind == Kind::AuthorizationCode && credential.refresh_token.is_none() {
            self.without_refresh_token(now);
            return Ok(());
        }
        self.state.send_modify(|s| {
            if s.phase != Phase::Empty {
                s.phase = Phase::Refreshing;
            }
        });
        tracing::debug!(profile = %self.name, url = %endpoint.token_url, kind = %self.spec.kind, "refreshing");
        let result = self.obtain(endpoint, credential, now).await;
        let now = self.shared.clock.now_ms();
        // Whoever asked before or during this exchange is answered by it.
        self.demand.store(false, Ordering::SeqCst);
        match result {
            Ok(got) => {
                *failures = 0;
                let rotated = got.refresh_token.is_some();
                if let Some(rt) = got.refresh_token {
                    credential.refresh_token = Some(rt);
                }
                if let Some(id) = got.token_id {
                    // The old token is deleted only once the new one is saved.
                    if let Some(old) = credential.token_id.replace(id) {
                        credential.retired_token_ids.push(old);
                    }
                }
                credential.access_token = Some(got.access_token.clone());
                credential.access_expires_at_ms = got.expires_at_ms;
                credential.access_scopes = got.scopes.clone();
                credential.updated_at_ms = now;
                // Durable before anything else: the old refresh token is dead.
                let saved = self.persist_with(credential, rotated).await;
                let next = got
                    .expires_at_ms
                    .map(|exp| schedule::refresh_at(now, exp, fastrand::f64()));
                tracing::info!(
                    profile = %self.name,
                    expires_in_s = got.expires_at_ms.map(|exp| (exp - now) / 1000),
                    rotated,
                    "token refreshed"
                );
                let held = Held {
                    secret: got.access_token,
                    expires_at_ms: got.expires_at_ms,
                    scopes: got.scopes,
                    obtained_at_ms: now,
                };
                let expires_at_ms = held.expires_at_ms;
                self.state.send_modify(|s| {
                    s.token = Some(Arc::new(held));
                    s.phase = Phase::Fresh;
                    s.next_refresh_at_ms = next;
                    s.last_error = saved.as_ref().err().cloned();
                    s.attempts_done += 1;
                });
                self.shared.events.emit(
                    &self.name,
                    EventKind::Refreshed,
                    expires_at_ms,
                    "a new token is being served".into(),
                );
                saved.map_err(|_| ())
            }
            Err(ProviderError::Dead(reason)) => {
                tracing::warn!(profile = %self.name, "credential rejected: {reason}");
                let message = format!("{reason}. {}", self.reauth_advice());
                self.shared
                    .events
                    .emit(&self.name, EventKind::NeedsReauth, None, message.clone());
                self.state.send_modify(|s| {
                    s.phase = Phase::NeedsReauth(message);
                    s.last_error = Some(reason);
                    s.next_refresh_at_ms = None;
                    s.attempts_done += 1;
                });
                Ok(())
            }
            Err(mut e) => {
                *failures = failures.saturating_add(1);
                // No token to serve, but a new refresh token: the old one
                // is dead, so it is saved before anything else.
                let mut saved = Ok(());
                if let ProviderError::Unusable { refresh_token, .. } = &mut e
                    && let Some(rt) = refresh_token.take()
                {
                    credential.refresh_token = Some(rt);
                    credential.updated_at_ms = now;
                    saved = self.persist_with(credential, true).await;
                }
                let (rejected, retry_after) = match &e {
                    ProviderError::Transient { retry_after, .. } => (false, *retry_after),
                    ProviderError::Unusable { .. } => (false, None),
                    _ => (true, None),
                };
                let wait = schedule::backoff(*failures, rejected, retry_after, fastrand::f64());
                let retry_at =
                    now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
                tracing::warn!(
                    profile = %self.name,
                    attempt = *failures,
                    retry_in_ms = wait.as_millis() as u64,
                    "refresh failed: {e}"
                );
                let held_expiry = self.snapshot().token.as_ref().and_then(|h| h.expires_at_ms);
                // The server asked us to wait past the held token's end:
                // say so now, not once clients start failing.
                let gap = match held_expiry {
                    Some(exp) if exp > now && exp < retry_at => {
                        tracing::warn!(
                            profile = %self.name,
                            "the held token expires in {} but the next attempt is in {}",
                            human_ms(exp - now),
                            human_ms(retry_at - now)
                        );
                        format!(
                            "; the held token expires in {}, before that attempt",
                            human_ms(exp - now)
                        )
                    }
                    _ => String::new(),
                };
                self.shared.events.emit(
                    &self.name,
                    EventKind::RefreshFailed,
                    held_expiry,
                    format!("{e}; next attempt in {}{gap}", human_ms(retry_at - now)),
                );
                self.state.send_modify(|s| {
                    s.phase = Phase::Failing {
                        retry_at_ms: retry_at,
                    };
                    s.last_error = Some(e.to_string());
                    s.next_refresh_at_ms = Some(retry_at);
                    s.attempts_done += 1;
                });
                saved.map_err(|_| ())
            }
        }
    }

    /// The one network call of a refresh, by kind.
    async fn obtain(
        &self,
        endpoint: &Endpoint,
        credential: &Credential,
        now: i64,
    ) -> Result<Obtained, ProviderError> {
        let call = Call {
            http: &self.shared.http,
            token_url: &endpoint.token_url,
            now_ms: now,
            default_lifetime: self.shared.default_lifetime,
        };
        let scopes = config::requested_scopes(&self.spec);
        let missing = || ProviderError::Dead("a secret this profile needs is missing".into());
        let client_id = self.spec.client_id.as_deref().unwrap_or_default();
        let fresh = match self.spec.kind {
            Kind::Static => return Err(missing()),
            Kind::Refresh | Kind::AuthorizationCode => {
                let refresh_token = credential.refresh_token.as_ref().ok_or_else(missing)?;
                let empty = SecretString::from("");
                // A public client (PKCE without a secret) sends an empty one.
                let client_secret = match (&credential.client_secret, self.spec.kind) {
                    (Some(secret), _) => secret,
                    (None, Kind::AuthorizationCode) => &empty,
                    (None, _) => return Err(missing()),
                };
                let secrets = RefreshCredential {
                    client_id,
                    client_secret,
                    refresh_token,
                };
                // The login asked for its scopes; a refresh keeps them.
                let scopes = if self.spec.kind == Kind::AuthorizationCode {
                    &[][..]
                } else {
                    &scopes[..]
                };
                provider::refresh::exchange(call, &secrets, scopes, endpoint.secure).await?
            }
            Kind::ClientCredentials => {
                let secret = credential.client_secret.as_ref().ok_or_else(missing)?;
                provider::client_credentials::exchange(
                    call,
                    client_id,
                    secret,
                    &scopes,
                    endpoint.secure,
                )
                .await?
            }
            Kind::DesignerCloud => {
                let current = credential.access_token.as_ref().ok_or_else(missing)?;
                let lifetime = self
                    .spec
                    .renew_lifetime_secs
                    .unwrap_or(config::DEFAULT_RENEW_LIFETIME_SECS);
                let renewed = provider::designer_cloud::renew(
                    &self.shared.http,
                    &endpoint.token_url,
                    current,
                    lifetime,
                    now,
                )
                .await?;
                return Ok(Obtained {
                    access_token: renewed.token,
                    expires_at_ms: renewed.expires_at_ms,
                    scopes: Vec::new(),
                    refresh_token: None,
                    token_id: Some(renewed.token_id),
                });
            }
        };
        Ok(Obtained {
            access_token: fresh.access_token,
            expires_at_ms: Some(fresh.expires_at_ms),
            scopes: fresh.scopes,
            refresh_token: fresh.refresh_token,
            token_id: None,
        })
    }

    /// An `authorization-code` profile without a refresh token serves its
    /// token until it expires, then needs a new browser login.
    fn without_refresh_token(&self, now: i64) {
        let exp = self
            .snapshot()
            .token
            .as_ref()
            .and_then(|h| h.expires_at_ms)
            .filter(|exp| *exp > now);
        self.demand.store(false, Ordering::SeqCst);
        let login = format!(
            "the server granted no refresh token (offline_access): log in again with `a365 login {}`",
            self.name
        );
        self.state.send_modify(|s| {
            match exp {
                Some(exp) => {
                    s.next_refresh_at_ms = Some(exp);
                    s.last_error = Some(format!(
                        "the token cannot be renewed before it expires; {login}"
                    ));
                }
                None => {
                    s.phase = Phase::NeedsReauth(format!("the token has expired and {login}"));
                    s.next_refresh_at_ms = None;
                }
            }
            s.attempts_done += 1;
        });
        if exp.is_none() {
            self.shared.events.emit(
                &self.name,
                EventKind::NeedsReauth,
                None,
                format!("the token has expired and {login}"),
            );
        }
    }

    /// The expiry of a held token that the agent cannot renew (a static
    /// token, made for up to a year), for `expires-soon`.
    pub fn unrenewable_expiry(&self) -> Option<i64> {
        if self.spec.kind != Kind::Static {
            return None;
        }
        self.snapshot().token.as_ref()?.expires_at_ms
    }

    /// What to do before an unrenewable token expires.
    pub fn renew_advice(&self) -> String {
        format!(
            "create a new token in Altium 365 (Admin → Developer), then run `a365 add {} --kind static --replace`",
            self.name
        )
    }

    /// What to do about a dead credential, by kind.
    fn reauth_advice(&self) -> String {
        let name = &self.name;
        match self.spec.kind {
            Kind::Static | Kind::Refresh => format!(
                "Create a new refresh token in Altium 365 (Admin → Developer), then run \
                 `a365 add {name} --kind refresh --replace …`"
            ),
            Kind::ClientCredentials => format!(
                "Check the app's client id and secret (Nexar portal → your app → Authorization), \
                 then run `a365 add {name} --kind client-credentials --replace …`"
            ),
            Kind::AuthorizationCode => format!("Log in again: `a365 login {name}`"),
            Kind::DesignerCloud => format!(
                "Create a new API token in Designer Cloud, then run \
                 `a365 add {name} --kind designer-cloud --replace …`"
            ),
        }
    }

    /// Deletes replaced Designer Cloud tokens; `Err` if one could not be
    /// deleted now (it stays listed, and saved, for a later attempt).
    async fn retire_old_tokens(&self, credential: &mut Credential) -> Result<(), ()> {
        let (Some(endpoint), Some(current)) = (&self.endpoint, credential.access_token.clone())
        else {
            return Ok(());
        };
        let mut result = Ok(());
        for id in credential.retired_token_ids.clone() {
            match provider::designer_cloud::delete(
                &self.shared.http,
                &endpoint.token_url,
                &current,
                &id,
            )
            .await
            {
                Ok(()) => {
                    tracing::info!(profile = %self.name, token_id = %id, "replaced token deleted");
                    credential.retired_token_ids.retain(|r| *r != id);
                    if self.persist(credential).await.is_err() {
                        return Err(());
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        profile = %self.name,
                        token_id = %id,
                        "could not delete the replaced token (retried later): {e}"
                    );
                    result = Err(());
                }
            }
        }
        result
    }

    /// Saves the credential; on failure logs and describes it.
    async fn persist(&self, credential: &Credential) -> Result<(), String> {
        self.persist_with(credential, false).await
    }

    /// `old_is_dead`: the stored refresh token was just rotated away.
    async fn persist_with(&self, credential: &Credential, old_is_dead: bool) -> Result<(), String> {
        let error = match &self.placed.store {
            Err(e) => e.clone(),
            Ok(store) => {
                let store = Arc::clone(store);
                let name = self.name.clone();
                let copy = credential.clone();
                let save = move || match old_is_dead {
                    true => store.save_replacing_dead(&name, &copy),
                    false => store.save(&name, &copy),
                };
                match tokio::task::spawn_blocking(save).await {
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                }
            }
        };
        tracing::error!(profile = %self.name, "could not save the new credential: {error}");
        Err(format!(
            "could not save the new credential ({error}); it is held in memory and saving is retried"
        ))
    }
}

fn initial_snapshot(
    name: &str,
    spec: &ProfileSpec,
    store: StoreKind,
    loaded: &Result<Option<Credential>, String>,
    now: i64,
) -> Snapshot {
    let mut snap = Snapshot {
        token: None,
        phase: Phase::Empty,
        last_error: None,
        next_refresh_at_ms: None,
        attempts_done: 0,
    };
    let credential = match loaded {
        Ok(Some(credential)) => credential,
        Ok(None) => {
            snap.phase = Phase::NeedsReauth(format!(
                "the {store} store holds no secret for profile '{name}' (memory store after a restart, \
                 or the secret was removed): run `a365 add {name} --replace …`"
            ));
            return snap;
        }
        Err(e) => {
            snap.phase = Phase::NeedsReauth(format!(
                "cannot read the secrets of profile '{name}' from the {store} store ({e}): fix that and \
                 restart the agent, or run `a365 add {name} --replace …`"
            ));
            return snap;
        }
    };
    let cached = credential.access_token.as_ref().map(|secret| {
        let (jwt_exp, jwt_scopes) = provider::static_token::describe(secret.expose_secret());
        let scopes = if credential.access_scopes.is_empty() {
            jwt_scopes
        } else {
            credential.access_scopes.clone()
        };
        Held {
            secret: secret.clone(),
            expires_at_ms: credential.access_expires_at_ms.or(jwt_exp),
            scopes,
            obtained_at_ms: credential.updated_at_ms,
        }
    });
    match spec.kind {
        Kind::Static => {
            snap.phase = Phase::Fresh;
            snap.token = cached.map(Arc::new);
        }
        Kind::AuthorizationCode
            if credential.access_token.is_none() && credential.refresh_token.is_none() =>
        {
            snap.phase = Phase::NeedsReauth(format!(
                "profile '{name}' is not logged in yet: run `a365 login {name}`"
            ));
        }
        // A Designer Cloud token of unknown id and expiry is renewed at once,
        // so that from then on the agent knows both.
        Kind::DesignerCloud if credential.token_id.is_none() => {}
        Kind::Refresh | Kind::ClientCredentials | Kind::AuthorizationCode | Kind::DesignerCloud => {
            if let Some(held) = cached.filter(|h| h.valid_for(now, 0)) {
                // A token without expiry (Designer Cloud `expiredAt: null`)
                // is never renewed.
                snap.next_refresh_at_ms = held.expires_at_ms.map(|exp| {
                    schedule::refresh_at(credential.updated_at_ms, exp, fastrand::f64())
                });
                snap.token = Some(Arc::new(held));
                snap.phase = Phase::Fresh;
            }
        }
    }
    snap
}

fn unavailable(message: impl Into<String>) -> ErrorReply {
    ErrorReply::new(ErrorKind::Unavailable, message)
}

/// "3h 12m", "45s", "800ms".
pub fn human_ms(ms: i64) -> String {
    // No recursion for the sign: -i64::MIN does not exist.
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    let s = ms / 1000;
    format!("{sign}{}", unsigned_human_ms(ms, s))
}

fn unsigned_human_ms(ms: u64, s: u64) -> String {
    match s {
        0 => format!("{ms}ms"),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::human_ms;

    #[test]
    fn human_ms_takes_every_i64() {
        assert_eq!(human_ms(1500), "1s");
        assert_eq!(human_ms(-1500), "-1s");
        assert_eq!(human_ms(250), "250ms");
        assert_eq!(human_ms(i64::MIN), "-106751991167d 7h");
        assert_eq!(human_ms(i64::MAX), "106751991167d 7h");
    }
}
