//! Altium's ActionWait: how a sign-in whose browser can be on any device
//! (another machine, a phone, the host of an SSH session or a container)
//! gets its authorization code. The browser ends on Altium's AuthComplete
//! page; the agent long-polls `POST {actionwait} {"token": wait token}`,
//! the wait token being the login's `state` (altium-auth SPEC §4).

use std::time::{Duration, Instant};

use crate::provider::send_error::describe_send_error;

/// Why no code came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionWaitError {
    #[error("the sign-in was cancelled or superseded (ActionWait answered 410)")]
    Cancelled,
    #[error("the sign-in did not finish within {0}")]
    TimedOut(String),
    #[error("ActionWait answered HTTP {0}")]
    Status(u16),
    #[error("ActionWait answered 200 with a body that is not JSON")]
    NotJson,
    #[error("ActionWait answered 200 without a code (missing data.code)")]
    MissingCode,
    #[error(
        "State mismatch: ActionWait returned a code for another sign-in (its state is not this \
         one's wait token); the code is not exchanged"
    )]
    StateMismatch,
    #[error("the sign-in was refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Transport(String),
}

/// The shortest time between two polls.
const MIN_POLL: Duration = Duration::from_secs(1);

/// The longest answer an ActionWait poll may have.
const MAX_BODY: usize = 64 * 1024;

/// Polls `url` with `token` until a code comes, the attempt ends or
/// `timeout` passes: 408 (the hold ran out) and a poll that timed out
/// reconnect with the same token; anything else ends the attempt.
pub async fn wait_for_code(
    http: &reqwest::Client,
    url: &reqwest::Url,
    token: &str,
    timeout: Duration,
) -> Result<String, ActionWaitError> {
    let deadline = Instant::now() + timeout;
    let body = serde_json::json!({ "token": token }).to_string();
    let mut last: Option<Instant> = None;
    loop {
        // A service that answers 408 at once is asked at most once a second.
        if let Some(sent) = last {
            tokio::time::sleep_until((sent + MIN_POLL).into()).await;
        }
        last = Some(Instant::now());
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ActionWaitError::TimedOut(a365_proto::human_ms(
                i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX),
            )));
        }
        let sent = http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(left)
            .body(body.clone())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            // The hold outlasted the HTTP client: ask again.
            Err(e) if e.is_timeout() => continue,
            Err(e) => return Err(ActionWaitError::Transport(describe_send_error(&e, url))),
        };
        match response.status().as_u16() {
            200 => {}
            408 => continue,
            410 => return Err(ActionWaitError::Cancelled),
            other => return Err(ActionWaitError::Status(other)),
        }
        let bytes = match crate::body::read_limited(response, MAX_BODY).await {
            Ok(bytes) => bytes,
            Err(crate::body::BodyError::Cut { timed_out: true }) => continue,
            Err(_) => {
                return Err(ActionWaitError::Transport(
                    "ActionWait's answer was cut".into(),
                ));
            }
        };
        return answer(&bytes, token);
    }
}

/// Reads a 200's `{"data": {"code", "state"}}` (or `{"data": {"error"}}`).
fn answer(bytes: &[u8], token: &str) -> Result<String, ActionWaitError> {
    let json: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|_| ActionWaitError::NotJson)?;
    let data = &json["data"];
    let text = |key: &str| data.get(key).and_then(serde_json::Value::as_str);
    if let Some(error) = text("error") {
        let description = text("error_description")
            .map(|d| format!(": {}", a365_proto::visible(&cut(d))))
            .unwrap_or_default();
        return Err(ActionWaitError::Refused(format!(
            "{}{description}",
            a365_proto::visible(&cut(error))
        )));
    }
    let code = text("code")
        .filter(|c| !c.is_empty())
        .ok_or(ActionWaitError::MissingCode)?;
    if text("state") != Some(token) {
        return Err(ActionWaitError::StateMismatch);
    }
    Ok(code.to_owned())
}

/// A server's text, at most 200 characters.
fn cut(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let ok = br#"{"data":{"code":"c1","state":"tok"}}"#;
        assert_eq!(answer(ok, "tok").unwrap(), "c1");
        assert_eq!(answer(ok, "other"), Err(ActionWaitError::StateMismatch));
        assert_eq!(answer(b"not json", "tok"), Err(ActionWaitError::NotJson));
        assert_eq!(
            answer(br#"{"data":{}}"#, "tok"),
            Err(ActionWaitError::MissingCode)
        );
        let refused = br#"{"data":{"error":"access_denied","error_description":"no\u001b[31m"}}"#;
        let err = answer(refused, "tok").unwrap_err().to_string();
        assert!(
            err.contains("access_denied") && !err.contains('\x1b'),
            "{err}"
        );
    }
}
