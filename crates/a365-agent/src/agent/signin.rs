//! An Altium 365 sign-in (altium-auth SPEC §4): the code comes through
//! Altium's ActionWait instead of a loopback redirect, so the browser can
//! be on any device; and who signed in, from Altium's userinfo.

use std::time::Duration;

use a365_proto::{ErrorKind, ErrorReply, Response};

use super::{Agent, invalid, unavailable};
use crate::endpoint::{self, Endpoint};
use crate::profile::Profile;

impl Agent {
    /// An Altium sign-in through ActionWait: the poll starts before the
    /// URL goes to the client (and so before any browser opens), with the
    /// login's `state` as its wait token; the URL is the authorize URL
    /// itself, to open on any device.
    pub(super) async fn login_by_actionwait(
        &self,
        profile: &Profile,
        (endpoint, login, actionwait): (Endpoint, endpoint::LoginEndpoint, reqwest::Url),
        pkce: crate::provider::Pkce,
        (timeout, select): (Duration, Option<&str>),
    ) -> Result<Response, ErrorReply> {
        let name = profile.name.clone();
        if let Some(previous) = self.logins.lock().ok().and_then(|mut l| l.remove(&name)) {
            previous.task.abort();
        }
        let browser = crate::provider::of(profile.spec.kind)
            .browser()
            .ok_or_else(|| invalid("the profile does not log in with a browser"))?;
        // This sign-in's selectWorkspace (SPEC §3.1) over the profile's.
        let mut spec = profile.spec.clone();
        if let Some(select) = select {
            spec.authorize_params
                .insert("selectWorkspace".into(), select.into());
        }
        let url = browser.authorize_url(&spec, &login, &pkce);
        tracing::info!(profile = %name, actionwait = %actionwait, "sign-in started");
        let (me, http) = (self.me.clone(), self.shared.http_for(&spec).clone());
        let (started, polling) = tokio::sync::oneshot::channel();
        let work = tokio::spawn(async move {
            let poll = crate::actionwait::wait_for_code(&http, &actionwait, &pkce.state, timeout);
            let _ = started.send(());
            let code = poll.await.map_err(|e| {
                let message = format!("{e}; run `a365 login {name}` to try again");
                match e {
                    crate::actionwait::ActionWaitError::Refused(_) => {
                        ErrorReply::new(ErrorKind::NeedsReauth, message)
                    }
                    _ => unavailable(message),
                }
            })?;
            let agent = me
                .upgrade()
                .ok_or_else(|| unavailable("the agent is stopping"))?;
            agent
                .finish_login(&name, &endpoint, &login.redirect_uri, &code, &pkce)
                .await
        });
        // The poll's task runs before the URL goes out, as SPEC §4.4 wants
        // (its first request may still be connecting while the client
        // prints the URL; a person opening it takes far longer).
        let _ = polling.await;
        tokio::task::yield_now().await;
        self.track_login(&profile.name, work);
        Ok(Response::LoginUrl {
            url: url.to_string(),
        })
    }

    /// Who signed in to Altium 365: its userinfo (Altium's access tokens
    /// name no one), else the id_token's name. `None` for other providers,
    /// whose access tokens name the user (`status` reads them).
    pub(super) async fn signed_in_user(
        &self,
        spec: &a365_proto::ProfileSpec,
        endpoint: &Endpoint,
        fresh: &crate::provider::Fresh,
    ) -> Option<String> {
        let from_id_token = || {
            fresh
                .id_token
                .as_ref()
                .and_then(|c| c.account.as_deref().map(a365_proto::visible))
        };
        let realm = crate::realm::owning(&endpoint.token_url).filter(|r| r.altium)?;
        let url = realm.connect("userinfo");
        match crate::provider::userinfo::claims(
            self.shared.http_for(spec),
            &url,
            &fresh.access_token,
        )
        .await
        {
            Ok(claims) => crate::provider::userinfo::display(&claims).or_else(from_id_token),
            Err(e) => {
                tracing::warn!("userinfo: {e}");
                from_id_token()
            }
        }
    }
}
