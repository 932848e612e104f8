//! Following a prefix with a watch: one long POST to the gateway whose
//! answer streams a JSON message a line.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::{Etcd, EtcdError, MAX_ANSWER, authorized, b64, cause, host, prefix_end, quote};

/// What a watch saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    /// The watch is set up: from now on no change is missed.
    Created,
    /// Keys under the prefix changed.
    Changed,
}

/// A watch is set up again after this long (a new request), in case an
/// idle stream was cut silently on the way.
const WATCH_FOR: std::time::Duration = std::time::Duration::from_secs(3600);

impl Etcd {
    /// Follows every key under `prefix` with a watch through the gateway
    /// (one long POST whose answer streams a JSON message a line), telling
    /// `seen` when the watch is set up and at each batch of changes.
    /// Returns when the stream ends; the caller reads everything again and
    /// watches anew (a reconnect may have missed changes).
    pub async fn watch(
        &self,
        prefix: &str,
        seen: &(dyn Fn(Watched) + Sync),
    ) -> Result<(), EtcdError> {
        let create = json!({
            "key": b64(prefix.as_bytes()),
            "range_end": b64(&prefix_end(prefix)),
        });
        let (mut response, endpoint) = self.open_watch(create, WATCH_FOR).await?;
        self.read_stream(&mut response, &endpoint, seen, false)
            .await
    }

    /// Waits until `key`, last written at revision `rev`, is deleted (or
    /// `timeout` passes): one watch, however long it takes, instead of a
    /// look every few hundred milliseconds.
    pub async fn wait_deleted(
        &self,
        key: &str,
        rev: i64,
        timeout: std::time::Duration,
    ) -> Result<(), EtcdError> {
        let create = json!({
            "key": b64(key.as_bytes()),
            "start_revision": rev.saturating_add(1).to_string(),
            "filters": ["NOPUT"],
        });
        let wait = async {
            let (mut response, endpoint) = self.open_watch(create, timeout).await?;
            let changed = std::sync::atomic::AtomicBool::new(false);
            let seen = |what: Watched| {
                if what == Watched::Changed {
                    changed.store(true, Ordering::SeqCst);
                }
            };
            self.read_stream(&mut response, &endpoint, &seen, true)
                .await?;
            // A stream that ended without the deletion is no answer: the
            // caller backs off instead of asking again at once.
            match changed.load(Ordering::SeqCst) {
                true => Ok(()),
                false => Err(EtcdError::Unreachable(format!(
                    "{}: the watch ended early",
                    host(&endpoint)
                ))),
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(done) => done,
            Err(_) => Ok(()),
        }
    }

    /// Sets up a watch (`create` is its create_request) on the current
    /// endpoint: the streaming answer, and the endpoint it came from.
    async fn open_watch(
        &self,
        create: Value,
        timeout: std::time::Duration,
    ) -> Result<(reqwest::Response, reqwest::Url), EtcdError> {
        let at = self.current.load(Ordering::Relaxed) % self.endpoints.len().max(1);
        let Some(endpoint) = self.endpoints.get(at) else {
            return Err(EtcdError::Unreachable("no endpoint".into()));
        };
        let token = self.token(endpoint).await?;
        let body = json!({ "create_request": create });
        let url = endpoint
            .join("/v3/watch")
            .map_err(|e| EtcdError::Garbled(e.to_string()))?;
        let request = authorized(
            self.http.post(url).json(&body).timeout(timeout),
            token.as_ref(),
        )?;
        let response = request
            .send()
            .await
            .map_err(|e| EtcdError::Unreachable(format!("{}: {}", host(endpoint), cause(&e))))?;
        if !response.status().is_success() {
            // Perhaps an expired authentication token: fetch a new one.
            if let Ok(mut held) = self.token.lock() {
                *held = None;
            }
            return Err(EtcdError::Refused(format!(
                "{}: HTTP {} to a watch",
                host(endpoint),
                response.status().as_u16()
            )));
        }
        Ok((response, endpoint.clone()))
    }

    /// Reads the watch's messages until the stream ends or says why not.
    /// `until_change`: return at the first batch of changes.
    async fn read_stream(
        &self,
        response: &mut reqwest::Response,
        endpoint: &reqwest::Url,
        seen: &(dyn Fn(Watched) + Sync),
        until_change: bool,
    ) -> Result<(), EtcdError> {
        let unreachable = |e: reqwest::Error| {
            EtcdError::Unreachable(format!("{}: {}", host(endpoint), cause(&e)))
        };
        let mut line = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            for &byte in chunk.iter() {
                if byte != b'\n' {
                    line.push(byte);
                    if line.len() > MAX_ANSWER {
                        return Err(EtcdError::Garbled("a watch message over 16 MiB".into()));
                    }
                    continue;
                }
                let changed = self.judge(&line, endpoint, seen)?;
                line.clear();
                if changed && until_change {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// One message of the stream: what it saw (whether keys changed), or
    /// why the watch ended.
    fn judge(
        &self,
        line: &[u8],
        endpoint: &reqwest::Url,
        seen: &(dyn Fn(Watched) + Sync),
    ) -> Result<bool, EtcdError> {
        // A line may carry records (access tokens among them): it is
        // never quoted, only etcd's own error message is.
        let message: Value = serde_json::from_slice(line).map_err(|_| {
            EtcdError::Garbled(format!(
                "a watch message of {} bytes that is not JSON",
                line.len()
            ))
        })?;
        let Some(result) = message.get("result") else {
            let said = message
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("no reason given");
            if said.contains("token")
                && let Ok(mut held) = self.token.lock()
            {
                // An authentication token that expired: the next watch
                // fetches a new one.
                *held = None;
            }
            return Err(EtcdError::Refused(format!(
                "{}: the watch ended: {}",
                host(endpoint),
                quote(said.as_bytes())
            )));
        };
        if result.get("canceled").and_then(Value::as_bool) == Some(true) {
            return Err(EtcdError::Refused(format!(
                "{}: the watch was canceled",
                host(endpoint)
            )));
        }
        if result.get("created").and_then(Value::as_bool) == Some(true) {
            seen(Watched::Created);
        }
        let changed = result
            .get("events")
            .is_some_and(|e| e.as_array().is_some_and(|a| !a.is_empty()));
        if changed {
            seen(Watched::Changed);
        }
        Ok(changed)
    }
}
