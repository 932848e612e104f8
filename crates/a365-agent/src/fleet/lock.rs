//! The refresh lock of a shared profile: `lock/NAME`, written with the
//! holder's lease, naming the holder and a deadline.
//!
//! etcd's RBAC does not cover leases: anyone who can reach etcd can keep
//! any lease alive (`etcdctl lease keep-alive`), a consumer included, and so
//! keep a dead holder's lock for ever. The lease alone therefore does not
//! decide: the value carries a deadline (the holder's wall clock plus its
//! lease, moved on at every renewal), and a refresher may take over a lock
//! whose deadline passed, in a transaction on the revision it read,
//! whatever its lease says. Members' clocks must agree within
//! [`CLOCK_SLACK_MS`].

use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Serialize};

use super::etcd::{Compare, Op};
use super::{Fleet, FleetError};

/// How far members' wall clocks may disagree.
pub const CLOCK_SLACK_MS: i64 = 5_000;

/// The refresh lock, held through a lease.
#[derive(Debug)]
pub struct Lock {
    key: String,
    lease: i64,
    /// The lock key's revision as this member last wrote it.
    rev: AtomicI64,
}

/// What the lock key holds. Locks of earlier versions hold the member's
/// name only: no deadline, so their lease alone decides.
#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    member: String,
    deadline_ms: i64,
}

impl Fleet {
    /// Takes the refresh lock of `name`, or `None` when another member
    /// holds it (and its deadline has not passed).
    pub async fn lock(&self, name: &str, now_ms: i64) -> Result<Option<Lock>, FleetError> {
        let lease = self.etcd.grant(self.lease_secs).await?;
        let key = self.lock_key(name);
        let put = self.holder_put(&key, lease, now_ms);
        let taken = match self
            .etcd
            .txn(&[Compare::Absent(key.clone())], std::slice::from_ref(&put))
            .await
        {
            Ok(Some(rev)) => Some(rev),
            Ok(None) => self.take_over(&key, &put, now_ms).await,
            Err(e) => {
                let _ = self.etcd.revoke(lease).await;
                return Err(e.into());
            }
        };
        match taken {
            Some(rev) => Ok(Some(Lock {
                key,
                lease,
                rev: AtomicI64::new(rev),
            })),
            None => {
                let _ = self.etcd.revoke(lease).await;
                Ok(None)
            }
        }
    }

    /// Takes the lock at `key` if its holder's deadline passed: the
    /// revision written, or `None`.
    async fn take_over(&self, key: &str, put: &Op, now_ms: i64) -> Option<i64> {
        let held = self.etcd.get(key).await.ok()??;
        let holder: Holder = serde_json::from_slice(&held.value).ok()?;
        if holder.deadline_ms.saturating_add(CLOCK_SLACK_MS) >= now_ms {
            return None;
        }
        let compare = [Compare::ModRevision(key.to_owned(), held.mod_revision)];
        let rev = self
            .etcd
            .txn(&compare, std::slice::from_ref(put))
            .await
            .ok()??;
        tracing::warn!(
            key = %key.escape_default(),
            holder = %holder.member.escape_default(),
            "took over a fleet lock whose deadline passed (its holder stopped, or someone keeps \
             its lease alive)"
        );
        Some(rev)
    }

    /// Waits until the lock of `name` is released, or until its holder's
    /// deadline passes (then it may be taken over): one read and one
    /// watch, where a retry every few hundred milliseconds cost a lease
    /// grant, a transaction and a revoke each.
    pub async fn wait_for_lock(&self, name: &str, now_ms: i64) -> Result<(), FleetError> {
        let key = self.lock_key(name);
        let Some(held) = self.etcd.get(&key).await? else {
            return Ok(());
        };
        let lease_ms = i64::try_from(self.lease_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000);
        let until = serde_json::from_slice::<Holder>(&held.value)
            .map(|h| h.deadline_ms.saturating_add(CLOCK_SLACK_MS))
            .unwrap_or(now_ms.saturating_add(lease_ms));
        let wait_ms = until
            .saturating_sub(now_ms)
            .clamp(100, lease_ms.saturating_add(CLOCK_SLACK_MS));
        let wait = std::time::Duration::from_millis(wait_ms.unsigned_abs());
        self.etcd
            .wait_deleted(&key, held.mod_revision, wait)
            .await?;
        Ok(())
    }

    fn holder_put(&self, key: &str, lease: i64, now_ms: i64) -> Op {
        let holder = Holder {
            member: self.member.clone(),
            deadline_ms: now_ms.saturating_add(
                i64::try_from(self.lease_secs)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(1_000),
            ),
        };
        Op::Put {
            key: key.to_owned(),
            // A name and a number: cannot fail.
            value: serde_json::to_vec(&holder).unwrap_or_default(),
            lease: Some(lease),
        }
    }

    /// Renews the lock's lease and moves its deadline on: the seconds it
    /// now has, 0 if it was lost (its lease ended, or another member took
    /// it over).
    pub async fn renew(&self, lock: &Lock, now_ms: i64) -> Result<i64, FleetError> {
        let ttl = self.etcd.keep_alive(lock.lease).await?;
        if ttl <= 0 {
            return Ok(0);
        }
        let compare = [Compare::ModRevision(
            lock.key.clone(),
            lock.rev.load(Ordering::SeqCst),
        )];
        let put = self.holder_put(&lock.key, lock.lease, now_ms);
        match self.etcd.txn(&compare, &[put]).await? {
            Some(rev) => {
                lock.rev.store(rev, Ordering::SeqCst);
                Ok(ttl)
            }
            None => Ok(0),
        }
    }

    pub async fn unlock(&self, lock: Lock) {
        if let Err(e) = self.etcd.revoke(lock.lease).await {
            tracing::warn!("could not release the fleet lock (it ends with its lease): {e}");
        }
    }
}
