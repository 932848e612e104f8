//! The loopback end of a browser login (RFC 8252 §7.3): listen on the
//! registered redirect, take the one request that carries our `state`,
//! answer the browser with a short page, and hand the code back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Html;
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
}

/// Binds the redirect's port now, so a busy port is reported before the
/// browser opens. `localhost` means the IPv4 loopback, as browsers try it.
pub async fn listen(redirect: &reqwest::Url) -> Result<TcpListener, LoginError> {
    let port = redirect.port().unwrap_or(80);
    let host = match redirect.host_str() {
        Some("localhost") | None => "127.0.0.1".to_owned(),
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    };
    TcpListener::bind((host.as_str(), port))
        .await
        .map_err(|source| LoginError::Listen {
            redirect: redirect.to_string(),
            source,
        })
}

type Outcome = Result<String, LoginError>;

#[derive(Clone)]
struct Waiting {
    state: Arc<String>,
    done: Arc<Mutex<Option<oneshot::Sender<Outcome>>>>,
}

/// Serves the redirect path until a request with our `state` brings a code
/// (or an error), or until `timeout`; the listener is closed on return, so
/// the port is free again.
pub async fn wait_for_code(
    listener: TcpListener,
    path: &str,
    state: String,
    timeout: Duration,
) -> Outcome {
    let (tx, rx) = oneshot::channel();
    let waiting = Waiting {
        state: Arc::new(state),
        done: Arc::new(Mutex::new(Some(tx))),
    };
    let app = axum::Router::new()
        .route(path, axum::routing::get(redirect))
        .with_state(waiting);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await;
    });
    let outcome = match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => Err(LoginError::Refused("the login listener stopped".into())),
        Err(_) => Err(LoginError::TimedOut(timeout.as_secs())),
    };
    let _ = stop_tx.send(());
    // Graceful shutdown lets the browser's page finish; then the port is free.
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    outcome
}

async fn redirect(
    State(waiting): State<Waiting>,
    RawQuery(query): RawQuery,
) -> (StatusCode, Html<&'static str>) {
    let mut code = None;
    let mut state = None;
    let mut error = None;
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*key {
            "code" => code = Some(value.into_owned()),
            "state" => state = Some(value.into_owned()),
            "error" => error = Some(value.into_owned()),
            _ => {}
        }
    }
    // Anything without our state is not the browser we sent: ignore it and
    // keep waiting (it may be a stray or hostile local request).
    if state.as_deref() != Some(waiting.state.as_str()) {
        return (
            StatusCode::BAD_REQUEST,
            Html("<h1>a365: this login link is not the one the agent is waiting for</h1>"),
        );
    }
    let outcome = match (code, error) {
        (Some(code), None) => Ok(code),
        (_, Some(error)) => Err(LoginError::Refused(
            error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect(),
        )),
        (None, None) => Err(LoginError::Refused("no code in the redirect".into())),
    };
    let page = if outcome.is_ok() {
        "<h1>a365: logged in</h1><p>You can close this tab.</p>"
    } else {
        "<h1>a365: the login was refused</h1><p>See your terminal.</p>"
    };
    if let Some(tx) = waiting.done.lock().ok().and_then(|mut d| d.take()) {
        let _ = tx.send(outcome);
    }
    (StatusCode::OK, Html(page))
}
