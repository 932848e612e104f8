//! `status` and `status_page`: every profile's state, one message or one
//! page at a time.

use std::ops::Bound;

use a365_proto::{ErrorReply, ProfileStatus, Response};

use super::Agent;

impl Agent {
    pub(super) fn status(&self) -> Response {
        let is_default = self.default_rule();
        let mut profiles: Vec<ProfileStatus> = match self.profiles.read() {
            Ok(all) => all
                .values()
                .map(|p| p.status(is_default(&p.name, all.len())))
                .collect(),
            Err(_) => Vec::new(),
        };
        profiles.extend(self.broken_status());
        profiles.sort_by(|a, b| a.name.cmp(&b.name));
        Response::Status(profiles)
    }

    /// The profiles whose settings cannot be used, as `status` lists them.
    fn broken_status(&self) -> Vec<ProfileStatus> {
        let Ok(broken) = self.broken.read() else {
            return Vec::new();
        };
        broken
            .iter()
            .map(|(name, broken)| ProfileStatus {
                name: name.clone(),
                kind: broken.kind.unwrap_or(a365_proto::Kind::Static),
                realm: None,
                token_url: None,
                state: a365_proto::state::BROKEN.into(),
                expires_at: None,
                next_refresh_at: None,
                scopes: Vec::new(),
                workspace: None,
                last_error: Some(broken.why.clone()),
                store: "-".into(),
                scopes_not_granted: Vec::new(),
                is_default: false,
                rotates: None,
                account: None,
                refreshed_by: None,
                client_auth: None,
                assumed_lifetime_secs: None,
                budget: Vec::new(),
            })
            .collect()
    }

    /// The profiles after `after`, by name, as many as fit in one message
    /// whichever encoding carries it (at least one, so a page always moves
    /// on).
    pub(super) fn status_page(&self, after: Option<&str>) -> Response {
        // Room for the envelope, and for JSON escaping beyond what
        // `serde_json` measured; the decoder also counts each entry's
        // in-memory size against the limit.
        const BUDGET: usize = a365_proto::MAX_FRAME * 3 / 4;
        let is_default = self.default_rule();
        // The broken ones (few, short) lead the first page.
        let mut profiles: Vec<ProfileStatus> = match after {
            None => self.broken_status(),
            Some(_) => Vec::new(),
        };
        let mut next = None;
        if let Ok(all) = self.profiles.read() {
            let from = after.map_or(Bound::Unbounded, Bound::Excluded);
            let mut used = 0;
            for (name, profile) in all.range::<str, _>((from, Bound::Unbounded)) {
                let status = profile.status(is_default(name, all.len()));
                let size = std::mem::size_of::<ProfileStatus>()
                    + serde_json::to_vec(&status).map_or(BUDGET, |json| json.len());
                if !profiles.is_empty() && used + size > BUDGET {
                    next = profiles.last().map(|p| p.name.clone());
                    break;
                }
                used += size;
                profiles.push(status);
            }
        }
        Response::StatusPage { profiles, next }
    }

    /// Which profile `status` marks as the default: the configured one, or
    /// the only one there is.
    fn default_rule(&self) -> impl Fn(&str, usize) -> bool {
        let default = self.default_profile.read().ok().and_then(|d| d.clone());
        move |name, total| match &default {
            Some(default) => default == name,
            None => total == 1,
        }
    }
}

impl Agent {
    /// `default`: `name` becomes the profile `token` uses when none is
    /// named, now and after a restart.
    pub(super) async fn set_default(&self, name: &str) -> Result<Response, ErrorReply> {
        let profile = self.profile(Some(name))?;
        let _edit = self.edits.lock().await;
        let (path, written) = (self.paths.config_file.clone(), profile.name.clone());
        crate::config::in_background(move || crate::config::write_default_profile(&path, &written))
            .await
            .map_err(|e| super::internal(e.to_string()))?;
        if let Ok(mut default) = self.default_profile.write() {
            *default = Some(profile.name.clone());
        }
        tracing::info!(profile = %profile.name, "default profile set");
        Ok(Response::Done {
            message: format!(
                "'{}' is the default profile: `a365 token` without a name gives its token \
                 (default_profile in {})",
                profile.name,
                self.paths.config_file.display()
            ),
        })
    }
}
