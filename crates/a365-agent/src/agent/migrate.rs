//! Moving secrets between stores (`a365 store migrate`): saved in the new
//! store, recorded in the config, and only then deleted from the old one,
//! so a crash at any point leaves a complete copy the config points to.

use std::sync::Arc;

use a365_proto::{ErrorReply, Response, StoreKind};

use super::{Agent, internal, invalid};
use crate::config;
use crate::profile::Profile;
use crate::stores::Placed;

impl Agent {
    /// Moves secrets to the store `to`: each is saved there, then the
    /// config records the new place, and only then is the old copy
    /// deleted, so a crash at any point leaves one complete copy that the
    /// config points to (or two).
    pub(super) async fn migrate(
        &self,
        to: StoreKind,
        only: Option<&str>,
    ) -> Result<Response, ErrorReply> {
        let _edit = self.edits.lock().await;
        let target = self.stores.place(to).await;
        if let Err(e) = &target.store {
            return Err(invalid(format!(
                "cannot move secrets to the {to} store: {e}"
            )));
        }
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
            let Some(placed) = profile.home.placed() else {
                notes.push(format!(
                    "'{}' is shared: its credential stays in the fleet",
                    profile.name
                ));
                continue;
            };
            if placed.kind == to {
                continue;
            }
            match self.move_profile(&profile, &target).await {
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
            config::in_background(move || config::write_default_store(&path, to))
                .await
                .map_err(|e| internal(e.to_string()))?;
            self.stores.set_default(to);
        }
        tracing::info!(store = %to, moved = moved.len(), "secrets migrated");
        let message = self.migrated_message(to, &moved, only.is_none(), notes);
        Ok(Response::Done { message })
    }

    /// What `migrate` tells the user: what moved, where secrets are now.
    fn migrated_message(
        &self,
        to: StoreKind,
        moved: &[String],
        all: bool,
        notes: Vec<String>,
    ) -> String {
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
        if all {
            message.push_str("; new profiles go there too");
        }
        for note in notes {
            message.push_str("; ");
            message.push_str(&note);
        }
        message
    }

    /// One profile's move; on failure the profile keeps running from its
    /// old store. `Ok(Some(note))` reports an old copy left behind.
    async fn move_profile(
        &self,
        profile: &Arc<Profile>,
        target: &Placed,
    ) -> Result<Option<String>, ErrorReply> {
        let name = profile.name.clone();
        let Some(placed) = profile.home.placed() else {
            return Err(invalid(format!(
                "'{name}' is shared: its credential stays in the fleet"
            )));
        };
        let (from, to) = (placed.kind, target.kind);
        if let Err(e) = &placed.store {
            return Err(internal(format!("cannot move '{name}': {e}")));
        }
        // A refresh in flight finishes and is saved to the old store first.
        profile.stop().await;
        let credential = match placed.load(&name).await {
            Ok(credential) => credential,
            Err(e) => {
                self.restart(profile).await;
                return Err(internal(format!(
                    "cannot read the secrets of '{name}': {e}"
                )));
            }
        };
        if let Some(credential) = &credential
            && let Err(e) = target.save(&name, credential, false).await
        {
            self.restart(profile).await;
            return Err(internal(format!(
                "'{name}': could not save the secrets: {e}"
            )));
        }
        let mut spec = profile.spec.clone();
        spec.store = Some(to);
        let (path, profile_name, written) =
            (self.paths.config_file.clone(), name.clone(), spec.clone());
        if let Err(e) =
            config::in_background(move || config::write_profile(&path, &profile_name, &written))
                .await
        {
            if credential.is_some() {
                let _ = target.delete(&name).await;
            }
            self.restart(profile).await;
            return Err(internal(e.to_string()));
        }
        let note = match placed.delete(&name).await {
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(profile = %name, store = %from, "old copy not deleted: {e}");
                Some(format!(
                    "the old copy of '{name}' in the {from} store could not be deleted ({e}): delete it by hand"
                ))
            }
        };
        self.launch(&name, spec, target.clone(), Ok(credential));
        Ok(note)
    }
}
