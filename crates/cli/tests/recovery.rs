//! Recovering tenants on both backends: a redriven old provisioning cannot undo a
//! retry (`Tenancy.StaleExecution`), and an offboarded tenant's id is released by a
//! purge once the export retention has passed.

mod support;

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestServer};

both_backends!(a_redriven_old_provisioning_cannot_undo_a_retry, purge_releases_an_offboarded_id);

/// Bodies of the requests a receiver got.
type Calls = Arc<Mutex<Vec<Value>>>;

/// A receiver answering whatever `status` holds at the time.
async fn receiver(status: Arc<AtomicU16>) -> (String, Calls) {
    let calls: Calls = Arc::default();
    let c = calls.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<Value>| {
            let (c, status) = (c.clone(), status.clone());
            async move {
                c.lock().unwrap().push(body.0);
                axum::http::StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

fn kinds(resources: &Value) -> Vec<String> {
    let mut k: Vec<String> =
        resources["items"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap().to_owned()).collect();
    k.sort();
    k
}

/// A tenant failed by a hook is retried; while the retry waits for a callback hook,
/// the old failed execution is redriven: it fails with `Tenancy.StaleExecution` and
/// changes nothing (the tenant stays `provisioning`, no second
/// `TenantProvisioningFailed`), and the retry then activates the tenant with all its
/// resources.
async fn a_redriven_old_provisioning_cannot_undo_a_retry(backend: Backend) {
    let s = TestServer::start(backend).await;
    let status = Arc::new(AtomicU16::new(500));
    let (url, _) = receiver(status.clone()).await;
    let hook = json!({"url": url, "events": ["provision"], "max_attempts": 1, "timeout_s": 2});
    assert_eq!(s.call(Method::PUT, "/v1/hooks/crm", Some(hook)).await.status, StatusCode::CREATED);
    s.put_plan("vault", "silo").await;
    let created = s.create_tenant("acme", "vault").await;
    let old = created.body["execution_id"].as_str().unwrap().to_owned();
    s.wait_status("acme", "failed").await;
    s.wait_execution(&old, "FAILED").await;

    // The hook is fixed, and a callback hook holds the new attempt before Activate.
    status.store(200, Ordering::SeqCst);
    let (callback, callback_calls) = receiver(Arc::new(AtomicU16::new(202))).await;
    let hook = json!({"url": callback, "events": ["provision"], "mode": "callback", "timeout_s": 3600});
    assert_eq!(s.call(Method::PUT, "/v1/hooks/ledger", Some(hook)).await.status, StatusCode::CREATED);
    let retried = s.call(Method::POST, "/v1/tenants/acme/retry", None).await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{}", retried.body);
    let new = retried.body["execution_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    let token = loop {
        if let Some(b) = callback_calls.lock().unwrap().first() {
            break b["task_token"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "the callback hook was never called");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(kinds(&s.get("/v1/tenants/acme/resources").await.body), ["database", "defaults", "namespace"]);

    // The old execution, redriven, re-runs MarkFailed: refused, nothing changes.
    let res = s.call(Method::POST, &format!("/v1/executions/{old}/redrive"), None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let deadline = Instant::now() + Duration::from_secs(20);
    let stale = loop {
        let e = s.get(&format!("/v1/executions/{old}")).await.body;
        if e["status"] == "FAILED" && e["redrive_count"] == 1 {
            break e;
        }
        assert!(Instant::now() < deadline, "the redrive never ended: {e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(stale["error"], "Tenancy.StaleExecution", "{stale}");
    assert!(stale["cause"].as_str().unwrap().contains(&new), "{stale}");
    assert_eq!(s.get("/v1/tenants/acme").await.body["status"], "provisioning");
    let failures = s.get("/v1/events?tenant_id=acme&detail_type=TenantProvisioningFailed").await.body;
    assert_eq!(failures["items"].as_array().unwrap().len(), 1, "only the first attempt failed: {failures}");
    assert_eq!(kinds(&s.get("/v1/tenants/acme/resources").await.body), ["database", "defaults", "namespace"]);
    if backend == Backend::Sqlite {
        assert!(s.dir.path().join("tenants/acme/data.db").exists(), "the new attempt's database stays");
    }

    // The retry goes on to activate the tenant.
    let res = s.call(Method::POST, &format!("/v1/task-tokens/{token}/success"), Some(json!({"output": {}}))).await;
    assert!(res.status.is_success(), "{}", res.body);
    s.wait_execution(&new, "SUCCEEDED").await;
    s.wait_status("acme", "active").await;
    assert_eq!(kinds(&s.get("/v1/tenants/acme/resources").await.body), ["database", "defaults", "namespace"]);
    s.stop().await;
}

/// Offboarded, the tenant's id is released by a purge once the export retention has
/// passed: before, 409 `retention-not-passed` saying when; a tenant not offboarded is
/// 409 `invalid-transition`; after, the tombstone and its resources go (events and
/// audit stay), `TenantPurged` and `tenant.purge` are written, and the id can be
/// created again.
async fn purge_releases_an_offboarded_id(backend: Backend) {
    // The default retention (30 days) first.
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    s.wait_status("acme", "active").await;
    let res = s.call(Method::DELETE, "/v1/tenants/acme?purge=true", None).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "invalid-transition"), "{}", res.body);
    let res = s.call(Method::DELETE, "/v1/tenants/acme", None).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    s.wait_status("acme", "offboarded").await;
    let res = s.call(Method::DELETE, "/v1/tenants/acme?purge=true", None).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "retention-not-passed"), "{}", res.body);
    assert!(res.body["detail"].as_str().unwrap().contains("may be purged from"), "{}", res.body);
    let operator = s.key("operator", None).await;
    let res = s.call_with(Some(&operator), Method::DELETE, "/v1/tenants/acme?purge=true", None, &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "admins only: {}", res.body);
    assert_eq!(s.get("/v1/tenants/acme").await.body["status"], "offboarded");
    let res = s.call(Method::POST, "/v1/tenants", Some(json!({"id": "acme", "name": "Again", "plan": "basic"}))).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "the id is still taken: {}", res.body);
    s.stop().await;

    // A retention of 0 days: the purge goes through at once.
    let url = support::database_url(backend).await;
    let s = TestServer::start_configured(url, |o| o.export_retention_days = 0).await;
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    s.wait_status("acme", "active").await;
    s.call(Method::DELETE, "/v1/tenants/acme", None).await;
    s.wait_status("acme", "offboarded").await;
    assert_eq!(kinds(&s.get("/v1/tenants/acme/resources").await.body), ["export"]);
    let res = s.call(Method::DELETE, "/v1/tenants/acme?purge=true", None).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.body);
    assert_eq!(s.get("/v1/tenants/acme").await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/v1/tenants/acme/resources").await.status, StatusCode::NOT_FOUND);
    let res = s.call(Method::DELETE, "/v1/tenants/acme?purge=true", None).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);
    let types = s.event_types("acme").await;
    assert!(types.contains(&"TenantOffboarded".to_owned()) && types.contains(&"TenantPurged".to_owned()), "{types:?}");
    let audit = s.get("/v1/audit?action=tenant.purge").await.body;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
    assert_eq!(audit["items"][0]["target"], "tenant/acme", "{audit}");

    // From the command line too.
    s.create_tenant("beta", "basic").await;
    s.wait_status("beta", "active").await;
    s.call(Method::DELETE, "/v1/tenants/beta", None).await;
    s.wait_status("beta", "offboarded").await;
    let url = s.url.clone();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || support::run_cli(&url, &["tenants", "purge", "beta", "--yes"]))
            .await
            .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("beta"), "{out}");
    assert_eq!(s.get("/v1/tenants/beta").await.status, StatusCode::NOT_FOUND);

    // The id is free again: a new tenant, provisioned from the start.
    let res = s.call(Method::POST, "/v1/tenants", Some(json!({"id": "acme", "name": "Again", "plan": "basic"}))).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    let again = s.wait_status("acme", "active").await;
    assert_eq!(again["name"], "Again");
    assert_eq!(kinds(&s.get("/v1/tenants/acme/resources").await.body), ["database", "defaults", "namespace"]);
    // The new acme's key sees its own provisioning, not the old tenant's executions.
    let key = s.key("tenant", Some("acme")).await;
    let listed = s.call_with(Some(&key), Method::GET, "/v1/executions?tenant_id=acme", None, &[]).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let ids: Vec<&str> = listed.body["items"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [res.body["execution_id"].as_str().unwrap()], "{}", listed.body);
    s.stop().await;
}
