//! The durable workflow engine: runs ASL executions stored by a [`WorkflowStore`].
//!
//! An execution is one row holding the interpreter's [`Cursor`] and the [`Pending`]
//! action it waits for, with a timer (`wake_at`) and a lease. A worker claims due
//! executions in batches, carries out the pending action (a task handler, a timer that
//! fired, the branches of a Parallel/Map, a callback timeout), feeds the outcome to the
//! step API and commits the new cursor, its history and the effects in ONE transaction
//! (commits of concurrent executions are grouped into one transaction, see
//! [`Engine::run`]). A commit applies only if the execution's `seq` did not move, so a
//! step is never recorded twice; a crashed worker's executions are taken over when
//! their lease expires and continue from the last committed cursor. See
//! `docs/workflows.md`.

mod builtin;
mod guard;
pub mod registry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tenancy_asl::runner::{self, BoxFuture, BranchLimits, TaskRunner};
use tenancy_asl::{Action, BranchRequest, Cursor, ExecutionContext, Failure, StateMachine, Step, TaskRequest};
use tenancy_domain::event::{names, Event};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};
use tenancy_store::{
    status, Claim, Effects, ExecutionRecord, HistoryRecord, NewExecution, StateMachineRecord, StepCommit, StepState,
    Store, WorkflowStore,
};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use builtin::{register_builtin, PUT_EVENTS_RESOURCES, WORKFLOW_SOURCE};
pub use guard::{OpenGuard, TaskGuard};
pub use registry::{app_failure, failure, Registry, TaskCall, TaskHandler, TaskOutput, TaskResult};

/// The suffix of a callback task's resource.
pub const WAIT_FOR_TASK_TOKEN: &str = ".waitForTaskToken";

/// Step Functions' limit on the events of an execution's history: 25,000. A step that
/// would take the history past it fails the execution instead (`States.Runtime`, the
/// cause names the limit), with an `ExecutionFailed` event as the last one. The
/// branches of a Parallel/Map state count against it while they run
/// ([`BranchLimits::history_events`]).
pub const MAX_HISTORY_EVENTS: u64 = runner::MAX_HISTORY_EVENTS;

/// Step Functions' limit on a payload: the execution's input, a task's result, a
/// callback's output, a state's input and output (256 KiB of JSON text). Past it:
/// `States.DataLimitExceeded` (a 400 for an input or a callback output given to the API).
pub const MAX_PAYLOAD_BYTES: usize = tenancy_asl::step::MAX_PAYLOAD_BYTES;

/// Steps one claim of an execution advances before the worker commits it with its
/// lease released and due at once, so that an execution that never waits (a loop of
/// synchronous states runs [`tenancy_asl::step::MAX_TRANSITIONS_PER_STEP`] transitions
/// a step) takes its turn with the others instead of holding a worker slot. Not a Step
/// Functions figure.
pub const MAX_STEPS_PER_CLAIM: u32 = 16;

/// Worker slots of [`EngineOptions::max_in_flight`] that only lifecycle executions
/// (the built-in `tenancy.*` state machines) may take: user executions waiting on slow
/// tasks cannot delay a tenant's provisioning. Lifecycle executions take the other
/// slots too when these are busy.
pub const LIFECYCLE_SLOTS: usize = 32;

/// Default cap on the RUNNING executions of one user state machine: a start beyond it is
/// refused with 429 `too-many-requests` (see `App::set_execution_caps`). Step
/// Functions caps open executions per account (1,000,000) and throttles starts; this is
/// per state machine.
pub const MAX_RUNNING_PER_STATE_MACHINE: u64 = 10_000;

/// Default cap on the RUNNING user executions of one tenant (`tenant_id`): 429
/// `too-many-requests` beyond it. Lifecycle executions do not count.
pub const MAX_RUNNING_PER_TENANT: u64 = 1_000;

/// What an execution waits for (the `pending` column).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pending {
    /// Run the task's handler. `token_hash`: a callback task's token, hashed
    /// ([`token_hash`]); the handler hands the token out, from its parameters.
    Task {
        request: TaskRequest,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_hash: Option<String>,
    },
    /// A callback task waits for `POST /v1/task-tokens/{token}/...` with the token
    /// whose hash is `token_hash` (also the row's `task_token`, which finds it).
    Callback {
        request: TaskRequest,
        timeout_at: Option<i64>,
        heartbeat_at: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_hash: Option<String>,
    },
    /// Run the branches of a Parallel / Map state.
    Branches { request: BranchRequest },
    /// A Wait state or a retry back-off.
    Timer { until_ms: i64 },
}

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Names this worker in leases; unique per process.
    pub owner: String,
    pub lease: Duration,
    pub poll_interval: Duration,
    /// Executions claimed at once.
    pub batch: u32,
    /// Executions advanced concurrently by this worker. Provisioning waits on the
    /// writer, a file's fsync and a hook's HTTP round trip per tenant, so it needs
    /// about a hundred in flight to keep two cores busy: on the `provision` bench, 128
    /// gave 1,183-1,248 tenants/s against 1,037-1,100 with 64, with tenant creates in
    /// the same burst at p50 22 ms instead of 15 ms. Kept moderate so that on SQLite's
    /// single writer a burst of background steps leaves room for API writes: with 512,
    /// tenant creation during a provisioning burst fell to 706/s (p50 84 ms).
    pub max_in_flight: usize,
    /// Executions of one tenant advanced concurrently before this worker claims
    /// others' first (see [`tenancy_store::Claim`]): a tenant's backlog takes at most
    /// about this share of `max_in_flight` while other tenants have work due.
    pub per_tenant_in_flight: usize,
    /// Slots of `max_in_flight` reserved to lifecycle executions ([`LIFECYCLE_SLOTS`],
    /// at most half of `max_in_flight`).
    pub lifecycle_slots: usize,
}

impl EngineOptions {
    pub fn new(owner: impl Into<String>) -> Self {
        EngineOptions {
            owner: owner.into(),
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_millis(200),
            batch: 32,
            max_in_flight: 128,
            per_tenant_in_flight: 16,
            lifecycle_slots: LIFECYCLE_SLOTS,
        }
    }
}

/// The engine: the registry of task handlers, the guard that admits tasks, parsed
/// definitions, the wake-up signal.
pub struct Engine {
    store: Arc<dyn Store>,
    wf: Arc<dyn WorkflowStore>,
    handlers: Registry,
    guard: Arc<dyn TaskGuard>,
    machines: Mutex<HashMap<(String, i64), Arc<StateMachine>>>,
    wake: Notify,
    finished: tokio::sync::broadcast::Sender<(String, String)>,
}

fn now_ms() -> i64 {
    Timestamp::now().millis()
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("engine records serialize")
}

// Both deserialize from the borrowed value: no copy of the JSON per step.
pub fn parse_pending(rec: &ExecutionRecord) -> Option<Pending> {
    rec.pending.as_ref().and_then(|p| Pending::deserialize(p).ok())
}

pub fn parse_cursor(rec: &ExecutionRecord) -> Result<Cursor> {
    let c = rec.cursor.as_ref().ok_or_else(|| Error::internal(format!("execution {:?} has no cursor", rec.id)))?;
    Cursor::deserialize(c).map_err(|e| Error::internal(format!("corrupt cursor of execution {:?}: {e}", rec.id)))
}

/// The `$$` facts of an execution.
pub fn context(rec: &ExecutionRecord) -> ExecutionContext {
    ExecutionContext {
        execution_id: rec.id.clone(),
        execution_name: rec.name.clone(),
        state_machine_id: format!("{}:{}", rec.state_machine, rec.version),
        state_machine_name: rec.state_machine.clone(),
        role_arn: String::new(),
        start_time_ms: rec.started_at.millis(),
        input: rec.input.clone(),
        redrive_count: Some(rec.redrive_count as u32),
        task_token_seed: Some(token_seed()),
    }
}

/// Fresh random bytes from the operating system: the seed of the task tokens a step
/// hands out (see [`tenancy_asl::step::task_token`]).
fn token_seed() -> [u8; 32] {
    use rand::RngCore;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    seed
}

/// How a task token is stored and looked up: the hex SHA-256 of the token. The token
/// itself is never stored in the `task_token` column.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The `ExecutionFailed` event of a failed execution.
pub fn failed_event(rec: &ExecutionRecord, error: Option<&str>, cause: Option<&str>) -> Event {
    Event::new(
        names::EXECUTION_FAILED,
        rec.tenant_id.as_deref(),
        vec![format!("execution/{}", rec.id)],
        json!({"execution_id": rec.id, "name": rec.name, "state_machine": rec.state_machine,
               "error": error, "cause": cause}),
    )
}

/// The effects of starting `new`: `ExecutionFailed` when its first step failed it.
pub fn start_effects(new: &NewExecution) -> Effects {
    if new.first.status != status::FAILED {
        return Effects::none();
    }
    Effects::none().with_event(Event::new(
        names::EXECUTION_FAILED,
        new.tenant_id.as_deref(),
        vec![format!("execution/{}", new.id)],
        json!({"execution_id": new.id, "name": new.name, "state_machine": new.state_machine,
               "error": new.first.error, "cause": new.first.cause}),
    ))
}

/// A step turned into what the store records, and whether the engine can go on at once.
pub struct Prepared {
    pub state: StepState,
    pub runnable: bool,
    pub failed: Option<(Option<String>, Option<String>)>,
}

type CommitRequest = (StepCommit, oneshot::Sender<Result<()>>);

/// The lease a worker holds on the executions it claimed.
struct Lease {
    owner: String,
    length: Duration,
}

impl Engine {
    /// The engine over `store`, running tasks with `handlers` once `guard` admits them.
    /// The composition root builds the registry (every feature area registers its
    /// handlers) before the engine exists; tests may still replace entries later.
    pub fn new(store: Arc<dyn Store>, handlers: Registry, guard: Arc<dyn TaskGuard>) -> Arc<Engine> {
        Arc::new(Engine {
            wf: store.workflows(),
            store,
            handlers,
            guard,
            machines: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            finished: tokio::sync::broadcast::channel(65_536).0,
        })
    }

    pub fn handlers(&self) -> &Registry {
        &self.handlers
    }

    pub fn workflows(&self) -> &Arc<dyn WorkflowStore> {
        &self.wf
    }

    /// `(execution id, status)` of every execution this process's worker finished
    /// (for benchmarks and metrics; a slow receiver misses some).
    pub fn subscribe_finished(&self) -> tokio::sync::broadcast::Receiver<(String, String)> {
        self.finished.subscribe()
    }

    /// Wakes this process's worker (work was just made due).
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// The parsed definition of a state machine version (cached).
    pub async fn machine(&self, name: &str, version: i64) -> Result<Arc<StateMachine>> {
        if let Some(m) = self.machines.lock().expect("machine cache").get(&(name.to_owned(), version)) {
            return Ok(m.clone());
        }
        let rec = self.wf.state_machine_get(name, Some(version)).await?;
        self.cache(&rec)
    }

    pub fn cache(&self, rec: &StateMachineRecord) -> Result<Arc<StateMachine>> {
        let m = Arc::new(StateMachine::parse(&rec.definition).map_err(|e| {
            Error::internal(format!("stored definition of {:?} v{} is invalid: {e}", rec.name, rec.version))
        })?);
        self.machines.lock().expect("machine cache").insert((rec.name.clone(), rec.version), m.clone());
        Ok(m)
    }

    /// A new execution of `sm` with its first step taken (ready to insert).
    pub async fn prepare_start(
        &self,
        sm: &StateMachineRecord,
        name: Option<String>,
        input: Value,
        tenant_id: Option<String>,
    ) -> Result<NewExecution> {
        let machine = match self.machine(&sm.name, sm.version).await {
            Ok(m) => m,
            Err(Error::NotFound { .. }) => self.cache(sm)?,
            Err(e) => return Err(e),
        };
        let id = tenancy_domain::ids::new_id("exe");
        let now = now_ms();
        let mut rec = ExecutionRecord {
            id: id.clone(),
            name: name.unwrap_or_else(|| id.clone()),
            state_machine: sm.name.clone(),
            version: sm.version,
            tenant_id,
            status: status::RUNNING.into(),
            input: input.clone(),
            output: None,
            error: None,
            cause: None,
            cursor: None,
            pending: None,
            task_token: None,
            wake_at: None,
            redrive_count: 0,
            seq: 0,
            started_at: Timestamp(now),
            stopped_at: None,
            updated_at: Timestamp(now),
            // The current span's: an API request's when one starts the execution.
            trace_context: tenancy_trace::traceparent(),
        };
        let ctx = context(&rec);
        let m = machine.clone();
        let step = interpret(move || m.start(&ctx, input, now)).await.map_err(Error::internal)?;
        let mut prepared = self.prepare(step, now);
        prepared.state.wake_at = cap_wake(prepared.state.wake_at, execution_deadline(&machine, &rec));
        rec.status = prepared.state.status.clone();
        Ok(NewExecution {
            id: rec.id.clone(),
            name: rec.name.clone(),
            state_machine: rec.state_machine.clone(),
            version: rec.version,
            tenant_id: rec.tenant_id.clone(),
            input: rec.input.clone(),
            started_at: rec.started_at,
            first: prepared.state,
            trace_context: rec.trace_context,
        })
    }

    /// Turns a step into the execution's new stored state.
    pub fn prepare(&self, step: Step, now: i64) -> Prepared {
        let history = step
            .history
            .iter()
            .map(|h| HistoryRecord {
                event_id: h.id as i64,
                kind: h.kind.clone(),
                state: h.state.clone(),
                details: h.details.clone(),
                time: Timestamp(now),
            })
            .collect();
        let mut state = StepState {
            status: status::RUNNING.into(),
            cursor: Some(to_value(&step.cursor)),
            history,
            ..StepState::default()
        };
        let mut runnable = false;
        let mut failed = None;
        match step.action {
            Action::RunTask(request) => {
                let base = request.resource.strip_suffix(WAIT_FOR_TASK_TOKEN);
                let token = base.and(request.task_token.as_deref()).map(token_hash);
                if base.is_some_and(|b| self.handlers.get(b).is_none()) {
                    // Nobody runs it: the parameters (the token among them) are not kept.
                    let request = TaskRequest { parameters: Value::Null, ..request };
                    let (pending, wake) = callback(request, now, token.clone());
                    state.cursor = without_task_input(state.cursor.take());
                    state.task_token = token;
                    state.pending = Some(to_value(&pending));
                    state.wake_at = wake.map(Timestamp);
                } else {
                    state.task_token = token.clone();
                    state.pending = Some(to_value(&Pending::Task { request, token_hash: token }));
                    state.wake_at = Some(Timestamp(now));
                    runnable = true;
                }
            }
            Action::RunBranches(request) => {
                state.pending = Some(to_value(&Pending::Branches { request }));
                state.wake_at = Some(Timestamp(now));
                runnable = true;
            }
            Action::Wait { until_ms } | Action::RetryAfter { until_ms, .. } => {
                state.pending = Some(to_value(&Pending::Timer { until_ms }));
                state.wake_at = Some(Timestamp(until_ms));
                runnable = until_ms <= now;
            }
            Action::Succeeded { output } => {
                state.status = status::SUCCEEDED.into();
                state.output = Some(output);
                state.stopped_at = Some(Timestamp(now));
            }
            Action::Failed { error, cause } => {
                state.status = status::FAILED.into();
                state.error = error.clone();
                state.cause = cause.clone();
                state.stopped_at = Some(Timestamp(now));
                failed = Some((error, cause));
            }
        }
        Prepared { state, runnable, failed }
    }

    /// The commit of a step of `rec` (taken from `cursor`/`pending`), with `fx`.
    pub fn commit_of(&self, rec: &ExecutionRecord, prepared: Prepared, mut fx: Effects) -> (StepCommit, bool) {
        let redrive_point = match &prepared.failed {
            Some((error, cause)) => {
                fx = fx.with_event(failed_event(rec, error.as_deref(), cause.as_deref()));
                rec.cursor.clone().zip(rec.pending.clone())
            }
            None => None,
        };
        let runnable = prepared.runnable;
        let commit = StepCommit {
            execution_id: rec.id.clone(),
            expected_seq: rec.seq,
            state: prepared.state,
            keep_lease: runnable,
            redrive_point,
            redrive_count: None,
            effects: fx,
        };
        (commit, runnable)
    }

    /// Calls a task's handler (the base resource for a callback task), in a `task`
    /// span (a child of the execution's span: hooks and deliveries it makes carry it).
    async fn run_handler(&self, request: &TaskRequest, rec: &ExecutionRecord) -> TaskResult {
        let span = tracing::info_span!(
            "task",
            execution_id = %rec.id,
            state = %request.state,
            resource = %request.resource,
        );
        self.call_handler(request, rec).instrument(span).await
    }

    async fn call_handler(&self, request: &TaskRequest, rec: &ExecutionRecord) -> TaskResult {
        let resource = request.resource.strip_suffix(WAIT_FOR_TASK_TOKEN).unwrap_or(&request.resource);
        self.guard.admit(&*self.store, rec, resource, &request.parameters).await?;
        let handler = self
            .handlers
            .get(resource)
            .ok_or_else(|| failure("States.Runtime", format!("no task handler for resource {resource:?}")))?;
        let place = if request.scope.is_empty() {
            request.state.clone()
        } else {
            format!("{}/{}", request.scope, request.state)
        };
        // The first attempt's idempotency key: the same for every retry of the task.
        let task_key = tenancy_asl::idempotency_key(&rec.id, &place, 0);
        let call = TaskCall {
            resource,
            state: &request.state,
            parameters: &request.parameters,
            idempotency_key: &request.idempotency_key,
            task_key: &task_key,
            execution_id: &rec.id,
            tenant_id: rec.tenant_id.as_deref(),
            store: &self.store,
        };
        let start = std::time::Instant::now();
        let out = match request.timeout_seconds {
            Some(s) => match tokio::time::timeout(Duration::from_secs(s), handler.call(call)).await {
                Ok(r) => r,
                Err(_) => Err(failure("States.Timeout", format!("task timed out after {s} s"))),
            },
            None => handler.call(call).await,
        };
        metrics::histogram!(
            "tenancy_execution_step_duration_seconds",
            "state_machine" => rec.state_machine.clone(),
            "resource" => resource.to_owned(),
            "outcome" => if out.is_ok() { "succeeded" } else { "failed" },
        )
        .record(start.elapsed().as_secs_f64());
        let mut out = out?;
        self.guard.stamp(rec, &mut out.effects);
        Ok(out)
    }

    /// Carries out the pending action of a claimed execution, and the following ones
    /// that are due at once, committing each step before the next.
    /// Awaits `fut` while keeping `lease` alive (extended every third of its length).
    async fn leased<F: std::future::Future>(&self, rec: &ExecutionRecord, lease: &Lease, fut: F) -> F::Output {
        tokio::pin!(fut);
        let every = (lease.length / 3).max(Duration::from_millis(100));
        loop {
            tokio::select! {
                out = &mut fut => return out,
                _ = tokio::time::sleep(every) => {
                    let until = Timestamp::now().plus_millis(lease.length.as_millis() as i64);
                    match self.wf.execution_lease_extend(&rec.id, &lease.owner, until).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(execution_id = %rec.id, "lease lost during a task"),
                        Err(e) => tracing::warn!(execution_id = %rec.id, error = %e, "failed to extend a lease"),
                    }
                }
            }
        }
    }

    /// [`Engine::advance_steps`] in an `execution` span that continues the trace of the
    /// request that started the execution (its stored `trace_context`), on whichever
    /// replica claimed it and also after a restart.
    async fn advance(&self, rec: ExecutionRecord, commits: &mpsc::Sender<CommitRequest>, lease: &Lease) {
        let span = tracing::info_span!(
            parent: None,
            "execution",
            execution_id = %rec.id,
            state_machine = %rec.state_machine,
            tenant_id = rec.tenant_id.as_deref().unwrap_or(""),
        );
        if let Some(tp) = &rec.trace_context {
            tenancy_trace::continue_from(&span, tp);
        }
        self.advance_steps(rec, commits, lease).instrument(span).await
    }

    async fn advance_steps(&self, mut rec: ExecutionRecord, commits: &mpsc::Sender<CommitRequest>, lease: &Lease) {
        let machine = match self.machine(&rec.state_machine, rec.version).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(execution_id = %rec.id, error = %e, "cannot load the state machine");
                return;
            }
        };
        let ctx = Arc::new(context(&rec));
        let deadline = execution_deadline(&machine, &rec);
        // A step not committed yet because an inline task follows it, and how many.
        let mut deferred: Option<StepCommit> = None;
        let mut fused = 0;
        // While steps are deferred: the cursor and pending action of the last commit.
        let mut committed: Option<(Option<Value>, Option<Value>)> = None;
        // Commits refused because a step read stale data (see below).
        let mut stale = 0;
        // Steps of this claim (see MAX_STEPS_PER_CLAIM).
        let mut steps = 0;
        // Whether every step not committed yet, this one included, ran only local
        // tasks and produced no effects (see `quiet` below).
        let mut quiet_chain = true;
        loop {
            let (Some(pending), Ok(cursor)) = (parse_pending(&rec), parse_cursor(&rec)) else {
                tracing::warn!(execution_id = %rec.id, "execution without a pending action or cursor");
                return;
            };
            if deadline.is_some_and(|d| now_ms() >= d) {
                self.time_out(&rec, &cursor, &machine, deferred.take(), commits).await;
                return;
            }
            let mut fx = Effects::none();
            let mut branch_history = Vec::new();
            let now;
            // A step is quiet when it ran no remote task: a timer, a callback's
            // timeout, or a task that is local for this call.
            let mut quiet = !matches!(pending, Pending::Branches { .. });
            let outcome = match &pending {
                Pending::Task { request, token_hash } => {
                    quiet = self.is_local(request).await;
                    let run = self.leased(&rec, lease, self.run_handler(request, &rec));
                    let Some(out) = until_deadline(deadline, run).await else {
                        self.time_out(&rec, &cursor, &machine, deferred.take(), commits).await;
                        return;
                    };
                    now = now_ms();
                    match out {
                        Ok(out) if request.resource.ends_with(WAIT_FOR_TASK_TOKEN) => {
                            // The message went out: now wait for the callback. The
                            // stored request has done its work: its parameters (the
                            // token among them) are not kept while waiting.
                            let mut request = request.clone();
                            request.parameters = Value::Null;
                            let (pending, wake) = callback(request, now, token_hash.clone());
                            let state = StepState {
                                status: status::RUNNING.into(),
                                cursor: without_task_input(rec.cursor.clone()),
                                task_token: token_hash.clone(),
                                pending: Some(to_value(&pending)),
                                wake_at: cap_wake(wake.map(Timestamp), deadline),
                                ..StepState::default()
                            };
                            let c = StepCommit {
                                execution_id: rec.id.clone(),
                                expected_seq: rec.seq,
                                state,
                                effects: out.effects,
                                ..StepCommit::default()
                            };
                            let _ = send(commits, c).await;
                            return;
                        }
                        Ok(out) => {
                            fx = out.effects;
                            if tenancy_asl::step::payload_size(&out.result) > MAX_PAYLOAD_BYTES {
                                Outcome::Failed(
                                    "States.DataLimitExceeded".into(),
                                    Some(format!(
                                        "the result of task {:?} exceeds {MAX_PAYLOAD_BYTES} bytes (MAX_PAYLOAD_BYTES)",
                                        request.state
                                    )),
                                )
                            } else {
                                Outcome::Succeeded(out.result)
                            }
                        }
                        Err(f) => Outcome::Failed(f.error.unwrap_or_else(|| "States.TaskFailed".into()), f.cause),
                    }
                }
                Pending::Callback { timeout_at, heartbeat_at, .. } => {
                    now = now_ms();
                    let error = if timeout_at.is_some_and(|t| now >= t) {
                        "States.Timeout"
                    } else if heartbeat_at.is_some_and(|t| now >= t) {
                        "States.HeartbeatTimeout"
                    } else {
                        // Claimed early (a heartbeat moved the deadline): the lease lapses.
                        return;
                    };
                    Outcome::Failed(error.into(), None)
                }
                Pending::Timer { .. } => {
                    now = now_ms();
                    Outcome::Resume
                }
                Pending::Branches { request } => {
                    let tasks = BranchTasks { engine: self, rec: &rec, effects: Mutex::new(Effects::none()) };
                    let started = now_ms();
                    let run = runner::run_branches(&machine, &ctx, &cursor, request, started, &tasks);
                    let Some(out) = until_deadline(deadline, self.leased(&rec, lease, run)).await else {
                        self.time_out(&rec, &cursor, &machine, deferred.take(), commits).await;
                        return;
                    };
                    now = now_ms();
                    match out {
                        Ok(mut outcome) => {
                            fx = tasks.effects.into_inner().expect("effects lock");
                            // `branches_finished` reads the result and the next event id.
                            branch_history = std::mem::take(&mut outcome.history);
                            Outcome::Branches(outcome)
                        }
                        Err(e) => Outcome::Broken(e.to_string()),
                    }
                }
            };
            quiet_chain = quiet_chain && quiet && fx.is_empty();
            let mut step = self.interpret_step(&machine, &ctx, &cursor, outcome, now).await;
            if !branch_history.is_empty() {
                branch_history.append(&mut step.history);
                step.history = branch_history;
            }
            let step = within_history_limit(step, &cursor);
            let mut prepared = self.prepare(step, now);
            prepared.state.wake_at = cap_wake(prepared.state.wake_at, deadline);
            let (mut commit, runnable) = self.commit_of(&rec, prepared, fx);
            if let Some(earlier) = deferred.take() {
                commit = fuse(earlier, commit);
            }
            steps += 1;
            // Enough for this claim: commit, release the lease, and take a turn again.
            let yielding = runnable && steps >= MAX_STEPS_PER_CLAIM;
            let (cursor, pending) = (commit.state.cursor.clone(), commit.state.pending.clone());
            // The next task is local and idempotent: run it before committing, and
            // commit both steps at once. Or every step not committed yet was quiet (ran
            // only local tasks, wrote nothing): running them again after a crash is
            // harmless, so they commit with the next task's step, remote or not (an
            // upgrade's pre-check with no hook subscribed costs no commit of its own).
            // Either way at most one remote task runs between two commits.
            let fuse_next = runnable
                && !yielding
                && fused < MAX_FUSED_STEPS
                && ((quiet_chain && next_is_task(&pending)) || self.next_is_inline(&pending).await);
            if fuse_next {
                fused += 1;
                deferred = Some(commit);
                let before = (std::mem::replace(&mut rec.cursor, cursor), std::mem::replace(&mut rec.pending, pending));
                committed.get_or_insert(before);
                continue;
            }
            fused = 0;
            quiet_chain = true;
            if yielding {
                commit.keep_lease = false;
            }
            if commit.state.stopped_at.is_some() {
                // The end commits with what it means beyond the execution (the guard's
                // settlement of a tenant its lifecycle execution left unsettled).
                if let Err(e) = self.guard.settle(&*self.store, &rec, &commit.state, &mut commit.effects).await {
                    tracing::warn!(execution_id = %rec.id, error = %e, "cannot settle the end of the execution");
                    return;
                }
            }
            let final_status = commit.state.stopped_at.map(|_| commit.state.status.clone());
            let transitions = state_transitions(&commit.state.history);
            if let Err(e) = send(commits, commit).await {
                if matches!(e, Error::PreconditionFailed { .. }) && stale < MAX_STALE_RETRIES {
                    // A step's effect was computed from a record that changed meanwhile
                    // (a tenant updated through the API during its lifecycle step):
                    // nothing was written, so run the steps again from the last commit.
                    tracing::debug!(execution_id = %rec.id, error = %e, "step read stale data; running it again");
                    stale += 1;
                    if let Some((cursor, pending)) = committed.take() {
                        (rec.cursor, rec.pending) = (cursor, pending);
                    }
                    continue;
                }
                tracing::debug!(execution_id = %rec.id, error = %e, "step not committed");
                return;
            }
            committed = None;
            stale = 0;
            if transitions > 0 {
                metrics::counter!("tenancy_execution_state_transitions_total", "state_machine" => rec.state_machine.clone())
                    .increment(transitions);
            }
            if let Some(status) = final_status {
                count_finished(&rec.state_machine, &status);
                let _ = self.finished.send((rec.id.clone(), status));
            }
            if !runnable || yielding {
                if yielding {
                    self.notify();
                }
                return;
            }
            rec.seq += 1;
            rec.cursor = cursor;
            rec.pending = pending;
        }
    }

    /// Feeds an outcome to the interpreter on the blocking pool (its work is CPU bound:
    /// up to [`tenancy_asl::step::MAX_TRANSITIONS_PER_STEP`] transitions with their
    /// JSONPath / JSONata evaluations), so that it never holds an async worker thread
    /// that serves HTTP. A cursor that does not fit the machine, or a panic of the
    /// interpreter, fails the execution (`States.Runtime`).
    async fn interpret_step(
        &self,
        machine: &Arc<StateMachine>,
        ctx: &Arc<ExecutionContext>,
        cursor: &Cursor,
        outcome: Outcome,
        now: i64,
    ) -> Step {
        let (m, c, at) = (machine.clone(), ctx.clone(), cursor.clone());
        let run = interpret(move || {
            match outcome {
                Outcome::Succeeded(v) => m.task_succeeded(&c, &at, v, now),
                Outcome::Failed(error, cause) => m.task_failed(&c, &at, &error, cause.as_deref(), now),
                Outcome::Resume => m.resume(&c, &at, now),
                Outcome::Branches(b) => m.branches_finished(&c, &at, b, now),
                Outcome::Broken(cause) => return Err(cause),
            }
            .map_err(|e| e.to_string())
        });
        match run.await.and_then(|r| r) {
            Ok(step) => step,
            Err(cause) => failed_step(cursor, "States.Runtime", &cause),
        }
    }

    /// Ends an execution past its `TimeoutSeconds`: `TIMED_OUT`, error `States.Timeout`,
    /// an `ExecutionTimedOut` history event (with `deferred`, steps run but not committed).
    async fn time_out(
        &self,
        rec: &ExecutionRecord,
        cursor: &Cursor,
        machine: &StateMachine,
        deferred: Option<StepCommit>,
        commits: &mpsc::Sender<CommitRequest>,
    ) {
        let seconds = timeout_seconds(machine).unwrap_or_default();
        let cause = format!("the execution ran longer than its TimeoutSeconds ({seconds} s)");
        let mut state = timed_out_state(cursor, rec.pending.clone(), &cause);
        let mut fx = Effects::none();
        let mut expected_seq = rec.seq;
        if let Some(earlier) = deferred {
            // The steps run before the deadline commit with the timeout.
            expected_seq = earlier.expected_seq;
            let mut history = earlier.state.history;
            history.append(&mut state.history);
            state.history = history;
            fx = earlier.effects;
        }
        fx = fx.with_event(Event::new(
            names::EXECUTION_FAILED,
            rec.tenant_id.as_deref(),
            vec![format!("execution/{}", rec.id)],
            json!({"execution_id": rec.id, "name": rec.name, "state_machine": rec.state_machine,
                   "status": status::TIMED_OUT, "error": "States.Timeout", "cause": cause}),
        ));
        if let Err(e) = self.guard.settle(&*self.store, rec, &state, &mut fx).await {
            tracing::warn!(execution_id = %rec.id, error = %e, "cannot settle the end of the execution");
            return;
        }
        let commit = StepCommit {
            execution_id: rec.id.clone(),
            expected_seq,
            state,
            redrive_point: rec.cursor.clone().zip(rec.pending.clone()),
            effects: fx,
            ..StepCommit::default()
        };
        if send(commits, commit).await.is_ok() {
            count_finished(&rec.state_machine, status::TIMED_OUT);
            let _ = self.finished.send((rec.id.clone(), status::TIMED_OUT.into()));
        }
    }

    /// Whether `pending` is a task whose handler runs inline ([`TaskHandler::inline`],
    /// or [`TaskHandler::local_call`] for this call).
    async fn next_is_inline(&self, pending: &Option<Value>) -> bool {
        let Some(Ok(Pending::Task { request, .. })) = pending.as_ref().map(Pending::deserialize) else {
            return false;
        };
        self.is_local(&request).await
    }

    /// Whether the task `request` runs locally: its handler is inline, or says this
    /// call is local (a callback task never is: it waits for somebody).
    async fn is_local(&self, request: &TaskRequest) -> bool {
        if request.resource.ends_with(WAIT_FOR_TASK_TOKEN) {
            return false;
        }
        match self.handlers.get(&request.resource) {
            Some(h) => h.inline() || h.local_call(&self.store, &request.parameters).await,
            None => false,
        }
    }

    /// Runs the worker until `shutdown`: claims due executions in batches, advances up
    /// to `max_in_flight` of them concurrently, and groups their commits into shared
    /// transactions. In-flight work is finished before it returns.
    pub async fn run(self: Arc<Self>, opts: EngineOptions, shutdown: CancellationToken) {
        tracing::info!(owner = %opts.owner, "workflow worker started");
        let (tx, rx) = mpsc::channel::<CommitRequest>(4096);
        let committer = tokio::spawn(commit_loop(self.wf.clone(), rx));
        // User executions take `general` slots only; lifecycle executions take a
        // `reserved` one first, else a general one.
        let reserved_slots = opts.lifecycle_slots.min(opts.max_in_flight / 2);
        let general = Arc::new(Semaphore::new(opts.max_in_flight - reserved_slots));
        let reserved = Arc::new(Semaphore::new(reserved_slots));
        let mut tasks = JoinSet::new();
        let lease_ms = opts.lease.as_millis() as i64;
        let lease = Arc::new(Lease { owner: opts.owner.clone(), length: opts.lease });
        let in_flight = TenantsInFlight::default();
        while !shutdown.is_cancelled() {
            while tasks.try_join_next().is_some() {}
            let (free, free_reserved) = (general.available_permits(), reserved.available_permits());
            if free == 0 && free_reserved == 0 {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tasks.join_next() => {}
                }
                continue;
            }
            // No general slot: claim only lifecycle executions, for the reserved ones.
            let lifecycle_only = free == 0;
            let skip = if lifecycle_only { Vec::new() } else { in_flight.saturated(opts.per_tenant_in_flight) };
            let claim = if lifecycle_only {
                Claim {
                    state_machine_prefix: Some(LIFECYCLE_PREFIX),
                    ..Claim::new(&opts.owner, lease_ms, (free_reserved as u32).min(opts.batch), Timestamp::now())
                }
            } else {
                Claim {
                    per_tenant: opts.per_tenant_in_flight as u32,
                    skip_tenants: &skip,
                    ..Claim::new(&opts.owner, lease_ms, (free as u32).min(opts.batch), Timestamp::now())
                }
            };
            let started = std::time::Instant::now();
            let claimed = self.wf.execution_claim(&claim).await;
            metrics::histogram!("tenancy_store_query_duration_seconds", "op" => "execution_claim")
                .record(started.elapsed().as_secs_f64());
            let claimed = match claimed {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "failed to claim executions");
                    Vec::new()
                }
            };
            if claimed.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(opts.poll_interval) => {}
                    // A general slot freed while only lifecycle executions were claimed.
                    _ = tasks.join_next(), if lifecycle_only && !tasks.is_empty() => {}
                }
                continue;
            }
            for rec in claimed {
                let lifecycle = is_lifecycle(&rec.state_machine);
                let permit = match lifecycle.then(|| reserved.clone().try_acquire_owned().ok()).flatten() {
                    Some(p) => p,
                    None => match general.clone().acquire_owned().await {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                };
                let engine = self.clone();
                let commits = tx.clone();
                let lease = lease.clone();
                // Lifecycle executions are not throttled per tenant (one at a time each).
                let tenant = in_flight.enter(if lifecycle { None } else { rec.tenant_id.as_deref() });
                tasks.spawn(async move {
                    engine.advance(rec, &commits, &lease).await;
                    drop((permit, tenant));
                });
            }
        }
        while tasks.join_next().await.is_some() {}
        drop(tx);
        let _ = committer.await;
        tracing::info!(owner = %opts.owner, "workflow worker stopped");
    }
}

/// The name prefix of the built-in lifecycle state machines (reserved: users cannot
/// create them), which get [`LIFECYCLE_SLOTS`].
pub const LIFECYCLE_PREFIX: &str = "tenancy.";

/// Whether executions of `state_machine` are lifecycle executions.
pub fn is_lifecycle(state_machine: &str) -> bool {
    state_machine.starts_with(LIFECYCLE_PREFIX)
}

/// Most steps committed together by [`Engine::advance`] (bounds the work a crash
/// makes run again).
const MAX_FUSED_STEPS: usize = 16;

/// Times [`Engine::advance`] runs steps again whose commit found the data they read
/// changed; past this the execution waits for its lease to expire and is retried then.
const MAX_STALE_RETRIES: u32 = 5;

/// Whether `pending` is a task that runs and ends (not a callback task, which commits
/// its wait alone, nor a timer or branches).
fn next_is_task(pending: &Option<Value>) -> bool {
    match pending.as_ref().map(Pending::deserialize) {
        Some(Ok(Pending::Task { request, .. })) => !request.resource.ends_with(WAIT_FOR_TASK_TOKEN),
        _ => false,
    }
}

/// One commit for two consecutive steps of an execution: the later state, the history
/// and the effects of both.
fn fuse(mut earlier: StepCommit, later: StepCommit) -> StepCommit {
    earlier.state.history.extend(later.state.history);
    let mut fx = earlier.effects;
    fx.extend(later.effects);
    StepCommit {
        execution_id: later.execution_id,
        expected_seq: earlier.expected_seq,
        state: StepState { history: earlier.state.history, ..later.state },
        keep_lease: later.keep_lease,
        redrive_point: later.redrive_point.or(earlier.redrive_point),
        redrive_count: later.redrive_count.or(earlier.redrive_count),
        effects: fx,
    }
}

/// What a claimed execution's pending action came to, fed to the interpreter.
enum Outcome {
    Succeeded(Value),
    Failed(String, Option<String>),
    Resume,
    Branches(runner::BranchOutcome),
    /// The cursor does not fit the machine.
    Broken(String),
}

/// Runs interpreter work on tokio's blocking pool (its threads have the runtime's
/// default 2 MiB stack, as the async workers; the interpreter's depth limits keep its
/// recursion within it); `Err` with a cause when it panicked.
pub async fn interpret<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> std::result::Result<T, String> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        let cause = match e.try_into_panic() {
            Ok(p) => p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into()),
            Err(_) => "cancelled".into(),
        };
        tracing::error!(cause = %cause, "the interpreter failed");
        format!("the interpreter failed: {cause}")
    })
}

/// A step that fails the execution at `cursor` (its history: one `ExecutionFailed`).
pub fn failed_step(cursor: &Cursor, error: &str, cause: &str) -> Step {
    let mut c = cursor.clone();
    let id = c.next_event_id;
    c.next_event_id += 1;
    c.phase = tenancy_asl::step::Phase::Done;
    Step {
        cursor: c,
        action: Action::Failed { error: Some(error.into()), cause: Some(cause.into()) },
        history: vec![tenancy_asl::HistoryEvent {
            id,
            kind: "ExecutionFailed".into(),
            state: None,
            details: json!({"error": error, "cause": cause}),
        }],
    }
}

/// `step`, or, when it would take the history past [`MAX_HISTORY_EVENTS`] (keeping one
/// event for the end), a step from `before` that fails the execution instead.
pub fn within_history_limit(step: Step, before: &Cursor) -> Step {
    let recorded = step.cursor.next_event_id.saturating_sub(1);
    let ends = matches!(step.action, Action::Succeeded { .. } | Action::Failed { .. });
    if recorded < MAX_HISTORY_EVENTS || (ends && recorded == MAX_HISTORY_EVENTS) {
        return step;
    }
    let cause = format!("the execution exceeded the limit of {MAX_HISTORY_EVENTS} history events {HISTORY_LIMIT_MARK}");
    failed_step(before, "States.Runtime", &cause)
}

/// Ends the cause of a failure at the history limit.
const HISTORY_LIMIT_MARK: &str = "(MAX_HISTORY_EVENTS)";

/// Whether `rec` failed at the history limit ([`within_history_limit`] or the
/// branches' budget): a redrive would fail again at once.
pub fn failed_at_history_limit(rec: &ExecutionRecord) -> bool {
    rec.status == status::FAILED
        && rec.error.as_deref() == Some("States.Runtime")
        && rec.cause.as_deref().is_some_and(|c| c.ends_with(HISTORY_LIMIT_MARK))
}

/// The execution-level `TimeoutSeconds` of a definition (a positive integer).
pub fn timeout_seconds(machine: &StateMachine) -> Option<u64> {
    machine.definition().get("TimeoutSeconds").and_then(Value::as_u64).filter(|s| *s > 0)
}

/// When an execution of `machine` started at `rec.started_at` times out (unix ms).
pub fn execution_deadline(machine: &StateMachine, rec: &ExecutionRecord) -> Option<i64> {
    timeout_seconds(machine)
        .map(|s| rec.started_at.millis().saturating_add(i64::try_from(s).unwrap_or(i64::MAX).saturating_mul(1000)))
}

/// A timer no later than the execution's deadline (a callback without one gets it).
pub fn cap_wake(wake: Option<Timestamp>, deadline: Option<i64>) -> Option<Timestamp> {
    match (wake, deadline) {
        (Some(w), Some(d)) => Some(Timestamp(w.millis().min(d))),
        (w, d) => w.or(d.map(Timestamp)),
    }
}

/// Awaits `fut` until `deadline` (unix ms); `None` when the deadline came first.
async fn until_deadline<F: std::future::Future>(deadline: Option<i64>, fut: F) -> Option<F::Output> {
    match deadline {
        None => Some(fut.await),
        Some(d) => {
            let left = Duration::from_millis(d.saturating_sub(now_ms()).max(0) as u64);
            tokio::time::timeout(left, fut).await.ok()
        }
    }
}

/// The stored state of an execution that timed out at `cursor`.
pub fn timed_out_state(cursor: &Cursor, pending: Option<Value>, cause: &str) -> StepState {
    let now = Timestamp::now();
    let mut c = cursor.clone();
    let id = c.next_event_id;
    c.next_event_id += 1;
    StepState {
        status: status::TIMED_OUT.into(),
        cursor: Some(to_value(&c)),
        pending,
        error: Some("States.Timeout".into()),
        cause: Some(cause.into()),
        stopped_at: Some(now),
        history: vec![HistoryRecord {
            event_id: id as i64,
            kind: "ExecutionTimedOut".into(),
            state: None,
            details: json!({"error": "States.Timeout", "cause": cause}),
            time: now,
        }],
        ..StepState::default()
    }
}

/// How many executions of each tenant this worker is advancing.
#[derive(Clone, Default)]
struct TenantsInFlight(Arc<Mutex<HashMap<String, usize>>>);

/// One execution of a tenant in flight; counted down when dropped.
struct InFlight(Option<(TenantsInFlight, String)>);

impl TenantsInFlight {
    fn enter(&self, tenant: Option<&str>) -> InFlight {
        InFlight(tenant.map(|t| {
            *self.0.lock().expect("in-flight lock").entry(t.to_owned()).or_default() += 1;
            (self.clone(), t.to_owned())
        }))
    }

    /// Tenants with `cap` or more executions in flight.
    fn saturated(&self, cap: usize) -> Vec<String> {
        let counts = self.0.lock().expect("in-flight lock");
        counts.iter().filter(|(_, n)| **n >= cap).map(|(t, _)| t.clone()).collect()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some((all, tenant)) = self.0.take() {
            let mut counts = all.0.lock().expect("in-flight lock");
            if let Some(n) = counts.get_mut(&tenant) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&tenant);
                }
            }
        }
    }
}

/// A waiting callback task's cursor without the task's evaluated input (its
/// `effective` parameters, the token among them): completing the task, failing it or
/// retrying it does not read them (a retry evaluates them anew).
fn without_task_input(mut cursor: Option<Value>) -> Option<Value> {
    if let Some(Value::Object(c)) = cursor.as_mut() {
        c.insert("effective".into(), Value::Null);
    }
    cursor
}

fn callback(request: TaskRequest, now: i64, token_hash: Option<String>) -> (Pending, Option<i64>) {
    let timeout_at = request.timeout_seconds.map(|s| now + s as i64 * 1000);
    let heartbeat_at = request.heartbeat_seconds.map(|s| now + s as i64 * 1000);
    let wake = match (timeout_at, heartbeat_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    (Pending::Callback { request, timeout_at, heartbeat_at, token_hash }, wake)
}

/// The states a step entered (its `*StateEntered` history events).
fn state_transitions(history: &[HistoryRecord]) -> u64 {
    history.iter().filter(|h| h.kind.ends_with("StateEntered")).count() as u64
}

/// Counts an execution the engine ended (`tenancy_executions_finished_total`).
fn count_finished(state_machine: &str, status: &str) {
    metrics::counter!("tenancy_executions_finished_total", "state_machine" => state_machine.to_owned(),
        "status" => status.to_owned())
    .increment(1);
}

async fn send(commits: &mpsc::Sender<CommitRequest>, c: StepCommit) -> Result<()> {
    let (tx, rx) = oneshot::channel();
    commits.send((c, tx)).await.map_err(|_| Error::Unavailable("the committer stopped".into()))?;
    rx.await.map_err(|_| Error::Unavailable("the committer stopped".into()))?
}

/// Group commit: every step waiting when a transaction starts goes into it.
async fn commit_loop(wf: Arc<dyn WorkflowStore>, mut rx: mpsc::Receiver<CommitRequest>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let (commits, replies): (Vec<StepCommit>, Vec<_>) = batch.into_iter().unzip();
        let started = std::time::Instant::now();
        let committed = wf.execution_commit(&commits).await;
        metrics::histogram!("tenancy_store_query_duration_seconds", "op" => "execution_commit")
            .record(started.elapsed().as_secs_f64());
        match committed {
            Ok(results) => {
                for (r, reply) in results.into_iter().zip(replies) {
                    let _ = reply.send(r);
                }
            }
            Err(e) if commits.len() == 1 => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
            Err(_) => {
                // One step spoiled the shared transaction: commit them one by one.
                for (c, reply) in commits.into_iter().zip(replies) {
                    let r = match wf.execution_commit(std::slice::from_ref(&c)).await {
                        Ok(mut r) => r.pop().unwrap_or(Ok(())),
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(r);
                }
            }
        }
    }
}

/// Tasks inside Parallel branches / Map iterations: the same handlers, really sleeping.
struct BranchTasks<'a> {
    engine: &'a Engine,
    rec: &'a ExecutionRecord,
    effects: Mutex<Effects>,
}

impl TaskRunner for BranchTasks<'_> {
    fn run_task<'a>(&'a self, request: &'a TaskRequest) -> BoxFuture<'a, std::result::Result<Value, Failure>> {
        Box::pin(async move {
            if request.resource.ends_with(WAIT_FOR_TASK_TOKEN) {
                return Err(failure(
                    "States.Runtime",
                    "callback tasks (.waitForTaskToken) are not supported inside Parallel or Map states",
                ));
            }
            let out = self.engine.run_handler(request, self.rec).await?;
            self.effects.lock().expect("effects lock").extend(out.effects);
            if tenancy_asl::step::payload_size(&out.result) > MAX_PAYLOAD_BYTES {
                return Err(failure(
                    "States.DataLimitExceeded",
                    format!(
                        "the result of task {:?} exceeds {MAX_PAYLOAD_BYTES} bytes (MAX_PAYLOAD_BYTES)",
                        request.state
                    ),
                ));
            }
            Ok(out.result)
        })
    }

    fn limits(&self) -> BranchLimits {
        BranchLimits { history_events: MAX_HISTORY_EVENTS, ..BranchLimits::default() }
    }

    fn sleep_until(&self, until_ms: i64) -> BoxFuture<'_, i64> {
        Box::pin(async move {
            let now = now_ms();
            if until_ms > now {
                tokio::time::sleep(Duration::from_millis((until_ms - now) as u64)).await;
            }
            now_ms().max(until_ms)
        })
    }
}
