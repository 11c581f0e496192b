//! Storage of per-tenant entitlement overrides.

use async_trait::async_trait;
use tenancy_domain::entitlements::Overrides;
use tenancy_domain::Result;

use crate::store::Effects;

/// Object safe: held as `Arc<dyn EntitlementStore>` (see [`crate::Store::entitlements`]).
#[async_trait]
pub trait EntitlementStore: Send + Sync {
    /// Sets the tenant's overrides (replacing any), in one transaction with `fx`.
    async fn overrides_put(&self, o: &Overrides, fx: &Effects) -> Result<()>;
    /// The tenant's overrides, expired ones included; `None` when it has none.
    async fn overrides_get(&self, tenant_id: &str) -> Result<Option<Overrides>>;
    /// Clears the tenant's overrides, in one transaction with `fx`; whether there were any.
    async fn overrides_delete(&self, tenant_id: &str, fx: &Effects) -> Result<bool>;
}
