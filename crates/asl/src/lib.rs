//! Amazon States Language (ASL) interpreter for Tenancy's workflow engine.
//!
//! The crate does no IO. It offers:
//!
//! * [`StateMachine::parse`]: parsing and validation of a definition;
//! * the step API ([`StateMachine::start`], [`StateMachine::resume`],
//!   [`StateMachine::task_succeeded`], [`StateMachine::task_failed`]): a pure,
//!   deterministic interpreter that runs synchronously through every state that needs
//!   nothing from outside and stops at the next [`Action`] the engine must carry out,
//!   with a serializable [`Cursor`] to persist between steps;
//! * [`runner::run`]: an in-memory runner with a virtual clock.
//!
//! Parallel and inline Map states surface as one [`Action::RunBranches`]: the engine
//! runs the branches as a unit with [`runner::run_branches`] (which drives nested
//! sub-executions through the same step API and calls the engine's
//! [`runner::TaskRunner`] for the tasks inside) and reports the outcome with
//! [`StateMachine::branches_finished`], so Retry and Catch of the Parallel/Map state
//! apply as for a Task. A crash inside a Parallel/Map re-runs the whole state; task
//! handlers are idempotent by [`idempotency_key`], which includes the task's place
//! (`Map@0[3]/Charge`). See `docs/asl.md` for the engine's loop.

pub mod choice;
pub mod context;
pub mod definition;
pub mod error;
pub mod intrinsics;
pub mod jsonata;
pub mod limits;
pub mod path;
pub mod payload;
pub mod runner;
pub mod step;
pub mod timestamp;
pub mod validate;

pub use context::ExecutionContext;
pub use error::{DefinitionError, Failure};
pub use step::{idempotency_key, Action, BranchRequest, Cursor, HistoryEvent, Step, StepError, TaskRequest};

use definition::{inherited_language, parse_program, Program};
use serde_json::Value;
use step::{Interpreter, StartOptions};

/// A parsed and validated state machine.
#[derive(Debug, Clone)]
pub struct StateMachine {
    program: Program,
    definition: Value,
}

impl StateMachine {
    /// Parses and validates a definition.
    /// Definitions nesting deeper than [`limits::MAX_DEFINITION_DEPTH`] are refused.
    pub fn parse(definition: &Value) -> Result<StateMachine, DefinitionError> {
        if limits::deeper_than(definition, limits::MAX_DEFINITION_DEPTH) {
            return Err(DefinitionError::new(
                None,
                None,
                format!("the definition nests deeper than {} levels", limits::MAX_DEFINITION_DEPTH),
            ));
        }
        let ql = inherited_language(definition)?;
        let program = parse_program(definition, ql)?;
        validate::validate_machine(&program)?;
        Ok(StateMachine { program, definition: definition.clone() })
    }

    /// The top-level program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The definition as given.
    pub fn definition(&self) -> &Value {
        &self.definition
    }

    /// Starts an execution: runs until the first action.
    pub fn start(&self, ctx: &ExecutionContext, input: Value, now_ms: i64) -> Step {
        Interpreter::new(&self.program, ctx).start(
            input,
            now_ms,
            StartOptions { top_level: true, ..StartOptions::default() },
        )
    }

    /// Continues after a `Wait` or `RetryAfter` deadline. Called before the deadline,
    /// it returns the same timer action again.
    pub fn resume(&self, ctx: &ExecutionContext, cursor: &Cursor, now_ms: i64) -> Result<Step, StepError> {
        Interpreter::new(&self.program, ctx).resume(cursor, now_ms)
    }

    /// Reports the result of a `RunTask`.
    pub fn task_succeeded(
        &self,
        ctx: &ExecutionContext,
        cursor: &Cursor,
        result: Value,
        now_ms: i64,
    ) -> Result<Step, StepError> {
        Interpreter::new(&self.program, ctx).task_succeeded(cursor, result, now_ms)
    }

    /// Reports the failure of a `RunTask` (`States.Timeout` for a task that timed out,
    /// `States.HeartbeatTimeout` for a missed heartbeat, or the handler's error).
    pub fn task_failed(
        &self,
        ctx: &ExecutionContext,
        cursor: &Cursor,
        error: &str,
        cause: Option<&str>,
        now_ms: i64,
    ) -> Result<Step, StepError> {
        let failure = Failure { error: Some(error.to_string()), cause: cause.map(str::to_string) };
        Interpreter::new(&self.program, ctx).task_failed(cursor, failure, now_ms)
    }

    /// Reports the outcome of a `RunBranches` (from [`runner::run_branches`]).
    pub fn branches_finished(
        &self,
        ctx: &ExecutionContext,
        cursor: &Cursor,
        outcome: runner::BranchOutcome,
        now_ms: i64,
    ) -> Result<Step, StepError> {
        Interpreter::new(&self.program, ctx).branches_finished(cursor, outcome.result, outcome.next_event_id, now_ms)
    }
}
