//! A tenant's terms: what the hot paths (quota consumption, flag evaluation,
//! entitlement reads) need to know about a tenant to answer, in one value.
//!
//! [`App::tenant_terms`] is the one door to them, so that how they are kept is decided
//! in one place (docs/entitlements.md "The fast path"): computed from the store (the
//! source of truth) and kept in memory, per tenant, under the store's terms epoch
//! ([`tenancy_store::TermsEpoch`]), a counter that moves when this process writes a
//! tenant record, a plan or overrides (before the write commits and again after,
//! before the writer is answered). Terms are served from memory while
//!
//! - the epoch still shows the value read before their records were read: no write
//!   of this process came since;
//! - their overrides have not expired (`entitlements.overrides_expire_at`): the view
//!   changes then without any write;
//! - and, where other processes write the same database (PostgreSQL replicas, the
//!   epoch is not `exact`), they are younger than [`REPLICA_TTL`].
//!
//! So on SQLite (this process is the only writer) memory is exact: no answer after an
//! acknowledged write comes from the records before it. On PostgreSQL a replica sees
//! its own writes at once and another replica's within [`REPLICA_TTL`]; what that
//! staleness can and cannot do to a quota is in docs/entitlements.md.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tenancy_domain::entitlements::{effective, Entitlements};
use tenancy_domain::ratelimit::RateLimit;
use tenancy_domain::tenant::Tenant;
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;
use tenancy_store::TermsEpoch;

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

/// How long terms computed on a PostgreSQL replica are served from memory: the
/// longest another replica's write of a tenant, its plan or its overrides goes unseen
/// here (this replica's own writes are seen at once).
pub const REPLICA_TTL: Duration = Duration::from_secs(1);

/// Shards of the memory (readers of different tenants rarely share a lock).
const SHARDS: usize = 16;
/// Tenants kept per shard; past this the shard starts over (a miss costs one read of
/// the records).
const PER_SHARD: usize = 16_384;

struct Kept {
    terms: Arc<TenantTerms>,
    /// The epoch read before the records were.
    epoch: u64,
    computed: Instant,
}

/// Computed terms by tenant id (see the module).
pub(crate) struct TermsMemory {
    shards: Box<[RwLock<HashMap<String, Kept>>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for TermsMemory {
    fn default() -> Self {
        TermsMemory {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl TermsMemory {
    fn shard(&self, tenant_id: &str) -> &RwLock<HashMap<String, Kept>> {
        &self.shards[self.hasher.hash_one(tenant_id) as usize % SHARDS]
    }

    /// The kept terms, if still current under `epoch` (see the module).
    fn get(&self, tenant_id: &str, epoch: TermsEpoch) -> Option<Arc<TenantTerms>> {
        let shard = self.shard(tenant_id).read().expect("terms memory poisoned");
        let kept = shard.get(tenant_id)?;
        let current = kept.epoch == epoch.value
            && (epoch.exact || kept.computed.elapsed() < REPLICA_TTL)
            && kept.terms.entitlements.overrides_expire_at.is_none_or(|t| Timestamp::now() < t);
        current.then(|| kept.terms.clone())
    }

    fn put(&self, tenant_id: &str, epoch: TermsEpoch, terms: Arc<TenantTerms>) {
        let mut shard = self.shard(tenant_id).write().expect("terms memory poisoned");
        if shard.len() >= PER_SHARD && !shard.contains_key(tenant_id) {
            shard.clear();
        }
        shard.insert(tenant_id.to_owned(), Kept { terms, epoch: epoch.value, computed: Instant::now() });
    }
}

impl App {
    /// The tenant's current terms. Not authorized: callers authorize first.
    pub async fn tenant_terms(&self, tenant_id: &str) -> Result<Arc<TenantTerms>> {
        // Read before the records: terms computed from them are kept under it.
        let epoch = self.store().terms_epoch();
        if let Some(terms) = self.terms.get(tenant_id, epoch) {
            return Ok(terms);
        }
        let tenant = self.store().tenant_get(tenant_id).await?;
        let plan = self.store().plan_get(&tenant.plan).await?;
        let overrides = self.store().entitlements().overrides_get(tenant_id).await?;
        let entitlements = effective(tenant_id, &plan, overrides.as_ref(), Timestamp::now());
        let terms = Arc::new(TenantTerms { tenant, entitlements, rate_limit: plan.rate_limit });
        self.terms.put(tenant_id, epoch, terms.clone());
        Ok(terms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenancy_domain::tenant::TenantStatus;

    fn terms(expire_at: Option<Timestamp>) -> Arc<TenantTerms> {
        let tenant = Tenant {
            id: "acme".into(),
            name: "Acme".into(),
            plan: "pro".into(),
            region: "r".into(),
            status: TenantStatus::Active,
            metadata: Default::default(),
            version: 1,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            lifecycle_execution_id: None,
            release: None,
            pinned: None,
        };
        let entitlements = Entitlements {
            tenant_id: "acme".into(),
            plan: "pro".into(),
            features: Default::default(),
            config: Default::default(),
            quotas: Default::default(),
            overrides_expire_at: expire_at,
        };
        Arc::new(TenantTerms { tenant, entitlements, rate_limit: None })
    }

    const EXACT: TermsEpoch = TermsEpoch { value: 7, exact: true };

    #[test]
    fn kept_only_while_the_epoch_stands_still() {
        let m = TermsMemory::default();
        m.put("acme", EXACT, terms(None));
        assert!(m.get("acme", EXACT).is_some());
        assert!(m.get("acme", TermsEpoch { value: 8, exact: true }).is_none(), "a write came since");
        assert!(m.get("globex", EXACT).is_none());
    }

    #[test]
    fn expired_overrides_are_recomputed() {
        let m = TermsMemory::default();
        m.put("acme", EXACT, terms(Some(Timestamp(Timestamp::now().millis() - 1))));
        assert!(m.get("acme", EXACT).is_none(), "the view changed when the overrides expired");
        m.put("acme", EXACT, terms(Some(Timestamp(Timestamp::now().millis() + 60_000))));
        assert!(m.get("acme", EXACT).is_some());
    }

    #[test]
    fn on_replicas_terms_last_a_ttl() {
        let m = TermsMemory::default();
        let shared = TermsEpoch { value: 7, exact: false };
        m.put("acme", shared, terms(None));
        assert!(m.get("acme", shared).is_some());
        m.shard("acme").write().unwrap().get_mut("acme").unwrap().computed = Instant::now() - REPLICA_TTL;
        assert!(m.get("acme", shared).is_none(), "another replica may have written since");
    }
}
