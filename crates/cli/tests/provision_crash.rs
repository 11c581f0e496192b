//! The provisioning reliability test: 100 tenants provisioning (half of them silo, with
//! a sync hook on a receiver in this process), `kill -9` of the server while hook calls
//! are in flight, a restart on the same data directory. Every tenant ends active, each
//! silo tenant has exactly one database, the hook saw one idempotency key per tenant
//! (however often it was called), and the archive holds exactly one
//! `TenantProvisioned` per tenant.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::process::spawn_server;
use support::TestServer;
use tokio::sync::watch;

const TENANTS: usize = 100;
/// Hook calls answered at once before the receiver starts holding them.
const ANSWERED_BEFORE_KILL: usize = 30;

/// Every hook call as (tenant id, Idempotency-Key).
type Calls = Arc<Mutex<Vec<(String, String)>>>;

/// A hook receiver that answers the first [`ANSWERED_BEFORE_KILL`] calls and holds the
/// rest until `release` turns true, so the kill lands with hook calls in flight.
async fn receiver(calls: Calls, release: watch::Receiver<bool>) -> String {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::Json<Value>| {
            let (calls, mut release) = (calls.clone(), release.clone());
            async move {
                let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let tenant = body.0["tenant"]["id"].as_str().unwrap_or("").to_owned();
                let n = {
                    let mut c = calls.lock().unwrap();
                    c.push((tenant, key));
                    c.len()
                };
                if n > ANSWERED_BEFORE_KILL {
                    let _ = release.wait_for(|r| *r).await;
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn tenant_id(i: usize) -> String {
    format!("t{i:03}")
}

fn is_silo(i: usize) -> bool {
    i.is_multiple_of(2)
}

async fn statuses(s: &TestServer) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let res = s.get("/v1/tenants?limit=1000").await;
    for t in res.body["items"].as_array().unwrap() {
        *out.entry(t["status"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_provisioning_and_every_tenant_is_provisioned_once() {
    let dir = tempfile::tempdir().unwrap();
    let calls: Calls = Arc::default();
    let (release, released) = watch::channel(false);
    let hook_url = receiver(calls.clone(), released).await;

    let (mut first, url) = spawn_server(dir.path());
    let s = TestServer::attach(url);
    let hook = json!({"url": hook_url, "events": ["provision"], "mode": "sync", "timeout_s": 60});
    assert_eq!(s.call(Method::PUT, "/v1/hooks/crm", Some(hook)).await.status, StatusCode::CREATED);
    s.put_plan("pooled", "pool").await;
    s.put_plan("dedicated", "silo").await;
    for i in 0..TENANTS {
        s.create_tenant(&tenant_id(i), if is_silo(i) { "dedicated" } else { "pooled" }).await;
    }

    // Kill once hook calls are being held: some tenants are done, others are mid-way.
    let deadline = Instant::now() + Duration::from_secs(30);
    while calls.lock().unwrap().len() <= ANSWERED_BEFORE_KILL + 5 {
        assert!(Instant::now() < deadline, "the hook was not called: {:?}", statuses(&s).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = statuses(&s).await;
    first.kill_9();
    assert!(before.get("provisioning").copied().unwrap_or(0) > 0, "the kill came too late: {before:?}");

    release.send(true).unwrap();
    let (_second, url) = spawn_server(dir.path());
    let s = TestServer::attach(url);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = statuses(&s).await;
        if now.get("active") == Some(&TENANTS) {
            break;
        }
        assert!(Instant::now() < deadline, "not every tenant became active after the restart: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Each silo tenant has exactly one database, and pool tenants none.
    let silo: BTreeSet<String> = (0..TENANTS).filter(|i| is_silo(*i)).map(tenant_id).collect();
    let dirs: BTreeSet<String> = std::fs::read_dir(dir.path().join("tenants"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(dirs, silo);
    for id in &silo {
        let files: Vec<_> = std::fs::read_dir(dir.path().join("tenants").join(id))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|f| f.ends_with(".db"))
            .collect();
        assert_eq!(files, ["data.db"], "{id}");
        let res = s.get(&format!("/v1/tenants/{id}/resources")).await;
        let databases = res.body["items"].as_array().unwrap().iter().filter(|r| r["kind"] == "database").count();
        assert_eq!(databases, 1, "{id}: {}", res.body);
    }

    // One idempotency key per tenant, however many times the hook was called.
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let total = {
        let calls = calls.lock().unwrap();
        for (tenant, key) in calls.iter() {
            keys.entry(tenant.clone()).or_default().insert(key.clone());
        }
        calls.len()
    };
    assert_eq!(keys.len(), TENANTS, "every tenant's hook was called");
    for (tenant, k) in &keys {
        assert_eq!(k.len(), 1, "{tenant} was called with several keys: {k:?}");
    }
    assert!(total > TENANTS, "no hook call was repeated after the restart ({total} calls)");

    // Exactly one TenantProvisioned per tenant in the archive.
    let res = s.get("/v1/events?detail_type=TenantProvisioned&limit=1000").await;
    let mut per_tenant: BTreeMap<String, usize> = BTreeMap::new();
    for e in res.body["items"].as_array().unwrap() {
        *per_tenant.entry(e["tenant_id"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
    }
    assert_eq!(per_tenant.len(), TENANTS, "{per_tenant:?}");
    assert!(per_tenant.values().all(|n| *n == 1), "{per_tenant:?}");
}
