//! Provisioning hooks over HTTP on both backends: called with the tenant and an
//! idempotency key before the tenant is active; a hook that keeps failing undoes the
//! provisioning and marks the tenant failed. Tenant resources are listed. Suspend and
//! resume hooks are notified after the status change; offboarding exports silo tenants.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestServer};

both_backends!(
    hooks_are_called_before_activation,
    a_failing_hook_fails_the_provisioning,
    a_failed_tenant_is_retried_to_active_once_its_hook_is_fixed,
    hooks_validate,
    plan_change_and_offboard_hooks,
    callback_hooks_answer_through_task_tokens,
    suspend_and_resume_notify_their_hooks,
    a_failing_suspend_hook_fails_the_notification_not_the_suspension,
    hooks_are_signed_with_standard_webhooks,
    queue_hooks_wait_for_their_worker,
    plans_run_their_own_lifecycle_state_machines,
    a_lifecycle_machine_that_ends_without_settling_its_tenant_does_not_leave_it_stuck,
    a_hook_from_before_signing_gets_a_secret
);

/// (Idempotency-Key, body) of every request.
type Calls = Arc<Mutex<Vec<(String, Value)>>>;

/// A receiver answering `status` to every request.
async fn receiver(status: u16) -> (String, Calls) {
    let calls: Calls = Arc::default();
    let c = calls.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::Json<Value>| {
            let c = c.clone();
            async move {
                let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                c.lock().unwrap().push((key, body.0));
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

async fn hooks_are_called_before_activation(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (url, calls) = receiver(200).await;
    let res = s.call(Method::PUT, "/v1/hooks/billing", Some(json!({"url": url, "events": ["provision"]}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let (other, other_calls) = receiver(200).await;
    s.call(Method::PUT, "/v1/hooks/offboarding", Some(json!({"url": other, "events": ["offboard"]}))).await;
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    s.wait_status("acme", "active").await;
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let (key, body) = &calls[0];
    assert!(!key.is_empty());
    assert_eq!((body["event"].clone(), body["tenant"]["id"].clone()), (json!("provision"), json!("acme")));
    assert_eq!(body["idempotency_key"], json!(key));
    assert!(other_calls.lock().unwrap().is_empty(), "only hooks of the event are called");

    let res = s.get("/v1/tenants/acme/resources").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let mut kinds: Vec<&str> =
        res.body["items"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(kinds, ["database", "defaults", "namespace"]);
    assert_eq!(s.get("/v1/tenants/nobody/resources").await.status, StatusCode::NOT_FOUND);
    let audited = s.get("/v1/audit?action=hook.put").await.body;
    assert_eq!(audited["items"].as_array().unwrap().len(), 2);
    s.stop().await;
}

async fn a_failing_hook_fails_the_provisioning(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (url, calls) = receiver(500).await;
    let hook = json!({"url": url, "events": ["provision"], "max_attempts": 2, "timeout_s": 2});
    assert_eq!(s.call(Method::PUT, "/v1/hooks/crm", Some(hook)).await.status, StatusCode::CREATED);
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    s.wait_status("acme", "failed").await;
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "max_attempts attempts");
    assert_eq!(calls[0].0, calls[1].0, "the same idempotency key on every attempt");
    // Compensation: the resources created before the hook are gone.
    assert_eq!(s.get("/v1/tenants/acme/resources").await.body["items"], json!([]));
    let events = s.get("/v1/events?tenant_id=acme&detail_type=TenantProvisioningFailed").await.body;
    let detail = &events["items"][0]["detail"];
    assert_eq!(detail["step"], "CallHooks", "{events}");
    assert_eq!(detail["error"]["Error"], "Tenancy.HookFailed", "{events}");
    assert!(detail["error"]["Cause"].as_str().unwrap().contains("HTTP 500"), "{events}");
    s.stop().await;
}

/// A receiver answering what `status` holds at the time of each request.
async fn switchable_receiver(status: Arc<std::sync::atomic::AtomicU16>) -> (String, Calls) {
    let calls: Calls = Arc::default();
    let c = calls.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::Json<Value>| {
            let (c, status) = (c.clone(), status.clone());
            async move {
                let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                c.lock().unwrap().push((key, body.0));
                axum::http::StatusCode::from_u16(status.load(std::sync::atomic::Ordering::SeqCst)).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

async fn a_failed_tenant_is_retried_to_active_once_its_hook_is_fixed(backend: Backend) {
    let s = TestServer::start(backend).await;
    let status = Arc::new(std::sync::atomic::AtomicU16::new(500));
    let (url, calls) = switchable_receiver(status.clone()).await;
    let hook = json!({"url": url, "events": ["provision"], "max_attempts": 1, "timeout_s": 2});
    assert_eq!(s.call(Method::PUT, "/v1/hooks/crm", Some(hook)).await.status, StatusCode::CREATED);
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    s.wait_status("acme", "failed").await;
    // Only a failed tenant is retried; the retry of an active one changes nothing.
    status.store(200, std::sync::atomic::Ordering::SeqCst);
    s.create_tenant("other", "basic").await;
    s.wait_status("other", "active").await;
    let res = s.call(Method::POST, "/v1/tenants/other/retry", None).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "invalid-transition"), "{}", res.body);
    assert_eq!(s.get("/v1/tenants/other").await.body["status"], "active");
    let res = s.call(Method::POST, "/v1/tenants/nobody/retry", None).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);

    // The hook is fixed: a retry provisions the tenant again, to active.
    let first_key = calls.lock().unwrap()[0].0.clone();
    let res = s.call(Method::POST, "/v1/tenants/acme/retry", None).await;
    assert_eq!((res.status, res.body["status"].as_str()), (StatusCode::ACCEPTED, Some("provisioning")), "{}", res.body);
    let execution = res.body["execution_id"].as_str().unwrap().to_owned();
    let t = s.wait_status("acme", "active").await;
    assert_eq!(t["plan"], "basic");
    let mut kinds: Vec<String> = s.get("/v1/tenants/acme/resources").await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_owned())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["database", "defaults", "namespace"]);
    let acme_calls: Vec<String> =
        calls.lock().unwrap().iter().filter(|(_, b)| b["tenant"]["id"] == "acme").map(|(k, _)| k.clone()).collect();
    assert_eq!(acme_calls.len(), 2, "{acme_calls:?}");
    assert_ne!(acme_calls[1], first_key, "a new attempt has a new idempotency key");
    assert_eq!(
        s.event_types("acme").await,
        [
            "TenantCreated",
            "TenantProvisioningFailed",
            "ExecutionFailed",
            "TenantProvisioningRetried",
            "TenantProvisioned"
        ]
    );
    let events = s.get("/v1/events?tenant_id=acme&detail_type=TenantProvisioningRetried").await.body;
    let detail = &events["items"][0]["detail"];
    assert_eq!(
        (detail["previous_status"].as_str(), detail["execution_id"].as_str()),
        (Some("failed"), Some(execution.as_str()))
    );
    let audit = s.get("/v1/audit?tenant_id=acme&action=tenant.retry_provision").await.body;
    let rec = &audit["items"][0];
    assert_eq!(
        (rec["detail"]["from"].as_str(), rec["detail"]["to"].as_str()),
        (Some("failed"), Some("provisioning")),
        "{audit}"
    );
    assert_eq!(rec["actor_role"], "admin");
    // Active now: a second retry is refused.
    let res = s.call(Method::POST, "/v1/tenants/acme/retry", None).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "invalid-transition"));
    s.stop().await;
}

async fn hooks_validate(backend: Backend) {
    let s = TestServer::start(backend).await;
    for (body, code) in [
        (json!({"url": "ftp://x", "events": ["provision"]}), "invalid-url"),
        (json!({"url": "http://x/h", "events": []}), "invalid-hook"),
        (json!({"url": "http://x/h", "events": ["reboot"]}), "invalid-body"),
        (json!({"url": "http://x/h", "events": ["provision"], "max_attempts": 0}), "invalid-hook"),
        (json!({"url": "http://x/h", "events": ["provision"], "timeout_s": 301}), "invalid-hook"),
    ] {
        let res = s.call(Method::PUT, "/v1/hooks/h", Some(body.clone())).await;
        assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, code), "{body}: {}", res.body);
    }
    assert_eq!(s.get("/v1/hooks").await.body["items"], json!([]));
    let ok = json!({"url": "http://x/h", "events": ["provision", "suspend"]});
    assert_eq!(s.call(Method::PUT, "/v1/hooks/h", Some(ok)).await.status, StatusCode::CREATED);
    assert_eq!(s.get("/v1/hooks/h").await.body["timeout_s"], 10);
    assert_eq!(s.call(Method::DELETE, "/v1/hooks/h", None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(s.get("/v1/hooks/h").await.status, StatusCode::NOT_FOUND);
    s.stop().await;
}

/// On the embedded default a silo tenant gets a SQLite database under the data
/// directory, created by provisioning and deleted by offboarding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silo_tenants_get_a_database_file() {
    let s = TestServer::start(Backend::Sqlite).await;
    s.put_plan("dedicated", "silo").await;
    s.put_plan("shared", "pool").await;
    s.create_tenant("big", "dedicated").await;
    s.create_tenant("small", "shared").await;
    s.wait_status("big", "active").await;
    s.wait_status("small", "active").await;
    let file = s.dir.path().join("tenants").join("big").join("data.db");
    assert!(file.exists(), "{} missing", file.display());
    assert!(!s.dir.path().join("tenants").join("small").exists(), "pool tenants share the pool");

    let res = s.get("/v1/tenants/big/resources").await;
    let db = res.body["items"].as_array().unwrap().iter().find(|r| r["kind"] == "database").unwrap().clone();
    assert_eq!(db["detail"]["engine"], "sqlite", "{db}");
    assert_eq!(db["observed"]["exists"], true, "{db}");
    let small = s.get("/v1/tenants/small/resources").await;
    let small_db = small.body["items"].as_array().unwrap().iter().find(|r| r["kind"] == "database").unwrap().clone();
    assert!(small_db.get("observed").is_none(), "{small_db}");

    // A hook failing after the database exists: the undo deletes the file.
    let (url, _) = receiver(503).await;
    let hook = json!({"url": url, "events": ["provision"], "max_attempts": 1});
    assert_eq!(s.call(Method::PUT, "/v1/hooks/gate", Some(hook)).await.status, StatusCode::CREATED);
    s.create_tenant("doomed", "dedicated").await;
    s.wait_status("doomed", "failed").await;
    assert!(!s.dir.path().join("tenants").join("doomed").exists(), "compensation removed the database");

    let res = s.call(Method::DELETE, "/v1/tenants/big", None).await;
    assert!(res.status.is_success(), "{}", res.body);
    s.wait_status("big", "offboarded").await;
    assert!(!file.exists(), "offboarding deletes the database");
    s.stop().await;
}

async fn plan_change_and_offboard_hooks(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    s.put_plan("pro", "pool").await;
    s.create_tenant("acme", "basic").await;
    s.wait_status("acme", "active").await;
    // A plan-change hook that refuses: the tenant stays on its plan.
    let (refuse, refused) = receiver(409).await;
    let hook = json!({"url": refuse, "events": ["plan_change"], "max_attempts": 1});
    assert_eq!(s.call(Method::PUT, "/v1/hooks/billing", Some(hook)).await.status, StatusCode::CREATED);
    let res = s.call(Method::POST, "/v1/tenants/acme/plan", Some(json!({"plan": "pro"}))).await;
    assert!(res.status.is_success(), "{}", res.body);
    let deadline = Instant::now() + Duration::from_secs(20);
    while refused.lock().unwrap().is_empty() || s.get("/v1/tenants/acme").await.body["status"] != "active" {
        assert!(Instant::now() < deadline, "the plan change never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.get("/v1/tenants/acme").await.body["plan"], "basic", "the refused change was reverted");
    assert_eq!(refused.lock().unwrap()[0].1["event"], "plan_change");

    // An offboarding hook hears about the tenant before its resources go.
    let (url, calls) = receiver(204).await;
    let hook = json!({"url": url, "events": ["offboard"]});
    assert_eq!(s.call(Method::PUT, "/v1/hooks/export", Some(hook)).await.status, StatusCode::CREATED);
    let res = s.call(Method::DELETE, "/v1/tenants/acme", None).await;
    assert!(res.status.is_success(), "{}", res.body);
    s.wait_status("acme", "offboarded").await;
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!((calls[0].1["event"].clone(), calls[0].1["tenant"]["id"].clone()), (json!("offboard"), json!("acme")));
    s.stop().await;
}

async fn callback_hooks_answer_through_task_tokens(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (url, calls) = receiver(202).await;
    let hook = json!({"url": url, "events": ["provision"], "mode": "callback", "timeout_s": 3600});
    assert_eq!(s.call(Method::PUT, "/v1/hooks/crm", Some(hook)).await.status, StatusCode::CREATED);
    s.put_plan("basic", "pool").await;
    let service = s.key("service", None).await;
    for (tenant, outcome) in [("yes", "success"), ("no", "failure")] {
        s.create_tenant(tenant, "basic").await;
        // The hook is told, and the tenant waits in provisioning for its answer.
        let deadline = Instant::now() + Duration::from_secs(20);
        let token = loop {
            let found = calls.lock().unwrap().iter().find(|(_, b)| b["tenant"]["id"] == tenant).cloned();
            if let Some((_, body)) = found {
                break body["task_token"].as_str().unwrap().to_owned();
            }
            if Instant::now() > deadline {
                let exe = s.get(&format!("/v1/executions?tenant_id={tenant}")).await.body;
                let id = exe["items"][0]["id"].as_str().unwrap_or_default().to_owned();
                let h = s.get(&format!("/v1/executions/{id}/history?limit=1000")).await.body;
                panic!("the callback hook was never called for {tenant}: {exe} {h}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(s.get(&format!("/v1/tenants/{tenant}")).await.body["status"], "provisioning");
        let body = if outcome == "success" {
            json!({"output": {"crm_id": 7}})
        } else {
            json!({"error": "Crm.Rejected", "cause": "no licence"})
        };
        let path = format!("/v1/task-tokens/{token}/{outcome}");
        let res = s.call_with(Some(&service), Method::POST, &path, Some(body), &[]).await;
        assert!(res.status.is_success(), "{}", res.body);
    }
    s.wait_status("yes", "active").await;
    s.wait_status("no", "failed").await;
    let events = s.get("/v1/events?tenant_id=no&detail_type=TenantProvisioningFailed").await.body;
    let detail = &events["items"][0]["detail"];
    assert_eq!(
        (detail["step"].clone(), detail["error"]["Error"].clone()),
        (json!("CallbackHooks"), json!("Crm.Rejected"))
    );
    assert_eq!(s.get("/v1/tenants/no/resources").await.body["items"], json!([]), "undone");
    s.stop().await;
}

async fn suspend_and_resume_notify_their_hooks(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (url, calls) = receiver(200).await;
    let hook = json!({"url": url, "events": ["suspend", "resume"]});
    assert_eq!(s.call(Method::PUT, "/v1/hooks/billing", Some(hook)).await.status, StatusCode::CREATED);
    let (callback, callback_calls) = receiver(202).await;
    let hook = json!({"url": callback, "events": ["resume"], "mode": "callback", "timeout_s": 3600});
    assert_eq!(s.call(Method::PUT, "/v1/hooks/crm", Some(hook)).await.status, StatusCode::CREATED);
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    s.wait_status("acme", "active").await;

    // The status changes in the request; the hooks hear of it afterwards.
    let res = s.call(Method::POST, "/v1/tenants/acme/suspend", None).await;
    assert_eq!((res.status, res.body["status"].as_str()), (StatusCode::OK, Some("suspended")), "{}", res.body);
    let execution = res.body["execution_id"].as_str().unwrap().to_owned();
    let done = s.wait_execution(&execution, "SUCCEEDED").await;
    assert_eq!(done["state_machine"], "tenancy.tenant.notify");
    let seen = calls.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (key, body) = &seen[0];
    assert!(!key.is_empty());
    assert_eq!((body["event"].as_str(), body["tenant"]["id"].as_str()), (Some("suspend"), Some("acme")));
    assert_eq!(body["tenant"]["status"], "suspended");
    assert_eq!((body["idempotency_key"].clone(), body["execution_id"].clone()), (json!(key), json!(execution)));
    assert!(callback_calls.lock().unwrap().is_empty(), "the callback hook is for resume only");
    let suspended = s.get("/v1/events?tenant_id=acme&detail_type=TenantSuspended").await.body;
    assert_eq!(suspended["items"][0]["detail"]["execution_id"], json!(execution), "{suspended}");

    // Resume: the sync hook once more, then the callback hook, which answers by token.
    let res = s.call(Method::POST, "/v1/tenants/acme/resume", None).await;
    assert_eq!((res.status, res.body["status"].as_str()), (StatusCode::OK, Some("active")), "{}", res.body);
    let execution = res.body["execution_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    let token = loop {
        if let Some((_, b)) = callback_calls.lock().unwrap().first() {
            break b["task_token"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "the callback hook was never called");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let seen = calls.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!((seen[1].1["event"].as_str(), seen[1].1["tenant"]["status"].as_str()), (Some("resume"), Some("active")));
    assert_ne!(seen[0].0, seen[1].0, "each notification has its own key");
    assert_eq!(s.get(&format!("/v1/executions/{execution}")).await.body["status"], "RUNNING");
    let service = s.key("service", None).await;
    let path = format!("/v1/task-tokens/{token}/success");
    let res = s.call_with(Some(&service), Method::POST, &path, Some(json!({"output": {}})), &[]).await;
    assert!(res.status.is_success(), "{}", res.body);
    s.wait_execution(&execution, "SUCCEEDED").await;
    assert_eq!(calls.lock().unwrap().len(), 2, "exactly one call per change");
    s.stop().await;
}

async fn a_failing_suspend_hook_fails_the_notification_not_the_suspension(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (url, calls) = receiver(500).await;
    let hook = json!({"url": url, "events": ["suspend"], "max_attempts": 2, "timeout_s": 2});
    assert_eq!(s.call(Method::PUT, "/v1/hooks/crm", Some(hook)).await.status, StatusCode::CREATED);
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    s.wait_status("acme", "active").await;
    let res = s.call(Method::POST, "/v1/tenants/acme/suspend", None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let execution = res.body["execution_id"].as_str().unwrap().to_owned();
    let failed = s.wait_execution(&execution, "FAILED").await;
    assert_eq!(failed["error"], "Tenancy.HookFailed", "{failed}");
    assert!(failed["cause"].as_str().unwrap().contains("HTTP 500"), "{failed}");
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "max_attempts attempts");
    assert_eq!(calls[0].0, calls[1].0, "the same idempotency key on every attempt");
    assert_eq!(s.get("/v1/tenants/acme").await.body["status"], "suspended", "the suspension stands");
    let listed = s.get("/v1/executions?status=FAILED&tenant_id=acme").await.body;
    assert_eq!(listed["items"][0]["id"], json!(execution), "{listed}");
    let events = s.get("/v1/events?tenant_id=acme&detail_type=ExecutionFailed").await.body;
    assert_eq!(events["items"][0]["detail"]["execution_id"], json!(execution), "{events}");
    s.stop().await;
}

/// On the embedded default, offboarding a silo tenant first writes its export to the
/// blob store: the manifest, the NDJSON of its events and audit records, and a
/// snapshot of its SQLite database; the event and the resources name the location.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offboarding_exports_a_silo_tenant() {
    let s = TestServer::start(Backend::Sqlite).await;
    s.put_plan("dedicated", "silo").await;
    s.create_tenant("big", "dedicated").await;
    s.wait_status("big", "active").await;
    let res = s.call(Method::DELETE, "/v1/tenants/big", None).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    let execution = res.body["execution_id"].as_str().unwrap().to_owned();
    s.wait_status("big", "offboarded").await;
    assert!(!s.dir.path().join("tenants").join("big").exists(), "the database is gone");

    let events = s.get("/v1/events?tenant_id=big&detail_type=TenantOffboarded").await.body;
    let export = events["items"][0]["detail"]["export"].clone();
    let location = export["location"].as_str().unwrap_or_else(|| panic!("no export in {events}")).to_owned();
    let blobs = s.dir.path().join("blobs");
    let expected = format!("file://{}/tenants/big/offboard-{execution}/", blobs.display());
    assert_eq!(location, expected);
    let dir = std::path::PathBuf::from(location.strip_prefix("file://").unwrap());
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        (manifest["tenant"]["id"].as_str(), manifest["database"]["file"].as_str()),
        (Some("big"), Some("database.sqlite"))
    );
    let names: Vec<&str> = manifest["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["events.ndjson", "audit.ndjson", "database.sqlite"]);
    let events = std::fs::read_to_string(dir.join("events.ndjson")).unwrap();
    assert!(events.lines().all(|l| serde_json::from_str::<Value>(l).unwrap()["tenant_id"] == "big"));
    assert!(std::fs::read_to_string(dir.join("audit.ndjson")).unwrap().lines().count() > 0);

    use sqlx::{ConnectOptions, Connection};
    let mut conn =
        sqlx::sqlite::SqliteConnectOptions::new().filename(dir.join("database.sqlite")).connect().await.unwrap();
    let owner: String = sqlx::query_scalar("SELECT value FROM tenancy_meta WHERE key = 'tenant_id'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(owner, "big");
    conn.close().await.unwrap();

    let resources = s.get("/v1/tenants/big/resources").await.body;
    assert_eq!(resources["items"].as_array().unwrap().len(), 1, "{resources}");
    assert_eq!(
        (resources["items"][0]["kind"].clone(), resources["items"][0]["detail"]["location"].clone()),
        (json!("export"), json!(location))
    );
    s.stop().await;
}

// Signed hooks, queue hooks and plans' own lifecycle state machines (issue 12).

/// What a signing receiver saw of one request: its headers and its raw body.
#[derive(Debug, Clone)]
struct SignedCall {
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

type SignedCalls = Arc<Mutex<Vec<SignedCall>>>;

/// A receiver answering 200 and keeping the raw requests (to verify signatures over the
/// exact bytes sent).
async fn raw_receiver() -> (String, SignedCalls) {
    let calls: SignedCalls = Arc::default();
    let c = calls.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let c = c.clone();
            async move {
                c.lock().unwrap().push(SignedCall { headers, body: body.to_vec() });
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

/// The Standard Webhooks check, written from the specification and not from Tenancy's
/// code: the secret is base64 after `whsec_`; the signature is the base64 of
/// HMAC-SHA256 over `"{webhook-id}.{webhook-timestamp}.{body}"`; the header holds
/// space-separated `v1,<signature>` entries. Whether any entry verifies under `secret`.
fn standard_webhooks_verify(secret: &str, call: &SignedCall) -> bool {
    use base64::Engine as _;
    use hmac::Mac as _;
    let header = |name: &str| call.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64 secret");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", header("webhook-id"), header("webhook-timestamp")).as_bytes());
    mac.update(&call.body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    header("webhook-signature").split(' ').any(|entry| entry.strip_prefix("v1,") == Some(expected.as_str()))
}

async fn hooks_are_signed_with_standard_webhooks(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (url, calls) = raw_receiver().await;
    let res = s.call(Method::PUT, "/v1/hooks/crm", Some(json!({"url": url, "events": ["provision"]}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let secret = res.body["secret"].as_str().expect("the secret, in the response that created the hook").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    // Never shown again: not by a read, a list, or a replace.
    assert!(s.get("/v1/hooks/crm").await.body.get("secret").is_none());
    assert!(s.get("/v1/hooks").await.body["items"][0].get("secret").is_none());
    let res = s.call(Method::PUT, "/v1/hooks/crm", Some(json!({"url": url, "events": ["provision"]}))).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(res.body.get("secret").is_none(), "a replace keeps the secret: {}", res.body);
    let audit = s.get("/v1/audit?action=hook.put").await.body.to_string();
    assert!(!audit.contains(secret.trim_start_matches("whsec_")), "no secret in the audit log");

    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    s.wait_status("acme", "active").await;
    let call = calls.lock().unwrap()[0].clone();
    let header = |name: &str| call.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(standard_webhooks_verify(&secret, &call), "signature does not verify: {:?}", call.headers);
    assert_eq!(header("webhook-id"), header("idempotency-key"), "the idempotency key is the message id");
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(body["idempotency_key"], json!(header("webhook-id")));
    let ts: i64 = header("webhook-timestamp").parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((now - ts).abs() < 300, "timestamp {ts} is now-ish ({now})");
    // A tampered body does not verify.
    let mut forged = call.clone();
    forged.body = call.body.iter().map(|b| if *b == b'a' { b'b' } else { *b }).collect();
    assert!(!standard_webhooks_verify(&secret, &forged));

    // Rotation: the new secret is shown once; both sign while the old one overlaps.
    let body = json!({"url": url, "events": ["provision"], "rotate_secret": true});
    let res = s.call(Method::PUT, "/v1/hooks/crm", Some(body)).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let rotated = res.body["secret"].as_str().expect("the rotated secret").to_owned();
    assert_ne!(rotated, secret);
    s.create_tenant("beta", "basic").await;
    s.wait_status("beta", "active").await;
    let call = calls.lock().unwrap().last().unwrap().clone();
    assert!(standard_webhooks_verify(&rotated, &call) && standard_webhooks_verify(&secret, &call));
    s.stop().await;
}

async fn queue_hooks_wait_for_their_worker(backend: Backend) {
    let s = TestServer::start(backend).await;
    let hook = |body: Value| async { s.call(Method::PUT, "/v1/hooks/fulfil", Some(body)).await };
    let res = hook(json!({"queue": "provisioning", "events": ["provision"]})).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "unknown-queue"), "{}", res.body);
    assert_eq!(s.call(Method::PUT, "/v1/queues/provisioning", Some(json!({}))).await.status, StatusCode::CREATED);
    for body in [
        json!({"queue": "provisioning", "url": "http://x/h", "events": ["provision"]}),
        json!({"events": ["provision"]}),
        json!({"queue": "provisioning", "events": ["provision"], "mode": "sync"}),
        json!({"queue": "provisioning", "events": ["provision"], "rotate_secret": true}),
    ] {
        let res = hook(body.clone()).await;
        assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-hook"), "{body}: {}", res.body);
    }
    let res = hook(json!({"queue": "provisioning", "events": ["provision"], "timeout_s": 3600})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!((res.body["queue"].clone(), res.body["mode"].clone()), (json!("provisioning"), json!("callback")));
    assert!(res.body.get("secret").is_none() && res.body.get("url").is_none(), "{}", res.body);

    s.put_plan("basic", "pool").await;
    let worker = s.key("service", None).await;
    for (tenant, outcome) in [("yes", "success"), ("no", "failure")] {
        s.create_tenant(tenant, "basic").await;
        // The worker: a service key polling the queue, answering through the task token.
        let res = s
            .call_with(
                Some(&worker),
                Method::POST,
                "/v1/queues/provisioning/receive",
                Some(json!({"max": 10, "wait_s": 20})),
                &[],
            )
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        let messages = res.body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 1, "{}", res.body);
        let m = &messages[0]["body"];
        assert_eq!((m["event"].clone(), m["tenant"]["id"].clone()), (json!("provision"), json!(tenant)), "{m}");
        assert!(m["execution_id"].as_str().is_some_and(|e| !e.is_empty()), "{m}");
        assert!(m["idempotency_key"].as_str().is_some_and(|k| !k.is_empty()), "{m}");
        assert_eq!(s.get(&format!("/v1/tenants/{tenant}")).await.body["status"], "provisioning");
        let token = m["task_token"].as_str().unwrap();
        let body = if outcome == "success" {
            json!({"output": {"warehouse": "w-7"}})
        } else {
            json!({"error": "Worker.Rejected", "cause": "no capacity"})
        };
        let path = format!("/v1/task-tokens/{token}/{outcome}");
        let res = s.call_with(Some(&worker), Method::POST, &path, Some(body), &[]).await;
        assert!(res.status.is_success(), "{}", res.body);
        let receipt = messages[0]["receipt"].as_str().unwrap();
        let path = format!("/v1/queues/provisioning/messages/{receipt}");
        s.call_with(Some(&worker), Method::DELETE, &path, None, &[]).await;
    }
    s.wait_status("yes", "active").await;
    s.wait_status("no", "failed").await;
    let events = s.get("/v1/events?tenant_id=no&detail_type=TenantProvisioningFailed").await.body;
    let detail = &events["items"][0]["detail"];
    assert_eq!(
        (detail["step"].clone(), detail["error"]["Error"].clone(), detail["error"]["Cause"].clone()),
        (json!("CallbackHooks"), json!("Worker.Rejected"), json!("no capacity")),
        "{events}"
    );
    assert_eq!(s.get("/v1/tenants/no/resources").await.body["items"], json!([]), "undone");
    s.stop().await;
}

async fn plans_run_their_own_lifecycle_state_machines(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (url, calls) = receiver(200).await;
    let retry = json!([{"ErrorEquals": ["Tenancy.unavailable", "Tenancy.internal"], "IntervalSeconds": 1,
                        "MaxAttempts": 3, "BackoffRate": 2}]);
    // The built-in steps with a team's own step (an HTTP call) between them.
    let definition = json!({"StartAt": "CreateNamespace", "States": {
        "CreateNamespace": {"Type": "Task", "Resource": "tenancy:resource.create", "Retry": retry,
            "Parameters": {"tenant_id.$": "$.tenant_id", "kind": "namespace", "plan.$": "$.plan"},
            "ResultPath": null, "Next": "Stamp"},
        "Stamp": {"Type": "Task", "Resource": "tenancy:noop", "Parameters": {"stamped.$": "$.tenant_id"},
            "ResultPath": "$.stamp", "Next": "Welcome"},
        "Welcome": {"Type": "Task", "Resource": "arn:aws:states:::http:invoke",
            "Parameters": {"ApiEndpoint": url, "Method": "POST",
                           "RequestBody": {"tenant.$": "$.tenant_id", "plan.$": "$.plan", "stamp.$": "$.stamp.stamped"}},
            "ResultPath": null, "Next": "Activate"},
        "Activate": {"Type": "Task", "Resource": "tenancy:tenant.activate", "Retry": retry,
            "Parameters": {"tenant_id.$": "$.tenant_id", "execution_id.$": "$$.Execution.Id"}, "End": true}}});
    let sm = |name: &str| format!("/v1/state-machines/{name}");

    // An ordinary user state machine still may not use the lifecycle's steps.
    let res = s.call(Method::PUT, &sm("mine"), Some(json!({"definition": definition}))).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "reserved-resource"), "{}", res.body);
    // Lifecycle state machines are an admin's.
    let operator = s.key("operator", None).await;
    let body = json!({"definition": definition});
    let lifecycle = sm("tenancy.lifecycle.welcome");
    let res = s.call_with(Some(&operator), Method::PUT, &lifecycle, Some(body.clone()), &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    let res = s.call(Method::PUT, &lifecycle, Some(body)).await;
    assert!(res.status.is_success(), "{}", res.body);
    // ... and only the lifecycle starts them.
    let start = json!({"state_machine": "tenancy.lifecycle.welcome", "input": {"tenant_id": "x"}});
    let res = s.call(Method::POST, "/v1/executions", Some(start)).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "reserved-name"), "{}", res.body);

    // Naming them on a plan: admin-only and validated.
    let plan = |workflow: &str| json!({"name": "Welcome", "isolation": "pool", "workflows": {"provision": workflow}});
    let res = s
        .call_with(Some(&operator), Method::PUT, "/v1/plans/welcome", Some(plan("tenancy.lifecycle.welcome")), &[])
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    let res = s.call(Method::PUT, "/v1/plans/welcome", Some(plan("tenancy.lifecycle.missing"))).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "unknown-state-machine"), "{}", res.body);
    let res = s.call(Method::PUT, "/v1/plans/welcome", Some(plan("mine"))).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-plan-workflow"), "{}", res.body);
    assert_eq!(s.get("/v1/plans/welcome").await.status, StatusCode::NOT_FOUND, "nothing written");
    let res = s.call(Method::PUT, "/v1/plans/welcome", Some(plan("tenancy.lifecycle.welcome"))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["workflows"], json!({"provision": "tenancy.lifecycle.welcome"}));
    // Operators still manage the plan's other members; its workflows stay.
    let res =
        s.call_with(Some(&operator), Method::PATCH, "/v1/plans/welcome", Some(json!({"name": "Welcome 2"})), &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["workflows"], json!({"provision": "tenancy.lifecycle.welcome"}));
    let patch = json!({"workflows": {"provision": null}});
    let res = s.call_with(Some(&operator), Method::PATCH, "/v1/plans/welcome", Some(patch), &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);

    // A tenant on the plan is provisioned by the plan's machine, its own step included.
    let created = s.create_tenant("acme", "welcome").await;
    s.wait_status("acme", "active").await;
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].1, json!({"tenant": "acme", "plan": "welcome", "stamp": "acme"}));
    let exe = s.get(&format!("/v1/executions/{}", created.body["execution_id"].as_str().unwrap())).await.body;
    assert_eq!(
        (exe["state_machine"].clone(), exe["status"].clone()),
        (json!("tenancy.lifecycle.welcome"), json!("SUCCEEDED"))
    );
    let kinds: Vec<Value> = s.get("/v1/tenants/acme/resources").await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].clone())
        .collect();
    assert_eq!(kinds, [json!("namespace")], "only what the plan's machine creates");
    let events = s.event_types("acme").await;
    assert!(events.contains(&"TenantProvisioned".to_owned()), "{events:?}");

    // The target plan's plan-change machine and the tenant's plan's offboarding machine.
    let apply = json!({"StartAt": "Apply", "States": {"Apply": {"Type": "Task", "Resource": "tenancy:tenant.apply_plan",
        "Parameters": {"tenant_id.$": "$.tenant_id", "plan.$": "$.plan", "execution_id.$": "$$.Execution.Id"},
        "End": true}}});
    let bye = json!({"StartAt": "Gone", "States": {"Gone": {"Type": "Task", "Resource": "tenancy:tenant.offboarded",
        "Parameters": {"tenant_id.$": "$.tenant_id", "execution_id.$": "$$.Execution.Id"}, "End": true}}});
    for (name, definition) in [("tenancy.lifecycle.apply", apply), ("tenancy.lifecycle.bye", bye)] {
        let res = s.call(Method::PUT, &sm(name), Some(json!({"definition": definition}))).await;
        assert!(res.status.is_success(), "{}", res.body);
    }
    let body = json!({"name": "Gold", "isolation": "pool",
                      "workflows": {"change_plan": "tenancy.lifecycle.apply", "offboard": "tenancy.lifecycle.bye"}});
    assert_eq!(s.call(Method::PUT, "/v1/plans/gold", Some(body)).await.status, StatusCode::CREATED);
    let res = s.call(Method::POST, "/v1/tenants/acme/plan", Some(json!({"plan": "gold"}))).await;
    assert!(res.status.is_success(), "{}", res.body);
    let moved = res.body["execution_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.get("/v1/tenants/acme").await.body["plan"] != "gold" {
        assert!(Instant::now() < deadline, "the plan change never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.get(&format!("/v1/executions/{moved}")).await.body["state_machine"], "tenancy.lifecycle.apply");
    let res = s.call(Method::DELETE, "/v1/tenants/acme", None).await;
    assert!(res.status.is_success(), "{}", res.body);
    s.wait_status("acme", "offboarded").await;
    let gone = res.body["execution_id"].as_str().unwrap();
    assert_eq!(s.get(&format!("/v1/executions/{gone}")).await.body["state_machine"], "tenancy.lifecycle.bye");
    // The built-in offboarding would have left an `export` resource; the plan's did not.
    assert!(s.get("/v1/tenants/acme/resources").await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["kind"] != "export"));
    s.stop().await;
}

/// A hook from before hooks were signed (no secret stored): its first call generates a
/// secret and signs with it; `rotate_secret` gives its owner one to verify with, and
/// the generated one signs beside it during the overlap.
async fn a_hook_from_before_signing_gets_a_secret(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (url, calls) = raw_receiver().await;
    let hook = json!({"url": url, "events": ["provision"]});
    assert_eq!(s.call(Method::PUT, "/v1/hooks/old", Some(hook.clone())).await.status, StatusCode::CREATED);
    assert_eq!(s.call(Method::PUT, "/v1/hooks/older", Some(hook.clone())).await.status, StatusCode::CREATED);
    // As migration 0014 leaves them: no secret.
    let db = s.raw_db().await;
    sqlx::query("UPDATE hooks SET secret = NULL").execute(&db).await.unwrap();
    // A PUT of such a hook shows the secret it gets, once.
    let res = s.call(Method::PUT, "/v1/hooks/older", Some(hook.clone())).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let older = res.body["secret"].as_str().expect("a first secret for a hook that had none").to_owned();
    assert!(s.call(Method::PUT, "/v1/hooks/older", Some(hook.clone())).await.body.get("secret").is_none());
    // A call of one signs it with a generated secret (two entries: none yet).
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    s.wait_status("acme", "active").await;
    let first: Vec<SignedCall> = calls.lock().unwrap().clone();
    assert_eq!(first.len(), 2, "both hooks called");
    let header = |c: &SignedCall| c.headers.get("webhook-signature").unwrap().to_str().unwrap().to_owned();
    assert!(first.iter().all(|c| header(c).starts_with("v1,") && !header(c).contains(' ')), "signed once each");
    assert_eq!(first.iter().filter(|c| standard_webhooks_verify(&older, c)).count(), 1, "older's call verifies");
    let generated = first.iter().find(|c| !standard_webhooks_verify(&older, c)).unwrap().clone();
    let res = s
        .call(Method::PUT, "/v1/hooks/old", Some(json!({"url": url, "events": ["provision"], "rotate_secret": true})))
        .await;
    let rotated = res.body["secret"].as_str().expect("rotated").to_owned();
    s.create_tenant("beta", "basic").await;
    s.wait_status("beta", "active").await;
    let calls = calls.lock().unwrap().clone();
    let old_call =
        calls[2..].iter().find(|c| standard_webhooks_verify(&rotated, c)).expect("signed with the new secret");
    assert_eq!(header(old_call).split(' ').count(), 2, "and with the generated one: {}", header(old_call));
    assert!(!standard_webhooks_verify(&rotated, &generated));
    s.stop().await;
}

/// A plan's lifecycle machine that ends without settling its tenant (a `Fail` state
/// before `provisioning_failed`, a stop, a SUCCEEDED end without `activate`) does not
/// leave the tenant in its transitional status: the end settles it as the built-in
/// machines do on a failure, once, and `tenants retry --wait` provisions it once the
/// plan's machine is fixed.
async fn a_lifecycle_machine_that_ends_without_settling_its_tenant_does_not_leave_it_stuck(backend: Backend) {
    let s = TestServer::start(backend).await;
    let sm = |name: &str| format!("/v1/state-machines/{name}");
    let namespace = json!({"Type": "Task", "Resource": "tenancy:resource.create", "ResultPath": null,
        "Parameters": {"tenant_id.$": "$.tenant_id", "kind": "namespace", "plan.$": "$.plan"}, "Next": "Then"});
    let with_end =
        |then: Value| json!({"StartAt": "CreateNamespace", "States": {"CreateNamespace": namespace, "Then": then}});
    let put = |name: &'static str, definition: Value| {
        let s = &s;
        async move {
            let res = s.call(Method::PUT, &sm(name), Some(json!({"definition": definition}))).await;
            assert!(res.status.is_success(), "{}", res.body);
        }
    };
    put("tenancy.lifecycle.broken", with_end(json!({"Type": "Fail", "Error": "Team.Broken", "Cause": "no warehouse"})))
        .await;
    let plan = json!({"name": "Broken", "isolation": "pool", "workflows": {"provision": "tenancy.lifecycle.broken"}});
    assert_eq!(s.call(Method::PUT, "/v1/plans/broken", Some(plan)).await.status, StatusCode::CREATED);

    // Ends in a Fail state: the tenant is failed, with one event naming the end.
    let created = s.create_tenant("acme", "broken").await;
    let execution = created.body["execution_id"].as_str().unwrap().to_owned();
    s.wait_status("acme", "failed").await;
    s.wait_execution(&execution, "FAILED").await;
    let events = s.get("/v1/events?tenant_id=acme&detail_type=TenantProvisioningFailed").await.body;
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{events}");
    let detail = &items[0]["detail"];
    assert_eq!(
        (detail["execution_id"].clone(), detail["step"].clone(), detail["error"].clone(), detail["status"].clone()),
        (json!(execution), json!("Then"), json!({"Error": "Team.Broken", "Cause": "no warehouse"}), json!("failed")),
        "{events}"
    );
    let audit = s.get("/v1/audit?tenant_id=acme&action=tenant.fail_provision").await.body;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");

    // Fixed: the retry (CLI, waiting) provisions the tenant with the plan's new version.
    let activate = json!({"Type": "Task", "Resource": "tenancy:tenant.activate",
        "Parameters": {"tenant_id.$": "$.tenant_id", "execution_id.$": "$$.Execution.Id"}, "End": true});
    put("tenancy.lifecycle.broken", with_end(activate)).await;
    let url = s.url.clone();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || support::run_cli(&url, &["tenants", "retry", "acme", "--wait"]))
            .await
            .unwrap();
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(s.get("/v1/tenants/acme").await.body["status"], "active");
    let failures = s.event_types("acme").await.iter().filter(|t| *t == "TenantProvisioningFailed").count();
    assert_eq!(failures, 1, "the settlement happened once");

    // Ends SUCCEEDED without activating the tenant: failed too, saying so.
    put("tenancy.lifecycle.quiet", with_end(json!({"Type": "Succeed"}))).await;
    let plan = json!({"name": "Quiet", "isolation": "pool", "workflows": {"provision": "tenancy.lifecycle.quiet"}});
    assert_eq!(s.call(Method::PUT, "/v1/plans/quiet", Some(plan)).await.status, StatusCode::CREATED);
    s.create_tenant("hush", "quiet").await;
    s.wait_status("hush", "failed").await;
    let events = s.get("/v1/events?tenant_id=hush&detail_type=TenantProvisioningFailed").await.body;
    assert_eq!(
        events["items"][0]["detail"]["error"]["Cause"], "the workflow ended SUCCEEDED without activating the tenant",
        "{events}"
    );
    // ... which `--wait` reports as a failure, though the execution SUCCEEDED.
    let url = s.url.clone();
    let (code, _, err) =
        tokio::task::spawn_blocking(move || support::run_cli(&url, &["tenants", "retry", "hush", "--wait"]))
            .await
            .unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("ended with the tenant failed"), "{err}");
    s.wait_status("hush", "failed").await;

    // Timed out (TimeoutSeconds) before its end: failed, naming the timeout.
    let mut late = with_end(json!({"Type": "Wait", "Seconds": 3600, "End": true}));
    late["TimeoutSeconds"] = json!(1);
    put("tenancy.lifecycle.late", late).await;
    let plan = json!({"name": "Late", "isolation": "pool", "workflows": {"provision": "tenancy.lifecycle.late"}});
    assert_eq!(s.call(Method::PUT, "/v1/plans/late", Some(plan)).await.status, StatusCode::CREATED);
    s.create_tenant("late", "late").await;
    s.wait_status("late", "failed").await;
    let events = s.get("/v1/events?tenant_id=late&detail_type=TenantProvisioningFailed").await.body;
    let detail = &events["items"][0]["detail"];
    assert_eq!(
        (detail["execution_status"].clone(), detail["error"]["Error"].clone()),
        (json!("TIMED_OUT"), json!("States.Timeout")),
        "{events}"
    );

    // A plan change whose machine is stopped: the tenant is back on its plan, active.
    put("tenancy.lifecycle.slow", with_end(json!({"Type": "Wait", "Seconds": 3600, "End": true}))).await;
    let plan = json!({"name": "Slow", "isolation": "pool", "workflows": {"change_plan": "tenancy.lifecycle.slow"}});
    assert_eq!(s.call(Method::PUT, "/v1/plans/slow", Some(plan)).await.status, StatusCode::CREATED);
    let res = s.call(Method::POST, "/v1/tenants/acme/plan", Some(json!({"plan": "slow"}))).await;
    assert!(res.status.is_success(), "{}", res.body);
    assert_eq!(res.body["status"], "updating", "{}", res.body);
    let change = res.body["execution_id"].as_str().unwrap().to_owned();
    let res = s.call(Method::POST, &format!("/v1/executions/{change}/stop"), None).await;
    assert!(res.status.is_success(), "{}", res.body);
    let tenant = s.get("/v1/tenants/acme").await.body;
    assert_eq!((tenant["status"].clone(), tenant["plan"].clone()), (json!("active"), json!("broken")), "{tenant}");
    let events = s.get("/v1/events?tenant_id=acme&detail_type=TenantUpdated").await.body;
    let reverted: Vec<&Value> =
        events["items"].as_array().unwrap().iter().filter(|e| e["detail"]["execution_id"] == change).collect();
    assert_eq!(reverted.len(), 1, "{events}");
    assert_eq!(reverted[0]["detail"]["execution_status"], "ABORTED");

    // An upgrade by a release's machine that fails before `upgrade_failed`: the tenant
    // is active on the release it had.
    let fail = json!({"Type": "Fail", "Error": "Team.NoUpgrade"});
    put(
        "tenancy.lifecycle.noup",
        json!({"StartAt": "Hold", "States": {"Hold": {"Type": "Task", "Resource": "tenancy:noop", "Next": "Then"},
                                             "Then": fail}}),
    )
    .await;
    let res =
        s.call(Method::PUT, "/v1/releases/9.0.0", Some(json!({"upgrade_workflow": "tenancy.lifecycle.noup"}))).await;
    assert!(res.status.is_success(), "{}", res.body);
    let res = s.call(Method::POST, "/v1/tenants/acme/upgrade", Some(json!({"version": "9.0.0"}))).await;
    assert!(res.status.is_success(), "{}", res.body);
    let upgrade = res.body["execution_id"].as_str().unwrap().to_owned();
    s.wait_execution(&upgrade, "FAILED").await;
    let tenant = s.get("/v1/tenants/acme").await.body;
    assert_eq!((tenant["status"].clone(), tenant["release"].clone()), (json!("active"), Value::Null), "{tenant}");
    let events = s.get("/v1/events?tenant_id=acme&detail_type=TenantUpgradeFailed").await.body;
    assert_eq!(events["items"].as_array().unwrap().len(), 1, "{events}");
    assert_eq!(events["items"][0]["detail"]["error"]["Error"], "Team.NoUpgrade", "{events}");

    // An offboarding stopped before its end stays `offboarding` (as the built-in leaves
    // a failed one); offboarding again starts it anew, here with the machine fixed.
    let hold = |then: Value| {
        json!({"StartAt": "Hold", "States": {"Hold": {"Type": "Task", "Resource": "tenancy:noop", "Next": "Then"},
                                              "Then": then}})
    };
    put("tenancy.lifecycle.stuck", hold(json!({"Type": "Wait", "Seconds": 3600, "End": true}))).await;
    let plan = json!({"name": "Sticky", "isolation": "pool", "workflows": {"offboard": "tenancy.lifecycle.stuck"}});
    assert_eq!(s.call(Method::PUT, "/v1/plans/sticky", Some(plan)).await.status, StatusCode::CREATED);
    s.create_tenant("gone", "sticky").await;
    s.wait_status("gone", "active").await;
    let res = s.call(Method::DELETE, "/v1/tenants/gone", None).await;
    assert!(res.status.is_success(), "{}", res.body);
    let first = res.body["execution_id"].as_str().unwrap().to_owned();
    let res = s.call(Method::DELETE, "/v1/tenants/gone", None).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "invalid-transition"), "running: {}", res.body);
    let res = s.call(Method::POST, &format!("/v1/executions/{first}/stop"), None).await;
    assert!(res.status.is_success(), "{}", res.body);
    assert_eq!(s.get("/v1/tenants/gone").await.body["status"], "offboarding");
    let offboarded = json!({"Type": "Task", "Resource": "tenancy:tenant.offboarded",
        "Parameters": {"tenant_id.$": "$.tenant_id", "execution_id.$": "$$.Execution.Id"}, "End": true});
    put("tenancy.lifecycle.stuck", hold(offboarded)).await;
    let res = s.call(Method::DELETE, "/v1/tenants/gone", None).await;
    assert!(res.status.is_success(), "{}", res.body);
    assert_ne!(res.body["execution_id"], json!(first));
    s.wait_status("gone", "offboarded").await;

    // A machine that would end before any task is refused at the door: nothing changes.
    put("tenancy.lifecycle.void", json!({"StartAt": "No", "States": {"No": {"Type": "Fail", "Error": "Team.No"}}}))
        .await;
    let plan = json!({"name": "Void", "isolation": "pool", "workflows": {"provision": "tenancy.lifecycle.void"}});
    assert_eq!(s.call(Method::PUT, "/v1/plans/void", Some(plan)).await.status, StatusCode::CREATED);
    let res = s.call(Method::POST, "/v1/tenants", Some(json!({"id": "nil", "name": "nil", "plan": "void"}))).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "lifecycle-ends-at-start"), "{}", res.body);
    assert_eq!(s.get("/v1/tenants/nil").await.status, StatusCode::NOT_FOUND);
    s.stop().await;
}
