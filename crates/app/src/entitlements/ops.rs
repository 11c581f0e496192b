//! The entitlements API: set, read and clear a tenant's overrides; read its effective
//! entitlements.

use crate::context::Permission as P;
use crate::tenants::lifecycle::tenant_event;
use crate::{App, OpContext};
use serde_json::json;
use tenancy_domain::entitlements::{Entitlements, Overrides, OverridesSpec};
use tenancy_domain::event::names;
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;
use tenancy_store::Effects;

impl App {
    /// Replaces the tenant's overrides (admins and operators).
    pub async fn overrides_put(&self, ctx: &OpContext, tenant_id: &str, spec: OverridesSpec) -> Result<Overrides> {
        ctx.authorize_tenant(P::TenantAdmin, tenant_id)?;
        let overrides = spec.into_overrides(tenant_id, Timestamp::now())?;
        let tenant = self.store.tenant_get(tenant_id).await?;
        let detail = json!({
            "overrides": {
                "features": overrides.features,
                "quotas": overrides.quotas,
                "config": overrides.config.keys().collect::<Vec<_>>(),
                "expires_at": overrides.expires_at,
            }
        });
        let fx = Effects::none()
            .with_audit(ctx.audit(
                "tenant.overrides.put",
                format!("tenant/{tenant_id}"),
                Some(tenant_id),
                detail.clone(),
            ))
            .with_event(tenant_event(names::TENANT_ENTITLEMENTS_CHANGED, &tenant, &["overrides"], detail));
        self.store.entitlements().overrides_put(&overrides, &fx).await?;
        Ok(overrides)
    }

    /// The tenant's overrides as set (expired ones included); empty when it has none.
    pub async fn overrides_get(&self, ctx: &OpContext, tenant_id: &str) -> Result<Overrides> {
        ctx.authorize_tenant(P::TenantRead, tenant_id)?;
        self.store.tenant_get(tenant_id).await?;
        Ok(self.store.entitlements().overrides_get(tenant_id).await?.unwrap_or_else(|| Overrides::none(tenant_id)))
    }

    /// Clears the tenant's overrides (admins and operators); clearing none is a no-op.
    pub async fn overrides_clear(&self, ctx: &OpContext, tenant_id: &str) -> Result<()> {
        ctx.authorize_tenant(P::TenantAdmin, tenant_id)?;
        let tenant = self.store.tenant_get(tenant_id).await?;
        let detail = json!({"overrides": null});
        let fx = Effects::none()
            .with_audit(ctx.audit(
                "tenant.overrides.delete",
                format!("tenant/{tenant_id}"),
                Some(tenant_id),
                detail.clone(),
            ))
            .with_event(tenant_event(names::TENANT_ENTITLEMENTS_CHANGED, &tenant, &["overrides"], detail));
        self.store.entitlements().overrides_delete(tenant_id, &fx).await?;
        Ok(())
    }

    /// The tenant's effective entitlements now: its plan with its unexpired overrides.
    pub async fn entitlements_get(&self, ctx: &OpContext, tenant_id: &str) -> Result<Entitlements> {
        ctx.authorize_tenant(P::TenantRead, tenant_id)?;
        let mut view = self.tenant_terms(tenant_id).await?.entitlements.clone();
        let now = Timestamp::now();
        // Usage from the quota ledger, for the limits in effect.
        let names: Vec<_> = view.quotas.iter().map(|(n, q)| (n.clone(), q.period)).collect();
        let usage = self.store.quotas().quota_usage(tenant_id, &names, now).await?;
        for ((name, q), u) in view.quotas.iter_mut().zip(usage) {
            let counted = tenancy_domain::quota::QuotaUsage::new(name, &q.terms(), u.used, now);
            (q.used, q.remaining, q.resets_at) = (Some(counted.used), Some(counted.remaining), counted.resets_at);
        }
        Ok(view)
    }
}
