//! Storage of rollouts (issue 16, docs/releases.md "Rollouts").

use async_trait::async_trait;
use tenancy_domain::rollout::Rollout;
use tenancy_domain::Result;

use crate::store::Effects;

/// Object safe: held as `Arc<dyn RolloutStore>` (see [`crate::Store::rollouts`]).
#[async_trait]
pub trait RolloutStore: Send + Sync {
    /// Records a new rollout holding its tenants, with `fx`, in one transaction: 409
    /// `rollout-conflict` (nothing written) when an active rollout holds one of them.
    async fn rollout_insert(&self, r: &Rollout, fx: &Effects) -> Result<()>;
    async fn rollout_get(&self, id: &str) -> Result<Rollout>;
    /// The rollout if its stored revision is not `known_rev` (`None`: unchanged), for
    /// a worker that keeps the record it last read or saved.
    async fn rollout_get_changed(&self, id: &str, known_rev: i64) -> Result<Option<Rollout>>;
    /// Every rollout, newest first.
    async fn rollout_list(&self) -> Result<Vec<Rollout>>;
    /// Replaces the rollout if its stored revision is still `r.rev - 1`, with `fx`:
    /// 412 `precondition-failed` otherwise. Of its tenants only those at `changed`
    /// (`(wave, index)` positions, see [`Rollout::changed_tenants`]) are written: the
    /// others must be as stored. A rollout no longer active releases its tenants in the
    /// same transaction.
    async fn rollout_save(&self, r: &Rollout, changed: &[(usize, usize)], fx: &Effects) -> Result<()>;
    /// Leases the active rollouts that are not leased by another owner (or whose lease
    /// expired) to `owner` until `until_ms`; their ids.
    async fn rollout_lease(&self, owner: &str, now_ms: i64, until_ms: i64) -> Result<Vec<String>>;
}
