//! Storage of operators' authorization policies, and the revision that moves with
//! every change so replicas notice one with a single cheap read.

use async_trait::async_trait;
use tenancy_domain::policy::Policy;
use tenancy_domain::Result;

use crate::store::Effects;

/// Object safe: held as `Arc<dyn PolicyStore>` (see [`crate::Store::policies`]).
#[async_trait]
pub trait PolicyStore: Send + Sync {
    /// Creates or replaces policy `p.name` (a replace keeps `created_at`) with `fx`,
    /// moving the revision in the same transaction; the stored policy and whether it
    /// was created.
    async fn policy_put(&self, p: &Policy, fx: &Effects) -> Result<(Policy, bool)>;
    async fn policy_get(&self, name: &str) -> Result<Policy>;
    /// Every policy, by name.
    async fn policy_list(&self) -> Result<Vec<Policy>>;
    /// Deletes a policy with `fx`, moving the revision; not found when there is none.
    async fn policy_delete(&self, name: &str, fx: &Effects) -> Result<()>;
    /// The revision: it moves (up) in the transaction of every put and delete.
    async fn policy_revision(&self) -> Result<i64>;
}
