//! What the reconciler has reported and is still there, shared by every replica.

use async_trait::async_trait;
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;

use crate::store::Effects;

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
}
