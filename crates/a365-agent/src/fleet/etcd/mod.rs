//! The few etcd v3 calls the fleet needs, through etcd's JSON gateway
//! (`/v3/kv/range`, `/v3/kv/txn`, `/v3/lease/*`, `/v3/watch`, `/v3/auth/authenticate`)
//! over the HTTP client the agent already has: no gRPC stack, no `protoc`.
//!
//! The gateway speaks proto3 JSON: bytes are base64, 64-bit integers are
//! strings, and fields at their default value (0, false) are left out.

mod watch;

pub use watch::Watched;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::body::BodyError;

/// Why etcd could not be used; names endpoints and reasons, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered: down, unreachable, or without quorum.
    #[error("no etcd endpoint answered ({0})")]
    Unreachable(String),
    /// etcd answered with an error (permission denied, no leader, …).
    #[error("etcd refused the request: {0}")]
    Refused(String),
    /// etcd answered something that is not what its API documents.
    #[error("etcd answered something unreadable: {0}")]
    Garbled(String),
}

/// One key and its value, with the revisions that conditional writes
/// compare.
#[derive(Debug, Clone)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// A condition of a transaction.
#[derive(Debug, Clone)]
pub enum Compare {
    /// The key was last written at this revision (0: it does not exist).
    ModRevision(String, i64),
    /// The key does not exist.
    Absent(String),
}

/// A write of a transaction.
#[derive(Debug, Clone)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<i64>,
    },
    Delete(String),
}

/// An etcd cluster: its client endpoints, tried in turn, the one that
/// answered last first.
#[derive(Debug)]
pub struct Etcd {
    http: reqwest::Client,
    endpoints: Vec<reqwest::Url>,
    current: AtomicUsize,
    /// etcd user and password, when the cluster has authentication on.
    user: Option<(String, SecretString)>,
    /// The token `authenticate` gave; renewed when etcd says it expired.
    token: Mutex<Option<SecretString>>,
}

/// Serde of the gateway's 64-bit integers: strings, sometimes numbers.
fn int(value: &Value) -> i64 {
    match value {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[derive(Deserialize)]
struct RawKv {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    mod_revision: Value,
}

impl RawKv {
    fn decode(self) -> Result<Kv, EtcdError> {
        let bad = |what: &str| EtcdError::Garbled(format!("a {what} that is not base64"));
        let key = STANDARD.decode(&self.key).map_err(|_| bad("key"))?;
        Ok(Kv {
            key: String::from_utf8_lossy(&key).into_owned(),
            value: STANDARD.decode(&self.value).map_err(|_| bad("value"))?,
            mod_revision: int(&self.mod_revision),
        })
    }
}

fn kvs(answer: &Value) -> Result<Vec<Kv>, EtcdError> {
    let Some(list) = answer.get("kvs") else {
        return Ok(Vec::new());
    };
    let raw: Vec<RawKv> = serde_json::from_value(list.clone())
        .map_err(|_| EtcdError::Garbled("a range answer without a list of keys".into()))?;
    raw.into_iter().map(RawKv::decode).collect()
}

impl Etcd {
    pub fn new(
        http: reqwest::Client,
        endpoints: Vec<reqwest::Url>,
        user: Option<(String, SecretString)>,
    ) -> Etcd {
        Etcd {
            http,
            endpoints,
            current: AtomicUsize::new(0),
            user,
            token: Mutex::new(None),
        }
    }

    /// The value at `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<Kv>, EtcdError> {
        let answer = self
            .call("/v3/kv/range", json!({ "key": b64(key.as_bytes()) }))
            .await?;
        Ok(kvs(&answer)?.into_iter().next())
    }

    /// Every key under `prefix`, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Kv>, EtcdError> {
        let answer = self
            .call(
                "/v3/kv/range",
                json!({ "key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix)) }),
            )
            .await?;
        kvs(&answer)
    }

    /// Applies `ops` if every comparison holds, atomically: the revision
    /// they made, or `None` if a comparison failed (nothing was written).
    pub async fn txn(&self, compare: &[Compare], ops: &[Op]) -> Result<Option<i64>, EtcdError> {
        let compare: Vec<Value> = compare
            .iter()
            .map(|c| match c {
                Compare::ModRevision(key, rev) => json!({
                    "key": b64(key.as_bytes()), "target": "MOD", "result": "EQUAL",
                    "mod_revision": rev.to_string(),
                }),
                Compare::Absent(key) => json!({
                    "key": b64(key.as_bytes()), "target": "CREATE", "result": "EQUAL",
                    "create_revision": "0",
                }),
            })
            .collect();
        let success: Vec<Value> = ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, lease } => json!({ "request_put": {
                    "key": b64(key.as_bytes()), "value": b64(value),
                    "lease": lease.unwrap_or(0).to_string(),
                }}),
                Op::Delete(key) => json!({ "request_delete_range": { "key": b64(key.as_bytes()) }}),
            })
            .collect();
        let answer = self
            .call(
                "/v3/kv/txn",
                json!({ "compare": compare, "success": success }),
            )
            .await?;
        if answer.get("succeeded").and_then(Value::as_bool) != Some(true) {
            return Ok(None);
        }
        match answer
            .get("header")
            .and_then(|h| h.get("revision"))
            .map(int)
        {
            Some(rev) if rev > 0 => Ok(Some(rev)),
            _ => Err(EtcdError::Garbled(
                "a transaction answer without a revision".into(),
            )),
        }
    }

    /// A lease of `ttl_secs`; keys written with it vanish when it ends.
    pub async fn grant(&self, ttl_secs: u64) -> Result<i64, EtcdError> {
        let answer = self
            .call("/v3/lease/grant", json!({ "TTL": ttl_secs.to_string() }))
            .await?;
        match answer.get("ID").map(int) {
            Some(id) if id != 0 => Ok(id),
            _ => Err(EtcdError::Garbled("a lease grant without an ID".into())),
        }
    }

    /// Renews a lease; returns the seconds it now has left, 0 when it has
    /// already ended (its keys are gone).
    pub async fn keep_alive(&self, lease: i64) -> Result<i64, EtcdError> {
        let answer = self
            .call("/v3/lease/keepalive", json!({ "ID": lease.to_string() }))
            .await?;
        Ok(answer
            .get("result")
            .and_then(|r| r.get("TTL"))
            .map(int)
            .unwrap_or(0))
    }

    /// Ends a lease now, deleting its keys.
    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        match self
            .call("/v3/lease/revoke", json!({ "ID": lease.to_string() }))
            .await
        {
            // Already ended: what was wanted.
            Err(EtcdError::Refused(m)) if m.contains("lease not found") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// One call, tried on each endpoint in turn until one answers; an
    /// expired authentication token is renewed once.
    async fn call(&self, path: &str, body: Value) -> Result<Value, EtcdError> {
        let mut renewed = false;
        loop {
            match self.call_once(path, &body).await {
                Err(EtcdError::Refused(m))
                    if !renewed && self.user.is_some() && m.contains("token") =>
                {
                    renewed = true;
                    if let Ok(mut token) = self.token.lock() {
                        *token = None;
                    }
                }
                other => return other,
            }
        }
    }

    async fn call_once(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let n = self.endpoints.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for i in 0..n {
            let at = (start + i) % n;
            let endpoint = &self.endpoints[at];
            let token = match self.token(endpoint).await {
                Ok(token) => token,
                Err(EtcdError::Unreachable(why)) => {
                    failures.push(why);
                    continue;
                }
                Err(e) => return Err(e),
            };
            match self.post(endpoint, path, body, token.as_ref()).await {
                Err(EtcdError::Unreachable(why)) => failures.push(why),
                // No leader on this member (it lost its peers): another
                // may still have quorum.
                Err(EtcdError::Refused(m)) if m.contains("leader") || m.contains("timed out") => {
                    failures.push(format!("{}: {m}", host(endpoint)));
                }
                other => {
                    self.current.store(at, Ordering::Relaxed);
                    return other;
                }
            }
        }
        Err(EtcdError::Unreachable(failures.join("; ")))
    }

    /// The authentication token for requests, fetched once.
    async fn token(&self, endpoint: &reqwest::Url) -> Result<Option<SecretString>, EtcdError> {
        let Some((name, password)) = &self.user else {
            return Ok(None);
        };
        if let Some(token) = self.token.lock().ok().and_then(|t| t.clone()) {
            return Ok(Some(token));
        }
        let body = json!({ "name": name, "password": password.expose_secret() });
        let answer = self
            .post(endpoint, "/v3/auth/authenticate", &body, None)
            .await?;
        let token = answer
            .get("token")
            .and_then(Value::as_str)
            .map(|t| SecretString::from(t.to_owned()))
            .ok_or_else(|| EtcdError::Garbled("authenticate answered no token".into()))?;
        if let Ok(mut held) = self.token.lock() {
            *held = Some(token.clone());
        }
        Ok(Some(token))
    }

    async fn post(
        &self,
        endpoint: &reqwest::Url,
        path: &str,
        body: &Value,
        token: Option<&SecretString>,
    ) -> Result<Value, EtcdError> {
        let url = endpoint
            .join(path)
            .map_err(|e| EtcdError::Garbled(e.to_string()))?;
        let request = authorized(self.http.post(url).json(body), token)?;
        let response = request
            .send()
            .await
            .map_err(|e| EtcdError::Unreachable(format!("{}: {}", host(endpoint), cause(&e))))?;
        let status = response.status();
        let body = crate::body::read_limited(response, MAX_ANSWER)
            .await
            .map_err(|e| {
                EtcdError::Unreachable(format!(
                    "{}: {}",
                    host(endpoint),
                    match e {
                        BodyError::TooLarge => "an answer over 16 MiB",
                        BodyError::Cut { timed_out: true } => "timed out",
                        BodyError::Cut { timed_out: false } => "the answer was cut off",
                    }
                ))
            })?;
        let answer: Value = serde_json::from_slice(&body).map_err(|_| {
            EtcdError::Garbled(format!(
                "{} (HTTP {}) answered with something other than JSON: \"{}\"",
                host(endpoint),
                status.as_u16(),
                quote(&body)
            ))
        })?;
        if status.is_success() {
            return Ok(answer);
        }
        let message = answer
            .get("message")
            .or_else(|| answer.get("error"))
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        Err(EtcdError::Refused(format!(
            "{}: HTTP {}: {}",
            host(endpoint),
            status.as_u16(),
            message.chars().take(200).collect::<String>()
        )))
    }
}

/// The most an etcd answer may be: a list of every shared profile, with
/// room to spare.
const MAX_ANSWER: usize = 16 << 20;

/// The start of an answer that is not JSON (a proxy's page, etcd's
/// gateway refusing a certificate), fit for a log line.
/// `request` with etcd's authentication token, marked sensitive (never
/// in reqwest's Debug output).
fn authorized(
    request: reqwest::RequestBuilder,
    token: Option<&SecretString>,
) -> Result<reqwest::RequestBuilder, EtcdError> {
    let Some(token) = token else {
        return Ok(request);
    };
    let mut value = reqwest::header::HeaderValue::from_str(token.expose_secret())
        .map_err(|_| EtcdError::Garbled("an authentication token unfit for a header".into()))?;
    value.set_sensitive(true);
    Ok(request.header(reqwest::header::AUTHORIZATION, value))
}

fn quote(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)])
        .trim()
        .chars()
        .flat_map(char::escape_default)
        .collect()
}

fn host(url: &reqwest::Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or("?"),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// The innermost cause: "connection refused", "operation timed out".
fn cause(e: &reqwest::Error) -> String {
    let mut last = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    if e.is_timeout() {
        "timed out".into()
    } else {
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_that_is_not_json_is_quoted_escaped_and_short() {
        let said = quote(b"CommonName of client \x1b[2J will be ignored\n");
        assert_eq!(said, "CommonName of client \\u{1b}[2J will be ignored");
        assert_eq!(quote(&[b'x'; 500]).len(), 200);
    }

    /// A member (or whoever answers on its port) that sends without end
    /// gets an error, not the agent's memory.
    #[tokio::test]
    async fn an_endless_answer_is_cut_at_the_bound() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url: reqwest::Url = format!("http://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = conn.read(&mut request).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                        transfer-encoding: chunked\r\n\r\n";
            conn.write_all(head.as_bytes()).await.unwrap();
            let chunk = vec![b' '; 1 << 20];
            let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            while conn.write_all(&frame).await.is_ok() {}
        });
        let etcd = Etcd::new(reqwest::Client::new(), vec![url], None);
        let err = etcd.get("a365/public/work").await.unwrap_err();
        assert!(err.to_string().contains("over 16 MiB"), "{err}");
    }

    #[test]
    fn prefix_ends_cover_the_prefix_only() {
        assert_eq!(prefix_end("a365/"), b"a3650".to_vec());
        assert_eq!(prefix_end(""), vec![0]);
    }

    #[test]
    fn gateway_integers_are_strings_or_numbers() {
        assert_eq!(int(&json!("42")), 42);
        assert_eq!(int(&json!(7)), 7);
        assert_eq!(int(&Value::Null), 0);
        let answer = json!({ "kvs": [{ "key": "YQ==", "value": "Yg==", "mod_revision": "9" }] });
        let got = kvs(&answer).unwrap();
        assert_eq!(
            (
                got[0].key.as_str(),
                got[0].value.as_slice(),
                got[0].mod_revision
            ),
            ("a", &b"b"[..], 9)
        );
        assert!(kvs(&json!({ "kvs": [{ "key": "!!" }] })).is_err());
        assert!(kvs(&json!({})).unwrap().is_empty());
    }
}
