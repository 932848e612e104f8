//! Altium's ActionWait, as the mock Altium Identity keeps it: the codes
//! of sign-ins completed on the AuthComplete page, by state; the wait
//! tokens polled; and scripted answers for the conformance vectors.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Default)]
pub(crate) struct ActionWait {
    inner: Mutex<Inner>,
    /// Wakes the polls when a sign-in completes.
    completed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Inner {
    /// State (the wait token) → code.
    codes: HashMap<String, String>,
    /// Answers to the next polls, in order: status and body.
    script: VecDeque<(u16, String)>,
    /// The wait token of every poll, in order.
    polls: Vec<String>,
}

impl ActionWait {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The AuthComplete page was reached with `code` for `state`.
    pub(crate) fn complete(&self, state: &str, code: &str) {
        self.lock().codes.insert(state.into(), code.into());
        self.completed.notify_waiters();
    }

    /// A poll with `token`: a scripted answer, else the code of a sign-in
    /// completed for it within `hold`, else `None` (the hold ran out).
    pub(crate) async fn poll(&self, token: &str, hold: Duration) -> Result<String, (u16, String)> {
        let deadline = tokio::time::Instant::now() + hold;
        {
            let mut inner = self.lock();
            inner.polls.push(token.into());
            if let Some(scripted) = inner.script.pop_front() {
                return Err(scripted);
            }
        }
        loop {
            let notified = self.completed.notified();
            if let Some(code) = self.lock().codes.remove(token) {
                return Ok(code);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err((408, String::new()));
            }
        }
    }
}

impl super::State {
    /// The next polls get these answers (status, body), in order.
    pub fn script_actionwait(&self, answers: Vec<(u16, String)>) {
        self.actionwait.lock().script = answers.into();
    }

    /// The wait tokens polled so far.
    pub fn actionwait_polls(&self) -> Vec<String> {
        self.actionwait.lock().polls.clone()
    }
}
