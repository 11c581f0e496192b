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

pub mod handlers;
pub mod http_invoke;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tenancy_asl::runner::{self, BoxFuture, TaskRunner};
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

pub use handlers::{Registry, TaskCall, TaskHandler, TaskOutput, TaskResult};

/// The suffix of a callback task's resource.
pub const WAIT_FOR_TASK_TOKEN: &str = ".waitForTaskToken";

/// What an execution waits for (the `pending` column).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pending {
    /// Run the task's handler.
    Task { request: TaskRequest },
    /// A callback task waits for `POST /v1/task-tokens/{token}/...`.
    Callback { request: TaskRequest, timeout_at: Option<i64>, heartbeat_at: Option<i64> },
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
        }
    }
}

/// The engine: the registry of task handlers, parsed definitions, the wake-up signal.
pub struct Engine {
    store: Arc<dyn Store>,
    wf: Arc<dyn WorkflowStore>,
    handlers: Registry,
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
pub(crate) fn parse_pending(rec: &ExecutionRecord) -> Option<Pending> {
    rec.pending.as_ref().and_then(|p| Pending::deserialize(p).ok())
}

pub(crate) fn parse_cursor(rec: &ExecutionRecord) -> Result<Cursor> {
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
    }
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
pub(crate) struct Prepared {
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
    pub fn new(store: Arc<dyn Store>) -> Arc<Engine> {
        Arc::new(Engine {
            wf: store.workflows(),
            store,
            handlers: Registry::builtin(),
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

    pub(crate) fn cache(&self, rec: &StateMachineRecord) -> Result<Arc<StateMachine>> {
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
        };
        let step = machine.start(&context(&rec), input, now);
        let prepared = self.prepare(step, now);
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
        })
    }

    /// Turns a step into the execution's new stored state.
    pub(crate) fn prepare(&self, step: Step, now: i64) -> Prepared {
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
                if base.is_some_and(|b| self.handlers.get(b).is_none()) {
                    let (pending, wake) = callback(request, now);
                    state.task_token = Some(token_of(&pending));
                    state.pending = Some(to_value(&pending));
                    state.wake_at = wake.map(Timestamp);
                } else {
                    state.pending = Some(to_value(&Pending::Task { request }));
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
    pub(crate) fn commit_of(&self, rec: &ExecutionRecord, prepared: Prepared, mut fx: Effects) -> (StepCommit, bool) {
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

    /// Calls a task's handler (the base resource for a callback task).
    async fn run_handler(&self, request: &TaskRequest, rec: &ExecutionRecord) -> TaskResult {
        let resource = request.resource.strip_suffix(WAIT_FOR_TASK_TOKEN).unwrap_or(&request.resource);
        let handler = self
            .handlers
            .get(resource)
            .ok_or_else(|| handlers::failure("States.Runtime", format!("no task handler for resource {resource:?}")))?;
        let call = TaskCall {
            resource,
            parameters: &request.parameters,
            idempotency_key: &request.idempotency_key,
            execution_id: &rec.id,
            tenant_id: rec.tenant_id.as_deref(),
            store: &self.store,
        };
        match request.timeout_seconds {
            Some(s) => match tokio::time::timeout(Duration::from_secs(s), handler.call(call)).await {
                Ok(r) => r,
                Err(_) => Err(handlers::failure("States.Timeout", format!("task timed out after {s} s"))),
            },
            None => handler.call(call).await,
        }
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

    async fn advance(&self, mut rec: ExecutionRecord, commits: &mpsc::Sender<CommitRequest>, lease: &Lease) {
        let machine = match self.machine(&rec.state_machine, rec.version).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(execution_id = %rec.id, error = %e, "cannot load the state machine");
                return;
            }
        };
        let ctx = context(&rec);
        // A step not committed yet because an inline task follows it, and how many.
        let mut deferred: Option<StepCommit> = None;
        let mut fused = 0;
        // While steps are deferred: the cursor and pending action of the last commit.
        let mut committed: Option<(Option<Value>, Option<Value>)> = None;
        // Commits refused because a step read stale data (see below).
        let mut stale = 0;
        loop {
            let (Some(pending), Ok(cursor)) = (parse_pending(&rec), parse_cursor(&rec)) else {
                tracing::warn!(execution_id = %rec.id, "execution without a pending action or cursor");
                return;
            };
            let mut fx = Effects::none();
            let mut branch_history = Vec::new();
            let now;
            let result = match &pending {
                Pending::Task { request } => {
                    let out = self.leased(&rec, lease, self.run_handler(request, &rec)).await;
                    now = now_ms();
                    match out {
                        Ok(out) if request.resource.ends_with(WAIT_FOR_TASK_TOKEN) => {
                            // The message went out: now wait for the callback.
                            let (pending, wake) = callback(request.clone(), now);
                            let state = StepState {
                                status: status::RUNNING.into(),
                                cursor: rec.cursor.clone(),
                                task_token: Some(token_of(&pending)),
                                pending: Some(to_value(&pending)),
                                wake_at: wake.map(Timestamp),
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
                            machine.task_succeeded(&ctx, &cursor, out.result, now)
                        }
                        Err(f) => machine.task_failed(
                            &ctx,
                            &cursor,
                            f.error.as_deref().unwrap_or("States.TaskFailed"),
                            f.cause.as_deref(),
                            now,
                        ),
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
                    machine.task_failed(&ctx, &cursor, error, None, now)
                }
                Pending::Timer { .. } => {
                    now = now_ms();
                    machine.resume(&ctx, &cursor, now)
                }
                Pending::Branches { request } => {
                    let tasks = BranchTasks { engine: self, rec: &rec, effects: Mutex::new(Effects::none()) };
                    let started = now_ms();
                    let run = runner::run_branches(&machine, &ctx, &cursor, request, started, &tasks);
                    match self.leased(&rec, lease, run).await {
                        Ok(outcome) => {
                            now = now_ms();
                            fx = tasks.effects.into_inner().expect("effects lock");
                            branch_history = outcome.history.clone();
                            machine.branches_finished(&ctx, &cursor, outcome, now)
                        }
                        Err(e) => {
                            now = now_ms();
                            Err(e)
                        }
                    }
                }
            };
            let mut step = match result {
                Ok(step) => step,
                Err(e) => {
                    // The cursor does not fit the machine: fail the execution.
                    let mut c = cursor.clone();
                    let id = c.next_event_id;
                    c.next_event_id += 1;
                    c.phase = tenancy_asl::step::Phase::Done;
                    Step {
                        cursor: c,
                        action: Action::Failed { error: Some("States.Runtime".into()), cause: Some(e.to_string()) },
                        history: vec![tenancy_asl::HistoryEvent {
                            id,
                            kind: "ExecutionFailed".into(),
                            state: None,
                            details: json!({"error": "States.Runtime", "cause": e.to_string()}),
                        }],
                    }
                }
            };
            if !branch_history.is_empty() {
                branch_history.append(&mut step.history);
                step.history = branch_history;
            }
            let prepared = self.prepare(step, now);
            let (mut commit, runnable) = self.commit_of(&rec, prepared, fx);
            if let Some(earlier) = deferred.take() {
                commit = fuse(earlier, commit);
            }
            let (cursor, pending) = (commit.state.cursor.clone(), commit.state.pending.clone());
            if runnable && fused < MAX_FUSED_STEPS && self.next_is_inline(&pending) {
                // The next task is local and idempotent: run it before committing, and
                // commit both steps at once.
                fused += 1;
                deferred = Some(commit);
                let before = (std::mem::replace(&mut rec.cursor, cursor), std::mem::replace(&mut rec.pending, pending));
                committed.get_or_insert(before);
                continue;
            }
            fused = 0;
            let final_status = commit.state.stopped_at.map(|_| commit.state.status.clone());
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
            if let Some(status) = final_status {
                let _ = self.finished.send((rec.id.clone(), status));
            }
            if !runnable {
                return;
            }
            rec.seq += 1;
            rec.cursor = cursor;
            rec.pending = pending;
        }
    }

    /// Whether `pending` is a task whose handler runs inline ([`TaskHandler::inline`]).
    fn next_is_inline(&self, pending: &Option<Value>) -> bool {
        let Some(Ok(Pending::Task { request })) = pending.as_ref().map(Pending::deserialize) else {
            return false;
        };
        !request.resource.ends_with(WAIT_FOR_TASK_TOKEN)
            && self.handlers.get(&request.resource).is_some_and(|h| h.inline())
    }

    /// Runs the worker until `shutdown`: claims due executions in batches, advances up
    /// to `max_in_flight` of them concurrently, and groups their commits into shared
    /// transactions. In-flight work is finished before it returns.
    pub async fn run(self: Arc<Self>, opts: EngineOptions, shutdown: CancellationToken) {
        tracing::info!(owner = %opts.owner, "workflow worker started");
        let (tx, rx) = mpsc::channel::<CommitRequest>(4096);
        let committer = tokio::spawn(commit_loop(self.wf.clone(), rx));
        let permits = Arc::new(Semaphore::new(opts.max_in_flight));
        let mut tasks = JoinSet::new();
        let lease_ms = opts.lease.as_millis() as i64;
        let lease = Arc::new(Lease { owner: opts.owner.clone(), length: opts.lease });
        let in_flight = TenantsInFlight::default();
        while !shutdown.is_cancelled() {
            while tasks.try_join_next().is_some() {}
            let free = permits.available_permits();
            if free == 0 {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tasks.join_next() => {}
                }
                continue;
            }
            let limit = (free as u32).min(opts.batch);
            let skip = in_flight.saturated(opts.per_tenant_in_flight);
            let claim = Claim {
                per_tenant: opts.per_tenant_in_flight as u32,
                skip_tenants: &skip,
                ..Claim::new(&opts.owner, lease_ms, limit, Timestamp::now())
            };
            let claimed = match self.wf.execution_claim(&claim).await {
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
                }
                continue;
            }
            for rec in claimed {
                let Ok(permit) = permits.clone().acquire_owned().await else { break };
                let engine = self.clone();
                let commits = tx.clone();
                let lease = lease.clone();
                let tenant = in_flight.enter(rec.tenant_id.as_deref());
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

/// Most steps committed together by [`Engine::advance`] (bounds the work a crash
/// makes run again).
const MAX_FUSED_STEPS: usize = 16;

/// Times [`Engine::advance`] runs steps again whose commit found the data they read
/// changed; past this the execution waits for its lease to expire and is retried then.
const MAX_STALE_RETRIES: u32 = 5;

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

fn callback(request: TaskRequest, now: i64) -> (Pending, Option<i64>) {
    let timeout_at = request.timeout_seconds.map(|s| now + s as i64 * 1000);
    let heartbeat_at = request.heartbeat_seconds.map(|s| now + s as i64 * 1000);
    let wake = match (timeout_at, heartbeat_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    (Pending::Callback { request, timeout_at, heartbeat_at }, wake)
}

fn token_of(p: &Pending) -> String {
    match p {
        Pending::Callback { request, .. } | Pending::Task { request } => request.idempotency_key.clone(),
        _ => String::new(),
    }
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
        match wf.execution_commit(&commits).await {
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
                return Err(handlers::failure(
                    "States.Runtime",
                    "callback tasks (.waitForTaskToken) are not supported inside Parallel or Map states",
                ));
            }
            let out = self.engine.run_handler(request, self.rec).await?;
            self.effects.lock().expect("effects lock").extend(out.effects);
            Ok(out.result)
        })
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
