//! A refresh whose answer never reached the fleet (its member died or
//! stalled, or the answer was lost): its refresh token is sent again only
//! when the provider says it is still active (RFC 7662).

use a365_proto::human_ms;
use a365_store::Credential;

use crate::fleet::{Fleet, Inflight};
use crate::profile::Profile;

/// Why a lost refresh's token may not be sent again now.
pub(super) enum Lost {
    /// Spent, or no one to ask: the fleet's credential is dead.
    Dead(String),
    /// Not yet known: try again later.
    AskLater(String),
}

impl Profile {
    /// Whether the refresh token of a refresh whose answer never reached
    /// the fleet (`lost`) may be sent again: `Ok` when the provider says
    /// it is still active (RFC 7662), asked once the server must be done
    /// with that request.
    pub(super) async fn lost_in_fleet(
        &self,
        fleet: &Fleet,
        credential: &Credential,
        lost: &Inflight,
        now: i64,
    ) -> Result<(), Lost> {
        let sent = format!(
            "a refresh sent by fleet member '{}' {} ago never had its answer written to the fleet \
             (it stopped or stalled past its lease, or the answer was lost)",
            a365_proto::visible(&lost.member),
            human_ms(now.saturating_sub(lost.at_ms).max(0))
        );
        let ask = self
            .exchange(now)
            .and_then(|exchange| crate::provider::still_active(exchange, credential));
        let Some(ask) = ask else {
            return Err(Lost::Dead(format!(
                "{sent}; the provider may have rotated the refresh token, and sending it again \
                 could revoke the grant. If that member comes back with the answer, the fleet \
                 recovers by itself; otherwise add the credential again (`a365 add {} --shared \
                 --replace …`), or give the profile an introspection_url so that the fleet asks \
                 the provider",
                self.name
            )));
        };
        // Its member's clock, taken before its lease was renewed for the
        // request: members' clocks may differ, and the request may have
        // left as late as the end of that lease.
        let wait_ms = i64::try_from(self.shared.answer_wait.as_millis()).unwrap_or(i64::MAX);
        let lease_ms = i64::try_from(fleet.lease_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000);
        let ask_at = lost
            .at_ms
            .saturating_add(wait_ms)
            .saturating_add(lease_ms)
            .saturating_add(crate::fleet::CLOCK_SLACK_MS);
        if now < ask_at {
            return Err(Lost::AskLater(format!(
                "{sent}; the provider is asked in {} whether its refresh token is still active",
                human_ms(ask_at.saturating_sub(now))
            )));
        }
        match ask.await {
            Ok(true) => {
                tracing::info!(profile = %self.name, "the provider says the refresh token of the lost refresh is still active: sending it again");
                Ok(())
            }
            Ok(false) => Err(Lost::Dead(format!(
                "{sent}, and the provider says its refresh token is no longer active: that \
                 refresh was done and its answer lost. Add the credential again (`a365 add {} \
                 --shared --replace …`)",
                self.name
            ))),
            Err(e) => Err(Lost::AskLater(format!(
                "{sent}; asking the provider whether its refresh token is still active failed: {e}"
            ))),
        }
    }
}
