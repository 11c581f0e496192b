//! The interpreter's limits (`tenancy_asl::limits`) seen through the public API: hostile
//! definitions are refused when they are parsed, hostile expressions fail their state
//! with a clear error, timers saturate. Before the limits, most of these cases aborted
//! the process with a stack overflow or panicked on an arithmetic overflow.

use serde_json::{json, Map, Value};
use tenancy_asl::limits::{
    MAX_CHOICE_RULE_DEPTH, MAX_DEFINITION_DEPTH, MAX_EVAL_DEPTH, MAX_EXPRESSION_DEPTH, MAX_TIMER_MS, MAX_TIMER_SECONDS,
    MAX_VALUE_DEPTH,
};
use tenancy_asl::{Action, ExecutionContext, StateMachine};

const T0: i64 = 1_700_000_000_000;

fn ctx() -> ExecutionContext {
    ExecutionContext::new("sm", "exec-1", json!({}), T0)
}

fn parse_err(def: &Value) -> String {
    StateMachine::parse(def).err().map(|e| e.to_string()).unwrap_or_default()
}

fn one_state(state: Value) -> Value {
    json!({"StartAt": "S", "States": {"S": state}})
}

/// Takes a value apart without recursion: dropping a very deep value recurses once
/// per level and would overflow the test's stack on its own.
fn dismantle(v: Value) {
    let mut todo = vec![v];
    while let Some(v) = todo.pop() {
        match v {
            Value::Array(items) => todo.extend(items),
            Value::Object(m) => todo.extend(m.into_iter().map(|(_, x)| x)),
            _ => {}
        }
    }
}

fn object(key: &str, v: Value) -> Value {
    Value::Object(Map::from_iter([(key.to_string(), v)]))
}

/// Runs a one-state JSONata machine and returns its action.
fn run_jsonata(state: Value, input: Value) -> Action {
    let mut def = one_state(state);
    def["QueryLanguage"] = json!("JSONata");
    let m = StateMachine::parse(&def).expect("valid definition");
    m.start(&ctx(), input, T0).action
}

fn failed(action: &Action) -> (String, String) {
    match action {
        Action::Failed { error, cause } => (error.clone().unwrap_or_default(), cause.clone().unwrap_or_default()),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn jsonata_nested_20000_parentheses_is_a_definition_error() {
    let expr = format!("{{% {}1{} %}}", "(".repeat(20_000), ")".repeat(20_000));
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "S",
        "States": {"S": {"Type": "Pass", "Output": expr, "End": true}}});
    let e = parse_err(&def);
    assert!(e.contains("field \"Output\"") && e.contains("S0215"), "{e}");
    assert!(e.contains(&format!("deeper than {MAX_EXPRESSION_DEPTH} levels")), "{e}");
    // A long flat chain builds as deep a tree.
    let chain = format!("{{% 1{} %}}", " + 1".repeat(20_000));
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "S",
        "States": {"S": {"Type": "Pass", "Output": chain, "End": true}}});
    assert!(parse_err(&def).contains("S0215"));
}

#[test]
fn nested_intrinsics_and_filters_are_definition_errors() {
    let call = format!("{}'x'{}", "States.Format('{}', ".repeat(20_000), ")".repeat(20_000));
    let e = parse_err(&one_state(json!({"Type": "Pass", "End": true, "Parameters": {"v.$": call}})));
    assert!(e.contains("field \"Parameters\"") && e.contains("nest deeper than"), "{e}");
    let filter = format!("$.a{}{}", "[?(@.a".repeat(20_000), ")]".repeat(20_000));
    let e = parse_err(&one_state(json!({"Type": "Pass", "End": true, "InputPath": filter})));
    assert!(e.contains("field \"InputPath\"") && e.contains("nest deeper than"), "{e}");
    let long = format!("${}", ".a".repeat(100_000));
    let e = parse_err(&one_state(json!({"Type": "Pass", "End": true, "ResultPath": long})));
    assert!(e.contains("field \"ResultPath\"") && e.contains("at most"), "{e}");
}

#[test]
fn choice_rules_nested_20000_deep_are_refused() {
    for op in ["And", "Or", "Not"] {
        let mut rule = json!({"Variable": "$.a", "IsPresent": true});
        for _ in 0..20_000 {
            rule = object(op, if op == "Not" { rule } else { Value::Array(vec![rule]) });
        }
        rule["Next"] = json!("End");
        let def = json!({"StartAt": "C", "States": {"End": {"Type": "Succeed"}}});
        let mut def = def;
        def["States"]["C"] = json!({"Type": "Choice", "Default": "End"});
        def["States"]["C"]["Choices"] = Value::Array(vec![rule]);
        let e = parse_err(&def);
        assert!(e.contains(&format!("nests deeper than {MAX_DEFINITION_DEPTH} levels")), "{e}");
        dismantle(def);
    }
    // Within the definition's depth, the rule's own limit applies.
    let mut rule = json!({"Variable": "$.a", "IsPresent": true});
    for _ in 0..=MAX_CHOICE_RULE_DEPTH {
        rule = object("Not", rule);
    }
    rule["Next"] = json!("End");
    let def = json!({"StartAt": "C", "States": {"End": {"Type": "Succeed"},
        "C": {"Type": "Choice", "Default": "End", "Choices": [rule]}}});
    let e = parse_err(&def);
    assert!(e.contains(&format!("nest deeper than {MAX_CHOICE_RULE_DEPTH} levels")), "{e}");
}

#[test]
fn deeply_nested_parallel_branches_are_refused() {
    let nest = |n: usize| {
        let mut def = json!({"StartAt": "S", "States": {"S": {"Type": "Succeed"}}});
        for i in 0..n {
            // Built by hand: `json!` would serialize `def` again at every level. State
            // names are unique in the whole machine.
            let mut p = json!({"Type": "Parallel", "End": true});
            p["Branches"] = Value::Array(vec![def]);
            def = json!({"StartAt": format!("P{i}")});
            def["States"] = object(&format!("P{i}"), p);
        }
        def
    };
    assert_eq!(parse_err(&nest(20)), "");
    let deep = nest(5_000);
    let e = parse_err(&deep);
    assert!(e.contains(&format!("nests deeper than {MAX_DEFINITION_DEPTH} levels")), "{e}");
    dismantle(deep);
}

#[test]
fn recursive_lambda_fails_the_state_instead_of_the_process() {
    let action = run_jsonata(
        json!({"Type": "Pass", "End": true,
            "Output": "{% ($f := function($n){ $n = 0 ? 0 : $f($n - 1) }; $f(1000000)) %}"}),
        json!({}),
    );
    let (error, cause) = failed(&action);
    assert_eq!(error, "States.QueryEvaluationError");
    assert!(cause.contains("U1001: Stack overflow error"), "{cause}");
    assert!(cause.contains(&MAX_EVAL_DEPTH.to_string()), "{cause}");
    // Shallow recursion still works.
    let action = run_jsonata(
        json!({"Type": "Pass", "End": true,
            "Output": "{% ($f := function($n){ $n = 0 ? 0 : 1 + $f($n - 1) }; $f(100)) %}"}),
        json!({}),
    );
    assert_eq!(action, Action::Succeeded { output: json!(100) });
}

#[test]
fn runaway_work_fails_the_state() {
    let action = run_jsonata(
        json!({"Type": "Pass", "End": true, "Output":
            "{% $count($map($range(1, 1000, 1), function($i){ $map($range(1, 1000, 1), function($j){ $i * $j }) })) %}"}),
        json!({}),
    );
    let (error, cause) = failed(&action);
    assert_eq!(error, "States.QueryEvaluationError");
    assert!(cause.contains("U1002") && cause.contains("work limit"), "{cause}");
    let action = run_jsonata(
        json!({"Type": "Pass", "End": true, "Output":
            "{% ($d := function($s, $n){ $n = 0 ? $s : $d($s & $s, $n - 1) }; $d('x', 64)) %}"}),
        json!({}),
    );
    let (error, cause) = failed(&action);
    assert_eq!(error, "States.QueryEvaluationError");
    assert!(cause.contains("U1004"), "{cause}");
}

#[test]
fn work_is_counted_per_state_across_map_items() {
    // Each item's ItemSelector is cheap (about 7,000 units); a thousand of them are not.
    let map = |items: u32| {
        json!({"Type": "Map", "End": true, "Items": format!("{{% $range(1, {items}, 1) %}}"),
            "ItemSelector": "{% $sum($map($range(1, 1000, 1), function($i){ $i * 2 + 1 })) %}",
            "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}})
    };
    assert!(matches!(run_jsonata(map(10), json!({})), Action::RunBranches(_)));
    let (error, cause) = failed(&run_jsonata(map(1000), json!({})));
    assert_eq!(error, "States.QueryEvaluationError");
    assert!(cause.contains("U1002"), "{cause}");
}

#[test]
fn outputs_nesting_too_deep_fail_with_data_limit() {
    let deep = "{% ($f := function($n){ $n = 0 ? 0 : {'a': $f($n - 1)} }; $f(%N%)) %}";
    let ok = run_jsonata(
        json!({"Type": "Pass", "End": true, "Output": deep.replace("%N%", &MAX_VALUE_DEPTH.to_string())}),
        json!({}),
    );
    assert!(matches!(ok, Action::Succeeded { .. }), "{ok:?}");
    for field in ["Output", "Assign"] {
        let expr = deep.replace("%N%", &(MAX_VALUE_DEPTH + 1).to_string());
        let value = if field == "Assign" { json!({"x": expr}) } else { json!(expr) };
        let mut state = json!({"Type": "Pass", "End": true});
        state[field] = value;
        let (error, cause) = failed(&run_jsonata(state, json!({})));
        assert_eq!(error, "States.DataLimitExceeded", "{field}");
        assert!(cause.contains(&format!("limit of {MAX_VALUE_DEPTH} levels")), "{cause}");
    }
}

fn wait_until(state: Value, input: Value) -> i64 {
    let m = StateMachine::parse(&one_state(state)).expect("valid definition");
    match m.start(&ctx(), input, T0).action {
        Action::Wait { until_ms } => until_ms,
        other => panic!("expected a wait, got {other:?}"),
    }
}

#[test]
fn huge_waits_are_clamped_to_a_year() {
    let year = T0 + MAX_TIMER_MS;
    assert_eq!(wait_until(json!({"Type": "Wait", "Seconds": i64::MAX, "End": true}), json!({})), year);
    assert_eq!(wait_until(json!({"Type": "Wait", "Seconds": 10, "End": true}), json!({})), T0 + 10_000);
    assert_eq!(wait_until(json!({"Type": "Wait", "SecondsPath": "$.s", "End": true}), json!({"s": i64::MAX})), year);
    assert_eq!(wait_until(json!({"Type": "Wait", "SecondsPath": "$.s", "End": true}), json!({"s": u64::MAX})), year);
    assert_eq!(wait_until(json!({"Type": "Wait", "Timestamp": "9999-12-31T23:59:59Z", "End": true}), json!({})), year);
    assert_eq!(
        wait_until(json!({"Type": "Wait", "TimestampPath": "$.t", "End": true}), json!({"t": "9999-12-31T23:59:59Z"})),
        year
    );
    let mut def = one_state(json!({"Type": "Wait", "Seconds": "{% 1000000000000000 %}", "End": true}));
    def["QueryLanguage"] = json!("JSONata");
    let m = StateMachine::parse(&def).expect("valid definition");
    assert_eq!(m.start(&ctx(), json!({}), T0).action, Action::Wait { until_ms: year });
}

#[test]
fn huge_task_timeouts_and_retry_delays_are_clamped() {
    let m = StateMachine::parse(&one_state(json!({"Type": "Task", "Resource": "r", "End": true,
    "TimeoutSeconds": u64::MAX, "HeartbeatSecondsPath": "$.h",
    "Retry": [
        {"ErrorEquals": ["Big"], "IntervalSeconds": i64::MAX, "MaxAttempts": 2},
        {"ErrorEquals": ["Backoff"], "IntervalSeconds": 1, "BackoffRate": 1.0e300, "MaxAttempts": 5}
    ]})))
    .expect("valid definition");
    let c = ctx();
    let step = m.start(&c, json!({"h": u64::MAX}), T0);
    let Action::RunTask(req) = &step.action else { panic!("expected a task, got {:?}", step.action) };
    assert_eq!((req.timeout_seconds, req.heartbeat_seconds), (Some(MAX_TIMER_SECONDS), Some(MAX_TIMER_SECONDS)));
    let retried = m.task_failed(&c, &step.cursor, "Big", None, T0).expect("a task is pending");
    assert!(matches!(retried.action, Action::RetryAfter { until_ms, .. } if until_ms == T0 + MAX_TIMER_MS));
    // A back-off rate that overflows to infinity after a few attempts.
    let mut cursor = step.cursor.clone();
    let mut now = T0;
    for _ in 0..4 {
        let s = m.task_failed(&c, &cursor, "Backoff", None, now).expect("a task is pending");
        let Action::RetryAfter { until_ms, .. } = s.action else { panic!("expected a retry, got {:?}", s.action) };
        assert!(until_ms > now && until_ms <= now + MAX_TIMER_MS);
        now = until_ms;
        cursor = m.resume(&c, &s.cursor, now).expect("the back-off is pending").cursor;
    }
}

#[test]
fn task_results_nesting_too_deep_fail_the_task() {
    let def = one_state(json!({"Type": "Task", "Resource": "r", "End": true,
        "Retry": [{"ErrorEquals": ["States.ALL"]}]}));
    let m = StateMachine::parse(&def).expect("valid definition");
    let c = ctx();
    let step = m.start(&c, json!({}), T0);
    let mut deep = json!(1);
    for _ in 0..100 {
        deep = json!([deep]);
    }
    let done = m.task_succeeded(&c, &step.cursor, deep, T0).expect("a task is pending");
    // Terminal like a result too large: no retry, and the result is not in the history.
    let (error, cause) = failed(&done.action);
    assert_eq!(error, "States.DataLimitExceeded");
    assert!(cause.contains(&format!("limit of {MAX_VALUE_DEPTH} levels")), "{cause}");
    assert!(done.history.iter().all(|e| e.kind != "TaskSucceeded"));
}
