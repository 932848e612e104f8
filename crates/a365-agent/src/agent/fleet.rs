//! The agent's side of fleet mode: which shared profiles it serves (kept
//! in step with etcd), `add --shared` and removing a shared profile. The
//! refreshing is [`crate::profile`]'s.

use std::sync::Arc;
use std::time::Duration;

use a365_proto::{ErrorKind, ErrorReply, ProfileSpec, Response};
use a365_store::Credential;

use super::{Agent, internal, invalid, unavailable};
use crate::endpoint::Endpoint;
use crate::fleet::{Fleet, Public, Role};
use crate::profile::Profile;
use crate::provider::{self, Exchange, ProviderError, Revocation};

/// Where a profile is shared: the fleet, the token endpoint, and the
/// shared profile of that name it replaces.
type Sharing = (Arc<Fleet>, Endpoint, Option<Arc<Profile>>);

impl Agent {
    /// Follows the fleet: starts the shared profiles this agent does not
    /// serve yet, restarts those whose settings changed, stops those gone.
    pub(super) async fn sync_fleet(&self, fleet: &Arc<Fleet>) {
        let listed = match fleet.profiles(self.shared.clock.now_ms()).await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!("cannot list the fleet's profiles: {e}");
                return;
            }
        };
        for (name, public) in &listed {
            let current = self.profiles.read().ok().and_then(|p| p.get(name).cloned());
            let public = match public {
                Ok(public) => public,
                Err(e) => {
                    tracing::error!(profile = %name, "{e}");
                    if let Some(shared) = current.filter(|p| p.home.is_shared()) {
                        shared.note_fleet_error(e.to_string());
                    }
                    continue;
                }
            };
            match current {
                Some(local) if !local.home.is_shared() => {
                    tracing::warn!(profile = %name, "the fleet shares a profile of this name, and this agent has one of its own: serving its own");
                }
                Some(shared) if shared.spec == public.spec => {}
                Some(changed) => {
                    changed.stop().await;
                    self.launch_shared(name, public.spec.clone(), fleet);
                }
                None => {
                    tracing::info!(profile = %name, "serving a profile of the fleet");
                    self.launch_shared(name, public.spec.clone(), fleet);
                }
            }
        }
        let gone: Vec<Arc<Profile>> = self
            .all_profiles()
            .into_iter()
            .filter(|p| p.home.is_shared() && !listed.iter().any(|(n, _)| *n == p.name))
            .collect();
        for profile in gone {
            tracing::info!(profile = %profile.name, "the profile left the fleet");
            fleet.forget(&profile.name);
            profile.stop().await;
            if let Ok(mut profiles) = self.profiles.write()
                && profiles
                    .get(&profile.name)
                    .is_some_and(|p| Arc::ptr_eq(p, &profile))
            {
                profiles.remove(&profile.name);
            }
        }
    }

    pub(super) fn launch_shared(
        &self,
        name: &str,
        spec: ProfileSpec,
        fleet: &Arc<Fleet>,
    ) -> Arc<Profile> {
        let endpoint = crate::provider::endpoint(&spec).ok().flatten();
        let profile = Profile::start_shared(
            name.to_owned(),
            spec,
            endpoint,
            Arc::clone(fleet),
            Arc::clone(&self.shared),
        );
        if let Ok(mut profiles) = self.profiles.write() {
            profiles.insert(name.to_owned(), Arc::clone(&profile));
        }
        profile
    }

    /// `a365 add NAME … --shared`: the first exchange here, then the
    /// credential (sealed) and the token into the fleet in one
    /// transaction. Nothing of it is kept on this machine.
    pub(super) async fn add_shared(
        &self,
        name: &str,
        mut spec: ProfileSpec,
        endpoint: Option<Endpoint>,
        credential: Credential,
        replace: bool,
    ) -> Result<Response, ErrorReply> {
        let (fleet, endpoint, local) = self.may_share(name, &spec, endpoint)?;
        let now = self.shared.clock.now_ms();
        let last_generation = self.before_sharing(&fleet, name, replace, now).await?;
        let generation = crate::fleet::next_generation(last_generation, now);
        spec.store = None;
        // The first exchange counts against the client id's budget too.
        let quota = self.shared.budgets.of(&spec, &endpoint.token_url);
        let mut admitted = None;
        if let Some(quota) = &quota {
            match fleet.admit(quota, now).await {
                Ok(Ok(id)) => admitted = Some((quota, id)),
                Ok(Err(hold)) => {
                    let client_id = spec.client_id.as_deref().unwrap_or("(none)");
                    return Err(unavailable(format!(
                        "{}; nothing was put in the fleet",
                        hold.message(client_id, now)
                    )));
                }
                Err(e) => {
                    return Err(unavailable(format!(
                        "the fleet's token request budget cannot be read ({e}); nothing was \
                         put in the fleet"
                    )));
                }
            }
        }
        let exchange = self.shared.exchange(name, &endpoint, &spec);
        let obtained = provider::of(spec.kind).obtain(exchange, &credential).await;
        if let Some((quota, id)) = admitted
            && let Err(e) = fleet.settle(quota, id, self.shared.clock.now_ms()).await
        {
            tracing::warn!(profile = %name, "the fleet's budget counts the request as under way for up to 5 minutes: {e}");
        }
        let got = match obtained {
            Ok(got) => got,
            Err(ProviderError::Dead(m)) => return Err(ErrorReply::new(ErrorKind::NeedsReauth, m)),
            Err(e) => {
                return Err(unavailable(format!(
                    "the first exchange failed ({e}); nothing was put in the fleet"
                )));
            }
        };
        // Rotation is seen on this first exchange, as on every refresh.
        let crate::profile::engine::Folded {
            mut credential,
            rotates,
            held,
            ..
        } = crate::profile::engine::fold(&credential, got, now);
        // The access token travels in the public record only.
        credential.access_token = None;
        let token = (held.secret, held.expires_at_ms, held.scopes);
        let public = Public::issued(spec.clone(), token, now, &fleet.member, rotates, generation);
        let secret = fleet
            .seal(name, &spec, &credential, generation)
            .map_err(|e| internal(e.to_string()))?;
        let created = fleet
            .create(name, &public, &secret, replace)
            .await
            .map_err(|e| {
                unavailable(format!(
                    "fleet: {e}; the new credential was not stored (a one-time refresh token is now spent: \
                     issue a new one)"
                ))
            })?;
        if !created {
            return Err(invalid(format!(
                "another member added '{name}' to the fleet meanwhile; nothing was changed"
            )));
        }
        if let Some(old) = local {
            old.stop().await;
        }
        self.launch_shared(name, spec.clone(), &fleet);
        tracing::info!(profile = %name, kind = %spec.kind, "profile added to the fleet");
        Ok(Response::Done {
            message: format!(
                "profile '{name}' ({}) added to the fleet: every member serves it, and its \
                 credential is in etcd, sealed with the fleet key; a token was obtained",
                spec.kind
            ),
        })
    }

    /// Whether this agent may share `spec` as `name`: a refresher of a
    /// fleet, a kind that can be shared, a token endpoint, and no local
    /// profile of that name. The fleet, the endpoint and the shared
    /// profile it replaces.
    fn may_share(
        &self,
        name: &str,
        spec: &ProfileSpec,
        endpoint: Option<Endpoint>,
    ) -> Result<Sharing, ErrorReply> {
        let fleet = self.fleet.clone().ok_or_else(|| {
            invalid(format!(
                "--shared needs a [fleet] section in {}",
                self.paths.config_file.display()
            ))
        })?;
        if fleet.role != Role::Refresher {
            return Err(invalid(
                "this agent is a fleet consumer: add shared profiles on a refresher",
            ));
        }
        if !spec.kind.facts().shareable {
            return Err(invalid(format!(
                "a {} profile cannot be shared yet: only refresh and client-credentials profiles",
                spec.kind
            )));
        }
        let Some(endpoint) = endpoint else {
            return Err(invalid("a shared profile needs a token endpoint"));
        };
        let local = self.profiles.read().ok().and_then(|p| p.get(name).cloned());
        if local.as_ref().is_some_and(|p| !p.home.is_shared()) {
            return Err(invalid(format!(
                "this agent has a profile '{name}' of its own: remove it first, or share under another name"
            )));
        }
        Ok((fleet, endpoint, local))
    }

    /// Reads etcd before anything is spent (a one-time refresh token sent
    /// while etcd cannot take the answer would be lost): the generation to
    /// follow when replacing, a refusal when the name is taken without
    /// `--replace`.
    async fn before_sharing(
        &self,
        fleet: &Fleet,
        name: &str,
        replace: bool,
        now: i64,
    ) -> Result<u64, ErrorReply> {
        let fleet_error = |e: crate::fleet::FleetError| {
            unavailable(format!("fleet: {e}; nothing was sent to the provider"))
        };
        if replace {
            let secret = fleet.read_secret(name).await.map_err(fleet_error)?;
            return Ok(secret.map_or(0, |(s, _)| s.generation));
        }
        if fleet
            .read_public(name, now)
            .await
            .map_err(fleet_error)?
            .is_some()
        {
            return Err(invalid(format!(
                "the fleet has a profile '{name}': add --replace to give it a new credential"
            )));
        }
        Ok(0)
    }

    /// `a365 remove` of a shared profile: out of the fleet for every
    /// member, then revoked at the provider (unless `keep_remote`).
    pub(super) async fn remove_shared(
        &self,
        profile: Arc<Profile>,
        keep_remote: bool,
    ) -> Result<Response, ErrorReply> {
        let Some(fleet) = profile.home.fleet().cloned() else {
            return Err(internal("not a shared profile"));
        };
        if fleet.role != Role::Refresher {
            return Err(invalid(
                "this agent is a fleet consumer: remove shared profiles on a refresher",
            ));
        }
        let name = profile.name.clone();
        let fleet_error =
            |e: crate::fleet::FleetError| unavailable(format!("fleet: {e}; nothing was removed"));
        let secret = fleet.read_secret(&name).await.map_err(fleet_error)?;
        fleet.delete(&name).await.map_err(fleet_error)?;
        profile.stop().await;
        if let Ok(mut profiles) = self.profiles.write() {
            profiles.remove(&name);
        }
        let mut message = format!("profile '{name}' was removed from the fleet");
        fleet.forget(&name);
        // Revoked only at the endpoint sealed with it (an error is logged
        // when the public settings differ).
        let credential =
            secret.and_then(|(s, _)| fleet.open_credential(&name, &s, &profile.spec).ok());
        if let (false, Some(credential), Some(exchange)) =
            (keep_remote, credential, profile_exchange(self, &profile))
        {
            match provider::of(profile.spec.kind)
                .revoke(exchange, &credential)
                .await
            {
                Revocation::NotNeeded => {}
                Revocation::Done(what) => message.push_str(&format!("; {what}")),
                Revocation::Left(why) => message.push_str(&format!("; warning: {why}")),
            }
        }
        tracing::info!(profile = %name, "profile removed from the fleet");
        self.shared
            .events
            .emit(&name, a365_proto::EventKind::Removed, None, message.clone());
        Ok(Response::Done { message })
    }
}

fn profile_exchange<'a>(agent: &'a Agent, profile: &'a Profile) -> Option<Exchange<'a>> {
    let endpoint = profile.endpoint()?;
    Some(
        agent
            .shared
            .exchange(&profile.name, endpoint, &profile.spec),
    )
}

/// Follows the fleet until the agent is dropped: reads its profiles at
/// each change an etcd watch sees, and every `every` only while no watch
/// is up (etcd unreachable, or a gateway without watches).
pub async fn follow(agent: std::sync::Weak<Agent>, fleet: Arc<Fleet>, every: Duration) {
    let changed = Arc::new(tokio::sync::Notify::new());
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = tokio::spawn(watch(
        Arc::clone(&fleet),
        Arc::clone(&changed),
        Arc::clone(&watching),
    ));
    loop {
        match agent.upgrade() {
            Some(agent) => agent.sync_fleet(&fleet).await,
            None => {
                watch.abort();
                return;
            }
        }
        // While the watch is up, nothing is read until it sees a change.
        let poll = async {
            match watching.load(std::sync::atomic::Ordering::SeqCst) {
                true => std::future::pending().await,
                false => tokio::time::sleep(every).await,
            }
        };
        tokio::select! {
            () = poll => {}
            () = changed.notified() => {}
        }
    }
}

/// Keeps a watch on the fleet's profiles, set up again after it ends (a
/// back-off from 1 s to a minute while it fails); each new watch starts
/// with a full read, as changes may have been missed meanwhile.
async fn watch(
    fleet: Arc<Fleet>,
    changed: Arc<tokio::sync::Notify>,
    watching: Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    let mut failures = 0u32;
    loop {
        let seen = |what: crate::fleet::Watched| {
            if what == crate::fleet::Watched::Created {
                watching.store(true, Ordering::SeqCst);
                tracing::info!("following the fleet's profiles with a watch");
            }
            changed.notify_one();
        };
        let ended = fleet.watch_profiles(&seen).await;
        watching.store(false, Ordering::SeqCst);
        changed.notify_one();
        match ended {
            Ok(()) => failures = 0,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!("the watch on the fleet's profiles ended: {e}");
            }
        }
        let wait = crate::schedule::backoff(failures, false, None, fastrand::f64())
            .min(Duration::from_secs(60));
        tokio::time::sleep(wait).await;
    }
}
