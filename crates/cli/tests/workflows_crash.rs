//! `kill -9` of a `tenancy serve` process in the middle of running executions: a new
//! process on the same data directory finishes every execution, and no history enters
//! a state twice.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::process::spawn_server;
use support::TestServer;

/// How many executions have each status (one list request per status).
async fn counts(s: &TestServer) -> HashMap<&'static str, usize> {
    let mut out = HashMap::new();
    for st in ["RUNNING", "SUCCEEDED", "FAILED"] {
        let res = s.get(&format!("/v1/executions?status={st}&limit=1000")).await;
        out.insert(st, res.body["items"].as_array().unwrap().len());
    }
    out
}

fn assert_clean(id: &str, h: &[Value]) {
    let mut entered: HashMap<&str, usize> = HashMap::new();
    for (i, e) in h.iter().enumerate() {
        assert_eq!(e["id"].as_i64().unwrap(), i as i64 + 1, "{id}: history ids {h:?}");
        if e["type"].as_str().unwrap().ends_with("StateEntered") {
            *entered.entry(e["state"].as_str().unwrap()).or_default() += 1;
        }
    }
    assert!(entered.values().all(|n| *n == 1), "{id}: a state was entered twice: {entered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_and_every_execution_finishes_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, url) = spawn_server(dir.path());
    let s = TestServer::attach(url);
    let mut states = serde_json::Map::new();
    for i in 0..8 {
        let next = if i < 7 { json!({"Next": format!("S{}", i + 1)}) } else { json!({"End": true}) };
        let mut st = json!({"Type": "Task", "Resource": "tenancy:noop", "ResultPath": format!("$.s{i}")});
        st.as_object_mut().unwrap().extend(next.as_object().unwrap().clone());
        if i == 4 {
            st = json!({"Type": "Wait", "Seconds": 2, "Next": "S5"});
        }
        states.insert(format!("S{i}"), st);
    }
    let def = json!({"StartAt": "S0", "States": states});
    let res = s.call(Method::PUT, "/v1/state-machines/steps", Some(json!({"definition": def}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let mut ids = Vec::new();
    for i in 0..120 {
        let res =
            s.call(Method::POST, "/v1/executions", Some(json!({"state_machine": "steps", "input": {"i": i}}))).await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
        ids.push(res.body["id"].as_str().unwrap().to_owned());
    }
    // Kill right after the starts: executions are being claimed, run or wait.
    first.kill_9();

    let (mut second, url) = spawn_server(dir.path());
    let s = TestServer::attach(url);
    let after_first = counts(&s).await;
    assert!(after_first["RUNNING"] > 0, "the kill came too late to test anything: {after_first:?}");
    // Kill again once some, not all, finished (in the middle of the tasks after the Wait).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = counts(&s).await;
        if c["SUCCEEDED"] > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "nothing finished after the first restart: {c:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    second.kill_9();

    let (_third, url) = spawn_server(dir.path());
    let s = TestServer::attach(url);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = counts(&s).await;
        if c["SUCCEEDED"] == ids.len() {
            break;
        }
        assert!(c["FAILED"] == 0, "{c:?}");
        assert!(Instant::now() < deadline, "executions did not finish after the restarts: {c:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in &ids {
        let h = s.get(&format!("/v1/executions/{id}/history?limit=1000")).await;
        let h = h.body["items"].as_array().unwrap().clone();
        assert_clean(id, &h);
        assert_eq!(h.last().unwrap()["type"], "ExecutionSucceeded");
    }
}
