//! What user state machines may not do (issue 11, finding 6): call the lifecycle's
//! internal handlers (refused at `PUT` naming the state, and at run time), put events
//! with Tenancy's own source `tenancy` (refused at `PUT` when written in the
//! definition, failing the task when computed); audit entries of lifecycle steps name
//! the execution and the key that started it; tenant and viewer keys read lifecycle
//! executions without the provisioning hooks' URLs.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestServer};
use tenancy_store::Effects;

both_backends!(
    reserved_resources_are_refused,
    the_tenancy_event_source_is_reserved,
    lifecycle_audit_names_the_execution_and_its_starter,
    tenant_and_viewer_keys_do_not_see_hook_urls
);

fn task(resource: &str) -> Value {
    json!({"Type": "Task", "Resource": resource, "Parameters": {"tenant_id": "acme", "status": "active", "kind": "database"}, "End": true})
}

async fn put(s: &TestServer, name: &str, definition: Value) -> support::Res {
    s.call(Method::PUT, &format!("/v1/state-machines/{name}"), Some(json!({"definition": definition}))).await
}

async fn start(s: &TestServer, machine: &str, input: Value) -> String {
    let res = s.call(Method::POST, "/v1/executions", Some(json!({"state_machine": machine, "input": input}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    res.body["id"].as_str().unwrap().to_owned()
}

async fn stopped(s: &TestServer, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let e = s.get(&format!("/v1/executions/{id}")).await.body;
        if e["status"] != "RUNNING" {
            return e;
        }
        assert!(Instant::now() < deadline, "execution {id} never stopped: {e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn reserved_resources_are_refused(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    s.wait_status("acme", "active").await;
    for resource in [
        "tenancy:tenant.set_status",
        "tenancy:tenant.offboarded",
        "tenancy:resource.delete",
        "tenancy:database.export",
        "tenancy:hooks.call",
        "tenancy:hooks.notify.waitForTaskToken",
    ] {
        let top = json!({"StartAt": "Revive", "States": {"Revive": task(resource)}});
        let nested = json!({"StartAt": "Fan", "States": {"Fan": {"Type": "Parallel", "End": true, "Branches": [
            {"StartAt": "Each", "States": {"Each": {"Type": "Map", "End": true, "ItemProcessor":
                {"StartAt": "Revive", "States": {"Revive": task(resource)}}}}}]}}});
        for definition in [top, nested] {
            let res = put(&s, "sneaky", definition).await;
            assert_eq!(res.status, StatusCode::BAD_REQUEST, "{resource}: {}", res.body);
            assert_eq!(res.header("content-type"), Some("application/problem+json"));
            assert_eq!(res.code(), "reserved-resource", "{}", res.body);
            let detail = res.body["detail"].as_str().unwrap();
            assert!(detail.contains("\"Revive\"") && detail.contains(resource), "{detail}");
        }
    }
    assert_eq!(s.get("/v1/state-machines/sneaky").await.status, StatusCode::NOT_FOUND, "nothing was stored");
    // User resources stay usable.
    let ok = json!({"StartAt": "N", "States": {"N": {"Type": "Task", "Resource": "tenancy:noop", "End": true}}});
    assert!(put(&s, "fine", ok).await.status.is_success());

    // Defence in depth: a definition stored without the API check fails at run time
    // and changes nothing.
    let server = s.server.as_ref().unwrap();
    let definition = json!({"StartAt": "Drop", "States": {"Drop": task("tenancy:resource.delete")}});
    server.app.engine().workflows().state_machine_put("stored", &definition, &Effects::none()).await.unwrap();
    let id = start(&s, "stored", json!({})).await;
    let e = stopped(&s, &id).await;
    assert_eq!(e["status"], "FAILED", "{e}");
    assert_eq!(e["error"], "States.Runtime", "{e}");
    assert!(e["cause"].as_str().unwrap().contains("reserved"), "{e}");
    let kinds = s.get("/v1/tenants/acme/resources").await.body["items"].as_array().unwrap().len();
    assert_eq!(kinds, 3, "the tenant's database record is still there");
    s.stop().await;
}

async fn the_tenancy_event_source_is_reserved(backend: Backend) {
    let s = TestServer::start(backend).await;
    let put_events = |source: Value| {
        json!({"StartAt": "Put", "States": {"Put": {"Type": "Task", "Resource": "tenancy:events.put",
            "Parameters": {"Entries": [{"DetailType": "TenantOffboarded", "Detail": {"id": "acme"}, "Source": source}]},
            "End": true}}})
    };
    for source in ["tenancy", "tenancy.billing"] {
        let res = put(&s, "forge", put_events(json!(source))).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
        assert_eq!(res.code(), "reserved-event-source", "{}", res.body);
        assert!(res.body["detail"].as_str().unwrap().contains("\"Put\""), "{}", res.body);
    }
    // Computed at run time: the task fails and no event is written.
    let dynamic = json!({"StartAt": "Put", "States": {"Put": {"Type": "Task", "Resource": "arn:aws:states:::events:putEvents",
        "Parameters": {"Entries": [{"DetailType": "TenantOffboarded", "Detail": {"id": "acme"}, "Source.$": "$.source"}]},
        "End": true}}});
    assert!(put(&s, "forge", dynamic).await.status.is_success());
    let e = stopped(&s, &start(&s, "forge", json!({"source": "tenancy"})).await).await;
    assert_eq!((e["status"].as_str(), e["error"].as_str()), (Some("FAILED"), Some("States.Runtime")), "{e}");
    let forged = s.get("/v1/events?detail_type=TenantOffboarded").await.body;
    assert_eq!(forged["items"], json!([]), "{forged}");
    // Other sources pass; no source is `workflow`, not `tenancy`.
    let e = stopped(&s, &start(&s, "forge", json!({"source": "billing"})).await).await;
    assert_eq!(e["status"], "SUCCEEDED", "{e}");
    let plain = json!({"StartAt": "Put", "States": {"Put": {"Type": "Task", "Resource": "tenancy:events.put",
        "Parameters": {"Entries": [{"DetailType": "OrderShipped", "Detail": {}}]}, "End": true}}});
    assert!(put(&s, "plain", plain).await.status.is_success());
    assert_eq!(stopped(&s, &start(&s, "plain", json!({})).await).await["status"], "SUCCEEDED");
    let events = s.get("/v1/events?detail_type=OrderShipped").await.body;
    assert_eq!(events["items"][0]["source"], "workflow", "{events}");
    let events = s.get("/v1/events?detail_type=TenantOffboarded").await.body;
    assert_eq!(events["items"][0]["source"], "billing", "{events}");
    s.stop().await;
}

async fn lifecycle_audit_names_the_execution_and_its_starter(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    let res = s.call(Method::POST, "/v1/api-keys", Some(json!({"name": "ops", "role": "operator"}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let (key, key_id) = (res.body["key"].as_str().unwrap().to_owned(), res.body["id"].as_str().unwrap().to_owned());
    let body = json!({"id": "acme", "name": "acme", "plan": "basic"});
    let res = s.call_with(Some(&key), Method::POST, "/v1/tenants", Some(body), &[]).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    let execution = res.body["execution_id"].as_str().unwrap().to_owned();
    s.wait_status("acme", "active").await;
    let audit = s.get("/v1/audit?action=tenant.complete_provision").await.body;
    let entry = &audit["items"][0];
    assert_eq!(entry["actor_key_id"], json!(key_id), "{audit}");
    assert_eq!(entry["actor_role"], "operator", "{audit}");
    assert_eq!(entry["detail"]["execution_id"], json!(execution), "{audit}");
    assert_eq!(entry["detail"]["state_machine"], "tenancy.tenant.provision", "{audit}");
    s.stop().await;
}

async fn tenant_and_viewer_keys_do_not_see_hook_urls(backend: Backend) {
    let s = TestServer::start(backend).await;
    let calls: Arc<Mutex<Vec<Value>>> = Arc::default();
    let c = calls.clone();
    let app = axum::Router::new().fallback(move |body: axum::Json<Value>| {
        let c = c.clone();
        async move {
            c.lock().unwrap().push(body.0);
            StatusCode::ACCEPTED
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/internal/crm-hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let hook = json!({"url": url, "events": ["provision"], "mode": "callback", "timeout_s": 3600});
    assert_eq!(s.call(Method::PUT, "/v1/hooks/crm", Some(hook)).await.status, StatusCode::CREATED);
    s.put_plan("basic", "pool").await;
    let res = s.create_tenant("acme", "basic").await;
    let execution = res.body["execution_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    while calls.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the callback hook was never called");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let path = format!("/v1/executions/{execution}/history?limit=1000");
    let full = s.get(&path).await.body.to_string();
    assert!(full.contains("/internal/crm-hook"), "operators see the hook: {full}");
    let tenant = s.key("tenant", Some("acme")).await;
    let viewer = s.key("viewer", None).await;
    for key in [&tenant, &viewer] {
        for p in [path.clone(), format!("/v1/executions/{execution}"), "/v1/executions?tenant_id=acme".to_owned()] {
            let res = s.call_with(Some(key), Method::GET, &p, None, &[]).await;
            assert_eq!(res.status, StatusCode::OK, "{}", res.body);
            let text = res.body.to_string();
            assert!(!text.contains("/internal/crm-hook"), "{p}: {text}");
            assert!(!text.contains("\"key_id\""), "who started it stays with operators: {p}: {text}");
        }
        let history = s.call_with(Some(key), Method::GET, &path, None, &[]).await.body.to_string();
        assert!(history.contains("[redacted]"), "{history}");
    }
    s.stop().await;
}
