//! The agent's profiles and what each request does to them.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use a365_proto::{
    AddProfile, ErrorKind, ErrorReply, Kind, PROTOCOL_VERSION, Request, Response, Secrets,
    TokenRequest,
};
use a365_store::Credential;
use secrecy::ExposeSecret;
use tokio::sync::watch;

use crate::config::{self, Config, Endpoint, Paths};
use crate::profile::{Phase, Profile, Shared};
use crate::provider::static_token;

#[derive(Debug)]
pub struct Agent {
    shared: Arc<Shared>,
    paths: Paths,
    profiles: RwLock<BTreeMap<String, Arc<Profile>>>,
    default_profile: RwLock<Option<String>>,
    /// Serializes `add` and `remove`, which touch the store and the config.
    edits: tokio::sync::Mutex<()>,
    shutdown: watch::Sender<bool>,
}

impl Agent {
    /// Loads every configured profile's credential and starts its refresher.
    pub async fn start(
        config: &Config,
        paths: Paths,
        shared: Arc<Shared>,
        shutdown: watch::Sender<bool>,
    ) -> Arc<Agent> {
        let mut profiles = BTreeMap::new();
        for (name, spec) in &config.profiles {
            let endpoint = Endpoint::resolve(spec).ok().flatten();
            let credential = load(&shared, name).await.unwrap_or_else(|e| {
                tracing::error!(profile = %name, "cannot read its secrets: {e}");
                None
            });
            let profile = Profile::start(
                name.clone(),
                spec.clone(),
                endpoint,
                credential,
                Arc::clone(&shared),
            );
            profiles.insert(name.clone(), profile);
        }
        tracing::info!(
            profiles = profiles.len(),
            store = shared.store.kind(),
            "profiles loaded"
        );
        Arc::new(Agent {
            shared,
            paths,
            profiles: RwLock::new(profiles),
            default_profile: RwLock::new(config.default_profile.clone()),
            edits: tokio::sync::Mutex::new(()),
            shutdown,
        })
    }

    pub async fn handle(&self, request: Request) -> Response {
        let result = match request {
            Request::Token(req) => self.token(req).await.map(Response::Token),
            Request::Status => Ok(self.status()),
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
        };
        result.unwrap_or_else(Response::Error)
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
        let default = self.default_profile.read().ok().and_then(|d| d.clone());
        let profiles = match self.profiles.read() {
            Ok(p) => p.values().cloned().collect::<Vec<_>>(),
            Err(_) => Vec::new(),
        };
        let only_one = profiles.len() == 1;
        let store = self.shared.store.kind();
        Response::Status(
            profiles
                .iter()
                .map(|p| {
                    p.status(
                        store,
                        default.as_deref() == Some(p.name.as_str())
                            || (default.is_none() && only_one),
                    )
                })
                .collect(),
        )
    }

    async fn add(&self, add: AddProfile) -> Result<Response, ErrorReply> {
        let AddProfile {
            name,
            spec,
            secrets,
            replace,
        } = add;
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
        if let Some(old) = &old {
            old.stop().await;
        }
        save(&self.shared, &name, &credential).await?;
        if let Err(e) = config::write_profile(&self.paths.config_file, &name, &spec) {
            if old.is_none() {
                let _ = delete(&self.shared, &name).await;
            }
            return Err(internal(e.to_string()));
        }
        let profile = Profile::start(
            name.clone(),
            spec.clone(),
            endpoint,
            Some(credential),
            Arc::clone(&self.shared),
        );
        let mut rx = profile.subscribe();
        if let Ok(mut profiles) = self.profiles.write() {
            profiles.insert(name.clone(), Arc::clone(&profile));
        }
        let store = match self.shared.store.kind() {
            "memory" => "in memory only (lost when the agent stops)".to_owned(),
            kind => format!("in the {kind} store"),
        };
        tracing::info!(profile = %name, kind = %spec.kind, "profile added");
        let mut message = format!(
            "profile '{name}' ({}) added; its secrets are kept {store}",
            spec.kind
        );
        if spec.kind == Kind::Refresh {
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
        profile.stop().await;
        delete(&self.shared, name).await?;
        config::remove_profile(&self.paths.config_file, name)
            .map_err(|e| internal(e.to_string()))?;
        if let Ok(mut profiles) = self.profiles.write() {
            profiles.remove(name);
        }
        if let Ok(mut default) = self.default_profile.write()
            && default.as_deref() == Some(name)
        {
            *default = None;
        }
        tracing::info!(profile = %name, "profile removed");
        Ok(Response::Done {
            message: format!("profile '{name}' removed, with its secrets"),
        })
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
        client_secret: None,
        refresh_token: None,
        access_token: None,
        access_expires_at_ms: None,
        access_scopes: Vec::new(),
        updated_at_ms: now_ms,
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
        Kind::Refresh => {
            if client_id.is_none_or(str::is_empty) {
                return Err(invalid("a refresh profile needs a client id (--client-id)"));
            }
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

async fn load(shared: &Shared, name: &str) -> Result<Option<Credential>, String> {
    let store = Arc::clone(&shared.store);
    let name = name.to_owned();
    match tokio::task::spawn_blocking(move || store.load(&name)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

async fn save(shared: &Shared, name: &str, credential: &Credential) -> Result<(), ErrorReply> {
    let store = Arc::clone(&shared.store);
    let (name, credential) = (name.to_owned(), credential.clone());
    match tokio::task::spawn_blocking(move || store.save(&name, &credential)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(internal(format!("could not save the secrets: {e}"))),
        Err(e) => Err(internal(e.to_string())),
    }
}

async fn delete(shared: &Shared, name: &str) -> Result<(), ErrorReply> {
    let store = Arc::clone(&shared.store);
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

fn internal(message: impl Into<String>) -> ErrorReply {
    ErrorReply::new(ErrorKind::Internal, message)
}
