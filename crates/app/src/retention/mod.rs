//! Retention: the one leased pruner that deletes what only grows (finished executions
//! and their history past their retention, idempotency keys past 24 h, events and
//! finished webhook deliveries past theirs, expired queue messages and deduplication
//! ids, the quota ledger's ended periods and old grants, expired sign-ups), and the
//! storage report (`GET /v1/storage`, `tenancy storage stats`) with what the next prune
//! removes. The audit log is never pruned. See docs/storage.md, "Retention".

pub mod ops;
pub mod pruner;

use std::time::Duration;

use tenancy_domain::{Error, Result};

/// The default retention of finished executions, as Step Functions keeps Standard
/// executions: 90 days.
pub const DEFAULT_EXECUTION_RETENTION_DAYS: u32 = 90;
/// The default retention of events and finished deliveries (`serve`'s
/// `--event-retention-days` default).
pub const DEFAULT_EVENT_RETENTION_DAYS: u32 = 30;
/// The longest retention a state machine may ask for: 100 years.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// How long what the pruner deletes is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Finished executions and their history (a state machine's own `retention_days`
    /// wins).
    pub executions: Duration,
    /// Events and finished deliveries (`--event-retention-days`).
    pub events: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            executions: days(DEFAULT_EXECUTION_RETENTION_DAYS),
            events: days(DEFAULT_EVENT_RETENTION_DAYS),
        }
    }
}

pub fn days(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 86_400)
}

/// A state machine's `retention_days`: 0 (pruned at the next pass once finished) to
/// [`MAX_RETENTION_DAYS`].
pub fn check_retention_days(days: Option<u32>) -> Result<()> {
    match days {
        Some(d) if d > MAX_RETENTION_DAYS => {
            Err(Error::invalid(format!("retention_days must be at most {MAX_RETENTION_DAYS}, not {d}")))
        }
        _ => Ok(()),
    }
}
