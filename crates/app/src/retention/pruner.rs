//! The leased pruner: one pass every `--prune-interval` on whichever replica holds the
//! `prune` lease (a `job_leases` row, as the rotation scheduler's), deleting in batches
//! of [`DEFAULT_BATCH`] rows, each its own statement and short transaction, with a
//! pause between batches so that requests keep the writer (SQLite) and the connections
//! (PostgreSQL) in between.
//!
//! # Pacing
//!
//! The pause after a batch is [`PrunerOptions::pace`] times as long as the batch took
//! (and at least [`PrunerOptions::pause`]): with the default pace of 4 the pruner works
//! at most a fifth of the time, whatever the machine's speed or the batch's cost. A
//! fixed pause did not hold: on a quiet 2-core machine under read load a 1,000-row
//! batch took about 10 ms against a 5 ms pause, so the pruner took two thirds of a core
//! and the p99 of `GET /v1/tenants/{id}` rose 39% (`tenancy-bench prune`, issue 20's
//! bar is 20%). Paced, the same prune of 1,000,000 history rows took 20.8 s instead of
//! 10.6 s (its batches ran faster with less contention) and the p99 rose 12%; it is a
//! background job with hours of slack. The lease is an economy, not the guarantee: every delete
//! is conditional on what it deletes still being past retention, so two replicas that
//! both believed they held it delete nothing twice.
//!
//! Time is passed in ([`Pruner::run_once`] takes `now`): the pass as of a later clock
//! is how the growth test (crates/cli/tests/retention.rs) moves past retention.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;
use tenancy_store::{ExecutionHorizon, PruneCutoffs, Store};
use tokio_util::sync::CancellationToken;

use super::RetentionPolicy;
use crate::quotas::pruner::{horizon as quota_horizon, GRANT_RETENTION};
use crate::subscriptions::worker::IDEMPOTENCY_RETENTION;

/// The lease's name in `job_leases`.
pub const LEASE: &str = "prune";
/// Rows per delete statement.
pub const DEFAULT_BATCH: u32 = 1_000;
/// How often a pass runs by default (`--prune-interval`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(600);
/// The shortest pause between two batches by default.
pub const DEFAULT_PAUSE: Duration = Duration::from_millis(5);
/// The pause after a batch, in multiples of the batch's own time (see "Pacing").
pub const DEFAULT_PACE: u32 = 4;

/// What one pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub executions: u64,
    pub history: u64,
    pub idempotency_keys: u64,
    pub events: u64,
    pub deliveries: u64,
    pub queue_messages: u64,
    pub quota_usage: u64,
    pub quota_grants: u64,
    pub signups: u64,
}

impl PruneReport {
    pub fn total(&self) -> u64 {
        self.executions
            + self.history
            + self.idempotency_keys
            + self.events
            + self.deliveries
            + self.queue_messages
            + self.quota_usage
            + self.quota_grants
            + self.signups
    }
}

/// The cutoffs of a pass at `now` under `policy`.
pub fn cutoffs(policy: &RetentionPolicy, now: Timestamp, limit: u32) -> PruneCutoffs {
    let back = |d: Duration| now.plus_millis(-(d.as_millis().min(i64::MAX as u128) as i64));
    PruneCutoffs {
        executions: ExecutionHorizon { now, before: back(policy.executions), limit },
        idempotency_before: back(IDEMPOTENCY_RETENTION),
        events_before: back(policy.events),
        grants_before: back(GRANT_RETENTION),
    }
}

#[derive(Debug, Clone)]
pub struct PrunerOptions {
    pub policy: RetentionPolicy,
    pub interval: Duration,
    pub batch: u32,
    /// The shortest pause between batches (zero: only yield, as tests do).
    pub pause: Duration,
    /// The pause after a batch in multiples of the batch's time (zero: `pause` only).
    pub pace: u32,
    /// Who holds the lease: unique per process.
    pub owner: String,
    /// Events are dropped only once the archiver wrote them (`serve` runs one).
    pub archived_events_only: bool,
}

impl PrunerOptions {
    pub fn new(owner: String) -> Self {
        PrunerOptions {
            policy: RetentionPolicy::default(),
            interval: DEFAULT_INTERVAL,
            batch: DEFAULT_BATCH,
            pause: DEFAULT_PAUSE,
            pace: DEFAULT_PACE,
            owner,
            archived_events_only: false,
        }
    }
}

pub struct Pruner {
    store: Arc<dyn Store>,
    opts: PrunerOptions,
}

impl Pruner {
    pub fn new(store: Arc<dyn Store>, opts: PrunerOptions) -> Self {
        Pruner { store, opts }
    }

    /// The pause after a batch that started at `started` (see "Pacing").
    async fn pause(&self, started: Instant) {
        if self.opts.pause.is_zero() {
            tokio::task::yield_now().await;
        } else {
            let paced = started.elapsed().saturating_mul(self.opts.pace);
            tokio::time::sleep(paced.max(self.opts.pause)).await;
        }
    }

    /// Takes or renews the lease at `now`, for three intervals.
    async fn lease(&self, now: Timestamp) -> Result<bool> {
        let ttl = (self.opts.interval * 3).max(Duration::from_secs(60));
        self.store.secrets().job_lease(LEASE, &self.opts.owner, now, now.plus_millis(ttl.as_millis() as i64)).await
    }

    /// One pass as of `now`: everything past retention, in batches until nothing is
    /// left. `None` when another replica holds the lease.
    pub async fn run_once(&self, now: Timestamp) -> Result<Option<PruneReport>> {
        if !self.lease(now).await? {
            return Ok(None);
        }
        let limit = self.opts.batch.max(1);
        let cut = cutoffs(&self.opts.policy, now, limit);
        let mut r = PruneReport::default();
        let retention = self.store.retention();
        let mut batches = 0u64;
        loop {
            let started = Instant::now();
            let n = retention.executions_prune(&cut.executions).await?;
            if n.executions == 0 && n.history == 0 {
                break;
            }
            r.executions += n.executions;
            r.history += n.history;
            batches += 1;
            // A long pass keeps its lease.
            if batches.is_multiple_of(1_000) && !self.lease(now).await? {
                return Ok(Some(r));
            }
            self.pause(started).await;
        }
        // Batched inside the store (1,000 keys per statement).
        r.idempotency_keys = self.store.idempotency_prune(cut.idempotency_before).await?;
        loop {
            let started = Instant::now();
            let (events, deliveries) =
                self.store.events_prune(cut.events_before, self.opts.archived_events_only).await?;
            if events == 0 && deliveries == 0 {
                break;
            }
            r.events += events;
            r.deliveries += deliveries;
            self.pause(started).await;
        }
        loop {
            let started = Instant::now();
            let n = self.store.queues().queue_prune(now, limit).await?;
            r.queue_messages += n;
            if n < u64::from(limit) {
                break;
            }
            self.pause(started).await;
        }
        let mut quota = quota_horizon(now);
        quota.limit = limit;
        quota.grants_before = cut.grants_before;
        loop {
            let started = Instant::now();
            let n = self.store.quotas().quota_prune(&quota).await?;
            r.quota_usage += n.usage;
            r.quota_grants += n.grants;
            if n.usage < u64::from(limit) && n.grants < u64::from(limit) {
                break;
            }
            self.pause(started).await;
        }
        r.signups = self.store.signups().signup_purge_expired(now).await?;
        Ok(Some(r))
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.run_once(Timestamp::now()).await {
                Ok(Some(r)) if r.total() > 0 => tracing::info!(
                    executions = r.executions,
                    history = r.history,
                    idempotency_keys = r.idempotency_keys,
                    events = r.events,
                    deliveries = r.deliveries,
                    queue_messages = r.queue_messages,
                    quota_usage = r.quota_usage,
                    quota_grants = r.quota_grants,
                    signups = r.signups,
                    "pruned past retention"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "prune pass failed"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.opts.interval) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_follow_the_policy() {
        let now = Timestamp(1_000 * 86_400_000);
        let c = cutoffs(&RetentionPolicy::default(), now, 7);
        assert_eq!(c.executions.before, Timestamp(910 * 86_400_000));
        assert_eq!(c.events_before, Timestamp(970 * 86_400_000));
        assert_eq!(c.idempotency_before, Timestamp(999 * 86_400_000));
        assert_eq!(c.executions.limit, 7);
    }
}
