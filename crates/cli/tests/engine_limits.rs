//! The workflow engine's limits (issue 11, findings 1 and 2) on both backends: a loop
//! of Pass states runs in chunks and fails at the 25,000 history events, also after a
//! restart; nested Maps stop at the iteration limit; payloads over 256 KiB are refused;
//! an execution's `TimeoutSeconds` ends it TIMED_OUT; an execution's tenant must
//! exist; slow user executions do not delay a tenant's provisioning.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestServer, ADMIN};
use tenancy::serve::{start, ServeOptions};
use tenancy_app::engine::{TaskCall, TaskHandler, TaskOutput, TaskResult};

both_backends!(
    a_loop_of_pass_states_fails_at_the_history_limit,
    a_looping_execution_fails_after_a_restart,
    nested_maps_stop_at_a_limit,
    payloads_over_256_kib_are_refused,
    timeout_seconds_ends_an_execution_timed_out,
    an_executions_tenant_must_exist,
    slow_user_executions_do_not_delay_provisioning,
);

const LOOP: &str = r#"{"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "A"}}}"#;

async fn put_machine(s: &TestServer, name: &str, definition: Value) {
    let res = s.call(Method::PUT, &format!("/v1/state-machines/{name}"), Some(json!({"definition": definition}))).await;
    assert!(res.status.is_success(), "put state machine {name}: {} {}", res.status, res.body);
}

/// Starts an execution; the request must be answered within 10 s.
async fn start_execution(s: &TestServer, body: Value) -> String {
    let call = s.call(Method::POST, "/v1/executions", Some(body));
    let res = tokio::time::timeout(Duration::from_secs(10), call).await.expect("the start was answered");
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    res.body["id"].as_str().unwrap().to_owned()
}

/// Polls an execution until it stops running, failing after `secs`; while it runs, the
/// server must answer another request within a second each time.
async fn wait_stopped(s: &TestServer, id: &str, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let asked = Instant::now();
        let res = tokio::time::timeout(Duration::from_secs(5), s.get(&format!("/v1/executions/{id}")))
            .await
            .expect("the server kept answering");
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        assert!(asked.elapsed() < Duration::from_secs(2), "a read took {:?} while the execution ran", asked.elapsed());
        if res.body["status"] != "RUNNING" {
            return res.body;
        }
        assert!(Instant::now() < deadline, "execution {id} still running after {secs} s: {}", res.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last history events of an execution (after event id `after`).
async fn history_after(s: &TestServer, id: &str, after: u64) -> Vec<Value> {
    let res = s.get(&format!("/v1/executions/{id}/history?limit=1000&cursor={after}")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res.body["items"].as_array().unwrap().clone()
}

async fn assert_failed_at_the_history_limit(s: &TestServer, id: &str, done: &Value) {
    assert_eq!(done["status"], "FAILED", "{done}");
    assert_eq!(done["error"], "States.Runtime", "{done}");
    let cause = done["cause"].as_str().unwrap();
    assert!(cause.contains("25000 history events"), "{cause}");
    let tail = history_after(s, id, 24_000).await;
    let last = tail.last().expect("history near the limit");
    assert_eq!(last["type"], "ExecutionFailed");
    assert!(last["id"].as_u64().unwrap() <= 25_000, "{last}");
    assert!(history_after(s, id, 25_000).await.is_empty());
}

async fn a_loop_of_pass_states_fails_at_the_history_limit(backend: Backend) {
    let s = TestServer::start(backend).await;
    put_machine(&s, "loop", serde_json::from_str(LOOP).unwrap()).await;
    let id = start_execution(&s, json!({"state_machine": "loop"})).await;
    let done = wait_stopped(&s, &id, 60).await;
    assert_failed_at_the_history_limit(&s, &id, &done).await;
    let res = s.call(Method::POST, &format!("/v1/executions/{id}/redrive"), None).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "not-redrivable"), "{}", res.body);
    // The engine serves the others meanwhile and after.
    put_machine(&s, "quick", json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}})).await;
    let quick = start_execution(&s, json!({"state_machine": "quick"})).await;
    assert_eq!(wait_stopped(&s, &quick, 10).await["status"], "SUCCEEDED");
    s.stop().await;
}

/// A looping execution saved in a Wait, then run by a restarted server: it fails
/// cleanly instead of taking the server down.
async fn a_looping_execution_fails_after_a_restart(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = support::database_url(backend).await;
    let opts = || ServeOptions::for_tests(dir.path().to_owned(), db.clone(), ADMIN);
    let first = start(opts()).await.unwrap();
    let s = TestServer::attach(first.url());
    let def = json!({"StartAt": "Nap", "States": {
        "Nap": {"Type": "Wait", "Seconds": 1, "Next": "A"},
        "A": {"Type": "Pass", "Next": "A"}}});
    put_machine(&s, "poison", def).await;
    let id = start_execution(&s, json!({"state_machine": "poison"})).await;
    first.stop().await;
    let second = start(opts()).await.unwrap();
    let s = TestServer::attach(second.url());
    let done = wait_stopped(&s, &id, 60).await;
    assert_failed_at_the_history_limit(&s, &id, &done).await;
    second.stop().await;
}

async fn nested_maps_stop_at_a_limit(backend: Backend) {
    let s = TestServer::start(backend).await;
    let inner = json!({"StartAt": "InnerRange", "States": {
        "InnerRange": {"Type": "Pass", "Parameters": {"items.$": "States.ArrayRange(1, 1000, 1)"}, "Next": "Inner"},
        "Inner": {"Type": "Map", "ItemsPath": "$.items", "ResultPath": null,
            "ItemProcessor": {"StartAt": "Leaf", "States": {"Leaf": {"Type": "Pass", "End": true}}},
            "End": true}}});
    let def = json!({"StartAt": "Range", "States": {
        "Range": {"Type": "Pass", "Parameters": {"items.$": "States.ArrayRange(1, 1000, 1)"}, "Next": "Outer"},
        "Outer": {"Type": "Map", "ItemsPath": "$.items", "ResultPath": null, "ItemProcessor": inner, "End": true}}});
    put_machine(&s, "nested", def).await;
    let started = Instant::now();
    let id = start_execution(&s, json!({"state_machine": "nested"})).await;
    let done = wait_stopped(&s, &id, 60).await;
    assert_eq!((done["status"].as_str(), done["error"].as_str()), (Some("FAILED"), Some("States.Runtime")), "{done}");
    let cause = done["cause"].as_str().unwrap();
    assert!(cause.contains("limit of"), "{cause}");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    s.stop().await;
}

async fn payloads_over_256_kib_are_refused(backend: Backend) {
    let s = TestServer::start(backend).await;
    put_machine(&s, "quick", json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}})).await;
    let big = "x".repeat(300 * 1024);
    let res =
        s.call(Method::POST, "/v1/executions", Some(json!({"state_machine": "quick", "input": {"big": big}}))).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "data-limit-exceeded"), "{}", res.body);
    assert!(s.get("/v1/executions").await.body["items"].as_array().unwrap().is_empty());

    // A task's effective input (its Parameters) over the limit.
    let half = "y".repeat(150 * 1024);
    let def = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "tenancy:noop",
        "Parameters": {"a.$": "$.half", "b.$": "$.half"}, "ResultPath": null, "End": true}}});
    put_machine(&s, "doubling", def).await;
    let id = start_execution(&s, json!({"state_machine": "doubling", "input": {"half": half}})).await;
    let done = wait_stopped(&s, &id, 10).await;
    assert_eq!((done["status"].as_str(), done["error"].as_str()), (Some("FAILED"), Some("States.DataLimitExceeded")));

    // A callback's output over the limit.
    let def = json!({"StartAt": "W", "States": {"W": {"Type": "Task",
        "Resource": "tenancy:callback.waitForTaskToken", "Parameters": {"token.$": "$$.Task.Token"}, "End": true}}});
    put_machine(&s, "callback", def).await;
    let id = start_execution(&s, json!({"state_machine": "callback"})).await;
    let h = history_after(&s, &id, 0).await;
    let token = h.iter().find(|e| e["type"] == "TaskScheduled").unwrap()["details"]["parameters"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = s.call(Method::POST, &format!("/v1/task-tokens/{token}/success"), Some(json!({"output": big}))).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "data-limit-exceeded"), "{}", res.body);
    assert_eq!(s.get(&format!("/v1/executions/{id}")).await.body["status"], "RUNNING");
    s.stop().await;
}

async fn timeout_seconds_ends_an_execution_timed_out(backend: Backend) {
    let s = TestServer::start(backend).await;
    let waits = json!({"TimeoutSeconds": 1, "StartAt": "Nap", "States": {
        "Nap": {"Type": "Wait", "Seconds": 3600, "End": true}}});
    let calls_back = json!({"TimeoutSeconds": 1, "StartAt": "W", "States": {"W": {"Type": "Task",
        "Resource": "tenancy:callback.waitForTaskToken", "Parameters": {"token.$": "$$.Task.Token"}, "End": true}}});
    let res = s
        .call(
            Method::PUT,
            "/v1/state-machines/bad",
            Some(json!({"definition": {"TimeoutSeconds": "1", "StartAt": "P",
            "States": {"P": {"Type": "Pass", "End": true}}}})),
        )
        .await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-definition"), "{}", res.body);
    put_machine(&s, "waits", waits).await;
    put_machine(&s, "calls-back", calls_back).await;
    for machine in ["waits", "calls-back"] {
        let id = start_execution(&s, json!({"state_machine": machine})).await;
        let done = wait_stopped(&s, &id, 10).await;
        assert_eq!(done["status"], "TIMED_OUT", "{done}");
        assert_eq!(done["error"], "States.Timeout", "{done}");
        let h = history_after(&s, &id, 0).await;
        assert_eq!(h.last().unwrap()["type"], "ExecutionTimedOut", "{h:?}");
        let listed = s.get("/v1/executions?status=TIMED_OUT").await;
        assert!(listed.body["items"].as_array().unwrap().iter().any(|e| e["id"] == id.as_str()));
    }
    s.stop().await;
}

async fn an_executions_tenant_must_exist(backend: Backend) {
    let s = TestServer::start(backend).await;
    put_machine(&s, "quick", json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}})).await;
    let body = json!({"state_machine": "quick", "tenant_id": "made-up"});
    let res = s.call(Method::POST, "/v1/executions", Some(body)).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "unknown-tenant"), "{}", res.body);
    assert!(s.get("/v1/executions").await.body["items"].as_array().unwrap().is_empty());
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    start_execution(&s, json!({"state_machine": "quick", "tenant_id": "acme"})).await;
    s.stop().await;
}

/// Holds its worker slot until released (a slow `http:invoke`, say).
struct Hold {
    calls: Arc<AtomicUsize>,
    release: Arc<tokio::sync::Semaphore>,
}

#[async_trait]
impl TaskHandler for Hold {
    async fn call(&self, _call: TaskCall<'_>) -> TaskResult {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let _ = self.release.acquire().await;
        Ok(TaskOutput::new(json!("held")))
    }
}

/// Finding 2: user executions hold every slot they may take; a tenant's provisioning
/// still runs at once, on the slots reserved to lifecycle executions.
async fn slow_user_executions_do_not_delay_provisioning(backend: Backend) {
    let s = TestServer::start(backend).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let hold = Hold { calls: calls.clone(), release: release.clone() };
    s.server.as_ref().unwrap().app.engine().handlers().register("test:hold", hold);
    put_machine(
        &s,
        "slow",
        json!({"StartAt": "H", "States": {"H": {"Type": "Task", "Resource": "test:hold", "End": true}}}),
    )
    .await;
    // More than the worker's 128 slots.
    for _ in 0..150 {
        start_execution(&s, json!({"state_machine": "slow"})).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while calls.load(Ordering::SeqCst) < 96 {
        assert!(Instant::now() < deadline, "only {} slow executions started", calls.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.put_plan("basic", "pool").await;
    let started = Instant::now();
    s.create_tenant("acme", "basic").await;
    let deadline = started + Duration::from_secs(10);
    loop {
        let res = s.get("/v1/tenants/acme").await;
        if res.body["status"] == "active" {
            break;
        }
        assert!(Instant::now() < deadline, "provisioning waited behind user executions: {}", res.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // User executions never took the reserved slots.
    assert!(calls.load(Ordering::SeqCst) <= 96, "{} user executions in flight", calls.load(Ordering::SeqCst));
    release.add_permits(1_000);
    s.stop().await;
}
