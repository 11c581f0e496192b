//! The quota ledger's housekeeping: a background loop that deletes what the ledger no
//! longer needs (docs/entitlements.md, "Housekeeping").
//!
//! - Usage rows of ended periods: a period quota's usage lives in one row per period,
//!   and only the current period's is ever read. Rows are kept for the current period
//!   and the two before it (days for a day quota, months for a month quota), so a
//!   period's row goes once it ended more than two full periods ago. The ledger does
//!   not record a row's period kind, so a row that starts on the first of a month is
//!   kept as long as a month's. Rows of quotas without a period (seats) are never
//!   pruned: they are the count itself.
//! - Idempotency records of consumes, after [`GRANT_RETENTION`]: that is how long a
//!   repeated `idempotency_key` is recognised (a repeat after it counts again).
//!
//! It takes no input and can run any time, on any number of replicas (a delete of what
//! is already gone deletes nothing).

use std::sync::Arc;
use std::time::Duration;

use tenancy_domain::plan::QuotaPeriod;
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;
use tenancy_store::{QuotaPrune, QuotaPruned, Store};
use tokio_util::sync::CancellationToken;

/// How long a consume's `idempotency_key` is recognised (as the API's `Idempotency-Key`).
pub const GRANT_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// How often the pruner runs by default.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Rows of each kind deleted per store call.
const BATCH: u32 = 5_000;

/// What a prune at `now` deletes: period rows older than the day two days before
/// today's, except those starting on the first of this month or the two months before.
pub fn horizon(now: Timestamp) -> QuotaPrune {
    let before = |p: QuotaPeriod, t: Timestamp| p.start(t.plus_millis(-1));
    let today = QuotaPeriod::Day.start(now);
    let periods_before = before(QuotaPeriod::Day, before(QuotaPeriod::Day, today));
    let month = QuotaPeriod::Month.start(now);
    let months =
        [month, before(QuotaPeriod::Month, month), before(QuotaPeriod::Month, before(QuotaPeriod::Month, month))];
    QuotaPrune {
        periods_before,
        keep_starts: months.into_iter().filter(|m| *m < periods_before).collect(),
        grants_before: now.plus_millis(-(GRANT_RETENTION.as_millis() as i64)),
        limit: BATCH,
    }
}

/// Prunes the quota ledger every `interval`.
pub struct QuotaPruner {
    store: Arc<dyn Store>,
    interval: Duration,
}

impl QuotaPruner {
    pub fn new(store: Arc<dyn Store>, interval: Duration) -> Self {
        QuotaPruner { store, interval }
    }

    /// One pass as of `now`, in batches until nothing is left; returns what went.
    pub async fn run_once(&self, now: Timestamp) -> Result<QuotaPruned> {
        let prune = horizon(now);
        let mut total = QuotaPruned::default();
        loop {
            let n = self.store.quotas().quota_prune(&prune).await?;
            total.usage += n.usage;
            total.grants += n.grants;
            if n.usage < u64::from(prune.limit) && n.grants < u64::from(prune.limit) {
                return Ok(total);
            }
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.run_once(Timestamp::now()).await {
                Ok(n) if n.usage > 0 || n.grants > 0 => {
                    tracing::info!(usage_rows = n.usage, grants = n.grants, "pruned the quota ledger")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "failed to prune the quota ledger"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn the_horizon_keeps_three_days_and_three_months() {
        let h = horizon(at("2026-12-06T14:00:00Z"));
        assert_eq!(h.periods_before, at("2026-12-04T00:00:00Z"));
        assert_eq!(h.keep_starts, [at("2026-12-01T00:00:00Z"), at("2026-11-01T00:00:00Z"), at("2026-10-01T00:00:00Z")]);
        assert_eq!(h.grants_before, at("2026-12-05T14:00:00Z"));
        // Early in a month: this month's first day is after the cutoff (kept anyway).
        let h = horizon(at("2027-01-02T01:00:00Z"));
        assert_eq!(h.periods_before, at("2026-12-31T00:00:00Z"));
        assert_eq!(h.keep_starts, [at("2026-12-01T00:00:00Z"), at("2026-11-01T00:00:00Z")]);
    }
}
