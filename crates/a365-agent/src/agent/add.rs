//! `add_profile` and `remove_profile`: the store, then the config, then
//! the running profile, each step undone if a later one fails.

use std::sync::Arc;

use a365_proto::{AddProfile, ErrorKind, ErrorReply, Response};

use super::{Agent, internal, invalid};
use crate::config;
use crate::endpoint::Endpoint;
use crate::profile::{Phase, Profile};
use crate::provider::{self, Revocation};

use super::staging::Proved;

/// A replaced profile as it was: its settings, store and credential.
pub(super) type Previous = (
    a365_proto::ProfileSpec,
    crate::stores::Placed,
    a365_store::Credential,
);

impl Agent {
    /// Adds (or with `replace`, replaces) a profile, and reports its first
    /// exchange so that a bad secret shows up now.
    pub(super) async fn add(
        &self,
        add: AddProfile,
        hangup: super::Hangup,
    ) -> Result<Response, ErrorReply> {
        let AddProfile {
            name,
            mut spec,
            secrets,
            replace,
            check_only,
            shared,
        } = add;
        // Record where the secrets go, so a later default cannot lose them.
        let kind = *spec.store.get_or_insert(self.stores.default());
        config::validate_name(&name).map_err(invalid)?;
        let endpoint = crate::provider::endpoint(&spec).map_err(invalid)?;
        let plain_http = endpoint
            .as_ref()
            .filter(|e| e.token_url.scheme() == "http")
            .map(|e| {
                let with_password = secrets.username.is_some() || secrets.password.is_some();
                a365_proto::plain_http_note(spec.kind, e.token_url.as_str(), with_password)
            });
        if check_only {
            // The note goes with the check, before any secret is sent.
            return self
                .check_new(&name, &spec, replace)
                .map(|reply| match (reply, plain_http) {
                    (Response::Done { message }, Some(note)) => Response::Done {
                        message: format!("{message}. {note}"),
                    },
                    (reply, _) => reply,
                });
        }
        self.refuse_spent(&secrets)?;
        // No other change of this name until its first exchange is known.
        let settling = self.settling(&name)?;
        let credential = self
            .new_credential(&name, &spec, endpoint.as_ref(), secrets)
            .await?;
        if shared {
            return self
                .add_shared(&name, spec, endpoint, credential, replace)
                .await;
        }
        // Where the secrets go must work before a refresh token is spent.
        if let Err(e) = &self.stores.place(kind).await.store {
            return Err(invalid(format!(
                "cannot keep secrets in the {kind} store: {e}; choose another with `--store file`"
            )));
        }
        let provider = provider::of(spec.kind);
        // A credential that renews is proven before anything is saved.
        let (credential, said, _settling) = match provider.renews() && provider.browser().is_none()
        {
            true => {
                let proved = self
                    .prove((&name, &spec), credential, replace, hangup, settling)
                    .await?;
                match proved {
                    Proved::Install(credential, said, settling) => (*credential, said, settling),
                    Proved::Unattended => return Err(invalid("the client hung up")),
                }
            }
            false => (credential, String::new(), settling),
        };
        self.install_added(&name, &spec, credential, replace)
            .await?;
        let mut message = format!(
            "profile '{name}' ({}) added; its secrets are kept {}{said}",
            spec.kind,
            self.stores.describe(kind)
        );
        if provider.browser().is_some() {
            message.push_str(&format!("; now log in: `a365 login {name}`"));
        }
        Ok(Response::Done { message })
    }

    /// Installs an added profile in the store its spec names.
    pub(super) async fn install_added(
        &self,
        name: &str,
        spec: &a365_proto::ProfileSpec,
        credential: a365_store::Credential,
        replace: bool,
    ) -> Result<Arc<Profile>, ErrorReply> {
        let kind = spec.store.unwrap_or(self.stores.default());
        // Only the edit itself is serialized, never a wait for a token
        // server: a slow one must not block `remove`, `migrate` or a login.
        let _edit = self.edits.lock().await;
        let placed = self.stores.place(kind).await;
        if let Err(e) = &placed.store {
            return Err(invalid(format!(
                "cannot keep secrets in the {kind} store: {e}; choose another with `--store file`"
            )));
        }
        let profile = self
            .install(name, spec, placed, credential, replace)
            .await?;
        tracing::info!(profile = %name, kind = %spec.kind, store = %kind, "profile added");
        self.expiry_check.notify_one();
        Ok(profile)
    }

    /// The settings, store and credential of profile `name`, stopped, if
    /// it is a local one whose credential can be read.
    pub(super) async fn previous(&self, name: &str) -> Option<Previous> {
        let old = self.profile(Some(name)).ok()?;
        let placed = old.home.placed()?.clone();
        old.stop().await;
        let credential = placed.load(name).await.ok()??;
        Some((old.spec.clone(), placed, credential))
    }

    /// A replacement that got no token at its first exchange: the
    /// replaced profile comes back as it was, and `refused` says so. The
    /// new one is stopped first, so an exchange still in flight ends (and
    /// is saved) before the choice: a late token keeps the new one.
    pub(super) async fn put_back(
        &self,
        new: &Arc<Profile>,
        previous: Option<Previous>,
        refused: ErrorReply,
    ) -> ErrorReply {
        let Some((spec, placed, credential)) = previous else {
            return refused;
        };
        let name = new.name.as_str();
        new.stop().await;
        let _edit = self.edits.lock().await;
        if !self.is_current(new) {
            return ErrorReply::new(
                refused.kind,
                format!(
                    "{}; profile '{name}' was changed or removed meanwhile, and is left as it is",
                    refused.message
                ),
            );
        }
        if matches!(new.snapshot().phase, Phase::Fresh) && new.snapshot().attempts_done > 0 {
            self.restart(new).await;
            return ErrorReply::new(
                ErrorKind::Unavailable,
                format!(
                    "{}; then the token server answered after all: the new credential got a \
                     token and replaced the earlier one",
                    refused.message
                ),
            );
        }
        match self.install(name, &spec, placed, credential, true).await {
            Ok(_) => {
                tracing::info!(profile = %name, "replacement refused: the earlier credential is back");
                ErrorReply::new(
                    refused.kind,
                    format!(
                        "{}; nothing was replaced: profile '{name}' keeps its earlier credential",
                        refused.message
                    ),
                )
            }
            Err(e) => ErrorReply::new(
                refused.kind,
                format!(
                    "{}; and the earlier credential could not be put back: {}",
                    refused.message, e.message
                ),
            ),
        }
    }

    /// The credential the secrets make: as the kind takes them, or a first
    /// token made from a username and password.
    async fn new_credential(
        &self,
        name: &str,
        spec: &a365_proto::ProfileSpec,
        endpoint: Option<&Endpoint>,
        secrets: a365_proto::Secrets,
    ) -> Result<a365_store::Credential, ErrorReply> {
        if secrets.password.is_some() || secrets.username.is_some() {
            return self
                .credential_from_login(name, spec, endpoint, secrets)
                .await;
        }
        provider::of(spec.kind)
            .credential(name, spec, secrets, self.shared.clock.now_ms())
            .map_err(invalid)
    }

    /// A first credential from a username and password (Designer Cloud),
    /// made at the provider now; the password goes no further.
    async fn credential_from_login(
        &self,
        name: &str,
        spec: &a365_proto::ProfileSpec,
        endpoint: Option<&Endpoint>,
        secrets: a365_proto::Secrets,
    ) -> Result<a365_store::Credential, ErrorReply> {
        let Some(endpoint) = endpoint else {
            return Err(invalid(format!(
                "a {} profile takes no username and password",
                spec.kind
            )));
        };
        let exchange = self.shared.exchange(name, endpoint, spec);
        provider::of(spec.kind)
            .credential_from_login(exchange, secrets)
            .await
            .map_err(|e| match e {
                provider::ProviderError::Dead(m) => ErrorReply::new(ErrorKind::NeedsReauth, m),
                other => invalid(format!("could not create the first token: {other}")),
            })
    }

    /// What `add` would refuse before it looks at the secrets: a name in
    /// use, a missing client id (settings and URLs are checked already).
    fn check_new(
        &self,
        name: &str,
        spec: &a365_proto::ProfileSpec,
        replace: bool,
    ) -> Result<Response, ErrorReply> {
        self.refuse_settling(name)?;
        let exists = self.profiles.read().is_ok_and(|p| p.contains_key(name))
            || self.broken.read().is_ok_and(|b| b.contains_key(name));
        if exists && !replace {
            return Err(invalid(format!(
                "profile '{name}' exists: add --replace to overwrite it"
            )));
        }
        if spec.kind.facts().needs_client_id {
            provider::needs_client_id(spec).map_err(invalid)?;
        }
        Ok(Response::Done {
            message: format!("the settings of '{name}' can be used"),
        })
    }

    /// Saves the secrets, writes the config, starts the profile; each step
    /// undone (and a replaced profile restarted) when a later one fails.
    pub(super) async fn install(
        &self,
        name: &str,
        spec: &a365_proto::ProfileSpec,
        placed: crate::stores::Placed,
        credential: a365_store::Credential,
        replace: bool,
    ) -> Result<Arc<Profile>, ErrorReply> {
        let old = self.profiles.read().ok().and_then(|p| p.get(name).cloned());
        let broken = self.broken.read().is_ok_and(|b| b.contains_key(name));
        if (old.is_some() || broken) && !replace {
            return Err(invalid(format!(
                "profile '{name}' exists: add --replace to overwrite it"
            )));
        }
        if let Some(old) = &old {
            old.stop().await;
        }
        if let Err(e) = placed.save(name, &credential, false).await {
            if let Some(old) = &old {
                self.restart(old).await;
            }
            return Err(internal(format!("could not save the secrets: {e}")));
        }
        let (path, profile_name, written) = (
            self.paths.config_file.clone(),
            name.to_owned(),
            spec.clone(),
        );
        if let Err(e) =
            config::in_background(move || config::write_profile(&path, &profile_name, &written))
                .await
        {
            match &old {
                None => {
                    let _ = placed.delete(name).await;
                }
                Some(old) => self.restart(old).await,
            }
            return Err(internal(e.to_string()));
        }
        // The old secrets are superseded; drop them if they lived elsewhere.
        if let Some(old) = old
            .as_ref()
            .and_then(|old| old.home.placed())
            .filter(|old| old.kind != placed.kind)
            && let Err(e) = old.delete(name).await
        {
            tracing::warn!(profile = %name, "could not delete the replaced secrets: {e}");
        }
        if let Ok(mut broken) = self.broken.write() {
            broken.remove(name);
        }
        Ok(self.launch(name, spec.clone(), placed, Ok(Some(credential))))
    }

    /// Removes a profile, and first the workspace tokens exchanged from
    /// it (each revoked too).
    pub(super) async fn remove(
        &self,
        name: &str,
        keep_remote: bool,
    ) -> Result<Response, ErrorReply> {
        self.refuse_settling(name)?;
        if self.broken.read().is_ok_and(|b| b.contains_key(name)) {
            return self.remove_broken(name).await;
        }
        self.profile(Some(name))?;
        // No workspace token is exchanged from it meanwhile.
        let _exchanges = self.workspace_exchanges.lock().await;
        let mut said = Vec::new();
        let children = self
            .all_profiles()
            .into_iter()
            .filter(|p| p.spec.workspace_of.as_deref() == Some(name));
        for child in children {
            match self.remove_one(&child.name, keep_remote).await? {
                Response::Done { message } => said.push(message),
                _ => return Err(internal("an unexpected answer removing a workspace token")),
            }
        }
        let reply = self.remove_one(name, keep_remote).await?;
        match (reply, said.is_empty()) {
            (Response::Done { message }, false) => Ok(Response::Done {
                message: format!("{}; and {message}", said.join("; ")),
            }),
            (reply, _) => Ok(reply),
        }
    }

    /// Removes the table of a profile whose settings could not be read;
    /// where its secrets are is not known, so they stay.
    async fn remove_broken(&self, name: &str) -> Result<Response, ErrorReply> {
        let _edit = self.edits.lock().await;
        let (path, profile_name) = (self.paths.config_file.clone(), name.to_owned());
        config::in_background(move || config::remove_profile(&path, &profile_name))
            .await
            .map_err(|e| internal(e.to_string()))?;
        if let Ok(mut broken) = self.broken.write() {
            broken.remove(name);
        }
        tracing::info!(profile = %name, "unreadable profile removed from the config");
        Ok(Response::Done {
            message: format!(
                "profile '{name}' removed from {}; its settings could not be read, so its secrets \
                 (if it had any) were left where they are",
                self.paths.config_file.display()
            ),
        })
    }

    /// Revokes the credential at the provider (no edit lock is held over
    /// that network wait), then deletes secrets and settings.
    pub(super) async fn remove_one(
        &self,
        name: &str,
        keep_remote: bool,
    ) -> Result<Response, ErrorReply> {
        let profile = self.profile(Some(name))?;
        let Some(placed) = profile.home.placed().cloned() else {
            return self.remove_shared(profile, keep_remote).await;
        };
        if let Err(e) = &placed.store {
            return Err(internal(format!(
                "cannot delete the secrets of '{name}': {e}; the profile is kept"
            )));
        }
        // No refresh after this: the token revoked is the last one saved.
        profile.stop().await;
        let remote = match keep_remote {
            true => Revocation::NotNeeded,
            false => profile.revoke_remote().await,
        };
        let _edit = self.edits.lock().await;
        if !self.is_current(&profile) {
            return Err(invalid(format!(
                "profile '{name}' was replaced or removed meanwhile: nothing more was deleted"
            )));
        }
        let remote = match remote {
            Revocation::NotNeeded => String::new(),
            Revocation::Done(what) => {
                tracing::info!(profile = %name, "{what}");
                format!("; {what}")
            }
            Revocation::Left(why) => {
                tracing::warn!(profile = %name, "{why}");
                format!("; warning: {why}")
            }
        };
        if let Err(e) = placed.delete(name).await {
            self.restart(&profile).await;
            return Err(internal(format!(
                "could not delete the secrets: {e}{remote}"
            )));
        }
        let (path, profile_name) = (self.paths.config_file.clone(), name.to_owned());
        config::in_background(move || config::remove_profile(&path, &profile_name))
            .await
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
        self.shared.events.emit(
            name,
            a365_proto::EventKind::Removed,
            None,
            format!("profile '{name}' was removed"),
        );
        Ok(Response::Done {
            message: format!("profile '{name}' removed, with its secrets{remote}"),
        })
    }
}
