//! A token request budget shared by the fleet: one ledger per client id in
//! etcd (`PREFIX/budget/ID`), counted by compare-and-swap before each
//! request is sent, so that N members of one client id stay within one
//! budget. Whoever can write to etcd can change it: a forged ledger can
//! hold requests back (bounded by the longest window), never let more out
//! than this member's own count of what it read.

use super::etcd::{Compare, Op};
use super::{Fleet, FleetError};
use crate::budget::{Budget, Hold, Ledger};

/// Members racing for one ledger: tries before this round gives up.
const TRIES: usize = 8;

impl Fleet {
    fn budget_key(&self, budget: &Budget) -> String {
        format!("{}budget/{}", self.prefix, budget.id())
    }

    /// Counts one token request of `budget` in the fleet's ledger at
    /// `now`; `Ok(Err(hold))` when a window would break.
    pub(crate) async fn admit(
        &self,
        budget: &Budget,
        now: i64,
    ) -> Result<Result<(), Hold>, FleetError> {
        let key = self.budget_key(budget);
        for _ in 0..TRIES {
            let (mut ledger, compare) = match self.etcd.get(&key).await? {
                Some(kv) => (
                    // Unreadable: counted from nothing, as a new ledger.
                    serde_json::from_slice::<Ledger>(&kv.value).unwrap_or_default(),
                    Compare::ModRevision(key.clone(), kv.mod_revision),
                ),
                None => (Ledger::default(), Compare::Absent(key.clone())),
            };
            if let Err(hold) = ledger.admit(&budget.limits, now) {
                budget.adopt(ledger);
                return Ok(Err(hold));
            }
            if self.put_ledger(&key, compare, budget, ledger).await? {
                return Ok(Ok(()));
            }
        }
        Err(contended(budget))
    }

    /// Writes `ledger` if `compare` still holds, and takes it as this
    /// member's count; false when another member changed it first.
    async fn put_ledger(
        &self,
        key: &str,
        compare: Compare,
        budget: &Budget,
        ledger: Ledger,
    ) -> Result<bool, FleetError> {
        let value = serde_json::to_vec(&ledger)
            .map_err(|e| FleetError::Config(format!("encoding a budget: {e}")))?;
        let put = Op::Put {
            key: key.to_owned(),
            value,
            lease: None,
        };
        let written = self.etcd.txn(&[compare], &[put]).await?.is_some();
        if written {
            budget.adopt(ledger);
        }
        Ok(written)
    }

    /// The request admitted at `at` ended at `done`, for every member
    /// ([`crate::budget::Ledger::settle`]).
    pub(crate) async fn settle(
        &self,
        budget: &Budget,
        at: i64,
        done: i64,
    ) -> Result<(), FleetError> {
        let key = self.budget_key(budget);
        for _ in 0..TRIES {
            let Some(kv) = self.etcd.get(&key).await? else {
                return Ok(());
            };
            let mut ledger = serde_json::from_slice::<Ledger>(&kv.value).unwrap_or_default();
            ledger.settle(at, done);
            let compare = Compare::ModRevision(key.clone(), kv.mod_revision);
            if self.put_ledger(&key, compare, budget, ledger).await? {
                return Ok(());
            }
        }
        Err(contended(budget))
    }
}

fn contended(budget: &Budget) -> FleetError {
    FleetError::Record(
        format!("budget of client id {}", budget.client_id()),
        format!("{TRIES} members changed it at once; tried again later"),
    )
}
