//! The quota operations: consume (one quota or several), release, list.

use std::collections::BTreeMap;

use tenancy_domain::api::{QuotaBatchGranted, QuotaGranted};
use tenancy_domain::plan::Quota;
use tenancy_domain::quota::QuotaUsage;
use tenancy_domain::tenant::{Tenant, TenantStatus};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_store::{Effects, QuotaConsumeRequest, QuotaDemand, QuotaOutcome};

use crate::context::Permission as P;
use crate::{App, OpContext};

/// Longest idempotency key.
const MAX_KEY_LEN: usize = 255;

/// The largest amount one consume or release may name: usage stays far inside the
/// 64-bit counters of both engines, however often a soft quota is overdrawn.
pub const MAX_AMOUNT: u64 = 1_000_000_000_000;

impl App {
    /// Every quota of the tenant (its plan's, with its overrides' limits) with its
    /// current usage, by name.
    pub async fn quota_list(&self, ctx: &OpContext, tenant_id: &str) -> Result<Vec<QuotaUsage>> {
        ctx.authorize_tenant(P::QuotaRead, tenant_id)?;
        let (_, quotas) = self.quota_terms(tenant_id).await?;
        let now = Timestamp::now();
        let names: Vec<_> = quotas.iter().map(|(n, q)| (n.clone(), q.period)).collect();
        let usage = self.store().quotas().quota_usage(tenant_id, &names, now).await?;
        Ok(quotas.iter().zip(usage).map(|((name, q), u)| QuotaUsage::new(name, q, u.used, now)).collect())
    }

    /// Consumes `amount` of one quota.
    pub async fn quota_consume(
        &self,
        ctx: &OpContext,
        tenant_id: &str,
        name: &str,
        amount: u64,
        idempotency_key: Option<String>,
    ) -> Result<QuotaGranted> {
        ctx.authorize_tenant(P::QuotaUse, tenant_id)?;
        if amount == 0 || amount > MAX_AMOUNT {
            return Err(Error::invalid(format!("amount must be 1 to {MAX_AMOUNT}")));
        }
        let items = [(name, amount)];
        let mut granted = self.consume_items(tenant_id, &items, idempotency_key).await?;
        Ok(QuotaGranted { allowed: true, usage: granted.items.remove(0) })
    }

    /// Consumes every item (quota name to amount), or none: a hard quota that would go
    /// over its limit refuses the whole with 429 `quota-exceeded` naming it.
    pub async fn quota_consume_batch(
        &self,
        ctx: &OpContext,
        tenant_id: &str,
        items: &BTreeMap<String, u64>,
        idempotency_key: Option<String>,
    ) -> Result<QuotaBatchGranted> {
        ctx.authorize_tenant(P::QuotaUse, tenant_id)?;
        if items.is_empty() {
            return Err(Error::invalid("items: name at least one quota"));
        }
        if let Some((name, _)) = items.iter().find(|(_, a)| **a == 0 || **a > MAX_AMOUNT) {
            return Err(Error::invalid(format!("items.{name}: amount must be 1 to {MAX_AMOUNT}")));
        }
        let items: Vec<(&str, u64)> = items.iter().map(|(n, a)| (n.as_str(), *a)).collect();
        self.consume_items(tenant_id, &items, idempotency_key).await
    }

    /// Consumes `items` (validated amounts), all or nothing, with the tenant's terms
    /// as they are in memory (`App::tenant_terms`): the one path of single and batch
    /// consumes.
    async fn consume_items(
        &self,
        tenant_id: &str,
        items: &[(&str, u64)],
        idempotency_key: Option<String>,
    ) -> Result<QuotaBatchGranted> {
        if let Some(key) = &idempotency_key {
            if key.is_empty() || key.len() > MAX_KEY_LEN {
                return Err(Error::invalid(format!("idempotency_key: 1 to {MAX_KEY_LEN} characters")));
            }
        }
        let terms = self.tenant_terms(tenant_id).await?;
        let tenant = &terms.tenant;
        if !matches!(tenant.status, TenantStatus::Active | TenantStatus::Updating) {
            return Err(not_active(tenant, "consume"));
        }
        let quotas = &terms.entitlements.quotas;
        let mut demands = Vec::with_capacity(items.len());
        for (name, amount) in items {
            let q = quotas.get(*name).ok_or_else(|| Error::not_found("quota", *name))?;
            demands.push(QuotaDemand {
                quota: (*name).to_owned(),
                amount: *amount,
                limit: q.limit,
                soft: q.soft,
                period: q.period,
            });
        }
        let now = Timestamp::now();
        let req = QuotaConsumeRequest { tenant_id: tenant_id.to_owned(), demands, idempotency_key, now };
        match self.store().quotas().quota_consume(&req, &Effects::none()).await? {
            QuotaOutcome::Granted { usage, .. } => {
                for (quota, _) in items {
                    metrics::counter!("tenancy_quota_decisions_total", "quota" => (*quota).to_owned(), "decision" => "granted")
                        .increment(1);
                }
                Ok(QuotaBatchGranted {
                    allowed: true,
                    items: usage
                        .into_iter()
                        .map(|u| {
                            // A repeat answers a grant of the quotas it named then; a quota
                            // since removed from the plan has no terms left to show.
                            let q = quotas
                                .get(&u.quota)
                                .map_or(Quota { limit: 0, period: None, soft: false }, |q| q.terms());
                            QuotaUsage::new(&u.quota, &q, u.used, now)
                        })
                        .collect(),
                })
            }
            QuotaOutcome::Refused { quota, used } => {
                metrics::counter!("tenancy_quota_decisions_total", "quota" => quota.clone(), "decision" => "refused")
                    .increment(1);
                let limit = quotas.get(&quota).map_or(0, |q| q.limit);
                let amount = items.iter().find(|(n, _)| *n == quota).map_or(0, |(_, a)| *a);
                tracing::info!(tenant_id, quota, used, limit, amount, "quota refused a consume");
                Err(Error::Conflict {
                    code: ErrorCode::QuotaExceeded,
                    message: format!(
                        "quota {quota:?} of tenant {tenant_id:?}: {used} of {limit} used, {amount} more is over \
                         the limit; nothing was consumed"
                    ),
                })
            }
        }
    }

    /// Takes `amount` back from a quota's current usage (never below 0).
    pub async fn quota_release(&self, ctx: &OpContext, tenant_id: &str, name: &str, amount: u64) -> Result<QuotaUsage> {
        ctx.authorize_tenant(P::QuotaUse, tenant_id)?;
        if amount == 0 || amount > MAX_AMOUNT {
            return Err(Error::invalid(format!("amount must be 1 to {MAX_AMOUNT}")));
        }
        let (tenant, quotas) = self.quota_terms(tenant_id).await?;
        if tenant.status == TenantStatus::Offboarded {
            return Err(not_active(&tenant, "release"));
        }
        let q = quotas.get(name).ok_or_else(|| Error::not_found("quota", name))?;
        let now = Timestamp::now();
        let used =
            self.store().quotas().quota_release(tenant_id, name, q.period, amount, now, &Effects::none()).await?;
        Ok(QuotaUsage::new(name, q, used, now))
    }

    async fn quota_terms(&self, tenant_id: &str) -> Result<(Tenant, BTreeMap<String, Quota>)> {
        let terms = self.tenant_terms(tenant_id).await?;
        let quotas = terms.entitlements.quotas.iter().map(|(name, q)| (name.clone(), q.terms())).collect();
        Ok((terms.tenant.clone(), quotas))
    }
}

fn not_active(t: &Tenant, what: &str) -> Error {
    Error::Conflict {
        code: ErrorCode::TenantNotActive,
        message: format!("tenant {:?} is {}: it cannot {what} quotas", t.id, t.status.as_str()),
    }
}
