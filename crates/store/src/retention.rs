//! Retention: what the leased pruner deletes that nothing else does (finished
//! executions and their history), per-state-machine retention periods, and the
//! storage report (`GET /v1/storage`). See docs/storage.md, "Retention".

use async_trait::async_trait;
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;

use crate::store::Effects;

/// What [`RetentionStore::executions_prune`] deletes in one batch: finished executions
/// (SUCCEEDED, FAILED, TIMED_OUT, ABORTED) stopped before their state machine's
/// retention ended (its own `retention_days` as of `now`, else `before`), with their
/// history. A tenant's current lifecycle execution (the one recorded on its row) is
/// kept whatever its age.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionHorizon {
    pub now: Timestamp,
    /// The global cutoff: `now` minus the global retention.
    pub before: Timestamp,
    /// Rows deleted per statement (each statement is its own short transaction).
    pub limit: u32,
}

/// What one batch of [`RetentionStore::executions_prune`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecutionsPruned {
    pub executions: u64,
    pub history: u64,
}

/// One table's size: its rows and, where the engine tells, its bytes with its indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSize {
    pub table: String,
    pub rows: u64,
    pub bytes: Option<u64>,
}

/// The cutoffs a prune at some `now` applies, for [`RetentionStore::prune_preview`].
#[derive(Debug, Clone, PartialEq)]
pub struct PruneCutoffs {
    pub executions: ExecutionHorizon,
    /// Idempotency keys created before this.
    pub idempotency_before: Timestamp,
    /// Events (dispatched, without pending deliveries) and finished deliveries before this.
    pub events_before: Timestamp,
    /// Quota grants (consumes' idempotency records) created before this.
    pub grants_before: Timestamp,
}

/// The retention's storage. Object safe: held as `Arc<dyn RetentionStore>`.
#[async_trait]
pub trait RetentionStore: Send + Sync + 'static {
    /// Sets (or with `None` clears) a state machine's own retention in days, with its
    /// effects (the audit entry).
    async fn retention_set(&self, state_machine: &str, days: Option<u32>, fx: &Effects) -> Result<()>;
    /// Every state machine with a retention of its own, by name.
    async fn retention_list(&self) -> Result<Vec<(String, u32)>>;
    /// One batch: up to `limit` history rows of expired executions, or, when fewer were
    /// left, up to `limit` expired executions whose history is gone. Zero of both:
    /// nothing is left to prune.
    async fn executions_prune(&self, horizon: &ExecutionHorizon) -> Result<ExecutionsPruned>;
    /// Rows and bytes of the control plane's tables.
    async fn storage_sizes(&self) -> Result<Vec<TableSize>>;
    /// How many rows a prune with these cutoffs would delete, per table.
    async fn prune_preview(&self, cutoffs: &PruneCutoffs) -> Result<Vec<(String, u64)>>;
}
