//! One Altium 365 sign-in, every workspace (altium-auth SPEC §5.2, §6,
//! §7): `workspaces` lists the user's workspaces with the sign-in's token;
//! `token --workspace` gives a workspace's token, exchanged (RFC 8693)
//! from the sign-in's the first time and kept as a profile of its own
//! (`NAME.ws-ID`, `workspace_of = NAME`), which the refresh engine renews
//! like any other and a restart restores without an exchange. A workspace
//! in Altium's Gov Cloud is exchanged at the Gov endpoint (the
//! Commercial→Gov bridge).

use std::sync::Arc;

use a365_proto::{ErrorKind, ErrorReply, ProfileSpec, Response, Workspace};

use super::{Agent, internal, invalid, unavailable};
use crate::profile::{Held, Phase, Profile};
use crate::realm::Realm;

use super::workspace_list::{choose, parse_list};

/// The GraphQL query of the user's workspaces (SPEC §7).
const QUERY: &str = "query { desWorkspaceInfos { authId name url location { name } } }";

/// The longest answer the workspace list may have.
const MAX_BODY: usize = 1024 * 1024;

/// A sign-in's token must be valid this long to be exchanged or used.
const MIN_VALID_MS: u64 = 60_000;

impl Agent {
    /// `workspaces`: the workspaces of `name`'s user, and which of them
    /// have a token here.
    pub(super) async fn workspaces(&self, name: Option<&str>) -> Result<Response, ErrorReply> {
        let parent = self.profile(name)?;
        let mut list = self.workspace_list(&parent).await?;
        for workspace in &mut list {
            if let Ok(Some(child)) = self.child(&parent, &child_name(&parent.name, &workspace.id)) {
                workspace.profile = Some(child.name.clone());
            }
        }
        Ok(Response::Workspaces(list))
    }

    /// The token of `workspace` (id, URL or name) of `parent`'s user.
    pub(super) async fn workspace_token(
        &self,
        parent: Arc<Profile>,
        workspace: &str,
        min_valid_ms: u64,
        scopes: &[String],
    ) -> Result<(Arc<Profile>, Arc<Held>), ErrorReply> {
        let realm = sign_in_realm(&parent)?;
        let live = |c: &Arc<Profile>| !matches!(c.snapshot().phase, Phase::NeedsReauth(_));
        // A token asked for before (by id, or by a name or URL seen in this
        // agent's life): no list, no lock.
        let child = match self.known_child(&parent, workspace)?.filter(live) {
            Some(child) => child,
            None => {
                let _one = self.workspace_exchanges.lock().await;
                let list = self.workspace_list(&parent).await?;
                let chosen = choose(&list, workspace, &parent.name)?;
                let name = child_name(&parent.name, &chosen.id);
                if let Ok(mut names) = self.workspace_names.lock() {
                    names.insert((parent.name.clone(), workspace.to_owned()), name.clone());
                }
                match self.child(&parent, &name)?.filter(live) {
                    Some(child) => child,
                    None => {
                        self.exchange_workspace(&parent, &realm, chosen, &name)
                            .await?
                    }
                }
            }
        };
        let held = child.token(min_valid_ms, scopes).await?;
        Ok((child, held))
    }

    /// The profile holding `parent`'s token of `workspace`, when known
    /// without asking the API: by id, or by a name or URL resolved before.
    fn known_child(
        &self,
        parent: &Profile,
        workspace: &str,
    ) -> Result<Option<Arc<Profile>>, ErrorReply> {
        if let Some(child) = self.child(parent, &child_name(&parent.name, workspace))? {
            return Ok(Some(child));
        }
        let resolved = self
            .workspace_names
            .lock()
            .ok()
            .and_then(|n| n.get(&(parent.name.clone(), workspace.to_owned())).cloned());
        match resolved {
            Some(name) => self.child(parent, &name),
            None => Ok(None),
        }
    }

    /// The profile `name`, if it holds a workspace token of `parent`; a
    /// profile of that name that does not is an error, never overwritten.
    fn child(&self, parent: &Profile, name: &str) -> Result<Option<Arc<Profile>>, ErrorReply> {
        match self.profile(Some(name)).ok() {
            None => Ok(None),
            Some(p) if p.spec.workspace_of.as_deref() == Some(parent.name.as_str()) => Ok(Some(p)),
            Some(_) => Err(invalid(format!(
                "profile '{name}' exists and holds no workspace token of '{}': rename it, \
                 or remove it, to have this workspace's token",
                parent.name
            ))),
        }
    }

    /// The profile holding `parent`'s token of a workspace, for a
    /// token-only socket, which never exchanges one.
    pub(super) fn held_workspace(
        &self,
        parent: &Profile,
        workspace: &str,
    ) -> Result<Arc<Profile>, ErrorReply> {
        self.known_child(parent, workspace)?.ok_or_else(|| {
            ErrorReply::new(
                ErrorKind::UnknownProfile,
                format!(
                    "this token socket serves only workspace tokens the agent holds: ask \
                     `a365 token {} --workspace …` on the agent's own socket first",
                    parent.name
                ),
            )
        })
    }

    /// Removes (revoking them) the workspace tokens exchanged from
    /// `parent`'s sign-in: a new sign-in may be another account's.
    pub(super) async fn drop_workspace_tokens(&self, parent: &str) {
        let _one = self.workspace_exchanges.lock().await;
        if let Ok(mut names) = self.workspace_names.lock() {
            names.retain(|(p, _), _| p != parent);
        }
        let children = self
            .all_profiles()
            .into_iter()
            .filter(|p| p.spec.workspace_of.as_deref() == Some(parent));
        for child in children {
            match self.remove_one(&child.name, false).await {
                Ok(_) => {
                    tracing::info!(profile = %child.name, "workspace token of an earlier sign-in removed")
                }
                Err(e) => tracing::warn!(profile = %child.name, "{}", e.message),
            }
        }
    }

    /// Exchanges `parent`'s token for `workspace`'s and keeps it as the
    /// profile `name` (replacing a dead one).
    async fn exchange_workspace(
        &self,
        parent: &Arc<Profile>,
        realm: &Realm,
        workspace: &Workspace,
        name: &str,
    ) -> Result<Arc<Profile>, ErrorReply> {
        a365_proto::is_valid_profile_name(name)
            .then_some(())
            .ok_or_else(|| {
                invalid(format!(
                    "the profile name '{}' is too long to name its workspace tokens after it",
                    parent.name
                ))
            })?;
        let spec = child_spec(parent, realm, workspace)?;
        let endpoint = crate::provider::endpoint(&spec)
            .map_err(invalid)?
            .ok_or_else(|| internal("a workspace has no token endpoint"))?;
        let placed = parent.home.placed().cloned().ok_or_else(|| {
            invalid("a profile shared through the fleet holds no workspace tokens")
        })?;
        let parent_credential = placed
            .load(&parent.name)
            .await
            .map_err(|e| internal(format!("cannot read the sign-in's secrets: {e}")))?
            .unwrap_or_default();
        bridge_allowed(parent, &parent_credential, &endpoint, workspace)?;
        let subject = parent.token(MIN_VALID_MS, &[]).await?;
        let now = self.shared.clock.now_ms();
        let mut credential = crate::provider::new_credential(now);
        credential.client_secret = parent_credential.client_secret;
        let exchange = self.shared.exchange(name, &endpoint, &spec);
        let client = crate::provider::oauth::Client {
            id: exchange.client_id(),
            secret: credential.client_secret.as_ref(),
        };
        let answer = crate::provider::workspace::exchange(
            exchange.call(&credential),
            client,
            &subject.secret,
            &workspace.id,
            &parent.spec.scopes,
        )
        .await
        .map_err(|e| refused(workspace, e))?;
        let credential = crate::profile::engine::fold(&credential, answer.into(), now).credential;
        tracing::info!(profile = %name, workspace = %workspace.id, gov = workspace.gov, "workspace token exchanged");
        let _edit = self.edits.lock().await;
        // The sign-in must still be the one the exchange started from.
        if !self.is_current(parent) {
            return Err(unavailable(format!(
                "profile '{}' was removed or replaced meanwhile: nothing was kept",
                parent.name
            )));
        }
        self.install(name, &spec, placed, credential, true).await
    }

    /// The user's workspaces, asked of the sign-in's realm's API with its
    /// token.
    async fn workspace_list(&self, parent: &Profile) -> Result<Vec<Workspace>, ErrorReply> {
        let realm = sign_in_realm(parent)?;
        let api = realm.api.clone().ok_or_else(|| {
            invalid(format!(
                "realm '{}' names no API to list workspaces: set api_url in [realms.{}]",
                realm.name, realm.name
            ))
        })?;
        // The sign-in's token goes only to an API on its own cloud.
        if let Some(endpoint) = parent.endpoint()
            && !crate::endpoint::same_cloud(&api, &endpoint.token_url)
        {
            return Err(invalid(format!(
                "realm '{}' names an API on another cloud than its token endpoint: the sign-in's \
                 token is not sent there",
                realm.name
            )));
        }
        let token = parent.token(MIN_VALID_MS, &[]).await?;
        let body = serde_json::json!({ "query": QUERY }).to_string();
        let response = self
            .shared
            .http_for(&parent.spec)
            .post(api.clone())
            .bearer_auth(secrecy::ExposeSecret::expose_secret(&token.secret))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| unavailable(format!("the workspace list: {}", describe(&e, &api))))?;
        let status = response.status().as_u16();
        let bytes = crate::body::read_limited(response, MAX_BODY)
            .await
            .map_err(|_| unavailable("the workspace list's answer was cut or too large"))?;
        if status != 200 {
            return Err(unavailable(format!(
                "the workspace list: {} answered HTTP {status}",
                api.host_str().unwrap_or("the API")
            )));
        }
        parse_list(&bytes, secrecy::ExposeSecret::expose_secret(&token.secret))
    }
}

/// A client secret stays on its cloud (SECURITY.md): only a public
/// client's sign-in crosses the Commercial->Gov bridge.
fn bridge_allowed(
    parent: &Profile,
    parent_credential: &a365_store::Credential,
    endpoint: &crate::endpoint::Endpoint,
    workspace: &Workspace,
) -> Result<(), ErrorReply> {
    let parent_url = parent.endpoint().map(|e| e.token_url.clone());
    if parent_credential.client_secret.is_some()
        && parent_url.is_some_and(|url| !crate::endpoint::same_cloud(&url, &endpoint.token_url))
    {
        return Err(invalid(format!(
            "workspace '{}' is on the other Altium cloud, and the client of '{}' has a secret, \
             which stays on its own cloud: sign in with a public client to reach it",
            workspace.name, parent.name
        )));
    }
    Ok(())
}

/// A refused exchange: a dead grant needs the user, anything else is
/// worth another try.
fn refused(workspace: &Workspace, e: crate::provider::ProviderError) -> ErrorReply {
    let kind = match e {
        crate::provider::ProviderError::Dead(_) => ErrorKind::NeedsReauth,
        _ => ErrorKind::Unavailable,
    };
    ErrorReply::new(
        kind,
        format!(
            "the token of workspace '{}' could not be had: {e}",
            workspace.name
        ),
    )
}

fn describe(e: &reqwest::Error, url: &reqwest::Url) -> String {
    crate::provider::send_error::describe_send_error(e, url)
}

/// The realm of an Altium sign-in profile, or why `parent` is none.
fn sign_in_realm(parent: &Profile) -> Result<Realm, ErrorReply> {
    let not = || {
        invalid(format!(
            "profile '{}' is no Altium 365 sign-in (an authorization-code profile of an Altium \
             realm): workspace tokens are exchanged from one",
            parent.name
        ))
    };
    if parent.spec.kind != a365_proto::Kind::AuthorizationCode || parent.spec.workspace_of.is_some()
    {
        return Err(not());
    }
    let endpoint = parent.endpoint().ok_or_else(not)?;
    crate::realm::owning(&endpoint.token_url).ok_or_else(not)
}

/// The profile of `parent`'s token for workspace `id`.
fn child_name(parent: &str, id: &str) -> String {
    format!("{parent}.ws-{id}")
}

/// The settings of a workspace token's profile: the sign-in's client and
/// scopes plus the workspace's, at the token endpoint of its cloud.
fn child_spec(
    parent: &Profile,
    realm: &Realm,
    workspace: &Workspace,
) -> Result<ProfileSpec, ErrorReply> {
    let realm_name = match (workspace.gov, realm.gov) {
        (true, true) | (false, false) => realm.name.clone(),
        (true, false) => realm.gov_realm.clone().ok_or_else(|| {
            invalid(format!(
                "workspace '{}' is in Altium's Gov Cloud, and realm '{}' names no Gov Cloud to \
                 exchange it at (gov_realm in [realms.{}])",
                workspace.name, realm.name, realm.name
            ))
        })?,
        (false, true) => {
            return Err(invalid(format!(
                "workspace '{}' is not in Altium's Gov Cloud, and a Gov Cloud sign-in cannot \
                 have its token: sign in on the commercial cloud (realm altium365), which reaches \
                 both",
                workspace.name
            )));
        }
    };
    let mut scopes = vec![crate::provider::workspace::workspace_scope(&workspace.id)];
    scopes.extend(parent.spec.scopes.iter().cloned());
    Ok(ProfileSpec {
        kind: a365_proto::Kind::AuthorizationCode,
        realm: Some(realm_name),
        client_id: parent.spec.client_id.clone(),
        client_auth: parent.spec.client_auth,
        scopes,
        store: parent.spec.store,
        workspace_of: Some(parent.name.clone()),
        ca_file: parent.spec.ca_file.clone(),
        ..ProfileSpec::default()
    })
}
