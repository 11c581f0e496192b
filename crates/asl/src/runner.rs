//! The in-memory runner: drives the step API to completion with a virtual clock
//! (Wait states and retry back-offs advance the clock instead of sleeping) and runs
//! Parallel branches and Map iterations as nested sub-executions.

use crate::context::{ExecutionContext, MapItem};
use crate::definition::{Program, StateKind};
use crate::error::{names, Failure};
use crate::step::{
    Action, BranchKind, BranchRequest, HistoryEvent, Interpreter, StartOptions, Step, TaskRequest,
};
use crate::StateMachine;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;

/// A boxed future, so that [`TaskRunner`] stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs Task states for the runner. Implemented by the engine (or by tests).
pub trait TaskRunner: Sync {
    /// Runs one task attempt: `Ok(result)` or `Err(failure)` (error name and cause).
    fn run_task<'a>(&'a self, request: &'a TaskRequest) -> BoxFuture<'a, Result<Value, Failure>>;
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionResult {
    pub status: Status,
    pub history: Vec<HistoryEvent>,
    /// The virtual clock when the run ended (unix ms).
    pub end_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Succeeded(Value),
    Failed(Failure),
}

/// Runs an execution to its end. Time is virtual: it starts at `ctx.start_time_ms`
/// and jumps to the deadline of every timer.
pub async fn run(
    machine: &StateMachine,
    ctx: &ExecutionContext,
    input: Value,
    tasks: &dyn TaskRunner,
) -> ExecutionResult {
    let interp = Interpreter::new(machine.program(), ctx);
    let opts = StartOptions {
        top_level: true,
        ..StartOptions::default()
    };
    let mut now = ctx.start_time_ms;
    let step = interp.start(input, now, opts);
    drive(
        &interp,
        machine_branches(machine.program()),
        step,
        &mut now,
        tasks,
    )
    .await
}

fn machine_branches(p: &Program) -> &Program {
    p
}

async fn drive(
    interp: &Interpreter<'_>,
    _program: &Program,
    mut step: Step,
    now: &mut i64,
    tasks: &dyn TaskRunner,
) -> ExecutionResult {
    let mut history = Vec::new();
    loop {
        history.append(&mut step.history);
        step = match step.action {
            Action::Succeeded { output } => {
                return ExecutionResult {
                    status: Status::Succeeded(output),
                    history,
                    end_ms: *now,
                }
            }
            Action::Failed { error, cause } => {
                return ExecutionResult {
                    status: Status::Failed(Failure { error, cause }),
                    history,
                    end_ms: *now,
                }
            }
            Action::Wait { until_ms } | Action::RetryAfter { until_ms, .. } => {
                *now = (*now).max(until_ms);
                interp.resume(&step.cursor, *now)
            }
            Action::RunTask(req) => match tasks.run_task(&req).await {
                Ok(v) => interp.task_succeeded(&step.cursor, v, *now),
                Err(f) => interp.task_failed(&step.cursor, f, *now),
            },
            Action::RunBranches(req) => {
                let state = &interp.program.states[&req.state];
                let outcome = run_branches(
                    interp.ctx,
                    state_programs(&state.kind),
                    &req,
                    step.cursor.next_event_id,
                    now,
                    tasks,
                )
                .await;
                match outcome {
                    Ok(v) => interp.task_succeeded(&step.cursor, v, *now),
                    Err(f) => interp.task_failed(&step.cursor, f, *now),
                }
            }
        };
    }
}

fn state_programs(kind: &StateKind) -> Vec<&Program> {
    match kind {
        StateKind::Parallel { branches } => branches.iter().collect(),
        StateKind::Map(spec) => vec![&spec.processor],
        _ => vec![],
    }
}

/// Runs the branches of a Parallel state or the iterations of a Map state, one after
/// the other, and returns the array of their outputs or the failure.
pub fn run_branches<'a>(
    ctx: &'a ExecutionContext,
    programs: Vec<&'a Program>,
    req: &'a BranchRequest,
    first_event_id: u64,
    now: &'a mut i64,
    tasks: &'a dyn TaskRunner,
) -> BoxFuture<'a, Result<Value, Failure>> {
    Box::pin(async move {
        let mut outputs = Vec::with_capacity(req.inputs.len());
        let mut failures = 0u64;
        let total = req.inputs.len() as f64;
        let mut event_id = first_event_id;
        for (i, input) in req.inputs.iter().enumerate() {
            let program = match req.kind {
                BranchKind::Parallel => programs[i],
                BranchKind::Map => programs[0],
            };
            let interp = Interpreter::new(program, ctx);
            let opts = StartOptions {
                variables: req.variables.clone(),
                map_item: (req.kind == BranchKind::Map).then(|| MapItem {
                    index: i,
                    value: req.items.get(i).cloned().unwrap_or(Value::Null),
                }),
                first_event_id: Some(event_id),
                top_level: false,
            };
            let start = *now;
            let step = interp.start(input.clone(), start, opts);
            let result = drive(&interp, program, step, now, tasks).await;
            event_id += result.history.len() as u64;
            match result.status {
                Status::Succeeded(v) => outputs.push(v),
                Status::Failed(f) => {
                    let tolerated = req.kind == BranchKind::Map
                        && (req.tolerated_failure_count.is_some()
                            || req.tolerated_failure_percentage.is_some());
                    if !tolerated {
                        return Err(f);
                    }
                    failures += 1;
                    let count_ok = req.tolerated_failure_count.is_none_or(|c| failures <= c);
                    let pct_ok = req
                        .tolerated_failure_percentage
                        .is_none_or(|p| (failures as f64) * 100.0 / total <= p);
                    if !(count_ok && pct_ok) {
                        return Err(Failure::new(
                            names::TOLERATED,
                            "The specified tolerated failure threshold was exceeded",
                        ));
                    }
                    outputs.push(Value::Null);
                }
            }
        }
        Ok(Value::Array(outputs))
    })
}
