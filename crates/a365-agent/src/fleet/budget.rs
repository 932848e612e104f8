//! A token request budget shared by the fleet: one ledger per client id in
//! etcd (`PREFIX/budget/ID`), changed by compare-and-swap: a request is
//! counted before it is sent and settled when it ends, so that N members
//! of one client id stay within one budget. Whoever can write to etcd can
//! change it: a ledger that cannot be read stops token requests (it is
//! not taken as empty, which would let a whole budget out again), and
//! times too far ahead are dropped ([`Ledger::admit`]), so that a forged
//! one holds requests back for a window at most.

use super::etcd::{Compare, Op};
use super::{Fleet, FleetError};
use crate::budget::{Budget, Hold, Ledger, Quota};

/// Members racing for one ledger: tries before this round gives up.
const TRIES: usize = 8;

impl Fleet {
    fn budget_key(&self, budget: &Budget) -> String {
        format!("{}budget/{}", self.prefix, budget.id())
    }

    /// Counts one token request of `quota` in the fleet's ledger at
    /// `now`: its id, or `Ok(Err(hold))` when a window would break.
    pub(crate) async fn admit(
        &self,
        quota: &Quota,
        now: i64,
    ) -> Result<Result<i64, Hold>, FleetError> {
        let mut decided = None;
        self.amend(quota, |ledger| {
            let verdict = ledger.admit_keeping(&quota.limits, &quota.budget.keep(), now);
            let changed = verdict.is_ok();
            decided = Some(verdict);
            changed
        })
        .await?;
        decided.ok_or_else(|| contended(&quota.budget))
    }

    /// The request admitted as `id` ended at `done`, for every member
    /// ([`Ledger::settle`]).
    pub(crate) async fn settle(&self, quota: &Quota, id: i64, done: i64) -> Result<(), FleetError> {
        self.amend(quota, |ledger| {
            ledger.settle(id, done);
            true
        })
        .await
    }

    /// The request admitted as `id` was not sent.
    pub(crate) async fn cancel(&self, quota: &Quota, id: i64) -> Result<(), FleetError> {
        self.amend(quota, |ledger| {
            ledger.cancel(id);
            true
        })
        .await
    }

    /// Reads the ledger, applies `change` (which says whether it changed
    /// it) and writes it back if no other member wrote it meanwhile, else
    /// again; this member's view becomes what was read or written.
    async fn amend(
        &self,
        quota: &Quota,
        mut change: impl FnMut(&mut Ledger) -> bool,
    ) -> Result<(), FleetError> {
        let budget = &quota.budget;
        let key = self.budget_key(budget);
        for _ in 0..TRIES {
            let (mut ledger, compare) = match self.etcd.get(&key).await? {
                Some(kv) => (
                    serde_json::from_slice::<Ledger>(&kv.value).map_err(|e| {
                        FleetError::Record(
                            format!("the budget of client id {}", budget.client_id()),
                            format!("{e}; no token request is sent until it is readable"),
                        )
                    })?,
                    Compare::ModRevision(key.clone(), kv.mod_revision),
                ),
                None => (Ledger::default(), Compare::Absent(key.clone())),
            };
            if !change(&mut ledger) {
                budget.adopt(ledger);
                return Ok(());
            }
            let value = serde_json::to_vec(&ledger)
                .map_err(|e| FleetError::Config(format!("encoding a budget: {e}")))?;
            let put = Op::Put {
                key: key.clone(),
                value,
                lease: None,
            };
            if self.etcd.txn(&[compare], &[put]).await?.is_some() {
                budget.adopt(ledger);
                return Ok(());
            }
        }
        Err(contended(budget))
    }
}

fn contended(budget: &Budget) -> FleetError {
    FleetError::Record(
        format!("the budget of client id {}", budget.client_id()),
        format!("{TRIES} members changed it at once; tried again later"),
    )
}
