//! Designer Cloud's API tokens: a separate credential with its own
//! lifecycle (created, listed, deleted through the API) and its own ways
//! to fail, kept out of the OAuth state.

use std::collections::HashMap;
use std::time::Duration;

use super::{State, now_ms, random_token};

/// Designer Cloud API tokens.
#[derive(Debug, Default)]
pub(super) struct Designer {
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

impl State {
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
}
