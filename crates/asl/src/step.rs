//! The step API: a pure, deterministic interpreter that moves an execution from one
//! point where the engine must act (run a task, run branches, wait for a timer, finish)
//! to the next. All state between steps lives in a serializable [`Cursor`].

use crate::choice::Condition;
use crate::context::{context_object, ExecutionContext, MapItem, StateFacts};
use crate::definition::{Dynamic, PathField, Program, QueryLanguage, State, StateKind, WaitFor};
use crate::error::{names, Failure};
use crate::intrinsics::{java_string, Entropy};
use crate::jsonata;
use crate::limits::{self, Budget};
use crate::path::{PathError, Scope};
use crate::payload;
use crate::timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::rc::Rc;

/// AWS's limit on the size of a state's input or output.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// State transitions one call of the step API runs before it yields (an
/// [`Action::Wait`] due at once, the cursor in [`Phase::Enter`]), so that a loop of
/// synchronous states (`{"A": {"Type": "Pass", "Next": "A"}}`) runs in bounded chunks
/// the engine commits one by one, each bounded in time and memory, instead of growing
/// without end inside one call. Step Functions has no such figure (it counts the
/// execution's history instead, see the engine's `MAX_HISTORY_EVENTS`); 256 transitions
/// (about 512 history events) keep a step under a millisecond for small payloads.
pub const MAX_TRANSITIONS_PER_STEP: u32 = 256;

/// Bytes of state payloads (inputs and outputs as JSON text) one call of the step API
/// records in history before it yields, like [`MAX_TRANSITIONS_PER_STEP`]: a loop over
/// a 256 KiB payload yields every few transitions, so a step holds a few MiB at most.
pub const MAX_PAYLOAD_BYTES_PER_STEP: usize = 4 * 1024 * 1024;

/// Most iterations of one inline Map state (its items). Step Functions bounds inline
/// Map by the execution's 25,000 history events (each iteration takes at least two);
/// 10,000 fails an oversized Map before any iteration runs.
pub const MAX_MAP_ITEMS: usize = 10_000;

/// Most bytes (JSON text) of the inputs of all iterations of one inline Map state after
/// its `ItemSelector` (each is a payload of at most [`MAX_PAYLOAD_BYTES`]): 16 MiB,
/// 64 payloads. Step Functions has no figure for this (it bounds each payload).
pub const MAX_MAP_INPUT_BYTES: usize = 16 * 1024 * 1024;

/// Serializable position of a running execution (persisted by the engine between steps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// Current state.
    pub state: String,
    /// The raw input of the current state.
    pub input: Value,
    /// The effective input of a pending Task or Parallel/Map (after InputPath/Parameters).
    pub effective: Value,
    pub phase: Phase,
    /// When the current state was entered (unix ms).
    pub entered_ms: i64,
    /// History event id of the current state's `...StateEntered` event.
    pub entered_event_id: u64,
    /// Id the next history event will get.
    pub next_event_id: u64,
    /// Attempts used per retrier of the current state.
    pub retry_counts: Vec<u32>,
    /// Attempt number of the pending task (0 = first).
    pub attempt: u32,
    /// Workflow variables (`Assign`).
    pub variables: Map<String, Value>,
    /// Set inside a Map iteration.
    pub map_item: Option<MapItem>,
    /// State of the deterministic random generator (jitter, States.UUID, MathRandom).
    pub rng: u64,
    /// Where this (sub-)execution sits: empty at the top level, else e.g. `Map@0[3]`
    /// (state, attempt, branch or item index). Part of the tasks' idempotency keys.
    pub scope: String,
    /// Whether this is the execution itself (emits Execution* events) or a branch.
    pub top_level: bool,
    /// Deadline of a pending Wait state (unix ms).
    pub timer_until_ms: Option<i64>,
}

/// What the cursor waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Phase {
    /// A Wait state's timer; `output` is the state's output once it fires.
    Timer { output: Value },
    /// A task or the branches of a Parallel/Map state.
    Work,
    /// A retry back-off timer.
    Backoff { until_ms: i64, error: String },
    /// The execution ended.
    Done,
    /// Yielded before entering `cursor.state` with `cursor.input` (see
    /// [`MAX_TRANSITIONS_PER_STEP`]): `resume` enters it.
    Enter,
}

/// A Task to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRequest {
    pub state: String,
    pub resource: String,
    pub parameters: Value,
    pub timeout_seconds: Option<u64>,
    pub heartbeat_seconds: Option<u64>,
    /// 0 for the first attempt, then 1, 2 ... for retries.
    pub attempt: u32,
    /// Stable across engine restarts: `idempotency_key(execution_id, scope/state, attempt)`.
    pub idempotency_key: String,
    /// The cursor's scope: empty at the top level, e.g. `Map@0[3]` inside a Map iteration.
    pub scope: String,
    /// A callback task's `$$.Task.Token`, for the engine to record (hashed) what
    /// it waits for. Never serialized: a stored request does not hold it.
    #[serde(skip)]
    pub task_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BranchKind {
    Parallel,
    Map,
}

/// The branches of a Parallel state or the iterations of an inline Map state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BranchRequest {
    pub state: String,
    pub kind: BranchKind,
    /// One input per branch (Parallel) or per item (Map, after ItemSelector).
    pub inputs: Vec<Value>,
    /// Map only: the items themselves (`$$.Map.Item.Value`).
    pub items: Vec<Value>,
    pub max_concurrency: u32,
    pub tolerated_failure_count: Option<u64>,
    pub tolerated_failure_percentage: Option<f64>,
    pub attempt: u32,
    /// The variables visible to the branches (read-only copy of the outer scope).
    pub variables: Map<String, Value>,
    /// The scope of the Parallel/Map state's cursor (empty at the top level).
    pub scope: String,
    /// History id the first event of the branches gets.
    pub first_event_id: u64,
}

/// What the engine must do next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Action {
    /// Call the handler for `resource`, then `task_succeeded` / `task_failed`.
    RunTask(TaskRequest),
    /// Run the branches (e.g. with `runner::run_branches`), then `task_succeeded` with
    /// the array of results or `task_failed` with the failure.
    RunBranches(BranchRequest),
    /// Sleep until `until_ms` (unix ms), then call `resume`.
    Wait {
        until_ms: i64,
    },
    /// Retry back-off: wait until `until_ms`, then call `resume` (re-runs the work).
    RetryAfter {
        until_ms: i64,
        state: String,
        error: String,
        attempt: u32,
    },
    Succeeded {
        output: Value,
    },
    Failed {
        error: Option<String>,
        cause: Option<String>,
    },
}

/// One history event, with Step Functions' type names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    pub id: u64,
    pub kind: String,
    pub state: Option<String>,
    pub details: Value,
}

/// The outcome of a step: the new cursor, what to do, and what happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub cursor: Cursor,
    pub action: Action,
    pub history: Vec<HistoryEvent>,
}

fn scoped(scope: &str, state: &str) -> String {
    if scope.is_empty() {
        state.to_string()
    } else {
        format!("{scope}/{state}")
    }
}

/// A stable idempotency key for a task attempt. `state` is the state name, prefixed
/// by the cursor's scope inside a Parallel branch or Map iteration
/// (`Map@0[3]/Charge`).
pub fn idempotency_key(execution_id: &str, state: &str, attempt: u32) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("{execution_id}\u{0}{state}\u{0}{attempt}").as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The prefix of task tokens derived from a seed.
pub const TASK_TOKEN_PREFIX: &str = "tnytt_";

/// `$$.Task.Token` of the callback task `state` (scoped) in its `attempt`, entered at
/// history event `entered_event_id`: with a seed, `tnytt_` and the unpadded base64url of
/// SHA-256 over the seed and those facts (so each attempt of each step has its own
/// token, unpredictable without the seed); without one, the idempotency key.
pub fn task_token(
    seed: Option<&[u8; 32]>,
    execution_id: &str,
    state: &str,
    attempt: u32,
    entered_event_id: u64,
) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let Some(seed) = seed else { return idempotency_key(execution_id, state, attempt) };
    let mut h = sha2::Sha256::new();
    h.update(b"tenancy task token\0");
    h.update(seed);
    h.update(format!("{execution_id}\u{0}{state}\u{0}{attempt}\u{0}{entered_event_id}").as_bytes());
    format!("{TASK_TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize()))
}

/// Options of a sub-execution (a Parallel branch or a Map iteration).
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    pub variables: Map<String, Value>,
    /// Where a sub-execution sits (e.g. `Map@0[3]`); empty at the top level.
    pub scope: String,
    pub map_item: Option<MapItem>,
    pub first_event_id: Option<u64>,
    /// Emit `ExecutionStarted` (top-level runs only).
    pub top_level: bool,
}

/// The interpreter over one program (the machine, a branch or a Map processor).
pub struct Interpreter<'a> {
    pub program: &'a Program,
    pub ctx: &'a ExecutionContext,
}

enum Flow {
    Enter(String, Value),
    Done(Value),
    Fail(Failure),
    Pause(Action),
}

struct Run {
    cursor: Cursor,
    history: Vec<HistoryEvent>,
    now: i64,
    /// The work left to the current state's JSONata expressions in this step
    /// ([`limits::MAX_EVAL_WORK`], renewed when a state is entered).
    budget: Rc<Budget>,
    /// States entered and payload bytes recorded by this call (see
    /// [`MAX_TRANSITIONS_PER_STEP`]).
    transitions: u32,
    payload_bytes: usize,
}

/// The step API was called with a cursor that does not fit the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("unknown state {0:?}: the cursor does not belong to this state machine")]
    UnknownState(String),
    #[error("the cursor at state {state:?} is not waiting for {expected}")]
    NotWaiting { state: String, expected: &'static str },
}

fn cursor_deadline(cursor: &Cursor) -> Option<i64> {
    match cursor.phase {
        Phase::Backoff { until_ms, .. } => Some(until_ms),
        _ => cursor.timer_until_ms,
    }
}

impl Entropy for Cursor {
    fn next_u64(&mut self) -> u64 {
        // SplitMix64: tiny, deterministic, good enough for jitter and test data.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl Run {
    fn event(&mut self, kind: &str, state: Option<&str>, details: Value) -> u64 {
        let id = self.cursor.next_event_id;
        self.cursor.next_event_id += 1;
        self.history.push(HistoryEvent { id, kind: kind.to_string(), state: state.map(str::to_string), details });
        id
    }
}

/// The size of `v` as JSON text, without building the text.
pub fn payload_size(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, v);
    count.0
}

fn seed_of(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

fn runtime(msg: impl Into<String>) -> Failure {
    Failure::new(names::RUNTIME, msg)
}

/// The AWS "Error"/"Cause" object a catcher places at its ResultPath.
fn error_output(f: &Failure) -> Value {
    let mut m = Map::new();
    if let Some(e) = &f.error {
        m.insert("Error".into(), json!(e));
    }
    if let Some(c) = &f.cause {
        m.insert("Cause".into(), json!(c));
    }
    Value::Object(m)
}

/// Whether an `ErrorEquals` list matches `error`. `States.ALL` matches everything but
/// the terminal `States.Runtime` and `States.DataLimitExceeded`; `States.TaskFailed`
/// also excludes `States.Timeout`, as in Step Functions.
fn matches_error(list: &[String], error: &str) -> bool {
    let terminal = error == names::RUNTIME || error == names::DATA_LIMIT;
    list.iter().any(|e| {
        e == error
            || (e == names::ALL && !terminal)
            || (e == names::TASK_FAILED && !terminal && error != names::TIMEOUT)
    })
}

impl<'a> Interpreter<'a> {
    pub fn new(program: &'a Program, ctx: &'a ExecutionContext) -> Self {
        Interpreter { program, ctx }
    }

    fn state(&self, name: &str) -> Result<&'a State, StepError> {
        self.program.states.get(name).ok_or_else(|| StepError::UnknownState(name.to_string()))
    }

    /// Starts a run of the program with `input`.
    pub fn start(&self, input: Value, now_ms: i64, opts: StartOptions) -> Step {
        let first = opts.first_event_id.unwrap_or(1);
        let cursor = Cursor {
            state: self.program.start_at.clone(),
            input: input.clone(),
            effective: Value::Null,
            phase: Phase::Work,
            entered_ms: now_ms,
            entered_event_id: 0,
            next_event_id: first,
            retry_counts: vec![],
            attempt: 0,
            variables: opts.variables,
            map_item: opts.map_item,
            rng: seed_of(&format!("{}/{}", self.ctx.execution_id, opts.scope)),
            scope: opts.scope,
            top_level: opts.top_level,
            timer_until_ms: None,
        };
        let mut run =
            Run { cursor, history: vec![], now: now_ms, budget: Rc::default(), transitions: 0, payload_bytes: 0 };
        if run.cursor.top_level {
            run.event("ExecutionStarted", None, json!({"input": input}));
        }
        self.drive(run, Flow::Enter(self.program.start_at.clone(), input))
    }

    /// Continues after a `Wait` or `RetryAfter` timer fired.
    pub fn resume(&self, cursor: &Cursor, now_ms: i64) -> Result<Step, StepError> {
        let mut run = self.run_of(cursor, now_ms);
        let state = self.state(&cursor.state)?;
        let flow = match cursor.phase.clone() {
            _ if cursor_deadline(cursor).is_some_and(|until| now_ms < until) => {
                // Too early: the timer is still pending.
                return Ok(Step { action: self.pending_timer(cursor), cursor: run.cursor, history: vec![] });
            }
            Phase::Timer { output } => self.leave(&mut run, state, output),
            Phase::Backoff { .. } => {
                run.cursor.attempt = run.cursor.attempt.saturating_add(1);
                run.cursor.phase = Phase::Work;
                match self.execute(&mut run, state) {
                    Ok(f) => f,
                    Err(f) => {
                        let f = self.prefixed(&run, f);
                        self.on_error(&mut run, state, f)
                    }
                }
            }
            Phase::Enter => Flow::Enter(cursor.state.clone(), cursor.input.clone()),
            Phase::Work | Phase::Done => {
                return Err(StepError::NotWaiting { state: cursor.state.clone(), expected: "a timer" })
            }
        };
        Ok(self.drive(run, flow))
    }

    fn pending_timer(&self, cursor: &Cursor) -> Action {
        match &cursor.phase {
            Phase::Backoff { until_ms, error } => Action::RetryAfter {
                until_ms: *until_ms,
                state: cursor.state.clone(),
                error: error.clone(),
                attempt: cursor.attempt.saturating_add(1),
            },
            _ => Action::Wait { until_ms: cursor.timer_until_ms.unwrap_or_default() },
        }
    }

    fn check_work(&self, cursor: &Cursor, branches: bool) -> Result<&'a State, StepError> {
        let state = self.state(&cursor.state)?;
        let is_branches = matches!(state.kind, StateKind::Parallel { .. } | StateKind::Map(_));
        let is_task = matches!(state.kind, StateKind::Task { .. });
        if cursor.phase != Phase::Work || (branches && !is_branches) || (!branches && !is_task) {
            return Err(StepError::NotWaiting {
                state: cursor.state.clone(),
                expected: if branches { "branches" } else { "a task" },
            });
        }
        Ok(state)
    }

    /// The pending task succeeded with `result`.
    pub fn task_succeeded(&self, cursor: &Cursor, result: Value, now_ms: i64) -> Result<Step, StepError> {
        let state = self.check_work(cursor, false)?;
        if let Err(f) = Self::check_depth(state, &result) {
            // Not recorded: the history could not be read back.
            return self.task_failed(cursor, f, now_ms);
        }
        let mut run = self.run_of(cursor, now_ms);
        run.event("TaskSucceeded", Some(&state.name), json!({"output": result}));
        Ok(self.succeed_work(run, state, result))
    }

    /// The pending task failed.
    pub fn task_failed(&self, cursor: &Cursor, failure: Failure, now_ms: i64) -> Result<Step, StepError> {
        let state = self.check_work(cursor, false)?;
        let mut run = self.run_of(cursor, now_ms);
        run.event("TaskFailed", Some(&state.name), error_output(&failure));
        let flow = self.on_error(&mut run, state, failure);
        Ok(self.drive(run, flow))
    }

    /// The branches of the pending Parallel / Map state finished.
    pub fn branches_finished(
        &self,
        cursor: &Cursor,
        outcome: Result<Value, Failure>,
        next_event_id: u64,
        now_ms: i64,
    ) -> Result<Step, StepError> {
        let state = self.check_work(cursor, true)?;
        let mut run = self.run_of(cursor, now_ms);
        run.cursor.next_event_id = run.cursor.next_event_id.max(next_event_id);
        let kind = state.type_name();
        match outcome {
            Ok(result) => {
                run.event(&format!("{kind}StateSucceeded"), Some(&state.name), json!({"output": result}));
                Ok(self.succeed_work(run, state, result))
            }
            Err(failure) => {
                run.event(&format!("{kind}StateFailed"), Some(&state.name), error_output(&failure));
                let flow = self.on_error(&mut run, state, failure);
                Ok(self.drive(run, flow))
            }
        }
    }

    fn succeed_work(&self, mut run: Run, state: &'a State, result: Value) -> Step {
        let flow = match self.finish_with_result(&mut run, state, result) {
            Ok(out) => self.leave(&mut run, state, out),
            Err(f) => {
                let f = self.prefixed(&run, f);
                self.on_error(&mut run, state, f)
            }
        };
        self.drive(run, flow)
    }

    fn run_of(&self, cursor: &Cursor, now: i64) -> Run {
        Run { cursor: cursor.clone(), history: vec![], now, budget: Rc::default(), transitions: 0, payload_bytes: 0 }
    }

    fn drive(&self, mut run: Run, mut flow: Flow) -> Step {
        loop {
            flow = match flow {
                Flow::Enter(name, input)
                    if run.transitions >= MAX_TRANSITIONS_PER_STEP
                        || run.payload_bytes >= MAX_PAYLOAD_BYTES_PER_STEP =>
                {
                    // Yield: the engine commits this much and resumes at once.
                    run.cursor.state = name;
                    run.cursor.input = input;
                    run.cursor.effective = Value::Null;
                    run.cursor.phase = Phase::Enter;
                    run.cursor.timer_until_ms = None;
                    return Step {
                        cursor: run.cursor,
                        action: Action::Wait { until_ms: run.now },
                        history: run.history,
                    };
                }
                Flow::Enter(name, input) => {
                    run.transitions += 1;
                    // Validation guarantees that every transition names a state.
                    let state = &self.program.states[&name];
                    run.budget = Rc::default();
                    run.cursor.state = name.clone();
                    run.cursor.input = input;
                    run.cursor.effective = Value::Null;
                    run.cursor.entered_ms = run.now;
                    run.cursor.retry_counts = vec![0; state.retry.len()];
                    run.cursor.attempt = 0;
                    run.cursor.phase = Phase::Work;
                    run.cursor.timer_until_ms = None;
                    let details = json!({"input": run.cursor.input});
                    run.cursor.entered_event_id =
                        run.event(&format!("{}StateEntered", state.type_name()), Some(&name), details);
                    match self.execute(&mut run, state) {
                        Ok(f) => f,
                        Err(f) => {
                            let f = self.prefixed(&run, f);
                            self.on_error(&mut run, state, f)
                        }
                    }
                }
                Flow::Done(output) => {
                    run.cursor.phase = Phase::Done;
                    if run.cursor.top_level {
                        run.event("ExecutionSucceeded", None, json!({"output": output}));
                    }
                    return Step { cursor: run.cursor, action: Action::Succeeded { output }, history: run.history };
                }
                Flow::Fail(f) => {
                    run.cursor.phase = Phase::Done;
                    if run.cursor.top_level {
                        run.event("ExecutionFailed", None, error_output(&f));
                    }
                    return Step {
                        cursor: run.cursor,
                        action: Action::Failed { error: f.error, cause: f.cause },
                        history: run.history,
                    };
                }
                Flow::Pause(action) => return Step { cursor: run.cursor, action, history: run.history },
            }
        }
    }

    /// AWS prefixes run-time errors raised by the interpreter with the state and event.
    fn prefixed(&self, run: &Run, mut f: Failure) -> Failure {
        let prefix_it = matches!(f.error.as_deref(), Some(names::RUNTIME | names::QUERY_EVALUATION | names::INTRINSIC));
        if prefix_it {
            let cause = f.cause.take().unwrap_or_default();
            f.cause = Some(format!(
                "An error occurred while executing the state '{}' (entered at the event id #{}). {cause}",
                run.cursor.state, run.cursor.entered_event_id
            ));
        }
        f
    }

    fn context(&self, run: &Run, state: &State) -> Value {
        let retry_count = matches!(state.kind, StateKind::Task { .. }).then_some(run.cursor.attempt);
        // `$$.Task.Token` of a callback task: its attempt's idempotency key, which the
        // engine also gets in `TaskRequest::idempotency_key` and waits for.
        let task_token = self.task_token_of(run, state);
        context_object(
            self.ctx,
            &StateFacts {
                name: &state.name,
                entered_ms: run.cursor.entered_ms,
                retry_count,
                map_item: run.cursor.map_item.as_ref(),
                task_token: task_token.as_deref(),
            },
        )
    }

    /// `$$.Task.Token` when `state` is a callback task (see [`task_token`]).
    fn task_token_of(&self, run: &Run, state: &State) -> Option<String> {
        match &state.kind {
            StateKind::Task { resource, .. } if resource.ends_with(".waitForTaskToken") => Some(task_token(
                self.ctx.task_token_seed.as_ref(),
                &self.ctx.execution_id,
                &scoped(&run.cursor.scope, &state.name),
                run.cursor.attempt,
                run.cursor.entered_event_id,
            )),
            _ => None,
        }
    }

    fn select_field(
        &self,
        run: &Run,
        state: &State,
        field: &PathField,
        input: &Value,
        null_value: Value,
    ) -> Result<Value, Failure> {
        match field {
            PathField::Default => Ok(input.clone()),
            PathField::Null => Ok(null_value),
            PathField::Path(p) => {
                let ctx = self.context(run, state);
                let scope = Scope { input, context: &ctx, variables: &run.cursor.variables };
                p.select(&scope).map_err(|e| match e {
                    PathError::NotFound(_) => {
                        runtime(format!("Invalid path '{p}' : No results for path: {}", p.canonical()))
                    }
                    other => runtime(other.to_string()),
                })
            }
        }
    }

    fn template(&self, run: &mut Run, state: &State, template: &Value, input: &Value) -> Result<Value, Failure> {
        let ctx = self.context(run, state);
        let vars = run.cursor.variables.clone();
        let scope = Scope { input, context: &ctx, variables: &vars };
        payload::eval_template(template, &scope, &mut run.cursor)
    }

    fn states_binding(&self, run: &Run, state: &State, extra: &[(&str, &Value)]) -> Value {
        let mut m = Map::new();
        m.insert("input".into(), run.cursor.input.clone());
        m.insert("context".into(), self.context(run, state));
        for (k, v) in extra {
            m.insert((*k).to_string(), (*v).clone());
        }
        Value::Object(m)
    }

    fn jsonata(&self, run: &Run, states: &Value, template: &Value, field: &str) -> Result<Value, Failure> {
        let seed = run.cursor.rng.wrapping_add(run.cursor.next_event_id.wrapping_mul(0x9E37_79B9));
        jsonata::eval_template(template, states, &run.cursor.variables, field, seed, &run.budget)
    }

    /// Evaluates `Assign` and returns the new variables (applied by the caller).
    fn assign(
        &self,
        run: &mut Run,
        state: &State,
        assign: Option<&Value>,
        jsonpath_input: &Value,
        states: &Value,
    ) -> Result<Option<Map<String, Value>>, Failure> {
        let Some(assign) = assign else {
            return Ok(None);
        };
        let v = match state.query_language {
            QueryLanguage::JsonPath => self.template(run, state, assign, jsonpath_input)?,
            QueryLanguage::Jsonata => self.jsonata(run, states, assign, "Assign")?,
        };
        Self::check_depth(state, &v)?;
        match v {
            Value::Object(m) => Ok(Some(m)),
            _ => Err(runtime("Assign must be an object")),
        }
    }

    fn apply_assign(run: &mut Run, vars: Option<Map<String, Value>>) {
        if let Some(vars) = vars {
            for (k, v) in vars {
                run.cursor.variables.insert(k, v);
            }
        }
    }

    fn check_size(state: &State, v: &Value) -> Result<usize, Failure> {
        let size = payload_size(v);
        if size > MAX_PAYLOAD_BYTES {
            return Err(Failure::new(
                names::DATA_LIMIT,
                format!(
                    "The state/task '{}' returned a result with a size exceeding the maximum number of bytes service limit.",
                    state.name
                ),
            ));
        }
        Ok(size)
    }

    /// Values nesting deeper than [`limits::MAX_VALUE_DEPTH`] are refused like values
    /// too large: the engine could not read them back.
    fn check_depth(state: &State, v: &Value) -> Result<(), Failure> {
        if limits::deeper_than(v, limits::MAX_VALUE_DEPTH) {
            return Err(Failure::new(
                names::DATA_LIMIT,
                format!(
                    "The state/task '{}' produced a value nesting deeper than the limit of {} levels.",
                    state.name,
                    limits::MAX_VALUE_DEPTH
                ),
            ));
        }
        Ok(())
    }

    /// Leaves a state with `output`: to the next state or the end.
    fn leave(&self, run: &mut Run, state: &State, output: Value) -> Flow {
        if let Err(f) = Self::check_depth(state, &output) {
            return Flow::Fail(f);
        }
        match Self::check_size(state, &output) {
            // Recorded twice: this state's exit and the next one's entry.
            Ok(size) => run.payload_bytes = run.payload_bytes.saturating_add(2 * size),
            Err(f) => return Flow::Fail(f),
        }
        run.event(&format!("{}StateExited", state.type_name()), Some(&state.name), json!({"output": output}));
        match (&state.next, &state.kind) {
            (Some(next), _) => Flow::Enter(next.clone(), output),
            (None, _) => Flow::Done(output),
        }
    }

    fn execute(&self, run: &mut Run, state: &'a State) -> Result<Flow, Failure> {
        let input = run.cursor.input.clone();
        let jsonata = state.query_language == QueryLanguage::Jsonata;
        match &state.kind {
            StateKind::Pass { result } => {
                if jsonata {
                    let states = self.states_binding(run, state, &[]);
                    let vars = self.assign(run, state, state.assign.as_ref(), &input, &states)?;
                    let output = match &state.output {
                        Some(o) => self.jsonata(run, &states, o, "Output")?,
                        None => input,
                    };
                    Self::apply_assign(run, vars);
                    return Ok(self.leave(run, state, output));
                }
                let effective = self.select_field(run, state, &state.input_path, &input, json!({}))?;
                let effective = match &state.parameters {
                    Some(p) => self.template(run, state, p, &effective)?,
                    None => effective,
                };
                let result = result.clone().unwrap_or(effective);
                Self::check_depth(state, &result)?;
                Self::check_size(state, &result)?;
                let vars = self.assign(run, state, state.assign.as_ref(), &result, &Value::Null)?;
                let output = Self::result_path(&state.result_path, &input, result)?;
                let output = self.select_field(run, state, &state.output_path, &output, json!({}))?;
                Self::apply_assign(run, vars);
                Ok(self.leave(run, state, output))
            }
            StateKind::Choice { choices, default } => {
                let effective = if jsonata {
                    input.clone()
                } else {
                    self.select_field(run, state, &state.input_path, &input, json!({}))?
                };
                let states = self.states_binding(run, state, &[]);
                let ctx = self.context(run, state);
                let mut chosen = None;
                for rule in choices {
                    let holds = match &rule.condition {
                        Condition::Jsonata(c) => match self.jsonata(run, &states, c, "Condition")? {
                            Value::Bool(b) => b,
                            other => {
                                return Err(Failure::new(
                                    names::QUERY_EVALUATION,
                                    format!("The Condition field evaluated to a non-boolean value: {other}"),
                                ))
                            }
                        },
                        cond => {
                            let scope = Scope { input: &effective, context: &ctx, variables: &run.cursor.variables };
                            cond.eval(&scope).map_err(runtime)?
                        }
                    };
                    if holds {
                        chosen = Some(rule);
                        break;
                    }
                }
                let (next, output_t, assign_t) = match (chosen, default) {
                    (Some(r), _) => (
                        r.next.clone(),
                        r.output.as_ref().or(state.output.as_ref()),
                        r.assign.as_ref().or(state.assign.as_ref()),
                    ),
                    (None, Some(d)) => (d.clone(), state.output.as_ref(), state.assign.as_ref()),
                    (None, None) => {
                        return Err(Failure::new(names::NO_CHOICE, format!("No Matches! (state {})", state.name)))
                    }
                };
                let vars = self.assign(run, state, assign_t, &effective, &states)?;
                let output = if jsonata {
                    match output_t {
                        Some(o) => self.jsonata(run, &states, o, "Output")?,
                        None => input,
                    }
                } else {
                    self.select_field(run, state, &state.output_path, &effective, json!({}))?
                };
                Self::apply_assign(run, vars);
                run.event("ChoiceStateExited", Some(&state.name), json!({"output": output}));
                Ok(Flow::Enter(next, output))
            }
            StateKind::Wait(wait) => {
                let effective = if jsonata {
                    input.clone()
                } else {
                    self.select_field(run, state, &state.input_path, &input, json!({}))?
                };
                let states = self.states_binding(run, state, &[]);
                let until = self.wait_until(run, state, wait, &effective, &states)?;
                let vars = self.assign(run, state, state.assign.as_ref(), &effective, &states)?;
                let output = if jsonata {
                    match &state.output {
                        Some(o) => self.jsonata(run, &states, o, "Output")?,
                        None => input,
                    }
                } else {
                    self.select_field(run, state, &state.output_path, &effective, json!({}))?
                };
                Self::apply_assign(run, vars);
                if until <= run.now {
                    return Ok(self.leave(run, state, output));
                }
                run.cursor.phase = Phase::Timer { output };
                run.cursor.timer_until_ms = Some(until);
                Ok(Flow::Pause(Action::Wait { until_ms: until }))
            }
            StateKind::Succeed => {
                let output = if jsonata {
                    match &state.output {
                        Some(o) => {
                            let states = self.states_binding(run, state, &[]);
                            self.jsonata(run, &states, o, "Output")?
                        }
                        None => input,
                    }
                } else {
                    let e = self.select_field(run, state, &state.input_path, &input, json!({}))?;
                    self.select_field(run, state, &state.output_path, &e, json!({}))?
                };
                run.event("SucceedStateExited", Some(&state.name), json!({"output": output}));
                Ok(Flow::Done(output))
            }
            StateKind::Fail { error, cause } => {
                let states = self.states_binding(run, state, &[]);
                let error = self.fail_field(run, state, error.as_ref(), "Error", &input, &states)?;
                let cause = self.fail_field(run, state, cause.as_ref(), "Cause", &input, &states)?;
                Ok(Flow::Fail(Failure { error, cause }))
            }
            StateKind::Task { .. } | StateKind::Parallel { .. } | StateKind::Map(_) => {
                let effective = if jsonata {
                    match &state.arguments {
                        Some(a) => {
                            let states = self.states_binding(run, state, &[]);
                            self.jsonata(run, &states, a, "Arguments")?
                        }
                        None => input,
                    }
                } else {
                    let e = self.select_field(run, state, &state.input_path, &input, json!({}))?;
                    match &state.parameters {
                        Some(p) => self.template(run, state, p, &e)?,
                        None => e,
                    }
                };
                Self::check_depth(state, &effective)?;
                Self::check_size(state, &effective)?;
                run.cursor.effective = effective;
                self.schedule_work(run, state)
            }
        }
    }

    fn fail_field(
        &self,
        run: &mut Run,
        state: &State,
        d: Option<&Dynamic>,
        field: &str,
        input: &Value,
        states: &Value,
    ) -> Result<Option<String>, Failure> {
        let v = match d {
            None => return Ok(None),
            Some(Dynamic::Value(v)) if state.query_language == QueryLanguage::Jsonata => {
                self.jsonata(run, states, v, field)?
            }
            Some(Dynamic::Value(v)) => v.clone(),
            Some(Dynamic::Path(p)) => {
                let ctx = self.context(run, state);
                let scope = Scope { input, context: &ctx, variables: &run.cursor.variables };
                p.select(&scope).map_err(|_| {
                    runtime(format!(
                        "The JSONPath '{p}' specified for the field '{field}Path' could not be found in the input '{input}'"
                    ))
                })?
            }
            Some(Dynamic::Intrinsic(call)) => {
                let ctx = self.context(run, state);
                let vars = run.cursor.variables.clone();
                let scope = Scope { input, context: &ctx, variables: &vars };
                payload::eval_expr(call, &format!("{field}Path"), &scope, &mut run.cursor)?
            }
        };
        Ok(Some(match v {
            Value::String(s) => s,
            other => other.to_string(),
        }))
    }

    fn wait_until(
        &self,
        run: &mut Run,
        state: &State,
        wait: &WaitFor,
        effective: &Value,
        states: &Value,
    ) -> Result<i64, Failure> {
        let base = run.cursor.entered_ms;
        // A timestamp further than the longest timer waits that long.
        let latest = base.saturating_add(limits::MAX_TIMER_MS);
        let ctx = self.context(run, state);
        let scope = Scope { input: effective, context: &ctx, variables: &run.cursor.variables };
        match wait {
            WaitFor::Seconds(Dynamic::Value(v)) => {
                let v = if state.query_language == QueryLanguage::Jsonata {
                    self.jsonata(run, states, v, "Seconds")?
                } else {
                    v.clone()
                };
                match v.as_i64() {
                    Some(s) if s >= 0 => Ok(limits::deadline_after_seconds(base, s as f64)),
                    _ => Err(Failure::new(
                        names::QUERY_EVALUATION,
                        format!("The Seconds field must be a non-negative integer, got {v}"),
                    )),
                }
            }
            WaitFor::Timestamp(Dynamic::Value(v)) => {
                let v = if state.query_language == QueryLanguage::Jsonata {
                    self.jsonata(run, states, v, "Timestamp")?
                } else {
                    v.clone()
                };
                let s = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                timestamp::parse(&s).map(|t| timestamp::to_ms(t).min(latest)).ok_or_else(|| {
                    Failure::new(
                        names::QUERY_EVALUATION,
                        format!("The Timestamp field cannot be parsed as an ISO-8601 extended offset date-time format string: {s}"),
                    )
                })
            }
            WaitFor::Seconds(Dynamic::Intrinsic(_)) | WaitFor::Timestamp(Dynamic::Intrinsic(_)) => {
                Err(runtime("intrinsic functions are not allowed in Wait fields"))
            }
            WaitFor::SecondsPath(p) | WaitFor::Seconds(Dynamic::Path(p)) => {
                let v = p.select(&scope).map_err(|_| {
                    runtime(format!("The SecondsPath parameter does not reference an input value: {p}"))
                })?;
                match &v {
                    Value::Number(n) if n.as_i64().is_some() || n.as_u64().is_some() => {
                        let s = n.as_i64().unwrap_or(i64::MAX);
                        if s < 0 {
                            Err(runtime(format!("The SecondsPath parameter references a negative value: {p} == {v}")))
                        } else {
                            Ok(limits::deadline_after_seconds(base, s as f64))
                        }
                    }
                    _ => Err(runtime(format!(
                        "The SecondsPath parameter cannot be parsed as a long value: {p} == {}",
                        java_string(&v)
                    ))),
                }
            }
            WaitFor::TimestampPath(p) | WaitFor::Timestamp(Dynamic::Path(p)) => {
                let v = p.select(&scope).map_err(|_| {
                    runtime(format!("The TimestampPath parameter does not reference an input value: {p}"))
                })?;
                v.as_str()
                    .and_then(timestamp::parse)
                    .map(|t| timestamp::to_ms(t).min(latest))
                    .ok_or_else(|| {
                        runtime(format!(
                            "The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: {p} == {}",
                            java_string(&v)
                        ))
                    })
            }
        }
    }

    fn number_field(
        &self,
        run: &mut Run,
        state: &State,
        d: Option<&Dynamic>,
        field: &str,
        input: &Value,
    ) -> Result<Option<f64>, Failure> {
        let Some(d) = d else { return Ok(None) };
        let v = match d {
            Dynamic::Value(v) if state.query_language == QueryLanguage::Jsonata => {
                let states = self.states_binding(run, state, &[]);
                self.jsonata(run, &states, v, field)?
            }
            Dynamic::Value(v) => v.clone(),
            Dynamic::Intrinsic(_) => {
                return Err(runtime(format!("intrinsic functions are not allowed in {field}Path")))
            }
            Dynamic::Path(p) => {
                let ctx = self.context(run, state);
                let scope = Scope { input, context: &ctx, variables: &run.cursor.variables };
                let v = p
                    .select(&scope)
                    .map_err(|_| runtime(format!("The {field}Path field refers to a path that does not exist: {p}")))?;
                let v = match &v {
                    Value::String(s) => s.trim().parse::<u64>().map(Value::from).unwrap_or(v),
                    _ => v,
                };
                if !v.as_f64().is_some_and(|f| f >= 0.0 && f.fract() == 0.0) && field != "ToleratedFailurePercentage" {
                    return Err(runtime(format!(
                        "The {field}Path field refers to value \"{}\" which is not a valid integer: {p}",
                        java_string(&v)
                    )));
                }
                v
            }
        };
        v.as_f64().map(Some).ok_or_else(|| {
            Failure::new(names::QUERY_EVALUATION, format!("The {field} field must be a number, got {v}"))
        })
    }

    /// Emits the action for the pending work of a Task / Parallel / Map state.
    fn schedule_work(&self, run: &mut Run, state: &'a State) -> Result<Flow, Failure> {
        run.cursor.phase = Phase::Work;
        let effective = run.cursor.effective.clone();
        let input = run.cursor.input.clone();
        match &state.kind {
            StateKind::Task { resource, timeout_seconds, heartbeat_seconds } => {
                let timeout = self.number_field(run, state, timeout_seconds.as_ref(), "TimeoutSeconds", &input)?;
                let heartbeat =
                    self.number_field(run, state, heartbeat_seconds.as_ref(), "HeartbeatSeconds", &input)?;
                run.event("TaskScheduled", Some(&state.name), json!({"resource": resource, "parameters": effective}));
                Ok(Flow::Pause(Action::RunTask(TaskRequest {
                    state: state.name.clone(),
                    resource: resource.clone(),
                    parameters: effective,
                    timeout_seconds: timeout.map(limits::clamp_timer_seconds),
                    heartbeat_seconds: heartbeat.map(limits::clamp_timer_seconds),
                    attempt: run.cursor.attempt,
                    idempotency_key: idempotency_key(
                        &self.ctx.execution_id,
                        &scoped(&run.cursor.scope, &state.name),
                        run.cursor.attempt,
                    ),
                    scope: run.cursor.scope.clone(),
                    task_token: self.task_token_of(run, state),
                })))
            }
            StateKind::Parallel { branches } => {
                run.event("ParallelStateStarted", Some(&state.name), json!({}));
                Ok(Flow::Pause(Action::RunBranches(BranchRequest {
                    state: state.name.clone(),
                    kind: BranchKind::Parallel,
                    inputs: vec![effective; branches.len()],
                    items: vec![],
                    max_concurrency: 0,
                    tolerated_failure_count: None,
                    tolerated_failure_percentage: None,
                    attempt: run.cursor.attempt,
                    variables: run.cursor.variables.clone(),
                    scope: run.cursor.scope.clone(),
                    first_event_id: run.cursor.next_event_id,
                })))
            }
            StateKind::Map(spec) => {
                let jsonata = state.query_language == QueryLanguage::Jsonata;
                let items_value = if jsonata {
                    match &spec.items {
                        Some(t) => {
                            let states = self.states_binding(run, state, &[]);
                            let v = self.jsonata(run, &states, t, "Items")?;
                            if !v.is_array() {
                                let expr = t.as_str().map(jsonata::strip_delims).unwrap_or_default();
                                return Err(Failure::new(
                                    names::QUERY_EVALUATION,
                                    format!(
                                        "The JSONata expression '{expr}' specified for the field 'Items' returned an unexpected result type. Expected 'array', but was '{}' for value: {}",
                                        jsonata::type_name(&v),
                                        v
                                    ),
                                ));
                            }
                            v
                        }
                        None => input.clone(),
                    }
                } else {
                    self.select_field(run, state, &spec.items_path, &effective, json!({}))?
                };
                let Value::Array(items) = items_value else {
                    let err = if jsonata { names::QUERY_EVALUATION } else { names::RUNTIME };
                    return Err(Failure::new(err, format!("Map state input must be an array but was: {items_value}")));
                };
                let max = self.number_field(run, state, spec.max_concurrency.as_ref(), "MaxConcurrency", &effective)?;
                let tol_count = self.number_field(
                    run,
                    state,
                    spec.tolerated_failure_count.as_ref(),
                    "ToleratedFailureCount",
                    &effective,
                )?;
                let tol_pct = self.number_field(
                    run,
                    state,
                    spec.tolerated_failure_percentage.as_ref(),
                    "ToleratedFailurePercentage",
                    &effective,
                )?;
                // From a path or an expression: checked here as the parser checks literals.
                if let Some(p) = tol_pct.filter(|p| !(0.0..=100.0).contains(p)) {
                    return Err(runtime(format!("ToleratedFailurePercentage must be a number from 0 to 100, got {p}")));
                }
                if let Some(n) = tol_count.filter(|n| *n < 0.0 || n.fract() != 0.0) {
                    return Err(runtime(format!("ToleratedFailureCount must be a non-negative integer, got {n}")));
                }
                if items.len() > MAX_MAP_ITEMS {
                    return Err(runtime(format!(
                        "the Map state has {} items, more than the limit of {MAX_MAP_ITEMS} iterations (MAX_MAP_ITEMS)",
                        items.len()
                    )));
                }
                let mut inputs = Vec::with_capacity(items.len());
                let mut input_bytes = 0usize;
                for (index, value) in items.iter().enumerate() {
                    let saved = run.cursor.map_item.replace(MapItem { index, value: value.clone() });
                    let r = match &spec.item_selector {
                        Some(sel) if jsonata => {
                            let states = self.states_binding(run, state, &[]);
                            self.jsonata(run, &states, sel, "ItemSelector")
                        }
                        Some(sel) => self.template(run, state, sel, &effective),
                        None => Ok(value.clone()),
                    };
                    run.cursor.map_item = saved;
                    let r = r?;
                    if spec.item_selector.is_some() {
                        input_bytes = input_bytes.saturating_add(Self::check_size(state, &r)?);
                        if input_bytes > MAX_MAP_INPUT_BYTES {
                            return Err(Failure::new(
                                names::DATA_LIMIT,
                                format!(
                                    "the inputs of the iterations of Map state '{}' exceed {MAX_MAP_INPUT_BYTES} bytes (MAX_MAP_INPUT_BYTES)",
                                    state.name
                                ),
                            ));
                        }
                    }
                    inputs.push(r);
                }
                run.event("MapStateStarted", Some(&state.name), json!({"length": items.len()}));
                Ok(Flow::Pause(Action::RunBranches(BranchRequest {
                    state: state.name.clone(),
                    kind: BranchKind::Map,
                    inputs,
                    items,
                    max_concurrency: max.map(|m| m as u32).unwrap_or(0),
                    tolerated_failure_count: tol_count.map(|c| c as u64),
                    tolerated_failure_percentage: tol_pct,
                    attempt: run.cursor.attempt,
                    variables: run.cursor.variables.clone(),
                    scope: run.cursor.scope.clone(),
                    first_event_id: run.cursor.next_event_id,
                })))
            }
            _ => Err(runtime("no work to schedule")),
        }
    }

    /// Places `result` into the state's raw input according to a ResultPath.
    fn result_path(rp: &PathField, input: &Value, result: Value) -> Result<Value, Failure> {
        match rp {
            PathField::Default => Ok(result),
            PathField::Null => Ok(input.clone()),
            PathField::Path(p) => {
                p.write(input.clone(), result).map_err(|e| Failure::new(names::RESULT_PATH, e.to_string()))
            }
        }
    }

    /// ResultSelector, ResultPath, OutputPath (JSONPath) or Output (JSONata), and Assign.
    fn finish_with_result(&self, run: &mut Run, state: &State, result: Value) -> Result<Value, Failure> {
        let input = run.cursor.input.clone();
        if state.query_language == QueryLanguage::Jsonata {
            let states = self.states_binding(run, state, &[("result", &result)]);
            let vars = self.assign(run, state, state.assign.as_ref(), &result, &states)?;
            let output = match &state.output {
                Some(o) => self.jsonata(run, &states, o, "Output")?,
                None => result,
            };
            Self::apply_assign(run, vars);
            return Ok(output);
        }
        let result = match &state.result_selector {
            Some(sel) => self.template(run, state, sel, &result)?,
            None => result,
        };
        let vars = self.assign(run, state, state.assign.as_ref(), &result, &Value::Null)?;
        let output = Self::result_path(&state.result_path, &input, result)?;
        let output = self.select_field(run, state, &state.output_path, &output, json!({}))?;
        Self::apply_assign(run, vars);
        Ok(output)
    }

    /// Retry, then Catch, then fail the run.
    fn on_error(&self, run: &mut Run, state: &State, failure: Failure) -> Flow {
        let error = failure.error.clone().unwrap_or_default();
        let can_retry = matches!(state.kind, StateKind::Task { .. } | StateKind::Parallel { .. } | StateKind::Map(_));
        if can_retry {
            if let Some(i) = state.retry.iter().position(|r| matches_error(&r.error_equals, &error)) {
                let r = &state.retry[i];
                if run.cursor.retry_counts.len() < state.retry.len() {
                    run.cursor.retry_counts.resize(state.retry.len(), 0);
                }
                let count = run.cursor.retry_counts[i];
                if count < r.max_attempts {
                    let mut delay = r.interval_seconds * r.backoff_rate.powi(count as i32);
                    if let Some(max) = r.max_delay_seconds {
                        delay = delay.min(max);
                    }
                    if r.jitter_full {
                        let u = (run.cursor.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                        delay *= u;
                    }
                    run.cursor.retry_counts[i] = count + 1;
                    let until = limits::deadline_after_seconds(run.now, delay);
                    run.cursor.phase = Phase::Backoff { until_ms: until, error: error.clone() };
                    return Flow::Pause(Action::RetryAfter {
                        until_ms: until,
                        state: state.name.clone(),
                        error,
                        attempt: run.cursor.attempt.saturating_add(1),
                    });
                }
            }
        }
        if let Some(c) = state.catch.iter().find(|c| matches_error(&c.error_equals, &error)) {
            let err_out = error_output(&failure);
            let input = run.cursor.input.clone();
            let out = if state.query_language == QueryLanguage::Jsonata {
                let states = self.states_binding(run, state, &[("errorOutput", &err_out)]);
                let vars = match self.assign(run, state, c.assign.as_ref(), &err_out, &states) {
                    Ok(v) => v,
                    Err(f) => return Flow::Fail(self.prefixed(run, f)),
                };
                let out = match &c.output {
                    Some(o) => match self.jsonata(run, &states, o, "Output") {
                        Ok(v) => v,
                        Err(f) => return Flow::Fail(self.prefixed(run, f)),
                    },
                    None => err_out,
                };
                Self::apply_assign(run, vars);
                out
            } else {
                let vars = match self.assign(run, state, c.assign.as_ref(), &err_out, &Value::Null) {
                    Ok(v) => v,
                    Err(f) => return Flow::Fail(self.prefixed(run, f)),
                };
                Self::apply_assign(run, vars);
                match Self::result_path(&c.result_path, &input, err_out) {
                    Ok(v) => v,
                    Err(f) => return Flow::Fail(f),
                }
            };
            run.event(&format!("{}StateExited", state.type_name()), Some(&state.name), json!({"output": out}));
            return Flow::Enter(c.next.clone(), out);
        }
        Flow::Fail(failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn error_matching() {
        assert!(matches_error(&list(&["E"]), "E"));
        assert!(!matches_error(&list(&["E"]), "F"));
        assert!(matches_error(&list(&["States.ALL"]), "Anything"));
        assert!(matches_error(&list(&["States.ALL"]), "States.Timeout"));
        assert!(!matches_error(&list(&["States.ALL"]), "States.Runtime"));
        assert!(!matches_error(&list(&["States.ALL"]), "States.DataLimitExceeded"));
        assert!(matches_error(&list(&["States.TaskFailed"]), "Custom"));
        assert!(!matches_error(&list(&["States.TaskFailed"]), "States.Timeout"));
        assert!(matches_error(&list(&["States.Runtime"]), "States.Runtime"));
    }

    #[test]
    fn idempotency_keys_are_stable_and_distinct() {
        assert_eq!(idempotency_key("e", "S", 0), idempotency_key("e", "S", 0));
        assert_ne!(idempotency_key("e", "S", 0), idempotency_key("e", "S", 1));
        assert_ne!(idempotency_key("e", "S", 0), idempotency_key("e", "M@0[1]/S", 0));
        assert_eq!(idempotency_key("e", "S", 0).len(), 32);
    }

    #[test]
    fn cursor_round_trips_through_json() {
        let ctx = ExecutionContext::new("sm", "ex", json!({}), 0);
        let def = json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 5, "End": true}}});
        let m = crate::StateMachine::parse(&def).unwrap();
        let step = m.start(&ctx, json!({"a": [1, {"b": null}]}), 0);
        let text = serde_json::to_string(&step.cursor).unwrap();
        let back: Cursor = serde_json::from_str(&text).unwrap();
        assert_eq!(back, step.cursor);
    }
}
