//! Where a profile's credential lives, and so how a refresh is made
//! durable before its token is served: one home per profile.

use std::sync::Arc;

use a365_store::Credential;

use crate::fleet::Fleet;
use crate::stores::Placed;

#[derive(Debug, Clone)]
pub enum Home {
    /// A store on this machine: a new credential is saved (fsync'd) before
    /// it is served.
    Local(Placed),
    /// The fleet's etcd: a refresh is made under the fleet's lock, marked
    /// in flight before it is sent, and committed by a transaction before
    /// it is served.
    Fleet(Arc<Fleet>),
}

impl Home {
    /// The local store; `None` for a shared profile.
    pub fn placed(&self) -> Option<&Placed> {
        match self {
            Home::Local(placed) => Some(placed),
            Home::Fleet(_) => None,
        }
    }

    /// The fleet; `None` for a local profile.
    pub fn fleet(&self) -> Option<&Arc<Fleet>> {
        match self {
            Home::Local(_) => None,
            Home::Fleet(fleet) => Some(fleet),
        }
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, Home::Fleet(_))
    }

    /// Its name in `status`: the store's kind, or `fleet`.
    pub fn name(&self) -> &'static str {
        match self {
            Home::Local(placed) => placed.kind.as_str(),
            Home::Fleet(_) => "fleet",
        }
    }
}

impl super::Profile {
    /// Saves the credential; on failure logs and describes it.
    /// `old_is_dead`: the stored refresh token was just rotated away.
    pub(super) async fn persist(
        &self,
        credential: &Credential,
        old_is_dead: bool,
    ) -> Result<(), String> {
        let Some(placed) = self.home.placed() else {
            return Err("a shared credential is kept in the fleet, not in a local store".into());
        };
        match placed.save(&self.name, credential, old_is_dead).await {
            Ok(()) => Ok(()),
            Err(error) => {
                tracing::error!(profile = %self.name, "could not save the new credential: {error}");
                Err(format!(
                    "could not save the new credential ({error}); it is held in memory and saving \
                     is retried"
                ))
            }
        }
    }
}
