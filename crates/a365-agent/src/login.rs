//! The loopback end of a browser login (RFC 8252 §7.3): listen on the
//! registered redirect, take the one request that carries our `state`,
//! answer the browser with a short page, and hand the code back.
//!
//! The browser is not given the authorize URL (its `state` and PKCE
//! challenge) on its command line, where every local user can read it in
//! `/proc/PID/cmdline` and race the victim to the login. It gets a
//! one-time *launcher* on the same loopback listener,
//! `http://HOST:PORT/start/<random>`, which redirects to the authorize URL;
//! a second fetch of it fails the login loudly.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Why no code came back.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("cannot listen on {redirect}: {source} (is another login or program using that port?)")]
    Listen {
        redirect: String,
        source: std::io::Error,
    },
    #[error("the login was not finished within {0} s")]
    TimedOut(u64),
    #[error("the authorization server refused the login: {0}")]
    Refused(String),
    #[error(
        "the login link was opened twice: another program or user may have opened it first, so \
         this login is abandoned"
    )]
    LauncherReused,
}

/// Binds the redirect's port now, so a busy port is reported before the
/// browser opens. `localhost` is bound on both loopbacks: a browser may
/// try `[::1]` first, and another user listening there would get the code.
/// A loopback the machine does not have (IPv6 off) nobody can bind either.
pub async fn listen(redirect: &reqwest::Url) -> Result<Vec<TcpListener>, LoginError> {
    let port = redirect.port().unwrap_or(80);
    let literal = redirect
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .and_then(|h| h.parse::<std::net::IpAddr>().ok());
    let hosts: Vec<std::net::IpAddr> = match literal {
        Some(ip) => vec![ip],
        None => vec![
            std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::Ipv6Addr::LOCALHOST.into(),
        ],
    };
    let several = hosts.len() > 1;
    let mut listeners = Vec::new();
    for ip in hosts {
        match TcpListener::bind((ip, port)).await {
            Ok(listener) => listeners.push(listener),
            Err(e) if several && e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                tracing::debug!("{ip} is not available here: not listening there");
            }
            Err(source) => {
                return Err(LoginError::Listen {
                    redirect: redirect.to_string(),
                    source,
                });
            }
        }
    }
    Ok(listeners)
}

/// The random path of the one-time launcher.
pub fn launcher_path() -> Result<String, getrandom::Error> {
    use base64::Engine as _;
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)?;
    Ok(format!(
        "/start/{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

type Outcome = Result<String, LoginError>;

/// What the listener waits for.
#[derive(Debug)]
pub struct Expect {
    /// The redirect's path (`/login`).
    pub redirect_path: String,
    /// From [`launcher_path`].
    pub launcher_path: String,
    /// Where the launcher sends the browser.
    pub authorize_url: String,
    pub state: String,
}

#[derive(Clone)]
struct Waiting {
    expect: Arc<Expect>,
    launched: Arc<std::sync::atomic::AtomicBool>,
    done: Arc<Mutex<Option<oneshot::Sender<Outcome>>>>,
}

impl Waiting {
    fn finish(&self, outcome: Outcome) {
        if let Some(tx) = self.done.lock().ok().and_then(|mut d| d.take()) {
            let _ = tx.send(outcome);
        }
    }
}

/// Serves the launcher and the redirect path until a request with our
/// `state` brings a code (or an error), or until `timeout`; the listeners
/// are closed on return, so the port is free again.
pub async fn wait_for_code(
    listeners: Vec<TcpListener>,
    expect: Expect,
    timeout: Duration,
) -> Outcome {
    let (tx, rx) = oneshot::channel();
    let waiting = Waiting {
        expect: Arc::new(expect),
        launched: Arc::default(),
        done: Arc::new(Mutex::new(Some(tx))),
    };
    // Paths are compared, never turned into routes: a redirect path with
    // `:` or `*` would be route syntax.
    let app = axum::Router::new().fallback(handle).with_state(waiting);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    for listener in listeners {
        let (app, mut stop) = (app.clone(), stop_rx.clone());
        servers.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
        }));
    }
    let outcome = match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => Err(LoginError::Refused("the login listener stopped".into())),
        Err(_) => Err(LoginError::TimedOut(timeout.as_secs())),
    };
    let _ = stop_tx.send(true);
    // Graceful shutdown lets the browser's page finish; then the port is free.
    for server in servers {
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    }
    outcome
}

async fn handle(State(waiting): State<Waiting>, uri: Uri, RawQuery(query): RawQuery) -> Response {
    let path = uri.path();
    if path == waiting.expect.launcher_path {
        return launch(&waiting);
    }
    if path == waiting.expect.redirect_path {
        return redirect(&waiting, query.as_deref().unwrap_or_default()).into_response();
    }
    (StatusCode::NOT_FOUND, Html("<h1>a365: not found</h1>")).into_response()
}

/// The launcher: once to the authorize URL; twice is someone else.
fn launch(waiting: &Waiting) -> Response {
    use std::sync::atomic::Ordering;
    if waiting.launched.swap(true, Ordering::SeqCst) {
        waiting.finish(Err(LoginError::LauncherReused));
        return (
            StatusCode::GONE,
            Html(
                "<h1>a365: this login link was already used</h1>\
                 <p>The login is abandoned: see your terminal and run <code>a365 login</code> again.</p>",
            ),
        )
            .into_response();
    }
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, waiting.expect.authorize_url.as_str()),
            (header::CACHE_CONTROL, "no-store"),
        ],
    )
        .into_response()
}

fn redirect(waiting: &Waiting, query: &str) -> (StatusCode, Html<&'static str>) {
    let mut code = None;
    let mut state = None;
    let mut error = None;
    let mut description = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "code" => code = Some(value.into_owned()),
            "state" => state = Some(value.into_owned()),
            "error" => error = Some(value.into_owned()),
            "error_description" => description = Some(value.into_owned()),
            _ => {}
        }
    }
    // Anything without our state is not the browser we sent: ignore it and
    // keep waiting (it may be a stray or hostile local request).
    if state.as_deref() != Some(waiting.expect.state.as_str()) {
        return (
            StatusCode::BAD_REQUEST,
            Html("<h1>a365: this login link is not the one the agent is waiting for</h1>"),
        );
    }
    let outcome = match (code, error) {
        (Some(code), None) => Ok(code),
        (_, Some(error)) => {
            let code: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            // The provider's explanation ("nonce required"), shown as text.
            let said = description
                .map(|d| d.chars().take(200).collect::<String>())
                .map(|d| format!(" ({})", a365_proto::visible(&d)))
                .unwrap_or_default();
            Err(LoginError::Refused(format!("{code}{said}")))
        }
        (None, None) => Err(LoginError::Refused("no code in the redirect".into())),
    };
    let page = if outcome.is_ok() {
        "<h1>a365: logged in</h1><p>You can close this tab.</p>"
    } else {
        "<h1>a365: the login was refused</h1><p>See your terminal.</p>"
    };
    waiting.finish(outcome);
    (StatusCode::OK, Html(page))
}
