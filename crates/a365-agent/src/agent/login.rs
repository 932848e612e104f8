//! The browser login of an `authorization-code` profile: the agent
//! listens on the loopback redirect (`crate::login`), the client opens the
//! browser and waits; the code is exchanged, and the new credential is
//! saved and served once a client asks: at once (`login_wait`), or after
//! the user saw whose account signed in and said to keep it
//! (`login_review`, then `login_keep`).

use std::sync::Arc;
use std::time::Duration;

use a365_proto::{ErrorKind, ErrorReply, Response};
use tokio::sync::watch;

use super::{Agent, internal, invalid, unavailable};
use crate::endpoint::{self, Endpoint};
use crate::profile::Profile;

/// The profile a login was for and the credential it brought, taken once.
type Held = Arc<std::sync::Mutex<Option<(Arc<Profile>, a365_store::Credential)>>>;

/// A login whose code was exchanged: what to say, and the credential,
/// kept only when a client asks for it.
#[derive(Debug, Clone)]
pub(super) struct Exchanged {
    /// " as NAME", or nothing when the token does not say.
    account: String,
    /// What `a365 login` prints once the credential is kept.
    message: String,
    held: Held,
}

pub(super) type LoginOutcome = Result<Exchanged, ErrorReply>;

#[derive(Debug)]
pub(super) struct Login {
    outcome: watch::Receiver<Option<LoginOutcome>>,
    pub(super) task: tokio::task::AbortHandle,
}

/// How long a reviewed login's credential waits for `login_keep`.
const REVIEW_WAIT: Duration = Duration::from_secs(600);

/// A task that ends with the task that awaits it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// " as NAME" for the account a token is for (whose account a login
/// ended in: a login finished in someone else's browser shows here, not
/// at the first API call), or nothing when the token does not say. Bidi
/// and other invisible characters are shown escaped: the name must read
/// as what it is.
fn account(token: &secrecy::SecretString) -> String {
    use secrecy::ExposeSecret;
    a365_token::jwt::claims(token.expose_secret())
        .and_then(|c| c.account)
        .map_or_else(String::new, |a| format!(" as {}", a365_proto::visible(&a)))
}

/// The endpoint of a profile that logs in with a browser.
fn login_endpoint(profile: &Profile) -> Result<Endpoint, ErrorReply> {
    if let Some(parent) = &profile.spec.workspace_of {
        return Err(invalid(format!(
            "profile '{}' holds a workspace token of '{parent}': log in with `a365 login \
             {parent}`; the workspace's token is exchanged from it",
            profile.name
        )));
    }
    if crate::provider::of(profile.spec.kind).browser().is_none() {
        return Err(invalid(format!(
            "profile '{}' is a {} profile: only authorization-code profiles log in with a browser",
            profile.name, profile.spec.kind
        )));
    }
    crate::provider::endpoint(&profile.spec)
        .map_err(invalid)?
        .ok_or_else(|| invalid("the profile has no token endpoint"))
}

/// What the listener expects (the launcher, the redirect, the state) and
/// the launcher's URL, which is all the browser is given.
fn launch_plan(
    profile: &Profile,
    login: &endpoint::LoginEndpoint,
    pkce: &crate::provider::Pkce,
) -> Result<(crate::login::Expect, reqwest::Url), ErrorReply> {
    let browser = crate::provider::of(profile.spec.kind)
        .browser()
        .ok_or_else(|| invalid("the profile does not log in with a browser"))?;
    let url = browser.authorize_url(&profile.spec, login, pkce);
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
    Ok((expect, launcher))
}

/// Waits for the login's work and publishes how it ended. Aborting this
/// task (a newer login) aborts the work too; a bug that panics the work
/// says so, rather than leaving the waiting client a misleading
/// "replaced or stopped".
async fn report_login(
    name: String,
    work: tokio::task::JoinHandle<LoginOutcome>,
    tx: watch::Sender<Option<LoginOutcome>>,
) {
    let mut work = AbortOnDrop(work);
    let outcome = match (&mut work.0).await {
        Ok(outcome) => outcome,
        Err(e) if e.is_panic() => Err(internal(
            "the login failed inside the agent (a bug: see its log); run `a365 login` again",
        )),
        Err(_) => Err(unavailable("the login was abandoned")),
    };
    match &outcome {
        Ok(_) => {
            tracing::info!(profile = %name, "signed in; the credential is kept when a client asks")
        }
        Err(e) => tracing::warn!(profile = %name, "login failed: {}", e.message),
    }
    let _ = tx.send(Some(outcome));
}

impl Agent {
    /// Starts a browser login: binds the redirect, answers with the
    /// one-time launcher URL to open; a task waits for the browser,
    /// exchanges the code and installs the new credential. `login_wait`
    /// reports how it ended.
    pub(super) async fn login(
        &self,
        name: &str,
        timeout_ms: u64,
        select_workspace: Option<&str>,
    ) -> Result<Response, ErrorReply> {
        use crate::provider::Pkce;
        let profile = self.profile(Some(name))?;
        let endpoint = login_endpoint(&profile)?;
        let login = endpoint
            .login
            .clone()
            .ok_or_else(|| invalid("the profile has no login endpoint"))?;
        let pkce = Pkce::generate().map_err(|e| internal(format!("no randomness: {e}")))?;
        let timeout = Duration::from_millis(timeout_ms.clamp(1_000, 3_600_000));
        if let Some(actionwait) = login.actionwait.clone() {
            let select = select_workspace
                .map(|s| match s {
                    "none" | "strict" | "optional" => Ok(s),
                    other => Err(invalid(format!(
                        "selectWorkspace is none, strict or optional, not '{}'",
                        a365_proto::visible(other)
                    ))),
                })
                .transpose()?;
            return self
                .login_by_actionwait(
                    &profile,
                    (endpoint, login, actionwait),
                    pkce,
                    (timeout, select),
                )
                .await;
        }
        if select_workspace.is_some() {
            return Err(invalid(
                "--select-workspace is for Altium 365 sign-ins (an Altium realm, no redirect_uri)",
            ));
        }
        let listeners = self.take_redirect(name, &login.redirect_uri).await?;
        let (expect, launcher) = launch_plan(&profile, &login, &pkce)?;
        tracing::info!(profile = %name, redirect = %login.redirect_uri, "login started");
        let (me, worker_name) = (self.me.clone(), name.to_owned());
        let work = tokio::spawn(async move {
            let name = worker_name;
            let code = crate::login::wait_for_code(listeners, expect, timeout).await;
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
        self.track_login(name, work);
        Ok(Response::LoginUrl {
            url: launcher.to_string(),
        })
    }

    /// Keeps the login of `name` whose work is `work`, for `login_wait`.
    pub(super) fn track_login(&self, name: &str, work: tokio::task::JoinHandle<LoginOutcome>) {
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(report_login(name.to_owned(), work, tx));
        if let Ok(mut logins) = self.logins.lock() {
            let task = task.abort_handle();
            logins.insert(name.to_owned(), Login { outcome: rx, task });
        }
    }

    /// Listens on the redirect; a login of `name` still waiting (a closed
    /// tab, a retry) is replaced, and its listener given a moment to close.
    async fn take_redirect(
        &self,
        name: &str,
        redirect: &reqwest::Url,
    ) -> Result<Vec<tokio::net::TcpListener>, ErrorReply> {
        let previous = self.logins.lock().ok().and_then(|mut l| l.remove(name));
        if let Some(previous) = &previous {
            previous.task.abort();
        }
        let mut listeners = crate::login::listen(redirect).await;
        for _ in 0..20 {
            if listeners.is_ok() || previous.is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            listeners = crate::login::listen(redirect).await;
        }
        listeners.map_err(|e| unavailable(e.to_string()))
    }

    /// Exchanges the code; the credential is kept later (`keep_login`).
    pub(super) async fn finish_login(
        &self,
        name: &str,
        endpoint: &Endpoint,
        redirect_uri: &reqwest::Url,
        code: &str,
        pkce: &crate::provider::Pkce,
    ) -> LoginOutcome {
        let profile = self.profile(Some(name))?;
        let placed = profile.home.placed().ok_or_else(|| {
            invalid(format!(
                "'{name}' is shared through the fleet: it does not log in here"
            ))
        })?;
        let mut credential = placed
            .load(name)
            .await
            .map_err(|e| internal(format!("cannot read the client secret: {e}")))?
            .unwrap_or_default();
        let now = self.shared.clock.now_ms();
        let call = self.login_call(&profile, endpoint, now);
        let browser = crate::provider::of(profile.spec.kind)
            .browser()
            .ok_or_else(|| invalid("the profile does not log in with a browser"))?;
        let answer = browser
            .redeem(
                call,
                &profile.spec,
                credential.client_secret.as_ref(),
                code,
                redirect_uri,
                pkce,
            )
            .await
            .map_err(|e| {
                let message = format!("the token server refused the login: {e}");
                ErrorReply::new(ErrorKind::NeedsReauth, message)
            })?;
        let fresh = &answer.fresh;
        let refreshable = fresh.refresh_token.is_some();
        let asked_offline = browser.asks_for_refresh(&profile.spec);
        credential.account = self.signed_in_user(&profile.spec, endpoint, fresh).await;
        let account = match &credential.account {
            Some(user) => format!(" as {user}"),
            None => account(&fresh.access_token),
        };
        let expires_at_ms = fresh.expires_at_ms;
        // A login is a new grant: nothing of an earlier one is kept.
        credential.refresh_token = None;
        let credential = crate::profile::engine::fold(&credential, answer.into(), now).credential;
        let message = format!(
            "logged in{account}: profile '{name}' has a token valid for {}{}",
            a365_proto::human_ms(expires_at_ms - now),
            if refreshable {
                ", renewed with its refresh token from now on"
            } else if asked_offline {
                "; but the provider granted no refresh token although offline_access was asked \
                 for, so log in again when it expires. Allow offline access on the consent page, \
                 or ask the provider's administrator to allow refresh tokens for this client"
            } else {
                "; no refresh token was granted (the profile's scopes do not include \
                 offline_access), so log in again when it expires"
            }
        );
        Ok(Exchanged {
            account,
            message,
            held: Arc::new(std::sync::Mutex::new(Some((profile, credential)))),
        })
    }

    /// The context of a login's code exchange: nothing learned yet.
    fn login_call<'a>(
        &'a self,
        profile: &'a Profile,
        endpoint: &'a Endpoint,
        now: i64,
    ) -> crate::provider::oauth::Call<'a> {
        crate::provider::oauth::Call {
            http: self.shared.http_for(&profile.spec),
            token_url: &endpoint.token_url,
            now_ms: now,
            default_lifetime: self.shared.default_lifetime,
            answer_wait: self.shared.answer_wait,
            client_auth: crate::provider::client_auth(&profile.spec),
            proven: false,
            altium: endpoint.altium,
            secure: endpoint.secure,
            params: &profile.spec.token_params,
        }
    }

    /// Saves and serves what a login exchanged (once).
    async fn keep_login(&self, name: &str, done: &Exchanged) -> Result<Response, ErrorReply> {
        let held = done.held.lock().ok().and_then(|mut h| h.take());
        let Some((profile, credential)) = held else {
            return Err(invalid(format!("the login of '{name}' was already kept")));
        };
        self.install_login(name, &profile, credential).await?;
        tracing::info!(profile = %name, "logged in");
        // Workspace tokens of the earlier sign-in go (revoked): this one
        // may be another account's.
        self.drop_workspace_tokens(name).await;
        Ok(Response::Done {
            message: done.message.clone(),
        })
    }

    /// Saves a login's credential and restarts the profile on it, under the
    /// edit lock, taken only now, after the network exchange.
    async fn install_login(
        &self,
        name: &str,
        profile: &Arc<Profile>,
        credential: a365_store::Credential,
    ) -> Result<(), ErrorReply> {
        let _edit = self.edits.lock().await;
        // The profile must still be the one the login started for.
        if !self.is_current(profile) {
            return Err(unavailable(format!(
                "profile '{name}' was removed or replaced during the login"
            )));
        }
        let placed = profile.home.placed().ok_or_else(|| {
            invalid(format!(
                "'{name}' is shared through the fleet: it does not log in here"
            ))
        })?;
        placed
            .save(name, &credential, false)
            .await
            .map_err(|e| internal(format!("could not save the new credential: {e}")))?;
        profile.stop().await;
        self.launch(
            name,
            profile.spec.clone(),
            placed.clone(),
            Ok(Some(credential)),
        );
        Ok(())
    }

    /// Waits for the outcome of the login `login` started; keeps the new
    /// credential at once, or with `review` holds it and names the account
    /// for `login_keep`.
    pub(super) async fn login_wait(
        &self,
        name: &str,
        review: bool,
    ) -> Result<Response, ErrorReply> {
        let Some(mut rx) = self.login_outcome(name) else {
            return Err(invalid(format!(
                "no login is under way for '{name}': run `a365 login {name}`"
            )));
        };
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            Err(_) => None,
        };
        let done = match outcome {
            Some(Ok(done)) => done,
            Some(Err(e)) => {
                self.forget_login(name, &rx);
                return Err(e);
            }
            None => {
                return Err(unavailable(
                    "the login was replaced by a newer `a365 login`, or the agent stopped",
                ));
            }
        };
        if !review {
            self.forget_login(name, &rx);
            return self.keep_login(name, &done).await;
        }
        // Held for `login_keep`, not for ever: a client that went away
        // leaves nothing behind that blocks a restart.
        let me = self.me.clone();
        let (name_owned, waiting) = (name.to_owned(), rx.clone());
        tokio::spawn(async move {
            tokio::time::sleep(REVIEW_WAIT).await;
            if let Some(agent) = me.upgrade() {
                agent.forget_login(&name_owned, &waiting);
            }
        });
        let account = match done.account.is_empty() {
            true => " (the token does not name the account)".to_owned(),
            false => done.account.clone(),
        };
        Ok(Response::Done {
            message: format!("signed in{account}"),
        })
    }

    /// `login_keep`: the user saw the account a `login_review` named.
    pub(super) async fn login_keep(&self, name: &str, keep: bool) -> Result<Response, ErrorReply> {
        let rx = self.login_outcome(name);
        let done = rx.as_ref().and_then(|rx| match &*rx.borrow() {
            Some(Ok(done)) => Some(done.clone()),
            _ => None,
        });
        let (Some(rx), Some(done)) = (rx, done) else {
            return Err(invalid(format!(
                "no login of '{name}' is waiting to be kept: run `a365 login {name}`"
            )));
        };
        self.forget_login(name, &rx);
        match keep {
            true => self.keep_login(name, &done).await,
            false => {
                tracing::info!(profile = %name, "a login was discarded by its user");
                Ok(Response::Done {
                    message: format!("the login was not kept: profile '{name}' goes on as it was"),
                })
            }
        }
    }

    /// How the login of `name` under way ends, to wait on or look at.
    fn login_outcome(&self, name: &str) -> Option<watch::Receiver<Option<LoginOutcome>>> {
        self.logins
            .lock()
            .ok()
            .and_then(|logins| logins.get(name).map(|l| l.outcome.clone()))
    }

    /// Drops the login of `name` if it is still the one `rx` follows.
    fn forget_login(&self, name: &str, rx: &watch::Receiver<Option<LoginOutcome>>) {
        if let Ok(mut logins) = self.logins.lock()
            && logins.get(name).is_some_and(|l| l.outcome.same_channel(rx))
        {
            logins.remove(name);
        }
    }
}
