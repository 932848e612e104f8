//! What a token-only socket (`--token-socket`) answers: tokens of the
//! profiles it serves, without starting a refresh before their normal
//! refresh time, and a `status` without error texts (a token server's
//! words stay on the agent's machine).

use a365_proto::{ErrorKind, ErrorReply, Request, Response};

use super::{Agent, Answer};
use crate::profile::Demand;
use crate::server::Forwarded;

/// The refusal of a profile a token-only socket does not serve.
pub(crate) fn not_forwarded(name: &str) -> ErrorReply {
    ErrorReply::new(
        ErrorKind::UnknownProfile,
        format!(
            "this token socket does not serve profile '{}'",
            name.escape_default()
        ),
    )
}

impl Agent {
    /// `request`, which the connection has checked is one a token-only
    /// socket takes (token, status, ping).
    pub async fn handle_forwarded(&self, request: Request, only: &Forwarded) -> Answer {
        match request {
            Request::Token(req) => {
                crate::resident::touch();
                let profile = match self.profile(req.profile.as_deref()) {
                    Ok(profile) if only.serves(&profile.name) => profile,
                    Ok(profile) => {
                        return Answer::Response(Response::Error(not_forwarded(&profile.name)));
                    }
                    Err(e) => return Answer::Response(Response::Error(e)),
                };
                // A workspace's token: only one already held, never a new
                // exchange (that edits the agent's settings).
                let workspace = req.workspace.as_ref().or(profile.spec.workspace.as_ref());
                let profile = match workspace.map(|w| self.held_workspace(&profile, w)) {
                    None => profile,
                    Some(Ok(child)) if only.serves(&child.name) || only.serves(&profile.name) => {
                        child
                    }
                    Some(Ok(child)) => {
                        return Answer::Response(Response::Error(not_forwarded(&child.name)));
                    }
                    Some(Err(e)) => return Answer::Response(Response::Error(e)),
                };
                match profile
                    .token_with(req.min_valid_ms, &req.scopes, Demand::NotBeforeDue)
                    .await
                {
                    Ok(held) => Answer::Token { profile, held },
                    Err(e) => Answer::Response(Response::Error(ErrorReply::from(e))),
                }
            }
            Request::Status => Answer::Response(filtered(self.status(), only)),
            Request::StatusPage { after } => {
                Answer::Response(filtered(self.status_page(after.as_deref()), only))
            }
            other => self.handle(other).await,
        }
    }
}

/// `status` as a token-only socket shows it: the profiles it serves, no
/// error texts.
fn filtered(response: Response, only: &Forwarded) -> Response {
    let keep = |mut profiles: Vec<a365_proto::ProfileStatus>| {
        profiles.retain(|p| only.serves(&p.name));
        for p in &mut profiles {
            p.last_error = None;
        }
        profiles
    };
    match response {
        Response::Status(profiles) => Response::Status(keep(profiles)),
        Response::StatusPage { profiles, next } => Response::StatusPage {
            profiles: keep(profiles),
            next,
        },
        other => other,
    }
}
