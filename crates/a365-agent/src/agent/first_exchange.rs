//! The first exchange of a profile `add` made, and what is kept after it:
//! nothing the user did not see succeed. A replacement that gets no token
//! puts the earlier credential back; an `add` whose client hung up (Ctrl-C)
//! keeps the new profile only if its exchange succeeded, and says so at
//! the next command.

use std::sync::Arc;

use a365_proto::{ErrorKind, ErrorReply};

use super::add::Previous;
use super::{Agent, Hangup, invalid};
use crate::profile::{Phase, Profile};

/// A name whose new credential waits for its first exchange: no other
/// change of it is taken meanwhile (it would be undone, or undo this).
pub(super) struct Settling {
    agent: std::sync::Weak<Agent>,
    name: String,
}

impl Drop for Settling {
    fn drop(&mut self) {
        if let Some(agent) = self.agent.upgrade()
            && let Ok(mut names) = agent.settling.lock()
        {
            names.remove(&self.name);
        }
    }
}

/// How a new profile's first exchange went.
pub(super) enum First {
    /// A token was obtained.
    Fresh,
    /// No token within `add_wait`, for this reason (a server that is down,
    /// slow or answering 5xx).
    Pending(String),
    /// The credential was refused.
    Dead(ErrorReply),
    /// The client hung up before the exchange ended.
    ClientGone,
}

impl Agent {
    /// Marks `name` as waiting for a first exchange, or refuses when it
    /// already is.
    pub(super) fn settling(&self, name: &str) -> Result<Settling, ErrorReply> {
        let mut names = self.settling.lock().unwrap_or_else(|e| e.into_inner());
        if !names.insert(name.to_owned()) {
            return Err(busy(name));
        }
        Ok(Settling {
            agent: self.me.clone(),
            name: name.to_owned(),
        })
    }

    /// Refuses a change of `name` while its new credential waits for its
    /// first exchange.
    pub(super) fn refuse_settling(&self, name: &str) -> Result<(), ErrorReply> {
        match self.settling.lock().is_ok_and(|names| names.contains(name)) {
            true => Err(busy(name)),
            false => Ok(()),
        }
    }

    /// A refresh token this agent has seen rotated away is refused before
    /// it is sent: the server would refuse it, and one with reuse
    /// detection would revoke the grant it came from.
    pub(super) fn refuse_spent(&self, secrets: &a365_proto::Secrets) -> Result<(), ErrorReply> {
        let Some(rt) = &secrets.refresh_token else {
            return Ok(());
        };
        let Some(seen) = self.shared.spent.seen(rt.expose()) else {
            return Ok(());
        };
        let when = jiff::Timestamp::from_second(seen.at_secs)
            .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default();
        Err(invalid(format!(
            "this refresh token is spent: profile '{}' sent it at {when} and got a new one in its \
             place, so the server would refuse it (and a server that detects reuse would revoke \
             the whole sign-in). Nothing was sent. If '{}' is the profile you meant, it works \
             already (`a365 token {}`); otherwise get a new refresh token",
            seen.profile, seen.profile, seen.profile
        )))
    }

    /// Waits for `profile`'s first exchange and keeps, puts back or
    /// removes what `add` installed; the text is what the user is told.
    pub(super) async fn settle_first_exchange(
        &self,
        profile: &Arc<Profile>,
        previous: Option<Previous>,
        hangup: Hangup,
        settling: Settling,
    ) -> Result<String, ErrorReply> {
        let name = profile.name.clone();
        match self.first_exchange(profile, hangup).await {
            First::Fresh => Ok("; a token was obtained".into()),
            First::Pending(why) if previous.is_none() => Ok(format!("; no token yet: {why}")),
            First::Pending(why) => {
                let refused = ErrorReply::new(
                    ErrorKind::Unavailable,
                    format!("the new credential got no token: {why}"),
                );
                Err(self.put_back(profile, previous, refused).await)
            }
            First::Dead(refused) => Err(self.put_back(profile, previous, refused).await),
            First::ClientGone => {
                tracing::info!(profile = %name, "the client of `add` hung up: finishing unattended");
                if let Some(me) = self.me.upgrade() {
                    let profile = Arc::clone(profile);
                    tokio::spawn(async move {
                        me.finish_unattended(profile, previous).await;
                        drop(settling);
                    });
                }
                Err(invalid("the client hung up"))
            }
        }
    }

    /// Waits (at most `add_wait`) for `profile`'s first exchange, or until
    /// the client hangs up.
    pub(super) async fn first_exchange(&self, profile: &Profile, mut hangup: Hangup) -> First {
        let mut rx = profile.subscribe();
        let exchanged = tokio::time::timeout(self.add_wait, rx.wait_for(|s| s.attempts_done > 0));
        tokio::select! {
            _ = exchanged => {}
            () = hung_up(&mut hangup) => return First::ClientGone,
        }
        outcome(profile)
    }

    /// After the client of `add` hung up: the exchange's end is waited
    /// for; a token keeps the new profile, anything else undoes the add.
    async fn finish_unattended(&self, profile: Arc<Profile>, previous: Option<Previous>) {
        let name = profile.name.clone();
        let mut rx = profile.subscribe();
        let _ = rx.wait_for(|s| s.attempts_done > 0).await;
        let notice = match outcome(&profile) {
            First::Fresh => format!(
                "the `a365 add {name}` that was interrupted finished: its first exchange \
                 succeeded and profile '{name}' is kept"
            ),
            First::Pending(why) | First::Dead(ErrorReply { message: why, .. }) => {
                let refused = invalid(format!("its first exchange got no token ({why})"));
                let said = match previous {
                    Some(_) => self.put_back(&profile, previous, refused).await.message,
                    None => match self.remove_one(&name, true).await {
                        Ok(_) => format!("{}; the new profile was removed", refused.message),
                        Err(e) => format!(
                            "{}; and removing the new profile failed: {}",
                            refused.message, e.message
                        ),
                    },
                };
                format!("the `a365 add {name}` that was interrupted was undone: {said}")
            }
            First::ClientGone => return,
        };
        tracing::info!(profile = %name, "{notice}");
        if let Ok(mut notices) = self.notices.lock() {
            notices.push(notice);
        }
    }
}

/// What the profile's state says of its first exchange: a token counts
/// only when an exchange got it (not one the credential came with).
pub(super) fn outcome(profile: &Profile) -> First {
    let snap = profile.snapshot();
    match snap.phase {
        Phase::NeedsReauth(m) => First::Dead(ErrorReply::new(ErrorKind::NeedsReauth, m)),
        Phase::Fresh if snap.attempts_done > 0 => First::Fresh,
        _ => First::Pending(
            snap.last_error
                .unwrap_or_else(|| "the token server has not answered".into()),
        ),
    }
}

fn busy(name: &str) -> ErrorReply {
    ErrorReply::new(
        ErrorKind::Unavailable,
        format!(
            "profile '{name}' is waiting for the first exchange of a new credential (an earlier \
             `a365 add` or `--update-secret`): try again once it has ended (`a365 status {name}`)"
        ),
    )
}

/// Resolves when the client hangs up; never where that cannot be told.
async fn hung_up(hangup: &mut Hangup) {
    if let Some(rx) = hangup
        && rx.wait_for(|gone| *gone).await.is_ok()
    {
        return;
    }
    std::future::pending().await
}
