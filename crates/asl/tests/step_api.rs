//! The step API as a durable engine uses it: tasks, timers, retries, catchers, cursor
//! persistence, and Parallel/Map with tasks inside.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::task::{Context, Poll, Wake, Waker};
use tenancy_asl::runner::{self, BoxFuture, Status, TaskRunner};
use tenancy_asl::{
    idempotency_key, Action, Cursor, ExecutionContext, Failure, StateMachine, Step, StepError, TaskRequest,
};

const T0: i64 = 1_700_000_000_000;

fn ctx() -> ExecutionContext {
    ExecutionContext::new("sm", "exec-1", json!({}), T0)
}

fn machine(def: Value) -> StateMachine {
    StateMachine::parse(&def).expect("valid definition")
}

/// Serializes and deserializes the cursor, as the engine does between steps.
fn persisted(step: &Step) -> Cursor {
    let text = serde_json::to_string(&step.cursor).expect("serialize cursor");
    serde_json::from_str(&text).expect("deserialize cursor")
}

fn kinds(step: &Step) -> Vec<&str> {
    step.history.iter().map(|e| e.kind.as_str()).collect()
}

#[test]
fn task_success_flows_through_result_selector_and_result_path() {
    let m = machine(json!({
        "StartAt": "Prep",
        "States": {
            "Prep": {"Type": "Pass", "Result": {"id": 7}, "ResultPath": "$.prep", "Next": "Call"},
            "Call": {
                "Type": "Task", "Resource": "tenant.create",
                "Parameters": {"id.$": "$.prep.id", "token.$": "$$.Execution.Name"},
                "ResultSelector": {"created.$": "$.ok"},
                "ResultPath": "$.call",
                "TimeoutSeconds": 30, "HeartbeatSeconds": 5,
                "End": true
            }
        }
    }));
    let c = ctx();
    let step = m.start(&c, json!({"name": "acme"}), T0);
    assert_eq!(
        kinds(&step),
        ["ExecutionStarted", "PassStateEntered", "PassStateExited", "TaskStateEntered", "TaskScheduled"]
    );
    let Action::RunTask(req) = &step.action else { panic!("expected a task, got {:?}", step.action) };
    assert_eq!(req.resource, "tenant.create");
    assert_eq!(req.parameters, json!({"id": 7, "token": "exec-1"}));
    assert_eq!((req.timeout_seconds, req.heartbeat_seconds, req.attempt), (Some(30), Some(5), 0));
    assert_eq!(req.idempotency_key, idempotency_key(&c.execution_id, "Call", 0));
    let done = m.task_succeeded(&c, &persisted(&step), json!({"ok": true}), T0 + 10).unwrap();
    assert_eq!(
        done.action,
        Action::Succeeded { output: json!({"name": "acme", "prep": {"id": 7}, "call": {"created": true}}) }
    );
    assert_eq!(kinds(&done), ["TaskSucceeded", "TaskStateExited", "ExecutionSucceeded"]);
    let ids: Vec<u64> = step.history.iter().chain(&done.history).map(|e| e.id).collect();
    assert_eq!(ids, (1..=8).collect::<Vec<_>>(), "event ids continue across steps");
}

#[test]
fn retry_backs_off_then_catch_routes_to_handler() {
    let m = machine(json!({
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task", "Resource": "r",
                "Retry": [{"ErrorEquals": ["Transient"], "IntervalSeconds": 2, "BackoffRate": 3, "MaxAttempts": 2, "MaxDelaySeconds": 5}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Undo"}],
                "End": true
            },
            "Undo": {"Type": "Pass", "End": true}
        }
    }));
    let c = ctx();
    let step = m.start(&c, json!({"a": 1}), T0);
    let s1 = m.task_failed(&c, &persisted(&step), "Transient", Some("try again"), T0).unwrap();
    assert!(matches!(s1.action, Action::RetryAfter { until_ms, attempt: 1, .. } if until_ms == T0 + 2000));
    // Too early: the same timer comes back.
    let early = m.resume(&c, &persisted(&s1), T0 + 1000).unwrap();
    assert_eq!(early.action, s1.action);
    let s2 = m.resume(&c, &persisted(&s1), T0 + 2000).unwrap();
    let Action::RunTask(req) = &s2.action else { panic!("expected a retry") };
    assert_eq!(req.attempt, 1);
    assert_ne!(req.idempotency_key, idempotency_key(&c.execution_id, "Call", 0));
    let s3 = m.task_failed(&c, &persisted(&s2), "Transient", None, T0 + 2000).unwrap();
    // 2 * 3 = 6 s, capped at MaxDelaySeconds 5.
    assert!(matches!(s3.action, Action::RetryAfter { until_ms, attempt: 2, .. } if until_ms == T0 + 7000));
    let s4 = m.resume(&c, &persisted(&s3), T0 + 7000).unwrap();
    let s5 = m.task_failed(&c, &persisted(&s4), "Transient", Some("still"), T0 + 7000).unwrap();
    assert_eq!(
        s5.action,
        Action::Succeeded { output: json!({"a": 1, "error": {"Error": "Transient", "Cause": "still"}}) }
    );
}

#[test]
fn uncaught_failure_fails_the_execution() {
    let m = machine(json!({"StartAt": "Call", "States": {"Call": {"Type": "Task", "Resource": "r", "End": true}}}));
    let c = ctx();
    let step = m.start(&c, json!({}), T0);
    let done = m.task_failed(&c, &step.cursor, "States.Timeout", Some("took too long"), T0).unwrap();
    assert_eq!(
        done.action,
        Action::Failed { error: Some("States.Timeout".into()), cause: Some("took too long".into()) }
    );
    assert_eq!(kinds(&done).last(), Some(&"ExecutionFailed"));
}

#[test]
fn full_jitter_is_deterministic_and_bounded() {
    let def = json!({"StartAt": "Call", "States": {"Call": {"Type": "Task", "Resource": "r", "End": true,
        "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 10, "JitterStrategy": "FULL"}]}}});
    let m = machine(def);
    let c = ctx();
    let delay = || {
        let step = m.start(&c, json!({}), T0);
        match m.task_failed(&c, &step.cursor, "E", None, T0).unwrap().action {
            Action::RetryAfter { until_ms, .. } => until_ms - T0,
            other => panic!("expected a retry, got {other:?}"),
        }
    };
    let d = delay();
    assert!((0..=10_000).contains(&d));
    assert_eq!(d, delay(), "same execution, same jitter");
}

#[test]
fn wait_states_surface_timers() {
    let m = machine(json!({"StartAt": "W", "States": {
        "W": {"Type": "Wait", "SecondsPath": "$.s", "Next": "Past"},
        "Past": {"Type": "Wait", "Timestamp": "2020-01-01T00:00:00Z", "End": true}}}));
    let c = ctx();
    let step = m.start(&c, json!({"s": 3}), T0);
    assert_eq!(step.action, Action::Wait { until_ms: T0 + 3000 });
    let done = m.resume(&c, &persisted(&step), T0 + 3000).unwrap();
    assert_eq!(done.action, Action::Succeeded { output: json!({"s": 3}) });
    assert_eq!(kinds(&done), ["WaitStateExited", "WaitStateEntered", "WaitStateExited", "ExecutionSucceeded"]);
}

#[test]
fn misuse_is_an_error_not_a_panic() {
    let m = machine(json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 1, "End": true}}}));
    let c = ctx();
    let step = m.start(&c, json!({}), T0);
    assert!(matches!(m.task_succeeded(&c, &step.cursor, json!(1), T0), Err(StepError::NotWaiting { .. })));
    let mut bad = step.cursor.clone();
    bad.state = "Gone".into();
    assert_eq!(m.resume(&c, &bad, T0 + 5000), Err(StepError::UnknownState("Gone".into())));
}

struct Recorder {
    calls: Mutex<Vec<(String, Value, String)>>,
    fail_first: AtomicU32,
}

impl TaskRunner for Recorder {
    fn run_task<'a>(&'a self, req: &'a TaskRequest) -> BoxFuture<'a, Result<Value, Failure>> {
        Box::pin(async move {
            self.calls.lock().unwrap().push((
                req.resource.clone(),
                req.parameters.clone(),
                req.idempotency_key.clone(),
            ));
            if req.resource == "flaky" && self.fail_first.fetch_sub(1, Ordering::SeqCst) > 0 {
                return Err(Failure::new("Flaky", "first call fails"));
            }
            Ok(json!({"echo": req.parameters}))
        })
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn map_and_parallel_run_tasks_with_distinct_keys() {
    let m = machine(json!({
        "StartAt": "Fan",
        "States": {
            "Fan": {
                "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2,
                "ItemSelector": {"v.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index"},
                "ItemProcessor": {"StartAt": "Do", "States": {
                    "Do": {"Type": "Task", "Resource": "work", "OutputPath": "$.echo", "End": true}}},
                "ResultPath": "$.mapped",
                "Next": "Both"
            },
            "Both": {
                "Type": "Parallel",
                "Branches": [
                    {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "flaky", "End": true,
                        "Retry": [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 60}]}}},
                    {"StartAt": "B", "States": {"B": {"Type": "Wait", "Seconds": 30, "End": true}}}
                ],
                "ResultSelector": {"a.$": "$[0].echo", "b.$": "$[1].items"},
                "End": true
            }
        }
    }));
    let c = ctx();
    let tasks = Recorder { calls: Mutex::new(vec![]), fail_first: AtomicU32::new(1) };
    let result = block_on(runner::run(&m, &c, json!({"items": ["x", "y"]}), &tasks));
    let Status::Succeeded(out) = &result.status else { panic!("failed: {:?}", result.status) };
    assert_eq!(out["a"], json!({"items": ["x", "y"], "mapped": [{"v": "x", "i": 0}, {"v": "y", "i": 1}]}));
    assert_eq!(out["b"], json!(["x", "y"]));
    // Virtual time: the branches ran concurrently (a 60 s back-off beside a 30 s wait),
    // instantly.
    assert_eq!(result.end_ms, T0 + 60_000);
    let calls = tasks.calls.lock().unwrap();
    let keys: std::collections::BTreeSet<&String> = calls.iter().map(|c| &c.2).collect();
    assert_eq!(calls.len(), 4);
    assert_eq!(keys.len(), 4, "every task attempt has its own idempotency key");
    let ids: Vec<u64> = result.history.iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>(), "history ids are dense");
    assert!(result.history.iter().any(|e| e.kind == "MapIterationSucceeded"));
}

#[test]
fn branch_failure_is_caught_on_the_parallel_state() {
    let m = machine(json!({
        "StartAt": "P",
        "States": {
            "P": {"Type": "Parallel", "Branches": [
                    {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Boom", "Cause": "bad"}}}],
                  "Catch": [{"ErrorEquals": ["Boom"], "Next": "Handled"}], "End": true},
            "Handled": {"Type": "Succeed"}
        }
    }));
    let tasks = Recorder { calls: Mutex::new(vec![]), fail_first: AtomicU32::new(0) };
    let result = block_on(runner::run(&m, &ctx(), json!({}), &tasks));
    assert_eq!(result.status, Status::Succeeded(json!({"Error": "Boom", "Cause": "bad"})));
}

#[test]
fn engine_drives_branches_with_run_branches() {
    let m = machine(json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
        {"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": 1, "End": true}}},
        {"StartAt": "B", "States": {"B": {"Type": "Task", "Resource": "work", "End": true}}}]}}}));
    let c = ctx();
    let tasks = Recorder { calls: Mutex::new(vec![]), fail_first: AtomicU32::new(0) };
    let step = m.start(&c, json!({"k": 1}), T0);
    let Action::RunBranches(req) = &step.action else { panic!("expected branches") };
    assert_eq!(req.inputs, vec![json!({"k": 1}), json!({"k": 1})]);
    let cursor = persisted(&step);
    let outcome = block_on(runner::run_branches(&m, &c, &cursor, req, T0, &tasks)).unwrap();
    let done = m.branches_finished(&c, &cursor, outcome, T0).unwrap();
    assert_eq!(done.action, Action::Succeeded { output: json!([1, {"echo": {"k": 1}}]) });
    assert_eq!(tasks.calls.lock().unwrap()[0].2, idempotency_key(&c.execution_id, "P@0[1]/B", 0));
}

#[test]
fn variables_survive_persistence() {
    let m = machine(json!({"QueryLanguage": "JSONata", "StartAt": "Set", "States": {
        "Set": {"Type": "Pass", "Assign": {"n": "{% $states.input.n + 1 %}"}, "Next": "Call"},
        "Call": {"Type": "Task", "Resource": "r", "Arguments": {"n": "{% $n %}"},
                 "Output": "{% $states.result.v & '/' & $string($n) %}", "End": true}}}));
    let c = ctx();
    let step = m.start(&c, json!({"n": 1}), T0);
    let Action::RunTask(req) = &step.action else { panic!("expected a task") };
    assert_eq!(req.parameters, json!({"n": 2}));
    let done = m.task_succeeded(&c, &persisted(&step), json!({"v": "ok"}), T0).unwrap();
    assert_eq!(done.action, Action::Succeeded { output: json!("ok/2") });
}

#[test]
fn map_tolerates_failures_up_to_the_threshold() {
    let def = |count: u64| {
        json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true, "ToleratedFailureCount": count,
            "ItemProcessor": {"StartAt": "C", "States": {
                "C": {"Type": "Choice", "Choices": [{"Variable": "$", "NumericGreaterThan": 1, "Next": "Bad"}], "Default": "Ok"},
                "Bad": {"Type": "Fail", "Error": "TooBig"},
                "Ok": {"Type": "Pass", "End": true}}}}}})
    };
    let tasks = Recorder { calls: Mutex::new(vec![]), fail_first: AtomicU32::new(0) };
    let run = |count| block_on(runner::run(&machine(def(count)), &ctx(), json!([1, 2, 3]), &tasks));
    assert_eq!(run(2).status, Status::Succeeded(json!([1, null, null])));
    let failed = run(1);
    let Status::Failed(f) = &failed.status else { panic!("expected a failure") };
    assert_eq!(f.error.as_deref(), Some("States.ExceedToleratedFailureThreshold"));
}

#[test]
fn map_with_max_concurrency_one_numbers_events_exactly() {
    let m = machine(json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true, "MaxConcurrency": 1,
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}}}}));
    let tasks = Recorder { calls: Mutex::new(vec![]), fail_first: AtomicU32::new(0) };
    let result = block_on(runner::run(&m, &ctx(), json!(["a", "b"]), &tasks));
    assert_eq!(result.status, Status::Succeeded(json!(["a", "b"])));
    let kinds: Vec<&str> = result.history.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "ExecutionStarted",
            "MapStateEntered",
            "MapStateStarted",
            "MapIterationStarted",
            "PassStateEntered",
            "PassStateExited",
            "MapIterationSucceeded",
            "MapIterationStarted",
            "PassStateEntered",
            "PassStateExited",
            "MapIterationSucceeded",
            "MapStateSucceeded",
            "MapStateExited",
            "ExecutionSucceeded"
        ]
    );
    let ids: Vec<u64> = result.history.iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=14).collect::<Vec<_>>());
}

/// A loop of Pass states yields after a bounded number of transitions (an immediate
/// Wait, no history event for it), and `resume` goes on where it stopped.
#[test]
fn a_loop_of_synchronous_states_yields_in_bounded_steps() {
    use tenancy_asl::step::MAX_TRANSITIONS_PER_STEP;
    let m = machine(json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Result": 1, "ResultPath": "$.n", "Next": "B"},
        "B": {"Type": "Pass", "Next": "A"}}}));
    let first = m.start(&ctx(), json!({}), T0);
    assert_eq!(first.action, Action::Wait { until_ms: T0 });
    let entered = kinds(&first).iter().filter(|k| k.ends_with("StateEntered")).count();
    assert_eq!(entered, MAX_TRANSITIONS_PER_STEP as usize);
    let next = m.resume(&ctx(), &persisted(&first), T0).unwrap();
    assert_eq!(next.action, Action::Wait { until_ms: T0 });
    assert_eq!(next.history[0].id, first.cursor.next_event_id, "ids continue");
    assert_eq!(next.history[0].kind, "PassStateEntered");
    let entered = kinds(&next).iter().filter(|k| k.ends_with("StateEntered")).count();
    assert_eq!(entered, MAX_TRANSITIONS_PER_STEP as usize);
}

/// Nested Maps stop at the run's budget of iterations instead of running them all.
#[test]
fn nested_maps_stop_at_the_iteration_budget() {
    struct Small;
    impl TaskRunner for Small {
        fn run_task<'a>(&'a self, _request: &'a TaskRequest) -> BoxFuture<'a, Result<Value, Failure>> {
            Box::pin(async { Ok(json!(null)) })
        }
        fn limits(&self) -> runner::BranchLimits {
            runner::BranchLimits { iterations: 50, ..runner::BranchLimits::default() }
        }
    }
    let inner = json!({"StartAt": "Leaf", "States": {"Leaf": {"Type": "Pass", "End": true}}});
    let m = machine(json!({"StartAt": "Outer", "States": {"Outer": {"Type": "Map",
        "ItemProcessor": {"StartAt": "Inner", "States": {"Inner": {"Type": "Map", "ItemsPath": "$.items",
            "ItemProcessor": inner, "End": true}}},
        "End": true}}}));
    let items: Vec<Value> = (0..20).map(|_| json!({"items": (0..20).collect::<Vec<_>>()})).collect();
    let result = block_on(runner::run(&m, &ctx(), json!(items), &Small));
    match result.status {
        Status::Failed(f) => {
            assert_eq!(f.error.as_deref(), Some("States.Runtime"));
            assert!(f.cause.unwrap().contains("limit of 50 branches and iterations"));
        }
        other => panic!("{other:?}"),
    }
    let iterations = result.history.iter().filter(|e| e.kind == "MapIterationStarted").count();
    assert!(iterations <= 50, "{iterations} iterations ran");
}
