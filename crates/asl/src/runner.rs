//! The in-memory runner: drives the step API to the end of an execution, and runs the
//! branches of Parallel states and the iterations of inline Map states as nested
//! sub-executions of the same step API.
//!
//! Time comes from [`TaskRunner::sleep_until`]: its default is a virtual clock (a
//! timer returns at once and the clock jumps to its deadline), so Wait states and
//! retry back-offs cost nothing in tests. An engine that uses [`run_branches`] for
//! real executions overrides it to sleep.

use crate::context::{ExecutionContext, MapItem};
use crate::definition::{Program, StateKind};
use crate::error::{names, Failure};
use crate::step::{
    Action, BranchKind, BranchRequest, Cursor, HistoryEvent, Interpreter, StartOptions, Step, StepError, TaskRequest,
};
use crate::StateMachine;
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::Poll;

/// Step Functions' limit on the events of an execution's history (the engine's default
/// for [`BranchLimits::history_events`]).
pub const MAX_HISTORY_EVENTS: u64 = 25_000;

/// Most branches and iterations one [`run_branches`] call starts, nested Parallel and
/// Map states included: a Map of 1,000 items inside a Map of 1,000 items stops at
/// 10,000 instead of running a million. Step Functions bounds them by the 25,000
/// history events (each iteration takes at least two).
pub const MAX_BRANCH_ITERATIONS: u64 = 10_000;

/// Iterations of one inline Map state run at once (a `MaxConcurrency` of 0 or above it
/// is lowered to it): Step Functions' figure for inline Map states.
pub const MAX_MAP_CONCURRENCY: usize = 40;

/// Bytes (JSON text) of history details and iteration outputs one [`run_branches`]
/// call holds before it commits: 64 MiB, 256 payloads of the largest size. Not a Step
/// Functions figure: it bounds the memory of one Parallel/Map step.
pub const MAX_BRANCH_BYTES: usize = 64 * 1024 * 1024;

/// The bounds of one [`run_branches`] (or [`run`]) call, over all its branches and the
/// nested Parallel / Map states in them. Past one, the run fails with `States.Runtime`
/// naming the limit (not caught by `States.ALL`, not tolerated by a Map's tolerated
/// failures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BranchLimits {
    /// The execution's history limit (events already recorded count against it).
    pub history_events: u64,
    pub iterations: u64,
    pub map_concurrency: usize,
    pub bytes: usize,
}

impl Default for BranchLimits {
    fn default() -> Self {
        BranchLimits {
            history_events: MAX_HISTORY_EVENTS,
            iterations: MAX_BRANCH_ITERATIONS,
            map_concurrency: MAX_MAP_CONCURRENCY,
            bytes: MAX_BRANCH_BYTES,
        }
    }
}

/// What a run has spent of its [`BranchLimits`].
struct Budget {
    limits: BranchLimits,
    events: AtomicU64,
    iterations: AtomicU64,
    bytes: AtomicUsize,
    /// The first limit reached.
    exhausted: Mutex<Option<Failure>>,
}

impl Budget {
    fn new(limits: BranchLimits, events_before: u64) -> Budget {
        Budget {
            limits,
            events: AtomicU64::new(events_before),
            iterations: AtomicU64::new(0),
            bytes: AtomicUsize::new(0),
            exhausted: Mutex::new(None),
        }
    }

    fn fail(&self, what: String) -> Failure {
        let mut first = self.exhausted.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert_with(|| Failure::new(names::RUNTIME, what)).clone()
    }

    /// The failure of a run past its limits, once one was reached.
    fn exhausted(&self) -> Option<Failure> {
        self.exhausted.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn spend_events(&self, events: &[HistoryEvent]) -> Result<(), Failure> {
        let bytes: usize = events.iter().map(|e| crate::step::payload_size(&e.details) + 64).sum();
        self.spend(events.len() as u64, bytes)
    }

    fn spend(&self, events: u64, bytes: usize) -> Result<(), Failure> {
        let total = self.events.fetch_add(events, Ordering::Relaxed) + events;
        if total > self.limits.history_events {
            return Err(self.fail(format!(
                "the execution exceeded the limit of {} history events (MAX_HISTORY_EVENTS)",
                self.limits.history_events
            )));
        }
        let total = self.bytes.fetch_add(bytes, Ordering::Relaxed).saturating_add(bytes);
        if total > self.limits.bytes {
            return Err(self.fail(format!(
                "the branches of the Parallel/Map state exceeded the limit of {} bytes of history and results \
                 (MAX_BRANCH_BYTES)",
                self.limits.bytes
            )));
        }
        Ok(())
    }

    fn spend_iteration(&self) -> Result<(), Failure> {
        if self.iterations.fetch_add(1, Ordering::Relaxed) >= self.limits.iterations {
            return Err(self.fail(format!(
                "the Parallel/Map states of this step exceeded the limit of {} branches and iterations \
                 (MAX_BRANCH_ITERATIONS)",
                self.limits.iterations
            )));
        }
        Ok(())
    }
}

/// A boxed future, so that [`TaskRunner`] stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs Task states (and provides time) for the runner. Implemented by the engine or
/// by tests.
pub trait TaskRunner: Sync {
    /// Runs one task attempt: `Ok(result)` or `Err(failure)` (error name and cause).
    fn run_task<'a>(&'a self, request: &'a TaskRequest) -> BoxFuture<'a, Result<Value, Failure>>;

    /// Waits until `until_ms` (unix ms) and returns the time after waiting. The default
    /// is a virtual clock: it returns `until_ms` at once.
    fn sleep_until(&self, until_ms: i64) -> BoxFuture<'_, i64> {
        Box::pin(async move { until_ms })
    }

    /// The bounds of a run (default: [`BranchLimits::default`]).
    fn limits(&self) -> BranchLimits {
        BranchLimits::default()
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionResult {
    pub status: Status,
    pub history: Vec<HistoryEvent>,
    /// The clock when the run ended (unix ms).
    pub end_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Succeeded(Value),
    Failed(Failure),
}

/// The outcome of [`run_branches`], to report with [`StateMachine::branches_finished`].
#[derive(Debug, Clone, PartialEq)]
pub struct BranchOutcome {
    /// The array of branch / iteration outputs, or the failure.
    pub result: Result<Value, Failure>,
    /// The events of the branches (ids continue the parent's numbering).
    pub history: Vec<HistoryEvent>,
    /// Id the parent's next event gets.
    pub next_event_id: u64,
    /// The clock after the branches (unix ms).
    pub end_ms: i64,
}

/// Runs an execution from its start to its end.
pub async fn run(
    machine: &StateMachine,
    ctx: &ExecutionContext,
    input: Value,
    tasks: &dyn TaskRunner,
) -> ExecutionResult {
    let step = machine.start(ctx, input, ctx.start_time_ms);
    let budget = Budget::new(tasks.limits(), 0);
    drive(machine.program(), ctx, step, ctx.start_time_ms, tasks, &budget).await
}

/// Runs the branches of a Parallel state or the iterations of an inline Map state
/// (the [`Action::RunBranches`] of `cursor`) concurrently: all Parallel branches at
/// once, Map iterations at most `MaxConcurrency` at a time (0 = unbounded). The first
/// failure (beyond the tolerated ones) stops the others. Outputs keep the order of the
/// branches / items; history events are numbered in that order too.
pub async fn run_branches(
    machine: &StateMachine,
    ctx: &ExecutionContext,
    cursor: &Cursor,
    request: &BranchRequest,
    now_ms: i64,
    tasks: &dyn TaskRunner,
) -> Result<BranchOutcome, StepError> {
    let state =
        machine.program().states.get(&cursor.state).ok_or_else(|| StepError::UnknownState(cursor.state.clone()))?;
    let budget = Budget::new(tasks.limits(), request.first_event_id.saturating_sub(1));
    Ok(branches(ctx, programs(&state.kind), request, now_ms, tasks, &budget).await)
}

fn programs(kind: &StateKind) -> Vec<&Program> {
    match kind {
        StateKind::Parallel { branches } => branches.iter().collect(),
        StateKind::Map(spec) => vec![&spec.processor],
        _ => vec![],
    }
}

fn drive<'a>(
    program: &'a Program,
    ctx: &'a ExecutionContext,
    mut step: Step,
    mut now: i64,
    tasks: &'a dyn TaskRunner,
    budget: &'a Budget,
) -> BoxFuture<'a, ExecutionResult> {
    Box::pin(async move {
        let interp = Interpreter::new(program, ctx);
        let mut history = Vec::new();
        loop {
            let spent = budget.spend_events(&step.history);
            history.append(&mut step.history);
            if let Err(f) = spent.and_then(|()| budget.exhausted().map_or(Ok(()), Err)) {
                return ExecutionResult { status: Status::Failed(f), history, end_ms: now };
            }
            // Let the executor run other work between two calls of the interpreter
            // (each bounded by MAX_TRANSITIONS_PER_STEP): a Parallel/Map of many
            // synchronous iterations must not hold an async worker thread throughout.
            yield_now().await;
            let next = match step.action {
                Action::Succeeded { output } => {
                    return ExecutionResult { status: Status::Succeeded(output), history, end_ms: now }
                }
                Action::Failed { error, cause } => {
                    return ExecutionResult { status: Status::Failed(Failure { error, cause }), history, end_ms: now }
                }
                Action::Wait { until_ms } | Action::RetryAfter { until_ms, .. } => {
                    now = now.max(tasks.sleep_until(until_ms).await).max(until_ms);
                    interp.resume(&step.cursor, now)
                }
                Action::RunTask(req) => match tasks.run_task(&req).await {
                    Ok(v) => interp.task_succeeded(&step.cursor, v, now),
                    Err(f) => interp.task_failed(&step.cursor, f, now),
                },
                Action::RunBranches(req) => match program.states.get(&req.state) {
                    Some(state) => {
                        let outcome = branches(ctx, programs(&state.kind), &req, now, tasks, budget).await;
                        now = outcome.end_ms;
                        history.extend(outcome.history);
                        interp.branches_finished(&step.cursor, outcome.result, outcome.next_event_id, now)
                    }
                    None => Err(StepError::UnknownState(req.state.clone())),
                },
            };
            step = match next {
                Ok(s) => s,
                Err(e) => {
                    return ExecutionResult {
                        status: Status::Failed(Failure::new(names::RUNTIME, e.to_string())),
                        history,
                        end_ms: now,
                    }
                }
            };
        }
    })
}

/// Returns `Pending` once (waking itself at once): a runtime-agnostic yield.
fn yield_now() -> impl Future<Output = ()> {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
}

/// One branch or iteration that has finished.
struct Finished {
    index: usize,
    result: ExecutionResult,
}

async fn branches(
    ctx: &ExecutionContext,
    programs: Vec<&Program>,
    req: &BranchRequest,
    now: i64,
    tasks: &dyn TaskRunner,
    budget: &Budget,
) -> BranchOutcome {
    let n = req.inputs.len();
    let is_map = req.kind == BranchKind::Map;
    let limit = match (is_map, req.max_concurrency) {
        (true, m) if m > 0 => (m as usize).min(budget.limits.map_concurrency),
        (true, _) => n.clamp(1, budget.limits.map_concurrency.max(1)),
        _ => n.max(1),
    };
    let prefix = if req.scope.is_empty() { String::new() } else { format!("{}/", req.scope) };
    let mut running: Vec<(usize, BoxFuture<'_, ExecutionResult>)> = Vec::new();
    let mut finished: Vec<Finished> = Vec::new();
    let mut launched = 0;
    let mut clock = now;
    let mut end = now;
    let mut events_so_far = 0u64;
    let mut failures = 0u64;
    let mut failure = None;
    while failure.is_none() && (launched < n || !running.is_empty()) {
        while running.len() < limit && launched < n {
            let i = launched;
            launched += 1;
            // Two events per Map iteration (started, ended), a few bytes each.
            if let Err(f) = budget.spend_iteration().and_then(|()| budget.spend(u64::from(is_map) * 2, 128)) {
                failure = Some(f);
                break;
            }
            let Some(program) = programs.get(if is_map { 0 } else { i }).copied() else {
                failure = Some(Failure::new(names::RUNTIME, "the branch does not exist"));
                break;
            };
            // Exact when branches run one at a time; otherwise numbered by arrival,
            // as Step Functions does.
            let first = req.first_event_id + events_so_far + u64::from(is_map);
            let opts = StartOptions {
                variables: req.variables.clone(),
                scope: format!("{prefix}{}@{}[{i}]", req.state, req.attempt),
                map_item: is_map.then(|| MapItem { index: i, value: req.items.get(i).cloned().unwrap_or(Value::Null) }),
                first_event_id: Some(first),
                top_level: false,
            };
            let step = Interpreter::new(program, ctx).start(req.inputs[i].clone(), clock, opts);
            running.push((i, drive(program, ctx, step, clock, tasks, budget)));
        }
        if running.is_empty() {
            break;
        }
        let (slot, index, result) = std::future::poll_fn(|cx| {
            for (slot, (index, fut)) in running.iter_mut().enumerate() {
                if let Poll::Ready(r) = fut.as_mut().poll(cx) {
                    return Poll::Ready((slot, *index, r));
                }
            }
            Poll::Pending
        })
        .await;
        drop(running.remove(slot));
        clock = clock.max(result.end_ms);
        end = end.max(result.end_ms);
        events_so_far += result.history.len() as u64 + if is_map { 2 } else { 0 };
        if let Status::Succeeded(output) = &result.status {
            if let Err(f) = budget.spend(0, crate::step::payload_size(output)) {
                failure = Some(f);
            }
        }
        if let Some(f) = budget.exhausted() {
            // A limit of the whole run: not tolerated, whatever the Map tolerates.
            failure = failure.or(Some(f));
        } else if let Status::Failed(f) = &result.status {
            let tolerated =
                is_map && (req.tolerated_failure_count.is_some() || req.tolerated_failure_percentage.is_some());
            failures += 1;
            let count_ok = req.tolerated_failure_count.is_none_or(|c| failures <= c);
            let pct_ok = req.tolerated_failure_percentage.is_none_or(|p| (failures as f64) * 100.0 / n as f64 <= p);
            if !tolerated {
                failure = Some(f.clone());
            } else if !(count_ok && pct_ok) {
                failure =
                    Some(Failure::new(names::TOLERATED, "The specified tolerated failure threshold was exceeded"));
            }
        }
        finished.push(Finished { index, result });
    }
    let aborted: Vec<usize> = running.iter().map(|(i, _)| *i).collect();
    drop(running);
    finished.sort_by_key(|f| f.index);
    let mut history = Vec::new();
    let mut event_id = req.first_event_id;
    let mut outputs = Vec::with_capacity(n);
    for f in finished {
        if is_map {
            push(&mut history, &mut event_id, req, "MapIterationStarted", f.index);
        }
        for mut e in f.result.history {
            e.id = event_id;
            event_id += 1;
            history.push(e);
        }
        match f.result.status {
            Status::Succeeded(v) => {
                if is_map {
                    push(&mut history, &mut event_id, req, "MapIterationSucceeded", f.index);
                }
                outputs.push(v);
            }
            Status::Failed(_) => {
                if is_map {
                    push(&mut history, &mut event_id, req, "MapIterationFailed", f.index);
                }
                outputs.push(Value::Null);
            }
        }
    }
    for index in aborted {
        if is_map {
            push(&mut history, &mut event_id, req, "MapIterationAborted", index);
        }
    }
    match failure {
        Some(f) => finish(Err(f), history, event_id, end),
        None => finish(Ok(Value::Array(outputs)), history, event_id, end),
    }
}

fn finish(
    result: Result<Value, Failure>,
    history: Vec<HistoryEvent>,
    next_event_id: u64,
    end_ms: i64,
) -> BranchOutcome {
    BranchOutcome { result, history, next_event_id, end_ms }
}

fn push(history: &mut Vec<HistoryEvent>, event_id: &mut u64, req: &BranchRequest, kind: &str, index: usize) {
    history.push(HistoryEvent {
        id: *event_id,
        kind: kind.to_string(),
        state: Some(req.state.clone()),
        details: json!({ "index": index }),
    });
    *event_id += 1;
}
