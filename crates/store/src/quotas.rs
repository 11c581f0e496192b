//! Storage of quota usage: exact, conditional writes (see docs/entitlements.md).

use async_trait::async_trait;
use tenancy_domain::plan::QuotaPeriod;
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;

use crate::store::Effects;

/// One quota to consume from, with its plan's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaDemand {
    pub quota: String,
    pub amount: u64,
    pub limit: u64,
    pub soft: bool,
    pub period: Option<QuotaPeriod>,
}

/// A consume: every demand granted, or none.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaConsumeRequest {
    pub tenant_id: String,
    /// Any order: the store takes them by name (so two batches never deadlock).
    pub demands: Vec<QuotaDemand>,
    /// A repeat with the same key answers what the first grant answered and consumes
    /// nothing.
    pub idempotency_key: Option<String>,
    /// Which period usage belongs to.
    pub now: Timestamp,
}

/// Usage of one quota after a consume or release.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaCount {
    pub quota: String,
    pub used: u64,
}

/// What a consume did.
#[derive(Debug, Clone, PartialEq)]
pub enum QuotaOutcome {
    /// Every demand was consumed: the usage after it, by name. `repeat` when an earlier
    /// grant with the same idempotency key answered.
    Granted { usage: Vec<QuotaCount>, repeat: bool },
    /// A hard quota refused (the first by name); nothing was consumed.
    Refused { quota: String, used: u64 },
}

/// Object safe: held as `Arc<dyn QuotaStore>` (see [`crate::Store::quotas`]).
///
/// Events: the store writes `QuotaThresholdReached` when a consume takes usage from
/// under 80% of the limit to at least 80%, and `QuotaExceeded` when a soft quota goes
/// from at most its limit to over it, or a hard quota refuses for the first time since
/// its usage last went down (or its period began); all with the consume, in its
/// transaction, beside `fx`.
#[async_trait]
pub trait QuotaStore: QuotaPruning + Send + Sync {
    /// Consumes every demand in one transaction, each with one conditional write
    /// (usage never goes over a hard limit, whatever runs at the same time), or none.
    async fn quota_consume(&self, req: &QuotaConsumeRequest, fx: &Effects) -> Result<QuotaOutcome>;
    /// Takes `amount` back from the quota's current usage (never below 0); returns the
    /// usage after it.
    async fn quota_release(
        &self,
        tenant_id: &str,
        quota: &str,
        period: Option<QuotaPeriod>,
        amount: u64,
        now: Timestamp,
        fx: &Effects,
    ) -> Result<u64>;
    /// The tenant's usage of its quotas in their current periods (quotas never
    /// consumed from are absent: 0).
    async fn quota_usage(
        &self,
        tenant_id: &str,
        quotas: &[(String, Option<QuotaPeriod>)],
        now: Timestamp,
    ) -> Result<Vec<QuotaCount>>;
}

/// What [`QuotaPruning::quota_prune`] deletes: the ledger's housekeeping
/// (docs/entitlements.md, "Housekeeping").
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaPrune {
    /// Usage rows of periods that started before this go (rows of quotas without a
    /// period, whose start is 0, never do)...
    pub periods_before: Timestamp,
    /// ...except those that started at one of these instants (the starts of months
    /// still kept: the ledger does not record whether a row counts a day or a month,
    /// and a row starting on the first of a month may be a month's).
    pub keep_starts: Vec<Timestamp>,
    /// Idempotency records of consumes granted before this go: a consume repeating
    /// their key after that counts again.
    pub grants_before: Timestamp,
    /// The most rows of each kind one call deletes.
    pub limit: u32,
}

/// Rows a prune deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaPruned {
    pub usage: u64,
    pub grants: u64,
}

/// The quota ledger's housekeeping, a part of every [`QuotaStore`] (a trait of its own
/// so that a backend keeps it beside the ledger's hot path rather than in it).
#[async_trait]
pub trait QuotaPruning: Send + Sync {
    /// Deletes at most `prune.limit` usage rows of ended periods and as many old
    /// idempotency records (see [`QuotaPrune`]); a call that deletes fewer than the
    /// limit of both has left none.
    async fn quota_prune(&self, prune: &QuotaPrune) -> Result<QuotaPruned>;
}
