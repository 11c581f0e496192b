//! A tenant's terms: what the hot paths (quota consumption, flag evaluation,
//! entitlement reads) need to know about a tenant to answer, in one value.
//!
//! [`App::tenant_terms`] is the one door to them, so that how they are kept (read from
//! the store each time, or served from memory with the store as the source of truth)
//! is decided in one place (docs/entitlements.md).

use std::sync::Arc;

use tenancy_domain::entitlements::{effective, Entitlements};
use tenancy_domain::ratelimit::RateLimit;
use tenancy_domain::tenant::Tenant;
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;

use crate::App;

/// A tenant with its effective entitlements (plan and unexpired overrides, no usage).
#[derive(Debug, Clone)]
pub struct TenantTerms {
    pub tenant: Tenant,
    /// The effective entitlements when these terms were read; they stay right until
    /// `entitlements.overrides_expire_at`, if any.
    pub entitlements: Entitlements,
    /// The API rate limit of the tenant's plan (the bucket all its keys share), if the
    /// plan sets one; the server's `--rate-limit-tenant-*` otherwise.
    pub rate_limit: Option<RateLimit>,
}

impl App {
    /// The tenant's current terms. Not authorized: callers authorize first.
    pub async fn tenant_terms(&self, tenant_id: &str) -> Result<Arc<TenantTerms>> {
        let tenant = self.store().tenant_get(tenant_id).await?;
        let plan = self.store().plan_get(&tenant.plan).await?;
        let overrides = self.store().entitlements().overrides_get(tenant_id).await?;
        let entitlements = effective(tenant_id, &plan, overrides.as_ref(), Timestamp::now());
        Ok(Arc::new(TenantTerms { tenant, entitlements, rate_limit: plan.rate_limit }))
    }
}
