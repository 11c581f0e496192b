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
    a_failing_suspend_hook_fails_the_notification_not_the_suspension
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

async fn wait_status(s: &TestServer, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let res = s.get(&format!("/v1/tenants/{id}")).await;
        if res.body["status"] == status {
            return res.body;
        }
        assert!(Instant::now() < deadline, "tenant {id} never became {status}: {}", res.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    wait_status(&s, "acme", "active").await;
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
    wait_status(&s, "acme", "failed").await;
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
    wait_status(&s, "acme", "failed").await;
    // Only a failed tenant is retried; the retry of an active one changes nothing.
    status.store(200, std::sync::atomic::Ordering::SeqCst);
    s.create_tenant("other", "basic").await;
    wait_status(&s, "other", "active").await;
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
    let t = wait_status(&s, "acme", "active").await;
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
    wait_status(&s, "big", "active").await;
    wait_status(&s, "small", "active").await;
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
    wait_status(&s, "doomed", "failed").await;
    assert!(!s.dir.path().join("tenants").join("doomed").exists(), "compensation removed the database");

    let res = s.call(Method::DELETE, "/v1/tenants/big", None).await;
    assert!(res.status.is_success(), "{}", res.body);
    wait_status(&s, "big", "offboarded").await;
    assert!(!file.exists(), "offboarding deletes the database");
    s.stop().await;
}

async fn plan_change_and_offboard_hooks(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    s.put_plan("pro", "pool").await;
    s.create_tenant("acme", "basic").await;
    wait_status(&s, "acme", "active").await;
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
    wait_status(&s, "acme", "offboarded").await;
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
    wait_status(&s, "yes", "active").await;
    wait_status(&s, "no", "failed").await;
    let events = s.get("/v1/events?tenant_id=no&detail_type=TenantProvisioningFailed").await.body;
    let detail = &events["items"][0]["detail"];
    assert_eq!(
        (detail["step"].clone(), detail["error"]["Error"].clone()),
        (json!("CallbackHooks"), json!("Crm.Rejected"))
    );
    assert_eq!(s.get("/v1/tenants/no/resources").await.body["items"], json!([]), "undone");
    s.stop().await;
}

async fn wait_execution(s: &TestServer, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let res = s.get(&format!("/v1/executions/{id}")).await;
        if res.body["status"] == status {
            return res.body;
        }
        assert!(Instant::now() < deadline, "execution {id} never became {status}: {}", res.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    wait_status(&s, "acme", "active").await;

    // The status changes in the request; the hooks hear of it afterwards.
    let res = s.call(Method::POST, "/v1/tenants/acme/suspend", None).await;
    assert_eq!((res.status, res.body["status"].as_str()), (StatusCode::OK, Some("suspended")), "{}", res.body);
    let execution = res.body["execution_id"].as_str().unwrap().to_owned();
    let done = wait_execution(&s, &execution, "SUCCEEDED").await;
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
    wait_execution(&s, &execution, "SUCCEEDED").await;
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
    wait_status(&s, "acme", "active").await;
    let res = s.call(Method::POST, "/v1/tenants/acme/suspend", None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let execution = res.body["execution_id"].as_str().unwrap().to_owned();
    let failed = wait_execution(&s, &execution, "FAILED").await;
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
    wait_status(&s, "big", "active").await;
    let res = s.call(Method::DELETE, "/v1/tenants/big", None).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    let execution = res.body["execution_id"].as_str().unwrap().to_owned();
    wait_status(&s, "big", "offboarded").await;
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
