//! What the reconciler has reported and is still there, and its last pass, shared by
//! every replica.

use async_trait::async_trait;
use serde_json::Value;
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;

use crate::store::Effects;

/// A reconciliation pass as recorded for every replica to serve.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconciliationRun {
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// The process that made it (its node id).
    pub node: String,
    /// The pass's report as the reconciler wrote it (the store does not read it).
    pub report: Value,
}

/// Object safe: held as `Arc<dyn DriftStore>` (see [`crate::Store::drift`]).
///
/// A lasting drift (an extra database left in place) is evented once, not once per
/// pass, per replica or per restart: the first reporter records its id with the
/// event in one transaction, and everyone else finds it recorded.
#[async_trait]
pub trait DriftStore: Send + Sync {
    /// Records drift `id` as reported at `now` and writes `fx` with it, in one
    /// transaction, unless it is recorded already: then nothing is written. Whether it
    /// was recorded by this call.
    async fn drift_report(&self, id: &str, now: Timestamp, fx: &Effects) -> Result<bool>;
    /// Every recorded id with the time it was reported, in id order.
    async fn drift_reported(&self) -> Result<Vec<(String, Timestamp)>>;
    /// Forgets `ids` (gone since they were reported): reported again if they come back.
    async fn drift_forget(&self, ids: &[String]) -> Result<()>;

    /// Keeps `run` as the last pass, unless a pass that finished later is recorded
    /// (replicas' passes may end out of order). Whether it was kept.
    async fn reconciliation_record(&self, run: &ReconciliationRun) -> Result<bool>;
    /// The last pass recorded by any replica, if any.
    async fn reconciliation_last(&self) -> Result<Option<ReconciliationRun>>;
}
