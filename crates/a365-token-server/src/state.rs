//! What the server knows: clients, live refresh tokens, faults, a record
//! of every request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::ServerConfig;
use crate::fault::Fault;

/// One request to `/connect/token`.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub grant_type: String,
    pub client_id: Option<String>,
    /// `secure=1` was sent (Gov Cloud).
    pub secure: bool,
    /// The refresh token presented (test server: keeping it is fine).
    pub refresh_token: Option<String>,
    pub scope: Option<String>,
    /// The client authenticated with HTTP Basic.
    pub basic: bool,
    /// Form fields beyond the standard ones of the grant (`audience`,
    /// `resource`, …): what a profile's `token_params` sent.
    pub other: std::collections::BTreeMap<String, String>,
    /// The HTTP status sent; 0 while in flight and when none was sent
    /// (`Hang`, `Drop`, `RotateThenDrop`).
    pub status: u16,
    /// UTC epoch milliseconds of arrival.
    pub at_ms: i64,
}

/// The shared state of one server, for [`crate::serve`].
#[derive(Debug)]
pub struct State {
    pub(crate) issuer: String,
    /// One stderr line per request (the binary), never token values.
    log: bool,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    lifetime: Duration,
    rotate: bool,
    require_basic: bool,
    scopes: Vec<String>,
    clients: HashMap<String, String>,
    /// Live refresh token → client id.
    refresh_tokens: HashMap<String, String>,
    fault: Option<(Fault, Option<usize>)>,
    recorded: Vec<RecordedRequest>,
    access_issued: Vec<String>,
    refresh_issued: Vec<String>,
    /// Requests that presented a refresh token already spent: what a
    /// provider that revokes the grant on a replay would punish.
    replays: usize,
    /// Authorization codes not yet redeemed.
    codes: HashMap<String, PendingCode>,
    designer: Designer,
}

/// What `/connect/authorize` remembers for the token request.
#[derive(Debug, Clone)]
pub(crate) struct PendingCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub challenge: String,
    pub scope: String,
}

/// Designer Cloud API tokens.
#[derive(Debug, Default)]
struct Designer {
    /// Token value → (id, expiry in UTC epoch ms; `None`: never).
    live: HashMap<String, (String, Option<i64>)>,
    next_id: u64,
    created: usize,
    deleted: Vec<String>,
    /// Fail this many deletes with a 500.
    failing_deletes: usize,
    /// Never answer deletes while set.
    holding_deletes: bool,
    /// Create the token, then never answer, while set: the answer is lost.
    holding_creates: bool,
    /// Answer the listing with this status instead (404: a deployment
    /// without it; 500: a passing failure).
    listing_fails_with: Option<u16>,
    /// Token id → the description it was created with.
    descriptions: HashMap<String, String>,
    /// Created tokens never expire (`expiredAt: null`).
    never_expire: bool,
    creates: Vec<crate::designer::DesignerCreate>,
}

/// What a successful grant produces.
#[derive(Debug)]
pub(crate) struct Grant {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: Option<String>,
    pub scope: String,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The OS RNG failing is not something a test server can recover from.
    if getrandom::fill(&mut buf).is_err() {
        buf.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (now_ms() as u8).wrapping_add(i as u8));
    }
    URL_SAFE_NO_PAD.encode(buf)
}

impl State {
    pub fn new(config: &ServerConfig, issuer: String) -> State {
        State {
            issuer,
            log: false,
            inner: Mutex::new(Inner {
                lifetime: config.lifetime,
                rotate: config.rotate,
                require_basic: config.require_basic,
                scopes: config.scopes.clone(),
                clients: config.clients.iter().cloned().collect(),
                refresh_tokens: HashMap::new(),
                fault: None,
                recorded: Vec::new(),
                access_issued: Vec::new(),
                refresh_issued: Vec::new(),
                replays: 0,
                codes: HashMap::new(),
                designer: Designer::default(),
            }),
        }
    }

    /// Logs one line per request to stderr: grant type, client id, status.
    pub fn with_stderr_log(mut self) -> State {
        self.log = true;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn issue_refresh_token(&self, client_id: &str) -> String {
        let token = random_token(32);
        let mut inner = self.lock();
        inner
            .refresh_tokens
            .insert(token.clone(), client_id.to_owned());
        inner.refresh_issued.push(token.clone());
        token
    }

    pub fn requests(&self) -> usize {
        self.lock().recorded.len()
    }

    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.lock().recorded.clone()
    }

    /// Counts a request as it arrives (so hung ones count too); returns
    /// its index for [`State::finish`].
    pub(crate) fn begin(&self, request: RecordedRequest) -> usize {
        let mut inner = self.lock();
        inner.recorded.push(request);
        inner.recorded.len() - 1
    }

    /// Notes the status sent (0: none) and logs the request.
    pub(crate) fn finish(&self, index: usize, status: u16) {
        let mut inner = self.lock();
        let Some(record) = inner.recorded.get_mut(index) else {
            return;
        };
        record.status = status;
        if self.log {
            let status = match status {
                0 => "none (connection dropped or held)".to_owned(),
                s => s.to_string(),
            };
            eprintln!(
                "a365-token-server: grant_type={:?} client_id={:?} secure={} status={status}",
                record.grant_type,
                record.client_id.as_deref().unwrap_or(""),
                record.secure,
            );
        }
    }

    pub fn set_fault(&self, fault: Fault, times: Option<usize>) {
        self.lock().fault = Some((fault, times));
    }

    pub fn clear_fault(&self) {
        self.lock().fault = None;
    }

    /// The fault for this request, if any, counting it down.
    pub(crate) fn take_fault(&self) -> Option<Fault> {
        let mut inner = self.lock();
        let (fault, times) = inner.fault.clone()?;
        match times {
            Some(0) => {
                inner.fault = None;
                None
            }
            Some(n) => {
                inner.fault = if n == 1 {
                    None
                } else {
                    Some((fault.clone(), Some(n - 1)))
                };
                Some(fault)
            }
            None => Some(fault),
        }
    }

    pub fn set_lifetime(&self, lifetime: Duration) {
        self.lock().lifetime = lifetime;
    }

    pub fn replays(&self) -> usize {
        self.lock().replays
    }

    pub fn is_refresh_token_valid(&self, refresh_token: &str) -> bool {
        self.lock().refresh_tokens.contains_key(refresh_token)
    }

    pub fn issued_access_tokens(&self) -> Vec<String> {
        self.lock().access_issued.clone()
    }

    pub fn issued_refresh_tokens(&self) -> Vec<String> {
        self.lock().refresh_issued.clone()
    }

    pub(crate) fn require_basic(&self) -> bool {
        self.lock().require_basic
    }

    pub(crate) fn client_ok(&self, id: &str, secret: &str) -> bool {
        self.lock().clients.get(id).is_some_and(|s| s == secret)
    }

    /// Consumes `refresh_token` if it is live and belongs to `client_id`;
    /// returns whether it was.
    pub(crate) fn consume_refresh_token(&self, refresh_token: &str, client_id: &str) -> bool {
        let mut inner = self.lock();
        if inner
            .refresh_tokens
            .get(refresh_token)
            .is_none_or(|c| c != client_id)
        {
            if inner.refresh_issued.iter().any(|t| t == refresh_token) {
                inner.replays += 1;
            }
            return false;
        }
        if inner.rotate {
            inner.refresh_tokens.remove(refresh_token);
        }
        true
    }

    /// RFC 7009: ends `refresh_token` if it is this client's.
    pub(crate) fn revoke_refresh_token(&self, refresh_token: &str, client_id: &str) {
        let mut inner = self.lock();
        if inner
            .refresh_tokens
            .get(refresh_token)
            .is_some_and(|c| c == client_id)
        {
            inner.refresh_tokens.remove(refresh_token);
        }
    }

    /// Remembers a code issued by `/connect/authorize`.
    pub(crate) fn issue_code(&self, pending: PendingCode) -> String {
        let code = random_token(24);
        self.lock().codes.insert(code.clone(), pending);
        code
    }

    /// Redeems a code once: it must belong to this client and redirect,
    /// and the verifier must hash to the challenge (RFC 7636 §4.6).
    pub(crate) fn redeem_code(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Option<PendingCode> {
        use sha2::Digest;
        let pending = self.lock().codes.remove(code)?;
        let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
        (pending.client_id == client_id
            && pending.redirect_uri == redirect_uri
            && pending.challenge == challenge)
            .then_some(pending)
    }

    /// A Designer Cloud API token, as a user creates one in the web UI.
    pub fn issue_designer_token(&self, lifetime: Option<Duration>) -> (String, String) {
        let value = format!("dc-{}", random_token(24));
        let mut inner = self.lock();
        inner.designer.next_id += 1;
        let id = format!("tok-{}", inner.designer.next_id);
        let expiry = lifetime.map(|l| now_ms() + l.as_millis() as i64);
        inner
            .designer
            .live
            .insert(value.clone(), (id.clone(), expiry));
        (value, id)
    }

    /// A token as another program (or another machine's a365) created it:
    /// (value, id).
    pub fn issue_designer_token_described(
        &self,
        lifetime: Option<Duration>,
        description: &str,
    ) -> (String, String) {
        let (value, id) = self.issue_designer_token(lifetime);
        self.describe_designer_token(&id, description);
        (value, id)
    }

    pub(crate) fn describe_designer_token(&self, id: &str, description: &str) {
        self.lock()
            .designer
            .descriptions
            .insert(id.to_owned(), description.to_owned());
    }

    /// The user's live tokens, as `GET /v4/apiAccessTokens` lists them to
    /// the live token `bearer`: (id, description, expiry).
    pub(crate) fn list_designer_tokens(
        &self,
        bearer: &str,
    ) -> Option<Vec<(String, String, Option<i64>)>> {
        let inner = self.lock();
        let d = &inner.designer;
        d.live.get(bearer)?;
        let mut listed: Vec<_> = d
            .live
            .values()
            .map(|(id, exp)| {
                let description = d.descriptions.get(id).cloned().unwrap_or_default();
                (id.clone(), description, *exp)
            })
            .collect();
        listed.sort();
        Some(listed)
    }

    /// Ids of the live tokens.
    pub fn designer_live_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .lock()
            .designer
            .live
            .values()
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    pub fn hold_designer_creates(&self, hold: bool) {
        self.lock().designer.holding_creates = hold;
    }

    pub fn fail_designer_listing(&self, status: Option<u16>) {
        self.lock().designer.listing_fails_with = status;
    }

    pub(crate) fn designer_listing_fails_with(&self) -> Option<u16> {
        self.lock().designer.listing_fails_with
    }

    pub(crate) fn holding_designer_creates(&self) -> bool {
        self.lock().designer.holding_creates
    }

    /// Creates the successor of the live, unexpired token `bearer`.
    pub(crate) fn renew_designer_token(
        &self,
        bearer: &str,
        lifetime_secs: u64,
    ) -> Option<(String, String, Option<i64>)> {
        let live = {
            let inner = self.lock();
            inner
                .designer
                .live
                .get(bearer)
                .is_some_and(|(_, exp)| exp.is_none_or(|e| e > now_ms()))
        };
        if !live {
            return None;
        }
        Some(self.create_designer_token(lifetime_secs))
    }

    /// A new token living `lifetime_secs` (unless tokens never expire).
    pub(crate) fn create_designer_token(
        &self,
        lifetime_secs: u64,
    ) -> (String, String, Option<i64>) {
        let never = self.lock().designer.never_expire;
        let lifetime = (!never).then(|| Duration::from_secs(lifetime_secs));
        let (value, id) = self.issue_designer_token(lifetime);
        let mut inner = self.lock();
        inner.designer.created += 1;
        let expiry = inner.designer.live.get(&value).and_then(|(_, e)| *e);
        (value, id, expiry)
    }

    pub(crate) fn note_designer_create(&self, create: crate::designer::DesignerCreate) {
        self.lock().designer.creates.push(create);
    }

    pub fn designer_creates(&self) -> Vec<crate::designer::DesignerCreate> {
        self.lock().designer.creates.clone()
    }

    /// How a delete should go: `Err(true)` hold it, `Err(false)` fail it.
    pub(crate) fn delete_designer_token(&self, bearer: &str, id: &str) -> Result<bool, bool> {
        let mut inner = self.lock();
        if inner.designer.holding_deletes {
            return Err(true);
        }
        if inner.designer.failing_deletes > 0 {
            inner.designer.failing_deletes -= 1;
            return Err(false);
        }
        if !inner.designer.live.contains_key(bearer) {
            return Ok(false);
        }
        let before = inner.designer.live.len();
        inner.designer.live.retain(|_, (tid, _)| tid != id);
        let deleted = inner.designer.live.len() < before;
        if deleted {
            inner.designer.deleted.push(id.to_owned());
        }
        Ok(deleted)
    }

    pub fn is_designer_token_live(&self, value: &str) -> bool {
        self.lock().designer.live.contains_key(value)
    }

    /// Tokens created through the API (not by `issue_designer_token`).
    pub fn designer_tokens_created(&self) -> usize {
        self.lock().designer.created
    }

    pub fn designer_tokens_deleted(&self) -> Vec<String> {
        self.lock().designer.deleted.clone()
    }

    pub fn fail_designer_deletes(&self, times: usize) {
        self.lock().designer.failing_deletes = times;
    }

    pub fn hold_designer_deletes(&self, hold: bool) {
        self.lock().designer.holding_deletes = hold;
    }

    pub fn designer_tokens_never_expire(&self, never: bool) {
        self.lock().designer.never_expire = never;
    }

    pub(crate) fn note_access_token(&self, token: &str) {
        self.lock().access_issued.push(token.to_owned());
    }

    pub(crate) fn client_known(&self, id: &str) -> bool {
        self.lock().clients.contains_key(id)
    }

    /// A login's tokens: a refresh token only with `offline_access`.
    pub(crate) fn grant_login(&self, client_id: &str, scope: &str, offline: bool) -> Grant {
        let mut grant = self.grant(client_id, Some(scope), false);
        if offline {
            grant.refresh_token = Some(self.issue_refresh_token(client_id));
        }
        grant
    }

    /// Issues an access token (and a rotated refresh token when asked).
    pub(crate) fn grant(&self, client_id: &str, scope: Option<&str>, with_refresh: bool) -> Grant {
        let (lifetime, scopes, rotate) = {
            let inner = self.lock();
            let scopes = match scope {
                Some(s) if !s.trim().is_empty() => {
                    s.split_whitespace().map(str::to_owned).collect()
                }
                _ => inner.scopes.clone(),
            };
            (inner.lifetime, scopes, inner.rotate)
        };
        let iat = now_ms() / 1000;
        let exp = iat + lifetime.as_secs() as i64;
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT","kid":"a365-test"}"#);
        let claims = serde_json::json!({
            "iss": self.issuer,
            "sub": format!("user-of-{client_id}"),
            "client_id": client_id,
            "iat": iat,
            "nbf": iat,
            "exp": exp,
            "jti": random_token(12),
            "scope": scopes,
        });
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let access_token = format!("{header}.{payload}.{}", random_token(32));
        let refresh_token = (with_refresh && rotate).then(|| self.issue_refresh_token(client_id));
        self.lock().access_issued.push(access_token.clone());
        Grant {
            access_token,
            expires_in: lifetime.as_secs(),
            refresh_token,
            scope: scopes.join(" "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_count_down() {
        let state = State::new(&ServerConfig::default(), "http://x".into());
        state.set_fault(Fault::Status(500), Some(2));
        assert_eq!(state.take_fault(), Some(Fault::Status(500)));
        assert_eq!(state.take_fault(), Some(Fault::Status(500)));
        assert_eq!(state.take_fault(), None);
        state.set_fault(Fault::Hang, None);
        assert_eq!(state.take_fault(), Some(Fault::Hang));
        assert_eq!(state.take_fault(), Some(Fault::Hang));
    }

    #[test]
    fn refresh_tokens_are_one_time() {
        let state = State::new(&ServerConfig::default(), "http://x".into());
        let rt = state.issue_refresh_token("test-client");
        assert!(!state.consume_refresh_token(&rt, "other-client"));
        assert!(state.consume_refresh_token(&rt, "test-client"));
        assert!(!state.consume_refresh_token(&rt, "test-client"));
    }
}
