//! Where a profile's credential lives, and so how a refresh is made
//! durable before its token is served: one home per profile.

use std::sync::Arc;

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
