//! `set` (one setting of a profile) and `update_secret` (one or more of
//! its secrets): the rest of the profile stays as it was.

use a365_proto::{ErrorReply, Response, SecretField, Secrets};

use super::{Agent, Hangup, internal, invalid};
use crate::config;
use crate::profile::Profile;
use crate::stores::Placed;

impl Agent {
    /// `set`: one setting changed, checked as `add` checks it, written to
    /// config.toml; the profile goes on with its credential.
    pub(super) async fn set(
        &self,
        name: &str,
        key: &str,
        value: &str,
    ) -> Result<Response, ErrorReply> {
        let (profile, placed) = self.local(name)?;
        self.refuse_settling(name)?;
        let mut spec = profile.spec.clone();
        spec.set(key, value).map_err(invalid)?;
        if spec == profile.spec {
            return Ok(Response::Done {
                message: format!("profile '{name}': {key} is already so; nothing changed"),
            });
        }
        crate::provider::endpoint(&spec).map_err(invalid)?;
        if spec.kind.facts().needs_client_id {
            crate::provider::needs_client_id(&spec).map_err(invalid)?;
        }
        // Stopped first (a refresh in flight ends and is saved), so that the
        // edit lock is never held across a network wait.
        profile.stop().await;
        let _edit = self.edits.lock().await;
        // Replaced or removed meanwhile: what stopped is no longer served.
        self.still(name, &profile)?;
        let (path, written, kept) = (
            self.paths.config_file.clone(),
            name.to_owned(),
            spec.clone(),
        );
        if let Err(e) =
            config::in_background(move || config::write_profile(&path, &written, &kept)).await
        {
            self.restart(&profile).await;
            return Err(internal(e.to_string()));
        }
        let loaded = placed.load(name).await;
        self.launch(name, spec, placed, loaded);
        tracing::info!(profile = %name, key, "setting changed");
        let now = match value {
            "" => "unset".to_owned(),
            value => format!("= {value}"),
        };
        let mut message = format!("profile '{name}': {key} {now}; its credential is kept");
        if key == "ca_file"
            && !value.is_empty()
            && let Err(why) = self.shared.http.check(std::path::Path::new(value))
        {
            message.push_str(&format!(
                "; warning: the file cannot be used now ({why}): requests trust the system's \
                 CAs only until it can"
            ));
        }
        Ok(Response::Done { message })
    }

    /// `update_secret`: the secrets given replace the profile's, the
    /// others stay; a renewing profile proves them with an exchange first,
    /// and keeps the earlier ones when they are refused.
    pub(super) async fn update_secret(
        &self,
        name: &str,
        secrets: Secrets,
        hangup: Hangup,
    ) -> Result<Response, ErrorReply> {
        let (profile, _) = self.local(name)?;
        let kind = profile.spec.kind;
        check_update(kind, &secrets)?;
        self.refuse_spent(&secrets)?;
        let settling = self.settling(name)?;
        let Some(previous) = self.previous(name).await else {
            self.restart(&profile).await;
            return Err(internal(format!(
                "cannot read the credential of '{name}': nothing was changed"
            )));
        };
        let (spec, placed, mut credential) = previous.clone();
        let renews = crate::provider::of(kind).renews();
        with_secrets(&mut credential, secrets, renews);
        let installed = {
            let _edit = self.edits.lock().await;
            self.install(name, &spec, placed, credential, true).await
        };
        // A failed install restarted the profile as it was.
        let new = installed?;
        let mut message = format!("profile '{name}': the secret is updated");
        if renews {
            let said = self
                .settle_first_exchange(&new, Some(previous), hangup, settling)
                .await?;
            message.push_str(&said);
        }
        tracing::info!(profile = %name, "secret updated");
        Ok(Response::Done { message })
    }

    /// Profile `name` and its store, if it is kept here (not shared
    /// through a fleet, not a workspace token, whose settings follow its
    /// sign-in).
    fn local(&self, name: &str) -> Result<(std::sync::Arc<Profile>, Placed), ErrorReply> {
        let profile = self.profile(Some(name))?;
        if let Some(parent) = &profile.spec.workspace_of {
            return Err(invalid(format!(
                "'{name}' is a workspace token of the sign-in '{parent}': change '{parent}'"
            )));
        }
        let Some(placed) = profile.home.placed().cloned() else {
            return Err(invalid(format!(
                "profile '{name}' is shared through the fleet: change it on a refresher with \
                 `a365 add {name} --shared --replace`"
            )));
        };
        Ok((profile, placed))
    }

    /// `profile` is still the one named `name` (not replaced or removed
    /// meanwhile).
    fn still(&self, name: &str, profile: &std::sync::Arc<Profile>) -> Result<(), ErrorReply> {
        match self.is_current(profile) {
            true => Ok(()),
            false => Err(invalid(format!(
                "profile '{name}' was replaced or removed meanwhile: nothing was changed"
            ))),
        }
    }
}

/// The secrets `update_secret` may take for a profile of `kind`: at least
/// one, each one the kind has, no username or password.
fn check_update(kind: a365_proto::Kind, secrets: &Secrets) -> Result<(), ErrorReply> {
    let given = [
        (
            SecretField::ClientSecret,
            "client secret",
            &secrets.client_secret,
        ),
        (
            SecretField::RefreshToken,
            "refresh token",
            &secrets.refresh_token,
        ),
        (
            SecretField::AccessToken,
            "access token",
            &secrets.access_token,
        ),
    ];
    if given.iter().all(|(_, _, s)| s.is_none()) {
        return Err(invalid("no secret was given"));
    }
    if secrets.password.is_some() || secrets.username.is_some() {
        return Err(invalid(
            "a username and password make a new Designer Cloud token: `a365 add \
             PROFILE --replace --username USER`",
        ));
    }
    for (field, what, _) in given.iter().filter(|(_, _, s)| s.is_some()) {
        if !kind
            .facts()
            .secrets
            .iter()
            .any(|asked| asked.field == *field)
        {
            return Err(invalid(format!("a {kind} profile has no {what} to update")));
        }
    }
    Ok(())
}

/// `credential` with the secrets given in place of its own, and what was
/// learned with the old ones forgotten.
fn with_secrets(credential: &mut a365_store::Credential, secrets: Secrets, renews: bool) {
    let take = |s: Option<a365_proto::WireSecret>| s.map(a365_proto::WireSecret::into_inner);
    if let Some(secret) = take(secrets.client_secret) {
        credential.client_secret = Some(secret);
        credential.client_auth = None;
    }
    if let Some(rt) = take(secrets.refresh_token) {
        credential.refresh_token = Some(rt);
        credential.rotates = None;
    }
    if let Some(token) = take(secrets.access_token) {
        // A new token of unknown id and expiry (Designer Cloud): renewed
        // at once, which proves it and learns both.
        credential.access_token = Some(token);
        credential.access_expires_at_ms = None;
        credential.token_id = None;
        credential.creating = None;
    } else if renews {
        // The next exchange is now, with the new secret.
        credential.access_token = None;
        credential.access_expires_at_ms = None;
    }
}
