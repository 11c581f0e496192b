//! Task tokens of callback tasks: random (not computable from the execution id),
//! stored only as a hash, bound to their execution and attempt, hidden from tenant and
//! viewer keys in history, and still valid after a kill -9 and restart.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection;
use support::process::spawn_server;
use support::{Backend, TestServer};

both_backends!(
    tokens_are_random_and_stored_hashed,
    tokens_are_bound_to_their_attempt,
    history_hides_tokens_from_tenants_and_viewers
);

fn callback_machine(extra: Value) -> Value {
    let mut task = json!({"Type": "Task", "Resource": "tenancy:callback.waitForTaskToken",
        "Parameters": {"token.$": "$$.Task.Token", "note.$": "States.Format('token {}', $$.Task.Token)"}, "End": true});
    task.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    json!({"StartAt": "Await", "States": {"Await": task}})
}

async fn put_machine(s: &TestServer, name: &str, definition: Value) {
    let res = s.call(Method::PUT, &format!("/v1/state-machines/{name}"), Some(json!({"definition": definition}))).await;
    assert!(res.status.is_success(), "{} {}", res.status, res.body);
}

async fn start(s: &TestServer, machine: &str, tenant: Option<&str>) -> String {
    let res = s
        .call(Method::POST, "/v1/executions", Some(json!({"state_machine": machine, "input": {}, "tenant_id": tenant})))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    res.body["id"].as_str().unwrap().to_owned()
}

async fn history_as(s: &TestServer, token: Option<&str>, id: &str) -> Vec<Value> {
    let res = s.call_with(token, Method::GET, &format!("/v1/executions/{id}/history?limit=1000"), None, &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res.body["items"].as_array().unwrap().clone()
}

/// The token of the latest scheduled callback task (as an admin reads it), once it waits.
async fn token_of(s: &TestServer, id: &str, attempts: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let h = history_as(s, Some(support::ADMIN), id).await;
        let scheduled: Vec<&Value> = h.iter().filter(|e| e["type"] == "TaskScheduled").collect();
        if scheduled.len() >= attempts {
            return scheduled[attempts - 1]["details"]["parameters"]["token"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "no TaskScheduled #{attempts}: {h:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn complete(s: &TestServer, token: &str) -> StatusCode {
    let service = s.key("service", None).await;
    let path = format!("/v1/task-tokens/{token}/success");
    s.call_with(Some(&service), Method::POST, &path, Some(json!({"output": {"ok": true}})), &[]).await.status
}

/// The `task_token` column of an execution, and its cursor and pending action.
async fn stored_row(s: &TestServer, id: &str) -> (Option<String>, String, String) {
    let sql = "SELECT task_token, cursor, pending FROM executions WHERE id = $1";
    match s.database_url.as_deref() {
        Some(url) => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_as(sql).bind(id).fetch_one(&mut c).await.unwrap()
        }
        None => {
            let url = format!("sqlite://{}", s.dir.path().join("tenancy.db").display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query_as(sql).bind(id).fetch_one(&mut c).await.unwrap()
        }
    }
}

async fn tokens_are_random_and_stored_hashed(backend: Backend) {
    let s = TestServer::start(backend).await;
    put_machine(&s, "approval", callback_machine(json!({}))).await;
    let id = start(&s, "approval", None).await;
    let token = token_of(&s, &id, 1).await;
    // Today's formula (the first 16 bytes of sha256(execution, state, attempt)) is
    // not the token, and completes nothing.
    let guessed = tenancy_asl::step::idempotency_key(&id, "Await", 0);
    assert_ne!(token, guessed);
    assert_eq!(complete(&s, &guessed).await, StatusCode::NOT_FOUND);
    let random = token.strip_prefix("tnytt_").expect("a task token");
    assert!(random.len() >= 43, "256 bits: {token}");
    // The same machine's next execution gets an unrelated token.
    let other = start(&s, "approval", None).await;
    assert_ne!(token_of(&s, &other, 1).await, token);

    let (stored, cursor, pending) = stored_row(&s, &id).await;
    assert_eq!(stored.as_deref(), Some(&*tenancy_app::engine::token_hash(&token)), "its SHA-256");
    assert!(!cursor.contains(&token) && !pending.contains(&token), "not in the waiting execution's row");
    assert_eq!(complete(&s, &token).await, StatusCode::NO_CONTENT);
    assert_eq!(s.wait_execution(&id, "SUCCEEDED").await["output"], json!({"ok": true}));
    assert_eq!(complete(&s, &token).await, StatusCode::NOT_FOUND, "spent");
    s.stop().await;
}

async fn tokens_are_bound_to_their_attempt(backend: Backend) {
    let s = TestServer::start(backend).await;
    let retry = json!({"Retry": [{"ErrorEquals": ["Again"], "IntervalSeconds": 1, "MaxAttempts": 1}]});
    put_machine(&s, "retried", callback_machine(retry)).await;
    let id = start(&s, "retried", None).await;
    let first = token_of(&s, &id, 1).await;
    let path = format!("/v1/task-tokens/{first}/failure");
    let res = s.call(Method::POST, &path, Some(json!({"error": "Again"}))).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.body);
    let second = token_of(&s, &id, 2).await;
    assert_ne!(first, second);
    assert_eq!(complete(&s, &first).await, StatusCode::NOT_FOUND, "an earlier attempt's token");
    let other = start(&s, "retried", None).await;
    let others = token_of(&s, &other, 1).await;
    assert_eq!(complete(&s, &others).await, StatusCode::NO_CONTENT, "completes its own execution only");
    assert_eq!(s.get(&format!("/v1/executions/{id}")).await.body["status"], "RUNNING");
    assert_eq!(complete(&s, &second).await, StatusCode::NO_CONTENT);
    s.wait_execution(&id, "SUCCEEDED").await;
    s.stop().await;
}

async fn history_hides_tokens_from_tenants_and_viewers(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    s.wait_status("acme", "active").await;
    put_machine(&s, "approval", callback_machine(json!({}))).await;
    let id = start(&s, "approval", Some("acme")).await;
    let token = token_of(&s, &id, 1).await;
    let tenant = s.key("tenant", Some("acme")).await;
    let viewer = s.key("viewer", None).await;
    for key in [&tenant, &viewer] {
        let h = serde_json::to_string(&history_as(&s, Some(key), &id).await).unwrap();
        assert!(h.contains("TaskScheduled") && h.contains("[redacted]"), "{h}");
        assert!(!h.contains(&token) && !h.contains("tnytt_"), "{h}");
    }
    let admin = serde_json::to_string(&history_as(&s, Some(support::ADMIN), &id).await).unwrap();
    assert!(admin.contains(&format!("token {token}")), "admins hand tokens out: {admin}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_token_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, url) = spawn_server(dir.path());
    let s = TestServer::attach(url);
    put_machine(&s, "approval", callback_machine(json!({"HeartbeatSeconds": 600}))).await;
    let id = start(&s, "approval", None).await;
    let token = token_of(&s, &id, 1).await;
    first.kill_9();
    let (_second, url) = spawn_server(dir.path());
    let s = TestServer::attach(url);
    let path = format!("/v1/task-tokens/{token}/heartbeat");
    assert_eq!(s.call(Method::POST, &path, None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(complete(&s, &token).await, StatusCode::NO_CONTENT);
    s.wait_execution(&id, "SUCCEEDED").await;
}
