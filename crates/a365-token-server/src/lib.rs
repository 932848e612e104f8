//! A local OAuth 2.0 token server (RFC 6749 `/connect/token`) that behaves
//! like Altium's and Nexar's IdentityServer where it matters to a365:
//! one-time-use refresh tokens, JWT access tokens with a `scope` array, and
//! faults a test can switch on (5xx, 429 + Retry-After, hangs, lies).
//!
//! Loopback and plain HTTP only: it is for tests and the demo.

mod actionwait;
mod api;
mod authorize;
mod conn;
mod designer;
mod fault;
mod handler;
mod introspect;
mod revoke;
mod state;
mod token_endpoint;
mod workspaces;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use designer::{DESIGNER_USER, DesignerCreate};
pub use fault::{Fault, ParseError, parse_duration};
use state::State;
pub use state::{RecordedRequest, State as ServerState};

/// How the server starts.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Access token lifetime.
    pub lifetime: Duration,
    /// Issue a new refresh token with every refresh (the old one dies).
    pub rotate: bool,
    /// Scopes of issued tokens when the request names none.
    pub scopes: Vec<String>,
    /// Registered clients: (client id, client secret).
    pub clients: Vec<(String, String)>,
    /// Loopback only; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Clients must authenticate with HTTP Basic (`client_secret_basic`,
    /// enforced as strict servers do): a secret in the body is
    /// `invalid_client`.
    pub require_basic: bool,
    /// Reads HTTP Basic credentials as they are, without the form-decoding
    /// of RFC 6749 §2.3.1, as many servers do.
    pub basic_raw: bool,
    /// Public clients: a client id and PKCE, no secret.
    pub public_clients: Vec<String>,
    /// As Altium Identity: this server is Altium's Gov Cloud (its tokens
    /// carry `secure`, its token exchanges want `secure=1`).
    pub gov: bool,
    /// As Altium Identity: the user's workspaces, for the workspace list
    /// (`/api/graphql`) and token exchange.
    pub workspaces: Vec<MockWorkspace>,
}

/// A workspace of the mock Altium Identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockWorkspace {
    pub id: String,
    pub name: String,
    /// In Altium's Gov Cloud (`location.name` "US GovCloud").
    pub gov: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            lifetime: Duration::from_secs(3600),
            rotate: true,
            scopes: vec![
                "openid".into(),
                "a365:requirements".into(),
                "a365:workspace:6f1c2a7e-3b4d-4c5e-9f80-1a2b3c4d5e6f".into(),
            ],
            clients: vec![("test-client".into(), "test-secret".into())],
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            require_basic: false,
            basic_raw: false,
            public_clients: Vec::new(),
            gov: false,
            workspaces: Vec::new(),
        }
    }
}

/// Serves `POST /connect/token` (and revocation, authorize, Designer
/// Cloud's token API) on `listener` until the future is dropped
/// (connections already accepted live on as tasks of the runtime).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ServerState>,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/connect/token", axum::routing::post(handler::token))
        .route("/connect/revocation", axum::routing::post(revoke::revoke))
        .route(
            "/connect/introspect",
            axum::routing::post(introspect::introspect),
        )
        .route(
            "/connect/authorize",
            axum::routing::get(authorize::authorize),
        )
        .route("/await", axum::routing::post(actionwait::poll))
        .route("/api/graphql", axum::routing::post(workspaces::list))
        .route("/nexar/", axum::routing::any(api::nexar))
        .route("/nexar/{*rest}", axum::routing::any(api::nexar))
        .route("/altium/", axum::routing::any(api::altium))
        .route("/altium/{*rest}", axum::routing::any(api::altium))
        .route("/redirect", axum::routing::get(api::redirect))
        .route(
            "/connect/userinfo",
            axum::routing::get(workspaces::userinfo),
        )
        .route(
            "/api/AuthComplete",
            axum::routing::get(actionwait::complete),
        )
        .route(
            "/v4/apiAccessTokens",
            axum::routing::post(designer::create).get(designer::list),
        )
        .route(
            "/v4/apiAccessTokens/{id}",
            axum::routing::delete(designer::delete),
        )
        .with_state(state)
        .into_make_service_with_connect_info::<conn::Cut>();
    axum::serve(conn::CuttableListener(listener), app).await
}

/// A running server on a background thread with its own runtime, so plain
/// synchronous tests can use it. Dropping it stops it.
#[derive(Debug)]
pub struct TokenServer {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TokenServer {
    /// Binds (loopback only) and starts serving; returns once listening.
    pub fn start(config: ServerConfig) -> std::io::Result<TokenServer> {
        if !config.listen.ip().is_loopback() {
            return Err(std::io::Error::other(
                "the test token server listens on loopback only",
            ));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // A std bind, not `block_on`: `start` then works inside an async test too.
        let listener = std::net::TcpListener::bind(config.listen)?;
        listener.set_nonblocking(true)?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let addr = listener.local_addr()?;
        let state = Arc::new(State::new(&config, format!("http://{addr}")));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let serving = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("token-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        _ = serve(listener, serving) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime drops every connection, hung ones too.
            })?;
        Ok(TokenServer {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/connect/token`
    pub fn token_url(&self) -> String {
        format!("http://{}/connect/token", self.addr)
    }

    /// Every access token issued so far is refused by the mock API from
    /// now on as expired.
    pub fn expire_access_tokens(&self) {
        self.state.expire_access_tokens();
    }

    /// Requests the mock API (`/nexar/…`, `/altium/…`, `/redirect`) got.
    pub fn api_calls(&self) -> usize {
        self.state.api_calls()
    }

    /// `http://127.0.0.1:PORT/connect/revocation` (RFC 7009)
    pub fn revocation_url(&self) -> String {
        format!("http://{}/connect/revocation", self.addr)
    }

    /// `http://127.0.0.1:PORT/connect/introspect` (RFC 7662)
    pub fn introspection_url(&self) -> String {
        format!("http://{}/connect/introspect", self.addr)
    }

    /// `http://127.0.0.1:PORT`: also a Designer Cloud instance's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A Designer Cloud API token as the web UI makes one: (value, id).
    pub fn issue_designer_token(&self, lifetime: Option<Duration>) -> (String, String) {
        self.state.issue_designer_token(lifetime)
    }

    /// A Designer Cloud API token another program created, described
    /// `description`: (value, id).
    pub fn issue_designer_token_described(
        &self,
        lifetime: Option<Duration>,
        description: &str,
    ) -> (String, String) {
        self.state
            .issue_designer_token_described(lifetime, description)
    }

    pub fn is_designer_token_live(&self, value: &str) -> bool {
        self.state.is_designer_token_live(value)
    }

    /// Ids of the Designer Cloud tokens not deleted (nor expired away).
    pub fn designer_live_ids(&self) -> Vec<String> {
        self.state.designer_live_ids()
    }

    /// `Some(status)`: the listing answers with it (404: a deployment
    /// without the listing; 500: a passing failure); `None`: it lists.
    pub fn fail_designer_listing(&self, status: Option<u16>) {
        self.state.fail_designer_listing(status);
    }

    /// While set, a create makes its token but never answers.
    pub fn hold_designer_creates(&self, hold: bool) {
        self.state.hold_designer_creates(hold);
    }

    /// Designer Cloud tokens created through the API.
    /// Every `POST /v4/apiAccessTokens`, in order.
    pub fn designer_creates(&self) -> Vec<DesignerCreate> {
        self.state.designer_creates()
    }

    pub fn designer_tokens_created(&self) -> usize {
        self.state.designer_tokens_created()
    }

    /// Ids of Designer Cloud tokens deleted through the API.
    pub fn designer_tokens_deleted(&self) -> Vec<String> {
        self.state.designer_tokens_deleted()
    }

    /// The next `times` deletes fail with HTTP 500.
    pub fn fail_designer_deletes(&self, times: usize) {
        self.state.fail_designer_deletes(times);
    }

    /// While set, deletes never get an answer.
    pub fn hold_designer_deletes(&self, hold: bool) {
        self.state.hold_designer_deletes(hold);
    }

    /// Tokens created from now on have `expiredAt: null`.
    pub fn designer_tokens_never_expire(&self, never: bool) {
        self.state.designer_tokens_never_expire(never);
    }

    /// Mints a valid refresh token for `client_id`, as an admin would.
    pub fn issue_refresh_token(&self, client_id: &str) -> String {
        self.state.issue_refresh_token(client_id)
    }

    /// Token requests received, failed ones included.
    pub fn requests(&self) -> usize {
        self.state.requests()
    }

    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.state.recorded()
    }

    /// Makes the next `times` requests (all, if `None`) fail this way.
    /// Altium's ActionWait: the next polls get these answers (status,
    /// body), in order; then sign-ins complete as usual.
    pub fn script_actionwait(&self, answers: Vec<(u16, String)>) {
        self.state.script_actionwait(answers);
    }

    /// The wait tokens ActionWait was polled with, in order.
    pub fn actionwait_polls(&self) -> Vec<String> {
        self.state.actionwait_polls()
    }

    /// Forgets the requests recorded so far.
    pub fn clear_recorded(&self) {
        self.state.clear_recorded();
    }

    pub fn set_fault(&self, fault: Fault, times: Option<usize>) {
        self.state.set_fault(fault, times);
    }

    pub fn clear_fault(&self) {
        self.state.clear_fault();
    }

    pub fn set_lifetime(&self, lifetime: Duration) {
        self.state.set_lifetime(lifetime);
    }

    /// Refresh requests that presented a spent refresh token.
    pub fn replays(&self) -> usize {
        self.state.replays()
    }

    pub fn is_refresh_token_valid(&self, refresh_token: &str) -> bool {
        self.state.is_refresh_token_valid(refresh_token)
    }

    pub fn last_access_token(&self) -> Option<String> {
        self.state.issued_access_tokens().pop()
    }

    /// Every access token issued so far.
    pub fn issued_access_tokens(&self) -> Vec<String> {
        self.state.issued_access_tokens()
    }

    /// Every refresh token issued so far (minted or rotated).
    pub fn issued_refresh_tokens(&self) -> Vec<String> {
        self.state.issued_refresh_tokens()
    }

    /// Stops serving: connections are dropped and new ones refused.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// A random URL-safe secret (32 bytes of OS randomness).
pub fn random_secret() -> String {
    state::random_token(32)
}
