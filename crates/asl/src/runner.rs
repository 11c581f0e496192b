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
    Action, BranchKind, BranchRequest, Cursor, HistoryEvent, Interpreter, StartOptions, Step,
    StepError, TaskRequest,
};
use crate::StateMachine;
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;

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
    drive(machine.program(), ctx, step, ctx.start_time_ms, tasks).await
}

/// Runs the branches of a Parallel state or the iterations of an inline Map state
/// (the [`Action::RunBranches`] of `cursor`), one after the other.
pub async fn run_branches(
    machine: &StateMachine,
    ctx: &ExecutionContext,
    cursor: &Cursor,
    request: &BranchRequest,
    now_ms: i64,
    tasks: &dyn TaskRunner,
) -> Result<BranchOutcome, StepError> {
    let state = machine
        .program()
        .states
        .get(&cursor.state)
        .ok_or_else(|| StepError::UnknownState(cursor.state.clone()))?;
    Ok(branches(ctx, programs(&state.kind), request, now_ms, tasks).await)
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
) -> BoxFuture<'a, ExecutionResult> {
    Box::pin(async move {
        let interp = Interpreter::new(program, ctx);
        let mut history = Vec::new();
        loop {
            history.append(&mut step.history);
            let next = match step.action {
                Action::Succeeded { output } => {
                    return ExecutionResult {
                        status: Status::Succeeded(output),
                        history,
                        end_ms: now,
                    }
                }
                Action::Failed { error, cause } => {
                    return ExecutionResult {
                        status: Status::Failed(Failure { error, cause }),
                        history,
                        end_ms: now,
                    }
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
                        let outcome = branches(ctx, programs(&state.kind), &req, now, tasks).await;
                        now = outcome.end_ms;
                        history.extend(outcome.history);
                        interp.branches_finished(
                            &step.cursor,
                            outcome.result,
                            outcome.next_event_id,
                            now,
                        )
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

async fn branches(
    ctx: &ExecutionContext,
    programs: Vec<&Program>,
    req: &BranchRequest,
    mut now: i64,
    tasks: &dyn TaskRunner,
) -> BranchOutcome {
    let mut outputs = Vec::with_capacity(req.inputs.len());
    let mut history = Vec::new();
    let mut failures = 0u64;
    let total = req.inputs.len() as f64;
    let mut event_id = req.first_event_id;
    let is_map = req.kind == BranchKind::Map;
    for (i, input) in req.inputs.iter().enumerate() {
        let Some(program) = programs.get(if is_map { 0 } else { i }).copied() else {
            return finish(
                Err(Failure::new(names::RUNTIME, "the branch does not exist")),
                history,
                event_id,
                now,
            );
        };
        let prefix = if req.scope.is_empty() {
            String::new()
        } else {
            format!("{}/", req.scope)
        };
        if is_map {
            push(&mut history, &mut event_id, req, "MapIterationStarted", i);
        }
        let opts = StartOptions {
            variables: req.variables.clone(),
            scope: format!("{prefix}{}@{}[{i}]", req.state, req.attempt),
            map_item: is_map.then(|| MapItem {
                index: i,
                value: req.items.get(i).cloned().unwrap_or(Value::Null),
            }),
            first_event_id: Some(event_id),
            top_level: false,
        };
        let step = Interpreter::new(program, ctx).start(input.clone(), now, opts);
        let result = drive(program, ctx, step, now, tasks).await;
        now = result.end_ms;
        event_id += result.history.len() as u64;
        history.extend(result.history);
        match result.status {
            Status::Succeeded(v) => {
                if is_map {
                    push(&mut history, &mut event_id, req, "MapIterationSucceeded", i);
                }
                outputs.push(v);
            }
            Status::Failed(f) => {
                if is_map {
                    push(&mut history, &mut event_id, req, "MapIterationFailed", i);
                }
                let tolerated = is_map
                    && (req.tolerated_failure_count.is_some()
                        || req.tolerated_failure_percentage.is_some());
                if !tolerated {
                    return finish(Err(f), history, event_id, now);
                }
                failures += 1;
                let count_ok = req.tolerated_failure_count.is_none_or(|c| failures <= c);
                let pct_ok = req
                    .tolerated_failure_percentage
                    .is_none_or(|p| (failures as f64) * 100.0 / total <= p);
                if !(count_ok && pct_ok) {
                    return finish(
                        Err(Failure::new(
                            names::TOLERATED,
                            "The specified tolerated failure threshold was exceeded",
                        )),
                        history,
                        event_id,
                        now,
                    );
                }
                outputs.push(Value::Null);
            }
        }
    }
    finish(Ok(Value::Array(outputs)), history, event_id, now)
}

fn finish(
    result: Result<Value, Failure>,
    history: Vec<HistoryEvent>,
    next_event_id: u64,
    end_ms: i64,
) -> BranchOutcome {
    BranchOutcome {
        result,
        history,
        next_event_id,
        end_ms,
    }
}

fn push(
    history: &mut Vec<HistoryEvent>,
    event_id: &mut u64,
    req: &BranchRequest,
    kind: &str,
    index: usize,
) {
    history.push(HistoryEvent {
        id: *event_id,
        kind: kind.to_string(),
        state: Some(req.state.clone()),
        details: json!({ "index": index }),
    });
    *event_id += 1;
}
