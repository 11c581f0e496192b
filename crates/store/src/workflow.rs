//! Storage of the workflow engine: state machines (versioned definitions), executions
//! (one row each, holding the interpreter's serialized cursor, the pending action, a
//! timer and a lease) and their history.
//!
//! The store does not interpret cursors or actions: they are opaque JSON written by the
//! engine. What it guarantees is that a step (new cursor, pending action, timer, history
//! events and effects) commits in ONE transaction, and only if nobody else moved the
//! execution in between (`seq`, bumped by every commit).

use async_trait::async_trait;
use serde_json::Value;
use tenancy_domain::api::{ExecutionView, HistoryEventView, StateMachineView};
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;

use crate::store::Effects;

/// Step Functions' execution statuses.
pub mod status {
    pub const RUNNING: &str = "RUNNING";
    pub const SUCCEEDED: &str = "SUCCEEDED";
    pub const FAILED: &str = "FAILED";
    pub const TIMED_OUT: &str = "TIMED_OUT";
    pub const ABORTED: &str = "ABORTED";
    pub const ALL: [&str; 5] = [RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED];
}

/// One version of a state machine's definition.
#[derive(Debug, Clone, PartialEq)]
pub struct StateMachineRecord {
    pub name: String,
    pub version: i64,
    pub definition: Value,
    pub created_at: Timestamp,
}

/// One history event of an execution.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRecord {
    pub event_id: i64,
    /// Step Functions' type name (`TaskStateEntered`, ...).
    pub kind: String,
    pub state: Option<String>,
    pub details: Value,
    pub time: Timestamp,
}

/// An execution as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRecord {
    pub id: String,
    pub name: String,
    pub state_machine: String,
    pub version: i64,
    pub tenant_id: Option<String>,
    pub status: String,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// The interpreter's cursor (opaque to the store).
    pub cursor: Option<Value>,
    /// What the execution waits for (opaque to the store).
    pub pending: Option<Value>,
    /// Set while a `.waitForTaskToken` task waits for its callback.
    pub task_token: Option<String>,
    /// When a worker must look at the execution next (timer); `None` when nothing is due.
    pub wake_at: Option<Timestamp>,
    pub redrive_count: i64,
    /// Bumped by every commit: the optimistic lock of [`StepCommit::expected_seq`].
    pub seq: i64,
    pub started_at: Timestamp,
    pub stopped_at: Option<Timestamp>,
    pub updated_at: Timestamp,
    /// The W3C `traceparent` of the span that started the execution (see
    /// `tenancy_trace`): the spans of its steps continue that trace.
    pub trace_context: Option<String>,
}

// The API's views of the records (`tenancy_domain::api`, shared with the typed client):
// converted here, beside the records, because neither type is the app's own.

impl From<StateMachineRecord> for StateMachineView {
    fn from(r: StateMachineRecord) -> Self {
        StateMachineView {
            name: r.name,
            version: r.version,
            definition: r.definition,
            created_at: r.created_at,
            retention_days: None,
        }
    }
}

impl From<ExecutionRecord> for ExecutionView {
    fn from(r: ExecutionRecord) -> Self {
        ExecutionView {
            id: r.id,
            name: r.name,
            state_machine: r.state_machine,
            version: r.version,
            tenant_id: r.tenant_id,
            status: r.status,
            input: r.input,
            output: r.output,
            error: r.error,
            cause: r.cause,
            redrive_count: r.redrive_count,
            started_at: r.started_at,
            stopped_at: r.stopped_at,
            updated_at: r.updated_at,
        }
    }
}

impl From<HistoryRecord> for HistoryEventView {
    fn from(h: HistoryRecord) -> Self {
        HistoryEventView { id: h.event_id, kind: h.kind, state: h.state, details: h.details, timestamp: h.time }
    }
}

/// A new execution with its first step already taken (see [`StepCommit`]).
#[derive(Debug, Clone)]
pub struct NewExecution {
    pub id: String,
    pub name: String,
    pub state_machine: String,
    pub version: i64,
    pub tenant_id: Option<String>,
    pub input: Value,
    pub started_at: Timestamp,
    /// The first step: status, cursor, pending action, timer, history.
    pub first: StepState,
    /// The W3C `traceparent` of the span starting it (see [`ExecutionRecord::trace_context`]).
    pub trace_context: Option<String>,
}

impl NewExecution {
    /// Whether the execution is named by its own fresh id (no name was asked for), so
    /// that inserting it cannot conflict with another execution. Such executions are
    /// inserted with the effects of a write batch, many rows per statement; one with a
    /// chosen name is inserted inside its write's savepoint, where a taken name fails
    /// that write alone.
    pub fn named_by_id(&self) -> bool {
        self.name == self.id
    }
}

/// Where a step leaves an execution.
#[derive(Debug, Clone, Default)]
pub struct StepState {
    pub status: String,
    pub cursor: Option<Value>,
    pub pending: Option<Value>,
    pub task_token: Option<String>,
    pub wake_at: Option<Timestamp>,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub stopped_at: Option<Timestamp>,
    pub history: Vec<HistoryRecord>,
}

/// One step of an execution, committed atomically with its effects.
#[derive(Debug, Clone, Default)]
pub struct StepCommit {
    pub execution_id: String,
    /// The commit applies only while the execution's `seq` is still this.
    pub expected_seq: i64,
    pub state: StepState,
    /// Keep the lease (the worker goes on with the execution) or release it.
    pub keep_lease: bool,
    /// Remember where to resume a redrive (cursor and pending action before the step
    /// that failed the execution).
    pub redrive_point: Option<(Value, Value)>,
    /// Set by a redrive: the new redrive count.
    pub redrive_count: Option<i64>,
    pub effects: Effects,
}

#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub status: Option<String>,
    pub state_machine: Option<String>,
    pub tenant_id: Option<String>,
    /// Only stuck executions: RUNNING, due (timer) before this time and not moved since.
    /// A Wait or a callback that is not due yet is not stuck.
    pub updated_before: Option<Timestamp>,
}

/// Where a redrive resumes: the cursor and pending action saved by the failing step.
#[derive(Debug, Clone, PartialEq)]
pub struct RedrivePoint {
    pub cursor: Value,
    pub pending: Value,
}

/// Something a lifecycle workflow created for a tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantResource {
    pub tenant_id: String,
    pub kind: String,
    pub detail: Value,
    /// The idempotency key of the task that created it.
    pub created_by: String,
    pub created_at: Timestamp,
}

/// What a worker asks [`WorkflowStore::execution_claim`] for: up to `limit` due
/// executions, leased to `owner` until `now + lease_ms`.
///
/// Fairness between tenants: due executions are considered oldest first, but taken
/// round-robin across tenants (each tenant's oldest, then each tenant's second, ...),
/// at most `per_tenant` of one tenant per claim, and none of the tenants in
/// `skip_tenants` (those the worker already has enough of in flight). So a backlog of
/// one tenant cannot hold up the others: once it fills its share, the next claims
/// reach past it. Executions without a tenant are each their own group.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    pub owner: &'a str,
    pub lease_ms: i64,
    pub limit: u32,
    pub now: Timestamp,
    /// At most this many executions of one tenant per claim; 0: no cap.
    pub per_tenant: u32,
    pub skip_tenants: &'a [String],
    /// Only executions of state machines whose name starts with this (letters, digits,
    /// `.`, `-`, `_`): the engine's claim for the slots reserved to its lifecycle
    /// executions (`tenancy.`, indexed by `executions_lifecycle_due`).
    pub state_machine_prefix: Option<&'a str>,
}

impl<'a> Claim<'a> {
    /// A claim without a per-tenant cap.
    pub fn new(owner: &'a str, lease_ms: i64, limit: u32, now: Timestamp) -> Self {
        Claim { owner, lease_ms, limit, now, per_tenant: 0, skip_tenants: &[], state_machine_prefix: None }
    }
}

/// The workflow engine's storage. Object safe: held as `Arc<dyn WorkflowStore>`.
#[async_trait]
pub trait WorkflowStore: Send + Sync + 'static {
    /// Stores a definition: a new version when it differs from the latest, else the
    /// latest unchanged. Returns the record and whether a version was added.
    async fn state_machine_put(
        &self,
        name: &str,
        definition: &Value,
        fx: &Effects,
    ) -> Result<(StateMachineRecord, bool)>;
    /// The latest version, or the given one.
    async fn state_machine_get(&self, name: &str, version: Option<i64>) -> Result<StateMachineRecord>;
    /// The latest version of each state machine.
    async fn state_machine_list(&self, page: &PageRequest) -> Result<Page<StateMachineRecord>>;

    /// Inserts an execution with its first step, or returns the existing execution of
    /// that state machine with that name (`false`: nothing was written).
    async fn execution_start(&self, new: &NewExecution, fx: &Effects) -> Result<(ExecutionRecord, bool)>;
    async fn execution_get(&self, id: &str) -> Result<ExecutionRecord>;
    /// The status of each execution of `ids` that exists, as `(id, status)`, in one
    /// read (a rollout polls hundreds of upgrades a pass).
    async fn execution_statuses(&self, ids: &[String]) -> Result<Vec<(String, String)>>;
    async fn execution_by_token(&self, token: &str) -> Result<ExecutionRecord>;
    async fn execution_list(&self, filter: &ExecutionFilter, page: &PageRequest) -> Result<Page<ExecutionRecord>>;
    async fn execution_history(&self, id: &str, page: &PageRequest) -> Result<Page<HistoryRecord>>;
    async fn execution_redrive_point(&self, id: &str) -> Result<Option<RedrivePoint>>;
    /// How many RUNNING executions there are of `state_machine` (all when `None`) and of
    /// `tenant_id` (all when `None`), not counting those of state machines whose name
    /// starts with `except_prefix`, counted up to `up_to` (the answer is at most it).
    async fn execution_running_count(
        &self,
        state_machine: Option<&str>,
        tenant_id: Option<&str>,
        except_prefix: Option<&str>,
        up_to: u64,
    ) -> Result<u64>;

    /// Leases executions whose timer is due (and whose lease, if any, expired), as
    /// [`Claim`] describes.
    async fn execution_claim(&self, claim: &Claim<'_>) -> Result<Vec<ExecutionRecord>>;
    /// Extends `owner`'s lease on an execution (a long task in progress); `false` when
    /// the lease was lost.
    async fn execution_lease_extend(&self, id: &str, owner: &str, until: Timestamp) -> Result<bool>;
    /// Commits steps in one transaction; each applies only if its execution's `seq` is
    /// still the expected one (else that step's result is a `Conflict` with code
    /// `execution-moved` and nothing of it is written). A database error fails all.
    async fn execution_commit(&self, commits: &[StepCommit]) -> Result<Vec<Result<()>>>;

    /// Records a resource unless one of that kind exists; returns the stored one and
    /// whether it was created.
    async fn tenant_resource_put(&self, r: &TenantResource) -> Result<(TenantResource, bool)>;
    /// Forgets a resource; whether it existed.
    async fn tenant_resource_delete(&self, tenant_id: &str, kind: &str) -> Result<bool>;
    async fn tenant_resource_list(&self, tenant_id: &str) -> Result<Vec<TenantResource>>;
    /// Records a resource, replacing the one of that kind if any (a resource moved to
    /// another isolation model).
    async fn tenant_resource_replace(&self, r: &TenantResource) -> Result<()>;

    /// Stores a sealed secret of a tenant's resource unless one of that name exists;
    /// returns the stored one (so concurrent first attempts agree on one secret).
    async fn tenant_secret_put(&self, tenant_id: &str, name: &str, sealed: &str) -> Result<String>;
    async fn tenant_secret_get(&self, tenant_id: &str, name: &str) -> Result<Option<String>>;
    /// Forgets a secret; whether it existed.
    async fn tenant_secret_delete(&self, tenant_id: &str, name: &str) -> Result<bool>;
}
