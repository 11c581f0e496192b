//! `tenancy queues`, `tenancy hooks`, `tenancy tenants resources` and `tenancy
//! reconciliation` against a real server: what they print and how they fail.

mod support;

use serde_json::Value;
use support::{Backend, TestServer};

/// Runs `tenancy args` off the async runtime: exit code, stdout, stderr.
async fn cli(url: &str, args: &[&str]) -> (i32, String, String) {
    let (url, args) = (url.to_owned(), args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
    tokio::task::spawn_blocking(move || support::run_cli(&url, &args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap()
}

/// Runs `args` and asserts it succeeded; its stdout and stderr.
async fn ok(url: &str, args: &[&str]) -> (String, String) {
    let (code, out, err) = cli(url, args).await;
    assert_eq!(code, 0, "tenancy {args:?}: {err}");
    (out, err)
}

/// Runs `args`, expected to fail: its exit code and stderr.
async fn fails(url: &str, args: &[&str]) -> (i32, String) {
    let (code, _, err) = cli(url, args).await;
    (code, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_commands() {
    let s = TestServer::start(Backend::Sqlite).await;
    let url = s.url.as_str();
    ok(url, &["queues", "put", "work-dlq"]).await;
    ok(
        url,
        &[
            "queues",
            "put",
            "work",
            "--visibility-timeout-s",
            "0",
            "--max-receive-count",
            "1",
            "--dead-letter-queue",
            "work-dlq",
        ],
    )
    .await;
    let (list, _) = ok(url, &["queues", "list"]).await;
    assert!(list.contains("work-dlq") && list.contains("VISIBILITY_TIMEOUT_S"), "{list}");

    ok(url, &["queues", "send", "work", r#"{"order": 1}"#, "--group-id", "acme"]).await;
    let (got, _) = ok(url, &["-o", "json", "queues", "receive", "work", "--max", "10", "--wait-s", "1"]).await;
    let got: Value = serde_json::from_str(&got).unwrap();
    assert_eq!(got["messages"][0]["body"]["order"], 1, "{got}");
    let receipt = got["messages"][0]["receipt"].as_str().unwrap().to_owned();
    ok(url, &["queues", "ack", "work", &receipt]).await;
    let (depth, _) = ok(url, &["-o", "json", "queues", "get", "work"]).await;
    let depth: Value = serde_json::from_str(&depth).unwrap();
    assert_eq!((depth["visible"].as_i64(), depth["in_flight"].as_i64()), (Some(0), Some(0)), "{depth}");

    // Received twice without a delete (visibility 0): dead-lettered, then redriven.
    ok(url, &["queues", "send", "work", r#""poison""#]).await;
    ok(url, &["queues", "receive", "work"]).await;
    let (table, _) = ok(url, &["queues", "receive", "work"]).await;
    assert!(!table.contains("poison"), "moved to the dead-letter queue on its second receive: {table}");
    let (moved, _) = ok(url, &["-o", "json", "queues", "redrive", "work-dlq"]).await;
    assert_eq!(serde_json::from_str::<Value>(&moved).unwrap()["moved"], 1, "{moved}");

    // Bad input: a clear message and an exit code, nothing changed.
    let (code, err) = fails(url, &["queues", "send", "work", "not json"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not JSON"), "{err}");
    let (code, err) = fails(url, &["queues", "put", "slow", "--visibility-timeout-s", "99999"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("HTTP 400"), "{err}");
    let (code, err) = fails(url, &["queues", "put", "x", "--max-receive-count", "3"]).await;
    assert_eq!(code, 2, "both or neither: {err}");
    let (list, _) = ok(url, &["-o", "json", "queues", "list"]).await;
    assert_eq!(serde_json::from_str::<Value>(&list).unwrap()["items"].as_array().unwrap().len(), 2, "{list}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_resource_and_reconciliation_commands() {
    let s = TestServer::start(Backend::Sqlite).await;
    let url = s.url.as_str();
    ok(url, &["hooks", "put", "crm", "--url", "http://127.0.0.1:9/hook", "--event", "offboard", "--mode", "callback"])
        .await;
    let (list, _) = ok(url, &["hooks", "list"]).await;
    assert!(list.contains("crm") && list.contains("callback") && list.contains("offboard"), "{list}");
    let (code, err) = fails(url, &["hooks", "put", "bad", "--url", "ftp://x", "--event", "provision"]).await;
    assert_eq!(code, 1, "{err}");
    ok(url, &["hooks", "delete", "crm", "--yes"]).await;
    let (code, err) = fails(url, &["hooks", "get", "crm"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("HTTP 404"), "{err}");

    s.put_plan("vault", "silo").await;
    s.create_tenant("acme", "vault").await;
    s.wait_status("acme", "active").await;
    let (resources, _) = ok(url, &["tenants", "resources", "acme"]).await;
    let database = resources.lines().find(|l| l.trim_start().starts_with("database")).unwrap_or_default();
    assert!(database.contains("silo") && database.contains("data.db") && database.contains("true"), "{resources}");

    let file = s.dir.path().join("tenants").join("acme").join("data.db");
    std::fs::remove_file(&file).unwrap();
    let (table, summary) = ok(url, &["reconciliation", "run"]).await;
    assert!(summary.contains("1 tenants checked, 1 drift"), "{summary}");
    assert!(table.contains("acme") && table.contains("missing"), "{table}");
    assert!(!file.exists(), "a database is not recreated empty without an operator");
    let (last, _) = ok(url, &["-o", "json", "reconciliation", "show"]).await;
    let last: Value = serde_json::from_str(&last).unwrap();
    assert_eq!(last["drift"][0]["problem"], "missing", "{last}");
    let id = last["drift"][0]["id"].as_str().unwrap().to_owned();
    assert!(table.contains(&id), "{table}");
    let (repaired, _) = ok(url, &["reconciliation", "repair", &id]).await;
    assert!(repaired.contains(&id) && repaired.contains("true"), "{repaired}");
    assert!(file.exists(), "recreated on request");
    assert!(last["node"].as_str().is_some_and(|n| !n.is_empty()), "{last}");
    s.stop().await;
}

/// `hooks put --queue`, the secret printed once, and `plans put/patch --workflow`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_hook_and_plan_workflow_commands() {
    let s = TestServer::start(Backend::Sqlite).await;
    let url = s.url.as_str();
    let json = |text: &str| serde_json::from_str::<Value>(text).unwrap();
    let (out, _) =
        ok(url, &["-o", "json", "hooks", "put", "crm", "--url", "http://127.0.0.1:9/hook", "--event", "provision"])
            .await;
    assert!(json(&out)["secret"].as_str().is_some_and(|s| s.starts_with("whsec_")), "{out}");
    let (out, _) = ok(url, &["-o", "json", "hooks", "get", "crm"]).await;
    assert!(json(&out).get("secret").is_none(), "{out}");
    let args = ["hooks", "put", "crm", "--url", "http://127.0.0.1:9/hook", "--event", "provision", "--rotate-secret"];
    let (out, _) = ok(url, &args).await;
    assert!(out.contains("whsec_"), "the rotated secret is printed: {out}");

    let (code, err) = fails(url, &["hooks", "put", "fulfil", "--queue", "provisioning", "--event", "provision"]).await;
    assert_eq!(code, 1, "the queue does not exist: {err}");
    assert!(err.contains("unknown-queue") || err.contains("does not exist"), "{err}");
    ok(url, &["queues", "put", "provisioning"]).await;
    let (out, _) =
        ok(url, &["-o", "json", "hooks", "put", "fulfil", "--queue", "provisioning", "--event", "provision"]).await;
    assert_eq!(
        (json(&out)["queue"].clone(), json(&out)["mode"].clone()),
        (Value::from("provisioning"), "callback".into())
    );
    let (code, err) =
        fails(url, &["hooks", "put", "x", "--url", "http://h/x", "--queue", "provisioning", "--event", "provision"])
            .await;
    assert_eq!(code, 2, "url and queue exclude each other: {err}");

    let definition = serde_json::json!({"definition": {"StartAt": "Activate", "States": {"Activate": {"Type": "Task",
        "Resource": "tenancy:tenant.activate", "Parameters": {"tenant_id.$": "$.tenant_id"}, "End": true}}}});
    let res = s.call(reqwest::Method::PUT, "/v1/state-machines/tenancy.lifecycle.quick", Some(definition)).await;
    assert!(res.status.is_success(), "{}", res.body);
    let args =
        ["-o", "json", "plans", "put", "fast", "--name", "Fast", "--workflow", "provision=tenancy.lifecycle.quick"];
    let (out, _) = ok(url, &args).await;
    assert_eq!(json(&out)["workflows"]["provision"], "tenancy.lifecycle.quick", "{out}");
    let (out, _) = ok(url, &["-o", "json", "plans", "patch", "fast", "--remove-workflow", "provision"]).await;
    assert!(json(&out).get("workflows").is_none(), "{out}");
    let (code, err) = fails(url, &["plans", "put", "fast", "--name", "Fast", "--workflow", "provision"]).await;
    assert_eq!(code, 2, "{err}");
    s.stop().await;
}
