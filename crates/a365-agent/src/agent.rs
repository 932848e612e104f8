//! The agent's profiles and what each request does to them.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use a365_proto::{
    AddProfile, ErrorKind, ErrorReply, Kind, PROTOCOL_VERSION, ProfileStatus, Request, Response,
    Secrets, StoreKind, TokenRequest,
};
use a365_store::{Credential, Store};
use secrecy::ExposeSecret;
use tokio::sync::watch;

use crate::config::{self, Config, Endpoint, Paths};
use crate::profile::{Phase, Placed, Profile, Shared};
use crate::provider::static_token;
use crate::stores::Stores;

#[derive(Debug)]
pub struct Agent {
    shared: Arc<Shared>,
    stores: Stores,
    paths: Paths,
    profiles: RwLock<BTreeMap<String, Arc<Profile>>>,
    default_profile: RwLock<Option<String>>,
    /// Serializes `add` and `remove`, which touch the store and the config.
    edits: tokio::sync::Mutex<()>,
    shutdown: watch::Sender<bool>,
    /// Browser logins under way, by profile: their outcome once known.
    logins: Mutex<HashMap<String, Login>>,
    /// For tasks that outlive a request (a login finishing in the browser).
    me: Weak<Agent>,
    /// Wakes the expiry watcher (a profile was added).
    expiry_check: tokio::sync::Notify,
}

type LoginOutcome = Result<String, ErrorReply>;

#[derive(Debug)]
struct Login {
    outcome: watch::Receiver<Option<LoginOutcome>>,
    task: tokio::task::AbortHandle,
}

/// A task that ends with the task that awaits it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Agent {
    /// Loads every configured profile's credential and starts its refresher.
    pub async fn start(
        config: &Config,
        paths: Paths,
        shared: Arc<Shared>,
        shutdown: watch::Sender<bool>,
    ) -> Arc<Agent> {
        let stores = Stores::open(paths.state_dir.clone(), config.store).await;
        let mut profiles = BTreeMap::new();
        for (name, spec) in &config.profiles {
            let endpoint = Endpoint::resolve(spec).ok().flatten();
            // Profiles written before stores were recorded used the
            // configured store, and files before that.
            let kind = spec.store.or(config.store).unwrap_or(StoreKind::File);
            let placed = Placed {
                kind,
                store: stores.get(kind).await,
            };
            let loaded = load(&placed, name).await;
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
            expiry_check: tokio::sync::Notify::new(),
        });
        if let Some(command) = &config.on_event {
            agent.shared.events.spawn_hook(command.clone());
        }
        tokio::spawn(expiry_watcher(
            Arc::downgrade(&agent),
            config.expires_soon_days,
        ));
        agent
    }

    pub async fn handle(&self, request: Request) -> Response {
        let result = match request {
            Request::Token(req) => self.token(req).await.map(Response::Token),
            Request::Status => Ok(self.status()),
            Request::StatusPage { after } => Ok(self.status_page(after.as_deref())),
            Request::AddProfile(add) => self.add(add).await,
            Request::RemoveProfile { name } => self.remove(&name).await,
            Request::Refresh { profile } => match self.profile(profile.as_deref()) {
                Ok(p) => p
                    .force_refresh()
                    .await
                    .map(|message| Response::Done { message }),
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
            } => self.login(&profile, timeout_ms).await,
            Request::LoginWait { profile } => self.login_wait(&profile).await,
            // The connection streams events itself (`server`); here only
            // when something forwarded it wrongly.
            Request::Watch { .. } => Err(ErrorReply::new(
                ErrorKind::BadRequest,
                "watch must be the only request of its connection",
            )),
        };
        result.unwrap_or_else(Response::Error)
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

    async fn token(&self, req: TokenRequest) -> Result<a365_proto::TokenReply, ErrorReply> {
        let profile = self.profile(req.profile.as_deref())?;
        profile.token(req.min_valid_ms, &req.scopes).await
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
                    return Err(ErrorReply::new(
                        ErrorKind::UnknownProfile,
                        "no profiles yet: add one with `a365 add NAME --kind refresh --realm altium365 …`",
                    ));
                }
                None => {
                    return Err(ErrorReply::new(
                        ErrorKind::UnknownProfile,
                        format!(
                            "which profile? name one, set A365_PROFILE, or set default_profile in {} \
                             (profiles: {})",
                            self.paths.config_file.display(),
                            profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            },
        };
        profiles.get(&name).cloned().ok_or_else(|| {
            ErrorReply::new(
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
            )
        })
    }

    fn status(&self) -> Response {
        let is_default = self.default_rule();
        let profiles = match self.profiles.read() {
            Ok(all) => all
                .values()
                .map(|p| p.status(is_default(&p.name, all.len())))
                .collect(),
            Err(_) => Vec::new(),
        };
        Response::Status(profiles)
    }

    /// The profiles after `after`, by name, as many as fit in one message
    /// whichever encoding carries it (at least one, so a page always moves
    /// on).
    fn status_page(&self, after: Option<&str>) -> Response {
        // Room for the envelope, and for JSON escaping beyond what
        // `serde_json` measured; the decoder also counts each entry's
        // in-memory size against the limit.
        const BUDGET: usize = a365_proto::MAX_FRAME * 3 / 4;
        let is_default = self.default_rule();
        let mut profiles: Vec<ProfileStatus> = Vec::new();
        let mut next = None;
        if let Ok(all) = self.profiles.read() {
            let from = after.map_or(Bound::Unbounded, Bound::Excluded);
            let mut used = 0;
            for (name, profile) in all.range::<str, _>((from, Bound::Unbounded)) {
                let status = profile.status(is_default(name, all.len()));
                let size = std::mem::size_of::<ProfileStatus>()
                    + serde_json::to_vec(&status).map_or(BUDGET, |json| json.len());
                if !profiles.is_empty() && used + size > BUDGET {
                    next = profiles.last().map(|p| p.name.clone());
                    break;
                }
                used += size;
                profiles.push(status);
            }
        }
        Response::StatusPage { profiles, next }
    }

    /// Which profile `status` marks as the default: the configured one, or
    /// the only one there is.
    fn default_rule(&self) -> impl Fn(&str, usize) -> bool {
        let default = self.default_profile.read().ok().and_then(|d| d.clone());
        move |name, total| match &default {
            Some(default) => default == name,
            None => total == 1,
        }
    }

    async fn add(&self, add: AddProfile) -> Result<Response, ErrorReply> {
        let AddProfile {
            name,
            mut spec,
            secrets,
            replace,
        } = add;
        // Record where the secrets go, so a later default cannot lose them.
        let kind = *spec.store.get_or_insert(self.stores.default());
        config::validate_name(&name).map_err(invalid)?;
        let endpoint = Endpoint::resolve(&spec).map_err(invalid)?;
        let credential = credential_for(
            &name,
            spec.kind,
            spec.client_id.as_deref(),
            secrets,
            self.shared.clock.now_ms(),
        )?;
        let _edit = self.edits.lock().await;
        let old = self
            .profiles
            .read()
            .ok()
            .and_then(|p| p.get(&name).cloned());
        if old.is_some() && !replace {
            return Err(invalid(format!(
                "profile '{name}' exists: add --replace to overwrite it"
            )));
        }
        let store = self.stores.get(kind).await.map_err(|e| {
            invalid(format!(
                "cannot keep secrets in the {kind} store: {e}; choose another with `--store file`"
            ))
        })?;
        if let Some(old) = &old {
            old.stop().await;
        }
        if let Err(e) = save(&store, &name, &credential).await {
            if let Some(old) = &old {
                self.restart(old).await;
            }
            return Err(e);
        }
        let (path, profile_name, written) =
            (self.paths.config_file.clone(), name.clone(), spec.clone());
        if let Err(e) =
            edit_config(move || config::write_profile(&path, &profile_name, &written)).await
        {
            match &old {
                None => {
                    let _ = delete(&store, &name).await;
                }
                Some(old) => self.restart(old).await,
            }
            return Err(internal(e));
        }
        // The old secrets are superseded; drop them if they lived elsewhere.
        if let Some(Ok(old_store)) = old
            .as_ref()
            .filter(|old| old.placed.kind != kind)
            .map(|old| old.placed.store.clone())
            && let Err(e) = delete(&old_store, &name).await
        {
            tracing::warn!(profile = %name, "could not delete the replaced secrets: {}", e.message);
        }
        let plain_http = endpoint
            .as_ref()
            .filter(|e| e.token_url.scheme() == "http")
            .map(|e| e.token_url.to_string());
        let profile = Profile::start(
            name.clone(),
            spec.clone(),
            endpoint,
            Placed {
                kind,
                store: Ok(store),
            },
            Ok(Some(credential)),
            Arc::clone(&self.shared),
        );
        let mut rx = profile.subscribe();
        if let Ok(mut profiles) = self.profiles.write() {
            profiles.insert(name.clone(), Arc::clone(&profile));
        }
        let store = self.stores.describe(kind);
        tracing::info!(profile = %name, kind = %spec.kind, store = %kind, "profile added");
        self.expiry_check.notify_one();
        let mut message = format!(
            "profile '{name}' ({}) added; its secrets are kept {store}",
            spec.kind
        );
        if let Some(url) = plain_http {
            message.push_str(&format!(
                ". Note: {url} is plain HTTP: any local user who listens on that port first \
                 receives the client secret and refresh token (fine for tests on a machine of \
                 your own; use https otherwise)"
            ));
        }
        if spec.kind == Kind::AuthorizationCode {
            message.push_str(&format!("; now log in: `a365 login {name}`"));
        } else if spec.kind != Kind::Static {
            // Report the first exchange, so a bad secret shows up now.
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(25),
                rx.wait_for(|s| s.attempts_done > 0),
            )
            .await;
            let snap = profile.snapshot();
            match snap.phase {
                Phase::NeedsReauth(m) => return Err(ErrorReply::new(ErrorKind::NeedsReauth, m)),
                Phase::Fresh => message.push_str("; a token was obtained"),
                _ => message.push_str(&format!(
                    "; no token yet: {}",
                    snap.last_error
                        .as_deref()
                        .unwrap_or("the token server has not answered")
                )),
            }
        }
        Ok(Response::Done { message })
    }

    async fn remove(&self, name: &str) -> Result<Response, ErrorReply> {
        let _edit = self.edits.lock().await;
        let profile = self.profile(Some(name))?;
        let store = profile.placed.store.clone().map_err(|e| {
            internal(format!(
                "cannot delete the secrets of '{name}': the {} store is not available ({e}); \
                 the profile is kept",
                profile.placed.kind
            ))
        })?;
        profile.stop().await;
        delete(&store, name).await?;
        let (path, profile_name) = (self.paths.config_file.clone(), name.to_owned());
        edit_config(move || config::remove_profile(&path, &profile_name))
            .await
            .map_err(internal)?;
        if let Ok(mut profiles) = self.profiles.write() {
            profiles.remove(name);
        }
        if let Ok(mut default) = self.default_profile.write()
            && default.as_deref() == Some(name)
        {
            *default = None;
        }
        tracing::info!(profile = %name, "profile removed");
        self.shared.events.emit(
            name,
            a365_proto::EventKind::Removed,
            None,
            format!("profile '{name}' was removed"),
        );
        Ok(Response::Done {
            message: format!("profile '{name}' removed, with its secrets"),
        })
    }

    /// Starts a browser login: binds the redirect, answers with the URL to
    /// open; a task waits for the browser, exchanges the code and installs
    /// the new credential. `login_wait` reports how it ended.
    async fn login(&self, name: &str, timeout_ms: u64) -> Result<Response, ErrorReply> {
        use crate::provider::authorization_code::{Pkce, authorize_url};
        let profile = self.profile(Some(name))?;
        if profile.spec.kind != Kind::AuthorizationCode {
            return Err(invalid(format!(
                "profile '{name}' is a {} profile: only authorization-code profiles log in with a browser",
                profile.spec.kind
            )));
        }
        let endpoint = Endpoint::resolve(&profile.spec)
            .map_err(invalid)?
            .ok_or_else(|| invalid("the profile has no token endpoint"))?;
        let login = endpoint
            .login
            .clone()
            .ok_or_else(|| invalid("the profile has no login endpoint"))?;
        let pkce = Pkce::generate().map_err(|e| internal(format!("no randomness: {e}")))?;
        // A new login replaces one still waiting (a closed tab, a retry).
        let previous = self.logins.lock().ok().and_then(|mut l| l.remove(name));
        if let Some(previous) = &previous {
            previous.task.abort();
        }
        let mut listener = crate::login::listen(&login.redirect_uri).await;
        // The replaced login's listener closes as its task winds down.
        for _ in 0..20 {
            if listener.is_ok() || previous.is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            listener = crate::login::listen(&login.redirect_uri).await;
        }
        let listener = listener.map_err(|e| unavailable(e.to_string()))?;
        let client_id = profile.spec.client_id.clone().unwrap_or_default();
        let scopes = config::requested_scopes(&profile.spec);
        let url = authorize_url(
            &login.authorize_url,
            &client_id,
            &login.redirect_uri,
            &scopes,
            &pkce,
        );
        let launcher_path =
            crate::login::launcher_path().map_err(|e| internal(format!("no randomness: {e}")))?;
        let mut launcher = login.redirect_uri.clone();
        launcher.set_path(&launcher_path);
        launcher.set_query(None);
        launcher.set_fragment(None);
        let expect = crate::login::Expect {
            redirect_path: login.redirect_uri.path().to_owned(),
            launcher_path,
            authorize_url: url.to_string(),
            state: pkce.state.clone(),
        };
        let (tx, rx) = watch::channel(None);
        let timeout = Duration::from_millis(timeout_ms.clamp(1_000, 3_600_000));
        let me = self.me.clone();
        let name = name.to_owned();
        tracing::info!(profile = %name, redirect = %login.redirect_uri, "login started");
        let key = name.clone();
        let worker_name = name.clone();
        let work = tokio::spawn(async move {
            let name = worker_name;
            let code = crate::login::wait_for_code(listener, expect, timeout).await;
            match (code, me.upgrade()) {
                (Err(e), _) => Err(unavailable(format!(
                    "{e}; run `a365 login {name}` to try again"
                ))),
                (Ok(_), None) => Err(unavailable("the agent is stopping")),
                (Ok(code), Some(agent)) => {
                    agent
                        .finish_login(&name, &endpoint, &login.redirect_uri, &code, &pkce)
                        .await
                }
            }
        });
        let task = tokio::spawn(async move {
            // Aborting this task (a newer login) aborts the work too.
            let mut work = AbortOnDrop(work);
            // A bug that panics the login says so, rather than leaving the
            // waiting client a misleading "replaced or stopped".
            let outcome = match (&mut work.0).await {
                Ok(outcome) => outcome,
                Err(e) if e.is_panic() => Err(internal(
                    "the login failed inside the agent (a bug: see its log); run `a365 login` again",
                )),
                Err(_) => Err(unavailable("the login was abandoned")),
            };
            match &outcome {
                Ok(_) => tracing::info!(profile = %name, "logged in"),
                Err(e) => tracing::warn!(profile = %name, "login failed: {}", e.message),
            }
            let _ = tx.send(Some(outcome));
        });
        if let Ok(mut logins) = self.logins.lock() {
            logins.insert(
                key,
                Login {
                    outcome: rx,
                    task: task.abort_handle(),
                },
            );
        }
        Ok(Response::LoginUrl {
            url: launcher.to_string(),
        })
    }

    /// Exchanges the code, saves the credential, restarts the profile on it.
    async fn finish_login(
        &self,
        name: &str,
        endpoint: &Endpoint,
        redirect_uri: &reqwest::Url,
        code: &str,
        pkce: &crate::provider::authorization_code::Pkce,
    ) -> LoginOutcome {
        let _edit = self.edits.lock().await;
        let profile = self.profile(Some(name))?;
        let mut credential = load(&profile.placed, name)
            .await
            .map_err(|e| internal(format!("cannot read the client secret: {e}")))?
            .unwrap_or_default();
        let now = self.shared.clock.now_ms();
        let call = crate::provider::oauth::Call {
            http: &self.shared.http,
            token_url: &endpoint.token_url,
            now_ms: now,
            default_lifetime: self.shared.default_lifetime,
        };
        let fresh = crate::provider::authorization_code::exchange(
            call,
            profile.spec.client_id.as_deref().unwrap_or_default(),
            credential.client_secret.as_ref(),
            code,
            redirect_uri,
            &pkce.verifier,
        )
        .await
        .map_err(|e| {
            ErrorReply::new(
                ErrorKind::NeedsReauth,
                format!("the token server refused the login: {e}"),
            )
        })?;
        let refreshable = fresh.refresh_token.is_some();
        // Say whose account this is: a login finished by someone else's
        // browser shows up here, not at the first API call.
        let account = {
            use secrecy::ExposeSecret;
            a365_token::jwt::claims(fresh.access_token.expose_secret())
                .and_then(|c| c.account)
                .map_or_else(String::new, |a| format!(" as {a}"))
        };
        credential.refresh_token = fresh.refresh_token;
        credential.access_token = Some(fresh.access_token);
        credential.access_expires_at_ms = Some(fresh.expires_at_ms);
        credential.access_scopes = fresh.scopes;
        credential.updated_at_ms = now;
        let store = profile.placed.store.clone().map_err(|e| {
            internal(format!(
                "the {} store is not available: {e}",
                profile.placed.kind
            ))
        })?;
        save(&store, name, &credential).await?;
        profile.stop().await;
        let new = Profile::start(
            name.to_owned(),
            profile.spec.clone(),
            Some(endpoint.clone()),
            profile.placed.clone(),
            Ok(Some(credential)),
            Arc::clone(&self.shared),
        );
        if let Ok(mut profiles) = self.profiles.write() {
            profiles.insert(name.to_owned(), new);
        }
        Ok(format!(
            "logged in{account}: profile '{name}' has a token valid for {}{}",
            crate::profile::human_ms(fresh.expires_at_ms - now),
            if refreshable {
                ", renewed with its refresh token from now on"
            } else {
                "; no refresh token was granted, so log in again when it expires"
            }
        ))
    }

    /// Waits for the outcome of the login `login` started.
    async fn login_wait(&self, name: &str) -> Result<Response, ErrorReply> {
        let rx = self
            .logins
            .lock()
            .ok()
            .and_then(|logins| logins.get(name).map(|l| l.outcome.clone()));
        let Some(mut rx) = rx else {
            return Err(invalid(format!(
                "no login is under way for '{name}': run `a365 login {name}`"
            )));
        };
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            Err(_) => None,
        };
        if let Ok(mut logins) = self.logins.lock()
            && logins
                .get(name)
                .is_some_and(|l| l.outcome.same_channel(&rx))
        {
            logins.remove(name);
        }
        match outcome {
            Some(Ok(message)) => Ok(Response::Done { message }),
            Some(Err(e)) => Err(e),
            None => Err(unavailable(
                "the login was replaced by a newer `a365 login`, or the agent stopped",
            )),
        }
    }

    /// Moves secrets to the store `to`: each is saved there, then the
    /// config records the new place, and only then is the old copy
    /// deleted, so a crash at any point leaves one complete copy that the
    /// config points to (or two).
    async fn migrate(&self, to: StoreKind, only: Option<&str>) -> Result<Response, ErrorReply> {
        let _edit = self.edits.lock().await;
        let target = self
            .stores
            .get(to)
            .await
            .map_err(|e| invalid(format!("cannot move secrets to the {to} store: {e}")))?;
        let profiles = match only {
            Some(name) => vec![self.profile(Some(name))?],
            None => match self.profiles.read() {
                Ok(p) => p.values().cloned().collect(),
                Err(_) => return Err(internal("profile table poisoned")),
            },
        };
        let mut moved = Vec::new();
        let mut notes = Vec::new();
        for profile in profiles {
            if profile.placed.kind == to {
                continue;
            }
            match self.move_profile(&profile, &target, to).await {
                Ok(note) => {
                    moved.push(profile.name.clone());
                    notes.extend(note);
                }
                Err(e) => {
                    let done = if moved.is_empty() {
                        "nothing was moved".to_owned()
                    } else {
                        format!("moved before that: {}", moved.join(", "))
                    };
                    return Err(ErrorReply::new(e.kind, format!("{} ({done})", e.message)));
                }
            }
        }
        if only.is_none() {
            let path = self.paths.config_file.clone();
            edit_config(move || config::write_default_store(&path, to))
                .await
                .map_err(internal)?;
            self.stores.set_default(to);
        }
        let mut message = match moved.len() {
            0 => format!(
                "no profile needed moving: the secrets are already {}",
                self.stores.describe(to)
            ),
            _ => format!(
                "moved {} to the {to} store: secrets are now kept {}",
                moved.join(", "),
                self.stores.describe(to)
            ),
        };
        if only.is_none() {
            message.push_str("; new profiles go there too");
        }
        for note in notes {
            message.push_str("; ");
            message.push_str(&note);
        }
        tracing::info!(store = %to, moved = moved.len(), "secrets migrated");
        Ok(Response::Done { message })
    }

    /// One profile's move; on failure the profile keeps running from its
    /// old store. `Ok(Some(note))` reports an old copy left behind.
    async fn move_profile(
        &self,
        profile: &Arc<Profile>,
        target: &Arc<dyn Store>,
        to: StoreKind,
    ) -> Result<Option<String>, ErrorReply> {
        let name = profile.name.clone();
        let from = profile.placed.kind;
        let source = profile.placed.store.clone().map_err(|e| {
            internal(format!(
                "cannot move '{name}': its {from} store is not available ({e})"
            ))
        })?;
        // A refresh in flight finishes and is saved to the old store first.
        profile.stop().await;
        let credential = match load(&profile.placed, &name).await {
            Ok(credential) => credential,
            Err(e) => {
                self.restart(profile).await;
                return Err(internal(format!(
                    "cannot read the secrets of '{name}': {e}"
                )));
            }
        };
        if let Some(credential) = &credential
            && let Err(e) = save(target, &name, credential).await
        {
            self.restart(profile).await;
            return Err(ErrorReply::new(e.kind, format!("'{name}': {}", e.message)));
        }
        let mut spec = profile.spec.clone();
        spec.store = Some(to);
        let (path, profile_name, written) =
            (self.paths.config_file.clone(), name.clone(), spec.clone());
        if let Err(e) =
            edit_config(move || config::write_profile(&path, &profile_name, &written)).await
        {
            if credential.is_some() {
                let _ = delete(target, &name).await;
            }
            self.restart(profile).await;
            return Err(internal(e));
        }
        let note = match delete(&source, &name).await {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(profile = %name, store = %from, "old copy not deleted: {}", e.message);
                Some(format!(
                    "the old copy of '{name}' in the {from} store could not be deleted ({}): delete it by hand",
                    e.message
                ))
            }
        };
        let placed = Placed {
            kind: to,
            store: Ok(Arc::clone(target)),
        };
        let endpoint = Endpoint::resolve(&spec).ok().flatten();
        let new = Profile::start(
            name.clone(),
            spec,
            endpoint,
            placed,
            Ok(credential),
            Arc::clone(&self.shared),
        );
        if let Ok(mut profiles) = self.profiles.write() {
            profiles.insert(name, new);
        }
        Ok(note)
    }

    /// Starts `old` again from what its store holds (after a stop whose
    /// change then failed).
    async fn restart(&self, old: &Arc<Profile>) {
        let loaded = load(&old.placed, &old.name).await;
        let endpoint = Endpoint::resolve(&old.spec).ok().flatten();
        let profile = Profile::start(
            old.name.clone(),
            old.spec.clone(),
            endpoint,
            old.placed.clone(),
            loaded,
            Arc::clone(&self.shared),
        );
        if let Ok(mut profiles) = self.profiles.write() {
            profiles.insert(old.name.clone(), profile);
        }
    }

    /// Stops every refresher; a refresh in flight finishes and is saved.
    pub async fn stop_profiles(&self) {
        let profiles: Vec<_> = match self.profiles.read() {
            Ok(p) => p.values().cloned().collect(),
            Err(_) => return,
        };
        for profile in profiles {
            profile.stop().await;
        }
    }
}

/// Announces, once a day per profile, tokens that cannot be renewed and
/// expire within `days` (a static token made for a year).
async fn expiry_watcher(agent: Weak<Agent>, days: u64) {
    let window_ms = i64::try_from(days.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
    let mut announced: HashMap<String, i64> = HashMap::new();
    loop {
        let Some(strong) = agent.upgrade() else {
            return;
        };
        let now = strong.shared.clock.now_ms();
        let profiles: Vec<_> = match strong.profiles.read() {
            Ok(p) => p.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        for profile in profiles {
            let Some(exp) = profile.unrenewable_expiry() else {
                continue;
            };
            let due = exp > now && exp - now <= window_ms;
            let recent = announced
                .get(&profile.name)
                .is_some_and(|at| now - at < 86_400_000);
            if due && !recent {
                announced.insert(profile.name.clone(), now);
                strong.shared.events.emit(
                    &profile.name,
                    a365_proto::EventKind::ExpiresSoon,
                    Some(exp),
                    format!(
                        "the token of profile '{}' expires in {} and cannot be renewed: {}",
                        profile.name,
                        crate::profile::human_ms(exp - now),
                        profile.renew_advice()
                    ),
                );
            }
        }
        let wake = tokio::time::sleep(Duration::from_secs(3600));
        tokio::select! {
            _ = wake => {}
            _ = strong.expiry_check.notified() => {}
        }
        drop(strong);
    }
}

/// Checks that `secrets` are what `kind` needs and builds the credential.
fn credential_for(
    name: &str,
    kind: Kind,
    client_id: Option<&str>,
    secrets: Secrets,
    now_ms: i64,
) -> Result<Credential, ErrorReply> {
    let Secrets {
        client_secret,
        refresh_token,
        access_token,
    } = secrets;
    let mut credential = Credential {
        updated_at_ms: now_ms,
        ..Credential::default()
    };
    let needs_client_id = || {
        if client_id.is_none_or(str::is_empty) {
            Err(invalid(format!(
                "a {kind} profile needs a client id (--client-id)"
            )))
        } else {
            Ok(())
        }
    };
    match kind {
        Kind::Static => {
            let Some(token) = access_token else {
                return Err(invalid("a static profile needs an access_token secret"));
            };
            if client_secret.is_some() || refresh_token.is_some() {
                return Err(invalid(
                    "a static profile takes only an access_token secret",
                ));
            }
            let token = token.into_inner();
            let (exp, scopes) = static_token::describe(token.expose_secret());
            if let Some(exp) = exp.filter(|exp| *exp <= now_ms) {
                return Err(invalid(format!(
                    "the token for '{name}' expired {} ago: create a new one in Altium 365 (Admin → Developer)",
                    crate::profile::human_ms(now_ms - exp)
                )));
            }
            credential.access_token = Some(token);
            credential.access_expires_at_ms = exp;
            credential.access_scopes = scopes;
        }
        Kind::ClientCredentials | Kind::AuthorizationCode => {
            needs_client_id()?;
            if refresh_token.is_some() || access_token.is_some() {
                return Err(invalid(format!(
                    "a {kind} profile takes only a client_secret secret"
                )));
            }
            match (client_secret, kind) {
                (Some(secret), _) => credential.client_secret = Some(secret.into_inner()),
                // PKCE serves public clients too; Nexar's apps have a secret.
                (None, Kind::AuthorizationCode) => {}
                (None, _) => {
                    return Err(invalid(format!(
                        "a {kind} profile needs the client_secret secret"
                    )));
                }
            }
        }
        Kind::DesignerCloud => {
            let Some(token) = access_token else {
                return Err(invalid(
                    "a designer-cloud profile needs the API token as its access_token secret",
                ));
            };
            if client_secret.is_some() || refresh_token.is_some() {
                return Err(invalid(
                    "a designer-cloud profile takes only an access_token secret",
                ));
            }
            credential.access_token = Some(token.into_inner());
        }
        Kind::Refresh => {
            needs_client_id()?;
            let (Some(secret), Some(rt)) = (client_secret, refresh_token) else {
                return Err(invalid(
                    "a refresh profile needs the client_secret and refresh_token secrets",
                ));
            };
            if access_token.is_some() {
                return Err(invalid(
                    "a refresh profile takes client_secret and refresh_token, not access_token",
                ));
            }
            credential.client_secret = Some(secret.into_inner());
            credential.refresh_token = Some(rt.into_inner());
        }
    }
    Ok(credential)
}

/// Edits `config.toml` on the blocking pool, like the stores' I/O: the
/// runtime serves every client on one thread, which must not wait on a
/// rewrite and its fsync (106 ms with 10,000 profiles).
async fn edit_config<T: Send + 'static>(
    edit: impl FnOnce() -> Result<T, config::ConfigError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(edit).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(format!("editing the config file: {e}")),
    }
}

async fn load(placed: &Placed, name: &str) -> Result<Option<Credential>, String> {
    let store = Arc::clone(placed.store.as_ref()?);
    let name = name.to_owned();
    match tokio::task::spawn_blocking(move || store.load(&name)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

async fn save(
    store: &Arc<dyn Store>,
    name: &str,
    credential: &Credential,
) -> Result<(), ErrorReply> {
    let store = Arc::clone(store);
    let (name, credential) = (name.to_owned(), credential.clone());
    match tokio::task::spawn_blocking(move || store.save(&name, &credential)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(internal(format!("could not save the secrets: {e}"))),
        Err(e) => Err(internal(e.to_string())),
    }
}

async fn delete(store: &Arc<dyn Store>, name: &str) -> Result<(), ErrorReply> {
    let store = Arc::clone(store);
    let name = name.to_owned();
    match tokio::task::spawn_blocking(move || store.delete(&name)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(internal(format!("could not delete the secrets: {e}"))),
        Err(e) => Err(internal(e.to_string())),
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
