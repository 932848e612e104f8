//! `add` proves a new credential before anything is saved: a staging
//! profile, kept in memory and served to no one, makes the first exchange.
//! Only a credential that got a token (or, for a new name, one the server
//! has not answered yet) is installed; a replaced profile goes on untouched
//! until then, so neither a refusal nor an agent killed meanwhile costs
//! the working credential.

use std::sync::Arc;

use a365_proto::{ErrorKind, ErrorReply, ProfileSpec, StoreKind};
use a365_store::Credential;

use super::first_exchange::{First, Settling, outcome};
use super::{Agent, Hangup, invalid};
use crate::profile::Profile;
use crate::stores::Placed;

/// What the proof leaves to install.
pub(super) enum Proved {
    /// This credential (as the exchange left it), what to tell, and the
    /// name's mark, held until it is installed.
    Install(Box<Credential>, String, Settling),
    /// The client hung up: the proof ends, and installs, unattended.
    Unattended,
}

impl Agent {
    /// Runs the first exchange of `credential` in a staging profile and
    /// says what to install; `replace`: a working profile of that name
    /// is kept when the new credential gets no token.
    pub(super) async fn prove(
        &self,
        (name, spec): (&str, &ProfileSpec),
        credential: Credential,
        replace: bool,
        hangup: Hangup,
        settling: Settling,
    ) -> Result<Proved, ErrorReply> {
        let staged = self.stage(name, spec, credential.clone());
        let first = self.first_exchange(&staged, hangup).await;
        if let First::ClientGone = first {
            tracing::info!(profile = %name, "the client of `add` hung up: finishing unattended");
            if let Some(me) = self.me.upgrade() {
                let spec = spec.clone();
                tokio::spawn(async move {
                    me.prove_unattended(staged, spec, credential, replace).await;
                    drop(settling);
                });
            }
            return Ok(Proved::Unattended);
        }
        // Stopped first: an exchange still in flight ends, and a late
        // token counts.
        let current = staged_credential(&staged, credential).await;
        let kept = || match replace {
            true => {
                format!("; nothing was replaced: profile '{name}' keeps its earlier credential")
            }
            false => "; nothing was saved".to_owned(),
        };
        match settled(first, &staged) {
            First::Fresh => Ok(Proved::Install(
                current,
                "; a token was obtained".into(),
                settling,
            )),
            First::Pending(why) if !replace => Ok(Proved::Install(
                current,
                format!("; no token yet: {why}"),
                settling,
            )),
            First::Pending(why) => Err(ErrorReply::new(
                ErrorKind::Unavailable,
                format!("the new credential got no token: {why}{}", kept()),
            )),
            First::Dead(e) => Err(ErrorReply::new(e.kind, format!("{}{}", e.message, kept()))),
            First::ClientGone => Err(invalid("the client hung up")),
        }
    }

    /// A profile that exchanges `credential` and keeps what it gets in
    /// memory, in no table: it serves no one.
    fn stage(&self, name: &str, spec: &ProfileSpec, credential: Credential) -> Arc<Profile> {
        let placed = Placed {
            kind: StoreKind::Memory,
            store: Ok(Arc::new(a365_store::MemoryStore::new())),
        };
        let endpoint = crate::provider::endpoint(spec).ok().flatten();
        Profile::start(
            name.to_owned(),
            spec.clone(),
            endpoint,
            placed,
            Ok(Some(credential)),
            Arc::clone(&self.shared),
        )
    }

    /// After the client hung up: the exchange's end is waited for; a token
    /// installs the new credential, anything else leaves all as it was.
    /// Either is said at the next command.
    async fn prove_unattended(
        &self,
        staged: Arc<Profile>,
        spec: ProfileSpec,
        credential: Credential,
        replace: bool,
    ) {
        let name = staged.name.clone();
        let _ = staged.subscribe().wait_for(|s| s.attempts_done > 0).await;
        let current = staged_credential(&staged, credential).await;
        let notice = match outcome(&staged) {
            First::Fresh => match self.install_added(&name, &spec, *current, replace).await {
                Ok(_) => format!(
                    "the `a365 add {name}` that was interrupted finished: its first exchange \
                     succeeded and profile '{name}' is kept"
                ),
                Err(e) => format!(
                    "the `a365 add {name}` that was interrupted got a token, but it could not be \
                     kept: {}",
                    e.message
                ),
            },
            First::Pending(why) | First::Dead(ErrorReply { message: why, .. }) => format!(
                "the `a365 add {name}` that was interrupted was undone: its first exchange got no \
                 token ({why}); nothing was saved{}",
                match replace {
                    true => format!(", and profile '{name}' keeps its earlier credential"),
                    false => String::new(),
                }
            ),
            First::ClientGone => return,
        };
        tracing::info!(profile = %name, "{notice}");
        if let Ok(mut notices) = self.notices.lock() {
            notices.push(notice);
        }
    }
}

/// The outcome, once more after the stop for a pending one (it may have
/// been answered meanwhile).
fn settled(first: First, staged: &Profile) -> First {
    match first {
        First::Pending(_) => outcome(staged),
        other => other,
    }
}

/// The staging profile's credential as its exchanges left it: stopped
/// first, so nothing is in flight, then read back from its memory store
/// (`original` when nothing was saved there).
async fn staged_credential(staged: &Profile, original: Credential) -> Box<Credential> {
    staged.stop().await;
    let saved = match staged.home.placed() {
        Some(placed) => placed.load(&staged.name).await.ok().flatten(),
        None => None,
    };
    Box::new(saved.unwrap_or(original))
}
