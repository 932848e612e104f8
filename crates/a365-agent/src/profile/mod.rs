//! One profile: its current token, published through a `watch` channel so
//! readers never wait on a lock, and one refresher task that is the only
//! place a token request is made (single flight by construction).
//!
//! - [`serve`]: what a client gets (`token`, `refresh`), never waiting on a lock;
//! - [`mailbox`]: what clients ask of the refresher, and what wakes it;
//! - [`engine`]: the rules, without I/O: when to refresh, what an answer
//!   or an error does to the credential and to what is served;
//! - [`home`]: where the credential lives (a local store or the fleet);
//! - [`refresher`]: the one loop, for either home, and the local rounds
//!   (save before serve, back off);
//! - [`fleet`]: the rounds of a profile shared through etcd (the lock,
//!   the in-flight mark, the commit);
//! - [`restore`]: what a restart serves from the store, without a request;
//! - [`status`]: the profile as `a365 status` shows it.

pub(crate) mod engine;
mod fleet;
mod home;
mod lost;
mod mailbox;
mod refresher;
mod restore;
mod serve;

pub use home::Home;
pub use serve::Demand;
mod status;

use std::sync::{Arc, Mutex};

use a365_proto::ProfileSpec;
use a365_store::Credential;
use secrecy::SecretString;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::endpoint::Endpoint;
use crate::provider::{self, Provider};
use crate::shared::Shared;
use crate::stores::Placed;

/// A token being served.
#[derive(Debug)]
pub struct Held {
    pub secret: SecretString,
    /// UTC epoch ms; `None` for a token that states no expiry.
    pub expires_at_ms: Option<i64>,
    pub scopes: Vec<String>,
    /// When it was obtained (UTC epoch ms): with the expiry, its lifetime.
    pub obtained_at_ms: i64,
    /// It stated no lifetime: the one assumed, in seconds.
    pub assumed_lifetime_s: Option<u64>,
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
    /// Whether the last refresh that presented a refresh token got a
    /// different one back; `None` until one happened in this agent.
    pub rotates: Option<bool>,
    /// A shared profile: the fleet member that wrote the token served.
    pub refreshed_by: Option<String>,
    /// How the client secret reaches the token endpoint (see
    /// [`client_auth_of`]).
    pub client_auth: Option<a365_proto::ClientAuth>,
    /// Who signed in, as the login learned it (`Credential::account`).
    pub account: Option<String>,
}

/// How `credential`'s client secret is sent: as its server last accepted
/// it, else as the profile says; `None` without a secret.
pub(crate) fn client_auth_of(
    credential: &Credential,
    spec: &ProfileSpec,
) -> Option<a365_proto::ClientAuth> {
    credential.client_secret.as_ref()?;
    Some(crate::provider::learned_client_auth(credential, spec))
}

#[derive(Debug)]
pub struct Profile {
    pub name: String,
    pub spec: ProfileSpec,
    endpoint: Option<Endpoint>,
    /// Where its credential lives: a local store or the fleet.
    pub home: Home,
    shared: Arc<Shared>,
    state: watch::Sender<Snapshot>,
    /// What clients ask of the refresher.
    mailbox: mailbox::Mailbox,
    task: Mutex<Option<JoinHandle<()>>>,
    /// The token endpoint's request budget this profile's requests count
    /// against ([`crate::budget`]), if it has one.
    budget: Option<crate::budget::Quota>,
}

impl Profile {
    fn new(
        (name, spec, endpoint): (String, ProfileSpec, Option<Endpoint>),
        home: Home,
        shared: Arc<Shared>,
        initial: Snapshot,
    ) -> Profile {
        let budget = endpoint
            .as_ref()
            .and_then(|e| shared.budgets.of(&spec, &e.token_url));
        Profile {
            name,
            spec,
            endpoint,
            home,
            shared,
            state: watch::Sender::new(initial),
            mailbox: mailbox::Mailbox::new(),
            task: Mutex::new(None),
            budget,
        }
    }

    /// Builds the profile from what the store holds and starts its
    /// refresher. A cached access token that is still valid is served
    /// without any token request.
    pub fn start(
        name: String,
        spec: ProfileSpec,
        endpoint: Option<Endpoint>,
        placed: Placed,
        loaded: Result<Option<Credential>, crate::stores::StoreError>,
        shared: Arc<Shared>,
    ) -> Arc<Profile> {
        let now = shared.clock.now_ms();
        let initial = restore::initial_snapshot(&name, &spec, placed.kind, &loaded, now);
        let credential = loaded.ok().flatten();
        let provider = provider::of(spec.kind);
        let profile = Arc::new(Profile::new(
            (name, spec, endpoint),
            Home::Local(placed),
            shared,
            initial,
        ));
        // Nothing to renew: a static token, or a login not made yet.
        let refreshes = |c: &Credential| {
            provider.renews()
                && !matches!(
                    provider.restore(&profile.name, c),
                    provider::Restore::NotReady(_)
                )
        };
        if let Some(credential) = credential.filter(refreshes) {
            let rounds = refresher::Rounds::local(credential, profile.shared.clock.now_ms());
            let handle = tokio::spawn(Arc::clone(&profile).refresher(rounds));
            if let Ok(mut task) = profile.task.lock() {
                *task = Some(handle);
            }
        }
        profile
    }

    /// A profile shared through the fleet: it starts empty and serves what
    /// the fleet holds (refreshing it when this member is a refresher).
    pub fn start_shared(
        name: String,
        spec: ProfileSpec,
        endpoint: Option<Endpoint>,
        fleet: Arc<crate::fleet::Fleet>,
        shared: Arc<Shared>,
    ) -> Arc<Profile> {
        let initial = Snapshot {
            phase: Phase::Empty,
            ..restore::empty_snapshot()
        };
        let profile = Arc::new(Profile::new(
            (name, spec, endpoint),
            Home::Fleet(Arc::clone(&fleet)),
            shared,
            initial,
        ));
        let rounds = refresher::Rounds::Fleet(Box::new(fleet::FleetRounds::new(fleet)));
        let handle = tokio::spawn(Arc::clone(&profile).refresher(rounds));
        if let Ok(mut task) = profile.task.lock() {
            *task = Some(handle);
        }
        profile
    }

    /// Where its token requests go; `None` for a kind that makes none.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        self.endpoint.as_ref()
    }

    /// This profile's kind.
    fn provider(&self) -> &'static dyn Provider {
        provider::of(self.spec.kind)
    }

    pub fn snapshot(&self) -> Snapshot {
        self.state.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.state.subscribe()
    }

    /// `a365 remove`: ends the saved credential at the provider. Called
    /// after [`Profile::stop`], so no refresh races it and the store holds
    /// the latest rotated refresh token.
    pub async fn revoke_remote(&self) -> provider::Revocation {
        let Some(placed) = self.home.placed() else {
            // A shared credential is revoked by the fleet's removal.
            return provider::Revocation::NotNeeded;
        };
        let credential = match placed.load(&self.name).await {
            Ok(Some(credential)) => credential,
            Ok(None) => return provider::Revocation::NotNeeded,
            Err(e) => {
                return provider::Revocation::Left(format!(
                    "its secrets could not be read to revoke them at the provider ({e})"
                ));
            }
        };
        match self.exchange(self.shared.clock.now_ms()) {
            Some(exchange) => self.provider().revoke(exchange, &credential).await,
            None => provider::Revocation::NotNeeded,
        }
    }

    /// Stops the refresher, letting a refresh in flight finish and persist.
    pub async fn stop(&self) {
        self.mailbox.stop();
        let handle = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }
}

/// Why a profile gives no token now. Typed here; the agent turns it into
/// a wire reply at its edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The credential is dead: the message says what to do.
    #[error("{0}")]
    NeedsReauth(String),
    /// No good enough token now; retrying later may work.
    #[error("{0}")]
    Unavailable(String),
    /// The token lacks a scope that was asked for.
    #[error("{0}")]
    MissingScope(String),
    /// The request does not fit this profile (refreshing a static token).
    #[error("{0}")]
    NotForThisProfile(String),
}

fn unavailable(message: impl Into<String>) -> TokenError {
    TokenError::Unavailable(message.into())
}
