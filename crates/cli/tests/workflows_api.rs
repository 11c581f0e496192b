//! The workflow API end to end on both backends: state machines, executions, history,
//! stop, redrive, callback tokens, http:invoke, putEvents, validation, crash recovery.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestServer, ADMIN};
use tenancy::serve::{start, ServeOptions};
use tenancy_app::engine::{TaskCall, TaskHandler, TaskOutput, TaskResult};

both_backends!(
    runs_a_machine_end_to_end,
    validation_errors,
    stop_and_redrive,
    callback_tokens,
    callback_timeouts,
    http_invoke_against_a_local_receiver,
    put_events_and_execution_failed_events,
    crash_recovery_continues_from_the_last_step,
    tenant_provisioning_is_an_execution,
);

fn five_states() -> Value {
    json!({
        "StartAt": "Prepare",
        "States": {
            "Prepare": {"Type": "Pass", "Parameters": {"n.$": "$.n", "seen": true}, "Next": "Work"},
            "Work": {"Type": "Task", "Resource": "tenancy:noop", "Parameters": {"n.$": "$.n"}, "ResultPath": "$.work", "Next": "Decide"},
            "Decide": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericGreaterThan": 10, "Next": "Big"}], "Default": "Small"},
            "Big": {"Type": "Pass", "Result": "big", "ResultPath": "$.size", "Next": "Done"},
            "Small": {"Type": "Pass", "Result": "small", "ResultPath": "$.size", "Next": "Done"},
            "Done": {"Type": "Succeed"}
        }
    })
}

async fn put_machine(s: &TestServer, name: &str, definition: Value) {
    let res = s.call(Method::PUT, &format!("/v1/state-machines/{name}"), Some(json!({"definition": definition}))).await;
    assert!(res.status.is_success(), "put state machine {name}: {} {}", res.status, res.body);
}

async fn start_execution(s: &TestServer, machine: &str, input: Value) -> String {
    let res = s.call(Method::POST, "/v1/executions", Some(json!({"state_machine": machine, "input": input}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    res.body["id"].as_str().unwrap().to_owned()
}

async fn history(s: &TestServer, id: &str) -> Vec<Value> {
    let res = s.get(&format!("/v1/executions/{id}/history?limit=1000")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res.body["items"].as_array().unwrap().clone()
}

fn types(h: &[Value]) -> Vec<&str> {
    h.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

/// No state entered twice, ids dense and increasing.
fn assert_clean_history(h: &[Value]) {
    let mut entered: HashMap<String, usize> = HashMap::new();
    for (i, e) in h.iter().enumerate() {
        assert_eq!(e["id"].as_i64().unwrap(), i as i64 + 1, "history ids: {h:?}");
        if e["type"].as_str().unwrap().ends_with("StateEntered") {
            *entered.entry(e["state"].as_str().unwrap().to_owned()).or_default() += 1;
        }
    }
    assert!(entered.values().all(|n| *n == 1), "a state was entered twice: {entered:?}");
}

async fn token_of(s: &TestServer, id: &str) -> String {
    let h = history(s, id).await;
    let e = h.iter().find(|e| e["type"] == "TaskScheduled").expect("task scheduled");
    e["details"]["parameters"]["token"].as_str().unwrap().to_owned()
}

async fn runs_a_machine_end_to_end(backend: Backend) {
    let s = TestServer::start(backend).await;
    let res = s.call(Method::PUT, "/v1/state-machines/five", Some(json!({"definition": five_states()}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["version"], 1);
    // The same definition again changes nothing.
    let res = s.call(Method::PUT, "/v1/state-machines/five", Some(json!({"definition": five_states()}))).await;
    assert_eq!((res.status, res.body["version"].as_i64()), (StatusCode::OK, Some(1)));
    assert_eq!(s.get("/v1/state-machines/five").await.body["definition"], five_states());
    let names: Vec<String> = s.get("/v1/state-machines").await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(names.contains(&"five".to_owned()), "{names:?}");

    let body = json!({"state_machine": "five", "input": {"n": 42}, "name": "answer"});
    let res = s.call(Method::POST, "/v1/executions", Some(body.clone())).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let id = res.body["id"].as_str().unwrap().to_owned();
    // A repeated name returns the same execution.
    let again = s.call(Method::POST, "/v1/executions", Some(body)).await;
    assert_eq!((again.status, again.body["id"].as_str()), (StatusCode::OK, Some(id.as_str())));

    let done = s.wait_execution(&id, "SUCCEEDED").await;
    assert_eq!(done["output"], json!({"n": 42, "seen": true, "work": {"n": 42}, "size": "big"}));
    assert_eq!(done["name"], "answer");
    assert_eq!(done["state_machine"], "five");
    assert!(done["stopped_at"].is_string());
    let h = history(&s, &id).await;
    assert_clean_history(&h);
    assert_eq!(types(&h).first(), Some(&"ExecutionStarted"));
    assert_eq!(types(&h).last(), Some(&"ExecutionSucceeded"));
    assert!(types(&h).contains(&"TaskSucceeded"));

    let small = start_execution(&s, "five", json!({"n": 1})).await;
    s.wait_execution(&small, "SUCCEEDED").await;
    let listed = s.get("/v1/executions?state_machine=five&status=SUCCEEDED&limit=1").await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    let next = listed.body["next_cursor"].as_str().unwrap().to_owned();
    let rest = s.get(&format!("/v1/executions?state_machine=five&status=SUCCEEDED&cursor={next}")).await;
    assert_eq!(rest.body["items"].as_array().unwrap().len(), 1);
    assert!(s.get("/v1/executions?stuck=true").await.body["items"].as_array().unwrap().is_empty());
    s.stop().await;
}

async fn validation_errors(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bad = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}});
    let res = s.call(Method::PUT, "/v1/state-machines/bad", Some(json!({"definition": bad}))).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-definition"), "{}", res.body);
    let detail = res.body["detail"].as_str().unwrap();
    assert!(detail.contains("\"A\"") && detail.contains("Next") && detail.contains("Nowhere"), "{detail}");
    assert_eq!(s.get("/v1/state-machines/bad").await.status, StatusCode::NOT_FOUND);

    let res = s.call(Method::PUT, "/v1/state-machines/tenancy.mine", Some(json!({"definition": five_states()}))).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "reserved-name"));
    let res = s.call(Method::PUT, "/v1/state-machines/x", Some(json!({"def": {}}))).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-body"));
    let res = s.call(Method::POST, "/v1/executions", Some(json!({"state_machine": "nope"}))).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "unknown-state-machine"));
    let res = s.call(Method::POST, "/v1/executions", Some(json!({"state_machine": "tenancy.tenant.provision"}))).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "reserved-name"));
    let res = s.get("/v1/executions?status=DONE").await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-request"));
    assert_eq!(s.get("/v1/executions/exe_nope").await.status, StatusCode::NOT_FOUND);
    let res = s.call(Method::POST, "/v1/task-tokens/nope/success", Some(json!({"output": {}}))).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    s.stop().await;
}

/// Fails until `ok` is set (a test-only handler registered on the server).
struct Flaky {
    ok: Arc<AtomicBool>,
}

#[async_trait]
impl TaskHandler for Flaky {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        if self.ok.load(Ordering::SeqCst) {
            Ok(TaskOutput::new(json!({"fixed": true, "key": call.idempotency_key})))
        } else {
            Err(tenancy_app::engine::failure("Test.Broken", "not yet"))
        }
    }
}

async fn stop_and_redrive(backend: Backend) {
    let s = TestServer::start(backend).await;
    put_machine(
        &s,
        "sleepy",
        json!({"StartAt": "Nap", "States": {"Nap": {"Type": "Wait", "Seconds": 3600, "End": true}}}),
    )
    .await;
    let id = start_execution(&s, "sleepy", json!({})).await;
    let res = s.call(Method::POST, &format!("/v1/executions/{id}/stop"), None).await;
    assert_eq!((res.status, res.body["status"].as_str()), (StatusCode::OK, Some("ABORTED")), "{}", res.body);
    assert_eq!(types(&history(&s, &id).await).last(), Some(&"ExecutionAborted"));
    let res = s.call(Method::POST, &format!("/v1/executions/{id}/stop"), None).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "execution-not-running"));
    let res = s.call(Method::POST, &format!("/v1/executions/{id}/redrive"), None).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "not-redrivable"));

    let ok = Arc::new(AtomicBool::new(false));
    s.server.as_ref().unwrap().app.engine().handlers().register("test:flaky", Flaky { ok: ok.clone() });
    put_machine(
        &s,
        "fragile",
        json!({"StartAt": "Before", "States": {
            "Before": {"Type": "Pass", "Result": 1, "ResultPath": "$.before", "Next": "Call"},
            "Call": {"Type": "Task", "Resource": "test:flaky", "ResultPath": "$.call", "Next": "After"},
            "After": {"Type": "Pass", "End": true}}}),
    )
    .await;
    let id = start_execution(&s, "fragile", json!({"x": 1})).await;
    let failed = s.wait_execution(&id, "FAILED").await;
    assert_eq!((failed["error"].as_str(), failed["cause"].as_str()), (Some("Test.Broken"), Some("not yet")));
    ok.store(true, Ordering::SeqCst);
    let res = s.call(Method::POST, &format!("/v1/executions/{id}/redrive"), None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let done = s.wait_execution(&id, "SUCCEEDED").await;
    assert_eq!(done["output"]["before"], 1);
    assert_eq!(done["output"]["call"]["fixed"], true);
    assert_eq!(done["redrive_count"], 1);
    let h = history(&s, &id).await;
    let t = types(&h);
    assert!(t.contains(&"ExecutionFailed") && t.contains(&"ExecutionRedriven"), "{t:?}");
    assert_eq!(t.iter().filter(|k| **k == "PassStateEntered").count(), 2, "Before and After once each: {t:?}");
    // The redrive restarts from the failed state (as in Step Functions): Call's task
    // runs again, first thing after the redrive; Before does not.
    let redriven = t.iter().position(|k| *k == "ExecutionRedriven").unwrap();
    assert_eq!(t.get(redriven + 1), Some(&"TaskSucceeded"), "{t:?}");
    let ids: Vec<i64> = h.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    s.stop().await;
}

fn callback_machine(extra: Value) -> Value {
    let mut task = json!({"Type": "Task", "Resource": "tenancy:callback.waitForTaskToken",
        "Parameters": {"token.$": "$$.Task.Token", "order.$": "$.order"}, "End": true});
    task.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    json!({"StartAt": "Await", "States": {"Await": task}})
}

async fn callback_tokens(backend: Backend) {
    let s = TestServer::start(backend).await;
    put_machine(&s, "approval", callback_machine(json!({}))).await;
    let id = start_execution(&s, "approval", json!({"order": 7})).await;
    let token = token_of(&s, &id).await;
    let res = s.call(Method::POST, &format!("/v1/task-tokens/{token}/heartbeat"), None).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.body);
    // A service key (a worker in any language) completes the task.
    let service = s.key("service", None).await;
    let res = s
        .call_with(
            Some(&service),
            Method::POST,
            &format!("/v1/task-tokens/{token}/success"),
            Some(json!({"output": {"approved": true}})),
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.body);
    let done = s.wait_execution(&id, "SUCCEEDED").await;
    assert_eq!(done["output"], json!({"approved": true}));
    // The token is spent.
    let res = s.call(Method::POST, &format!("/v1/task-tokens/{token}/success"), Some(json!({"output": {}}))).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);

    let id = start_execution(&s, "approval", json!({"order": 8})).await;
    let token = token_of(&s, &id).await;
    let res = s
        .call(
            Method::POST,
            &format!("/v1/task-tokens/{token}/failure"),
            Some(json!({"error": "Rejected", "cause": "no"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.body);
    let failed = s.wait_execution(&id, "FAILED").await;
    assert_eq!(failed["error"], "Rejected");
    s.stop().await;
}

async fn callback_timeouts(backend: Backend) {
    let s = TestServer::start(backend).await;
    put_machine(&s, "slow", callback_machine(json!({"TimeoutSeconds": 1}))).await;
    put_machine(&s, "quiet", callback_machine(json!({"TimeoutSeconds": 600, "HeartbeatSeconds": 1}))).await;
    let slow = start_execution(&s, "slow", json!({"order": 1})).await;
    let quiet = start_execution(&s, "quiet", json!({"order": 2})).await;
    assert_eq!(s.wait_execution(&slow, "FAILED").await["error"], "States.Timeout");
    assert_eq!(s.wait_execution(&quiet, "FAILED").await["error"], "States.HeartbeatTimeout");
    s.stop().await;
}

async fn http_invoke_against_a_local_receiver(backend: Backend) {
    use axum::routing::{get, post};
    let app = axum::Router::new()
        .route(
            "/echo",
            post(
                |headers: axum::http::HeaderMap,
                 axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
                 body: String| async move {
                    axum::Json(json!({
                        "body": serde_json::from_str::<Value>(&body).unwrap_or(Value::Null),
                        "query": q,
                        "x": headers.get("x-test").and_then(|v| v.to_str().ok()),
                        "idempotency_key": headers.get("idempotency-key").and_then(|v| v.to_str().ok()),
                    }))
                },
            ),
        )
        .route("/down", get(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "try later") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let s = TestServer::start(backend).await;
    put_machine(
        &s,
        "caller",
        json!({"StartAt": "Call", "States": {"Call": {"Type": "Task", "Resource": "arn:aws:states:::http:invoke",
            "Parameters": {"ApiEndpoint.$": "$.url", "Method": "POST", "Headers": {"x-test": "yes"},
                "QueryParameters": {"q": "1"}, "RequestBody": {"hello.$": "$.who"}},
            "ResultSelector": {"status.$": "$.StatusCode", "body.$": "$.ResponseBody"}, "End": true}}}),
    )
    .await;
    let id = start_execution(&s, "caller", json!({"url": format!("http://{addr}/echo"), "who": "world"})).await;
    let out = s.wait_execution(&id, "SUCCEEDED").await["output"].clone();
    assert_eq!(out["status"], 200);
    assert_eq!(out["body"]["body"], json!({"hello": "world"}));
    assert_eq!(out["body"]["query"], json!({"q": "1"}));
    assert_eq!(out["body"]["x"], "yes");
    assert_eq!(out["body"]["idempotency_key"].as_str().unwrap().len(), 32);

    put_machine(
        &s,
        "down",
        json!({"StartAt": "Call", "States": {"Call": {"Type": "Task", "Resource": "arn:aws:states:::http:invoke",
            "Parameters": {"ApiEndpoint.$": "$.url", "Method": "GET"}, "End": true}}}),
    )
    .await;
    let id = start_execution(&s, "down", json!({"url": format!("http://{addr}/down")})).await;
    let failed = s.wait_execution(&id, "FAILED").await;
    assert_eq!(failed["error"], "States.Http.StatusCode.503");
    s.stop().await;
    receiver.abort();
}

async fn put_events_and_execution_failed_events(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    put_machine(
        &s,
        "notify",
        json!({"StartAt": "Put", "States": {
            "Put": {"Type": "Task", "Resource": "arn:aws:states:::events:putEvents",
                "Parameters": {"Entries": [{"DetailType": "OrderShipped", "Detail": {"order.$": "$.order"}}]},
                "ResultPath": "$.put", "Next": "Boom"},
            "Boom": {"Type": "Fail", "Error": "Custom.Boom", "Cause": "on purpose"}}}),
    )
    .await;
    let res = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(json!({"state_machine": "notify", "input": {"order": 9}, "tenant_id": "acme"})),
        )
        .await;
    let id = res.body["id"].as_str().unwrap().to_owned();
    s.wait_execution(&id, "FAILED").await;
    let shipped = s.get("/v1/events?detail_type=OrderShipped").await.body["items"].as_array().unwrap().clone();
    assert_eq!(shipped.len(), 1);
    assert_eq!(shipped[0]["detail"], json!({"order": 9}));
    assert_eq!(shipped[0]["tenant_id"], "acme");
    let failed = s.get("/v1/events?detail_type=ExecutionFailed").await.body["items"].as_array().unwrap().clone();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["detail"]["execution_id"], id.as_str());
    assert_eq!(failed[0]["detail"]["error"], "Custom.Boom");
    let audit = s.get("/v1/audit?action=execution.start").await.body["items"].as_array().unwrap().len();
    assert_eq!(audit, 1);
    // An execution that fails in its very first step emits the event too.
    put_machine(&s, "doomed", json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E.Now"}}})).await;
    let id = start_execution(&s, "doomed", json!({})).await;
    assert_eq!(s.get(&format!("/v1/executions/{id}")).await.body["status"], "FAILED");
    let failed = s.get("/v1/events?detail_type=ExecutionFailed").await.body["items"].as_array().unwrap().clone();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[1]["detail"]["error"], "E.Now");
    s.stop().await;
}

async fn crash_recovery_continues_from_the_last_step(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = support::database_url(backend).await;
    let opts = || ServeOptions::for_tests(dir.path().to_owned(), db.clone(), ADMIN);
    let first = start(opts()).await.unwrap();
    let s = TestServer::attach(first.url());
    put_machine(
        &s,
        "pause",
        json!({"StartAt": "One", "States": {
            "One": {"Type": "Pass", "Result": 1, "ResultPath": "$.one", "Next": "Echo"},
            "Echo": {"Type": "Task", "Resource": "tenancy:noop", "ResultPath": "$.echo", "Next": "Nap"},
            "Nap": {"Type": "Wait", "Seconds": 2, "Next": "Two"},
            "Two": {"Type": "Pass", "Result": 2, "ResultPath": "$.two", "End": true}}}),
    )
    .await;
    let id = start_execution(&s, "pause", json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !types(&history(&s, &id).await).contains(&"WaitStateEntered") {
        assert!(Instant::now() < deadline, "never reached the Wait state");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.stop().await;

    let second = start(opts()).await.unwrap();
    let s = TestServer::attach(second.url());
    let done = s.wait_execution(&id, "SUCCEEDED").await;
    assert_eq!(done["output"], json!({"one": 1, "echo": {"one": 1}, "two": 2}));
    assert_clean_history(&history(&s, &id).await);
    second.stop().await;
}

async fn tenant_provisioning_is_an_execution(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    let res = s.create_tenant("acme", "basic").await;
    let id = res.body["execution_id"].as_str().unwrap().to_owned();
    s.wait_status("acme", "active").await;
    let exe = s.wait_execution(&id, "SUCCEEDED").await;
    assert_eq!(exe["state_machine"], "tenancy.tenant.provision");
    assert_eq!(exe["tenant_id"], "acme");
    let t = types(&history(&s, &id).await).into_iter().filter(|t| *t == "TaskSucceeded").count();
    assert_eq!(t, 5, "namespace, database, defaults, hooks, activate");
    // A tenant key sees its executions only.
    let own = s.key("tenant", Some("acme")).await;
    let res = s.call_with(Some(&own), Method::GET, &format!("/v1/executions/{id}"), None, &[]).await;
    assert_eq!(res.status, StatusCode::OK);
    s.put_plan("pro", "pool").await;
    s.create_tenant("other", "basic").await;
    let other = s.key("tenant", Some("other")).await;
    let res = s.call_with(Some(&other), Method::GET, &format!("/v1/executions/{id}"), None, &[]).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let listed = s.call_with(Some(&other), Method::GET, "/v1/executions", None, &[]).await;
    assert!(listed.body["items"].as_array().unwrap().iter().all(|e| e["tenant_id"] == "other"), "{}", listed.body);
    let machines = s.get("/v1/state-machines").await.body["items"].as_array().unwrap().len();
    assert!(machines >= 3);
    s.stop().await;
}

/// Two replicas on one PostgreSQL database share the executions: each runs once, no
/// state is entered twice, every execution finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_executions() {
    let url = support::database_url(Backend::Postgres).await;
    let a = TestServer::start_replica(url.clone()).await;
    let b = TestServer::start_replica(url).await;
    put_machine(&a, "five", five_states()).await;
    let mut ids = Vec::new();
    for i in 0..60 {
        let s = if i % 2 == 0 { &a } else { &b };
        ids.push(start_execution(s, "five", json!({"n": i})).await);
    }
    for id in &ids {
        a.wait_execution(id, "SUCCEEDED").await;
        assert_clean_history(&history(&b, id).await);
    }
    a.stop().await;
    b.stop().await;
}
