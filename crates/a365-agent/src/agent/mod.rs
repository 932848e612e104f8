//! The agent: its profiles, and what each request does to them. One file
//! per kind of work:
//!
//! - [`status`]: `status` and `status_page`;
//! - [`add`]: `add_profile` and `remove_profile`;
//! - [`login`]: the browser login of `authorization-code` profiles;
//! - [`migrate`]: moving secrets between stores;
//! - [`fleet`]: the profiles shared with other machines;
//! - [`forwarded`]: what a token-only socket answers.
//!
//! Errors become wire replies here, at the edge; the profiles, providers
//! and stores below report typed errors.

mod add;
mod doctor;
mod first_exchange;
pub mod fleet;
mod forwarded;
mod login;
mod migrate;
mod routes;
mod settings;
mod signin;
mod sinks;
mod staging;
mod status;
mod workspace_list;
mod workspaces;

pub(crate) use forwarded::not_forwarded;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use a365_proto::{
    ErrorKind, ErrorReply, PROTOCOL_VERSION, ProfileSpec, Request, Response, StoreKind,
    TokenRequest,
};
use a365_store::Credential;
use tokio::sync::watch;

use crate::config::{Config, Paths};
use crate::profile::{Held, Home, Profile, TokenError};
use crate::shared::Shared;
use crate::stores::{Placed, StoreError, Stores};

/// Becomes `true` when the client of a request hangs up; `None` where
/// that cannot be told.
pub type Hangup = Option<watch::Receiver<bool>>;

#[derive(Debug)]
pub struct Agent {
    shared: Arc<Shared>,
    stores: Stores,
    paths: Paths,
    profiles: RwLock<BTreeMap<String, Arc<Profile>>>,
    default_profile: RwLock<Option<String>>,
    /// Serializes the edits of profiles (add, remove, migrate, a login
    /// finishing), which touch the store and the config. Never held across
    /// a network wait.
    edits: tokio::sync::Mutex<()>,
    shutdown: watch::Sender<bool>,
    /// Browser logins under way, by profile: their outcome once known.
    logins: Mutex<HashMap<String, login::Login>>,
    /// For tasks that outlive a request (a login finishing in the browser).
    me: Weak<Agent>,
    /// Wakes the expiry watcher (a profile was added).
    expiry_check: Arc<tokio::sync::Notify>,
    /// How long `add` waits for a new profile's first exchange.
    add_wait: Duration,
    /// Fleet mode: where shared profiles live.
    fleet: Option<Arc<crate::fleet::Fleet>>,
    /// One workspace token exchanged at a time, so that clients asking
    /// for a new workspace at once share one exchange.
    workspace_exchanges: tokio::sync::Mutex<()>,
    /// Workspace names and URLs resolved before: (sign-in, as asked) →
    /// the profile holding that workspace's token.
    workspace_names: Mutex<HashMap<(String, String), String>>,
    /// The binary this agent runs, as it was at start: an upgrade is
    /// told by a change of it (`None`: it cannot be read).
    binary: Option<crate::upgrade::Binary>,
    /// Profiles whose settings could not be read at start: listed, not
    /// served, until replaced or removed.
    broken: RwLock<BTreeMap<String, crate::config::Broken>>,
    /// What an `add` whose client hung up did, said at the next command.
    notices: Mutex<Vec<String>>,
    /// Names whose new credential waits for its first exchange.
    settling: Mutex<std::collections::HashSet<String>>,
    /// The proxy routes ([`crate::proxy`]).
    routes: crate::proxy::Routes,
    /// The file sinks ([`crate::sink`]).
    sinks: crate::sink::Sinks,
}

impl Agent {
    /// Loads every configured profile's credential and starts its refresher.
    pub async fn start(
        config: &Config,
        paths: Paths,
        shared: Arc<Shared>,
        shutdown: watch::Sender<bool>,
        add_wait: Duration,
        fleet: Option<Arc<crate::fleet::Fleet>>,
    ) -> Arc<Agent> {
        let stores = Stores::open(paths.state_dir.clone(), config.store).await;
        let mut profiles = BTreeMap::new();
        for (name, spec) in &config.profiles {
            let endpoint = crate::provider::endpoint(spec).ok().flatten();
            // Profiles written before stores were recorded used the
            // configured store, and files before that.
            let kind = spec.store.or(config.store).unwrap_or(StoreKind::File);
            let placed = stores.place(kind).await;
            let loaded = placed.load(name).await;
            if let Err(e) = &loaded {
                tracing::error!(profile = %name, store = %kind, "cannot read its secrets: {e}");
            }
            let profile = Profile::start(
                name.clone(),
                spec.clone(),
                endpoint,
                placed,
                loaded,
                Arc::clone(&shared),
            );
            profiles.insert(name.clone(), profile);
        }
        tracing::info!(profiles = profiles.len(), "profiles loaded");
        let agent = Arc::new_cyclic(|me| Agent {
            shared,
            stores,
            paths,
            profiles: RwLock::new(profiles),
            default_profile: RwLock::new(config.default_profile.clone()),
            edits: tokio::sync::Mutex::new(()),
            shutdown,
            logins: Mutex::new(HashMap::new()),
            me: me.clone(),
            expiry_check: Arc::default(),
            add_wait,
            fleet: fleet.clone(),
            binary: crate::upgrade::Binary::current(),
            workspace_exchanges: tokio::sync::Mutex::new(()),
            workspace_names: Mutex::new(HashMap::new()),
            broken: RwLock::new(config.broken.clone()),
            notices: Mutex::new(Vec::new()),
            settling: Mutex::default(),
            routes: crate::proxy::Routes::default(),
            sinks: crate::sink::Sinks::default(),
        });
        if let Some(fleet) = fleet {
            // The shared profiles are served from the start when etcd answers.
            agent.sync_fleet(&fleet).await;
            let every = Duration::from_secs(fleet.sync_secs.max(1));
            tokio::spawn(fleet::follow(Arc::downgrade(&agent), fleet, every));
        }
        if let Some(command) = &config.on_event {
            agent.shared.events.spawn_hook(command.clone());
        }
        let mut names = std::collections::HashSet::new();
        for route in &config.routes {
            if !names.insert(route.name.clone()) {
                tracing::error!(route = %route.name, "a second [[proxy]] of this name is not served");
                continue;
            }
            // A route that cannot serve is listed with why; the agent goes on.
            let started = agent
                .routes
                .start(&agent, route.clone(), &agent.paths.state_dir)
                .await;
            if let Err(why) = started {
                agent.routes.failed(route.clone(), why);
            }
        }
        let mut names = std::collections::HashSet::new();
        for sink in &config.sinks {
            if !names.insert(sink.name.clone()) {
                tracing::error!(sink = %sink.name, "a second [[sink]] of this name is not written");
                continue;
            }
            let replaced = match agent.sinks.start(&agent, sink.clone()) {
                Ok(replaced) => replaced,
                Err(why) => agent.sinks.failed(sink.clone(), why),
            };
            if let Some(replaced) = replaced {
                replaced.stop().await;
            }
        }
        tokio::spawn(crate::expiry::expiry_watcher(
            Arc::downgrade(&agent),
            config.expires_soon_days,
            Arc::clone(&agent.expiry_check),
        ));
        agent
    }

    /// The binary this agent runs, as it was at start.
    pub(crate) fn binary(&self) -> Option<&crate::upgrade::Binary> {
        self.binary.as_ref()
    }

    /// What every profile shares (the clock, the events, HTTP).
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Every profile, in name order.
    pub fn all_profiles(&self) -> Vec<Arc<Profile>> {
        match self.profiles.read() {
            Ok(p) => p.values().cloned().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// What `request` gets. A token is answered by reference (the
    /// server encodes it without copying); everything else as a message.
    pub async fn handle(&self, request: Request) -> Answer {
        self.handle_attended(request, None).await
    }

    /// [`Agent::handle`], told when the client that sent `request` hangs
    /// up (an `add` then keeps nothing the user did not see succeed).
    pub async fn handle_attended(&self, request: Request, hangup: Hangup) -> Answer {
        crate::resident::touch();
        let result = match request {
            Request::Token(req) => {
                return match self.token(req).await {
                    Ok((profile, held)) => Answer::Token { profile, held },
                    Err(e) => Answer::Response(Response::Error(e)),
                };
            }
            Request::Status => Ok(self.status()),
            Request::StatusPage { after } => Ok(self.status_page(after.as_deref())),
            Request::AddProfile(add) => self.add(add, hangup).await,
            Request::RemoveProfile { name, keep_remote } => self.remove(&name, keep_remote).await,
            Request::Refresh { profile } => match self.profile(profile.as_deref()) {
                Ok(p) => p
                    .force_refresh()
                    .await
                    .map(|message| Response::Done { message })
                    .map_err(ErrorReply::from),
                Err(e) => Err(e),
            },
            Request::Ping => Ok(Response::Pong {
                protocol: PROTOCOL_VERSION,
                agent_version: env!("CARGO_PKG_VERSION").into(),
                pid: std::process::id(),
            }),
            Request::Shutdown => {
                let _ = self.shutdown.send(true);
                Ok(Response::Done {
                    message: "the agent is shutting down".into(),
                })
            }
            Request::MigrateStore { to, profile } => self.migrate(to, profile.as_deref()).await,
            Request::Login {
                profile,
                timeout_ms,
                select_workspace,
            } => {
                self.login(&profile, timeout_ms, select_workspace.as_deref())
                    .await
            }
            Request::LoginWait { profile } => self.login_wait(&profile, false).await,
            Request::LoginReview { profile } => self.login_wait(&profile, true).await,
            Request::LoginKeep { profile, keep } => self.login_keep(&profile, keep).await,
            // The connection streams events itself (`server`); here only
            // when something forwarded it wrongly.
            Request::Doctor { profile } => self.doctor(profile.as_deref()).await,
            Request::Restart => match self.binary.as_ref().is_some_and(|b| b.replaced()) {
                true => self.restart_for_upgrade(),
                false => Err(ErrorReply::new(
                    ErrorKind::BadRequest,
                    "the agent's binary has not changed: it goes on",
                )),
            },
            Request::Workspaces { profile } => self.workspaces(profile.as_deref()).await,
            Request::SetDefault { profile } => self.set_default(&profile).await,
            Request::Set {
                profile,
                key,
                value,
            } => self.set(&profile, &key, &value).await,
            Request::UpdateSecret { profile, secrets } => {
                self.update_secret(&profile, secrets, hangup).await
            }
            Request::ProxyAdd { route, replace } => self.proxy_add(route, replace).await,
            Request::ProxyRemove { name } => self.proxy_remove(&name).await,
            Request::ProxyList => Ok(Response::Routes(self.routes.list())),
            Request::SinkAdd { sink, replace } => self.sink_add(sink, replace).await,
            Request::SinkRemove { name } => self.sink_remove(&name).await,
            Request::SinkList => Ok(Response::Sinks(self.sinks.list())),
            Request::Watch { .. } => Err(ErrorReply::new(
                ErrorKind::BadRequest,
                "watch must be the only request of its connection",
            )),
        };
        Answer::Response(self.with_notices(result.unwrap_or_else(Response::Error)))
    }

    /// A `Done` answer carries what happened meanwhile to an `add` whose
    /// client had gone.
    fn with_notices(&self, response: Response) -> Response {
        let Response::Done { mut message } = response else {
            return response;
        };
        if let Ok(mut notices) = self.notices.lock() {
            for notice in notices.drain(..) {
                message.push_str(&format!("; also: {notice}"));
            }
        }
        Response::Done { message }
    }

    /// `restart`: a client saw a sign of an upgrade, and this agent's
    /// binary was replaced on disk (or [`crate::upgrade`] saw it). Stops
    /// as `shutdown` does (requests answered, refreshes in flight finished
    /// and saved), so that systemd or launchd, which hold the socket, or
    /// the next client's autostart starts the new binary; refused while a
    /// stop would lose something.
    pub(crate) fn restart_for_upgrade(&self) -> Result<Response, ErrorReply> {
        let unavailable = |m: String| ErrorReply::new(ErrorKind::Unavailable, m);
        let in_memory = self.all_profiles().into_iter().find(|p| {
            p.home
                .placed()
                .is_some_and(|placed| placed.kind == a365_proto::StoreKind::Memory)
        });
        if let Some(profile) = in_memory {
            return Err(unavailable(format!(
                "not restarting on the upgraded binary: profile '{}' keeps its secrets in memory \
                 only, and a restart would lose them; restart the agent yourself when that is fine",
                profile.name
            )));
        }
        if self.logins.lock().is_ok_and(|l| !l.is_empty()) {
            return Err(unavailable(
                "not restarting on the upgraded binary yet: a browser login is under way (the \
                 next a365 command asks again)"
                    .into(),
            ));
        }
        tracing::info!(
            "the agent's binary was replaced on disk: stopping, to start on the new one"
        );
        let _ = self.shutdown.send(true);
        Ok(Response::Done {
            message: "a365-agent stops to start again on its upgraded binary".into(),
        })
    }

    /// Events for `profile` (checked to exist) or for all profiles.
    pub fn watch(
        &self,
        profile: Option<&str>,
    ) -> Result<tokio::sync::broadcast::Receiver<a365_proto::Event>, ErrorReply> {
        if let Some(name) = profile {
            self.profile(Some(name))?;
        }
        Ok(self.shared.events.subscribe())
    }

    async fn token(&self, req: TokenRequest) -> Result<(Arc<Profile>, Arc<Held>), ErrorReply> {
        let profile = self.profile(req.profile.as_deref())?;
        // A workspace token asked for by its profile's name, dead: it is
        // exchanged again from its sign-in.
        if let Some(parent) = &profile.spec.workspace_of
            && matches!(
                profile.snapshot().phase,
                crate::profile::Phase::NeedsReauth(_)
            )
            && let Some(id) = profile.name.strip_prefix(&format!("{parent}.ws-"))
        {
            let (parent, id) = (self.profile(Some(parent))?, id.to_owned());
            return self
                .workspace_token(parent, &id, req.min_valid_ms, &req.scopes)
                .await;
        }
        // An Altium sign-in: a workspace named, or the profile's own.
        if let Some(workspace) = req.workspace.as_ref().or(profile.spec.workspace.as_ref()) {
            let workspace = workspace.clone();
            return self
                .workspace_token(profile, &workspace, req.min_valid_ms, &req.scopes)
                .await;
        }
        let held = profile.token(req.min_valid_ms, &req.scopes).await?;
        Ok((profile, held))
    }

    /// The named profile, or the default one.
    fn profile(&self, name: Option<&str>) -> Result<Arc<Profile>, ErrorReply> {
        let profiles = self
            .profiles
            .read()
            .map_err(|_| internal("profile table poisoned"))?;
        let name = match name {
            Some(name) => name.to_owned(),
            None => match self.default_profile.read().ok().and_then(|d| d.clone()) {
                Some(default) => default,
                None if profiles.len() == 1 => profiles.keys().next().cloned().unwrap_or_default(),
                None if profiles.is_empty() => {
                    let message = match self.fleet.as_ref().map(|f| f.role) {
                        Some(crate::fleet::Role::Consumer) => {
                            "no profiles yet: this agent is a fleet consumer, which serves the \
                             profiles that the fleet's refreshers share (`a365 add … --shared` on \
                             a refresher), and none is shared yet"
                        }
                        _ => {
                            "no profiles yet: add one with `a365 add NAME --kind refresh --realm altium365 …`"
                        }
                    };
                    return Err(ErrorReply::new(ErrorKind::UnknownProfile, message));
                }
                None => {
                    return Err(ErrorReply::new(
                        ErrorKind::UnknownProfile,
                        format!(
                            "which profile? name one, set A365_PROFILE, or choose a default: \
                             `a365 default NAME` (profiles: {})",
                            profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            },
        };
        if let Some(profile) = profiles.get(&name) {
            return Ok(Arc::clone(profile));
        }
        // Only for a name that is not served: `token`'s path stays one
        // lookup.
        if let Some(broken) = self.broken.read().ok().and_then(|b| b.get(&name).cloned()) {
            return Err(ErrorReply::new(
                ErrorKind::UnknownProfile,
                format!(
                    "profile '{name}' is not served: its settings cannot be used: {}. Fix them \
                     and restart the agent, or `a365 add {name} --replace`",
                    broken.why
                ),
            ));
        }
        Err(ErrorReply::new(
            ErrorKind::UnknownProfile,
            format!(
                "no profile named '{}' (profiles: {})",
                name.escape_default(),
                if profiles.is_empty() {
                    "none".into()
                } else {
                    profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            ),
        ))
    }

    /// The settings of the profile served as `name`.
    pub(crate) fn spec_of(&self, name: &str) -> Option<ProfileSpec> {
        let profiles = self.profiles.read().ok()?;
        profiles.get(name).map(|p| p.spec.clone())
    }

    /// Whether `profile` is still the one served under its name (not
    /// replaced or removed while an edit waited).
    fn is_current(&self, profile: &Arc<Profile>) -> bool {
        self.profile(Some(&profile.name))
            .is_ok_and(|now| Arc::ptr_eq(&now, profile))
    }

    /// Starts `old` again from what its store holds (after a stop whose
    /// change then failed).
    async fn restart(&self, old: &Arc<Profile>) {
        match &old.home {
            Home::Local(placed) => {
                let loaded = placed.load(&old.name).await;
                self.launch(&old.name, old.spec.clone(), placed.clone(), loaded);
            }
            Home::Fleet(fleet) => {
                self.launch_shared(&old.name, old.spec.clone(), fleet);
            }
        }
    }

    /// Starts profile `name` from `loaded` and puts it in the table, in
    /// place of any profile of that name.
    fn launch(
        &self,
        name: &str,
        spec: ProfileSpec,
        placed: Placed,
        loaded: Result<Option<Credential>, StoreError>,
    ) -> Arc<Profile> {
        let endpoint = crate::provider::endpoint(&spec).ok().flatten();
        let shared = Arc::clone(&self.shared);
        let profile = Profile::start(name.to_owned(), spec, endpoint, placed, loaded, shared);
        if let Ok(mut profiles) = self.profiles.write() {
            profiles.insert(name.to_owned(), Arc::clone(&profile));
        }
        profile
    }

    /// Stops every refresher; a refresh in flight finishes and is saved.
    pub async fn stop_profiles(&self) {
        for profile in self.all_profiles() {
            profile.stop().await;
        }
    }
}

/// What a request gets: a token by reference, or a message.
#[derive(Debug)]
pub enum Answer {
    Token {
        profile: Arc<Profile>,
        held: Arc<Held>,
    },
    Response(Response),
}

impl From<Response> for Answer {
    fn from(response: Response) -> Answer {
        Answer::Response(response)
    }
}

/// A profile's typed refusal, as the wire says it (one exit code each).
impl From<TokenError> for ErrorReply {
    fn from(e: TokenError) -> ErrorReply {
        let kind = match &e {
            TokenError::NeedsReauth(_) => ErrorKind::NeedsReauth,
            TokenError::Unavailable(_) => ErrorKind::Unavailable,
            TokenError::MissingScope(_) => ErrorKind::MissingScope,
            TokenError::NotForThisProfile(_) => ErrorKind::InvalidProfile,
        };
        ErrorReply::new(kind, e.to_string())
    }
}

fn invalid(message: impl ToString) -> ErrorReply {
    ErrorReply::new(ErrorKind::InvalidProfile, message.to_string())
}

fn unavailable(message: impl Into<String>) -> ErrorReply {
    ErrorReply::new(ErrorKind::Unavailable, message)
}

fn internal(message: impl Into<String>) -> ErrorReply {
    ErrorReply::new(ErrorKind::Internal, message)
}
