//! Keys and tenants: an API key names a real tenant, an offboarded tenant's keys are
//! revoked; on PostgreSQL, data-plane roles cannot connect to the control-plane
//! database and wake-up notifications carry no names.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::Connection;
use support::{Backend, TestServer};

both_backends!(keys_need_a_live_tenant, offboarding_revokes_the_tenants_keys);

async fn key_count(s: &TestServer) -> usize {
    s.get("/v1/api-keys?limit=100").await.body["items"].as_array().unwrap().len()
}

async fn keys_need_a_live_tenant(backend: Backend) {
    let s = TestServer::start(backend).await;
    let before = key_count(&s).await;
    let res = s
        .call(Method::POST, "/v1/api-keys", Some(json!({"name": "ghost", "role": "tenant", "tenant_id": "nobody"})))
        .await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "unknown-tenant"), "{}", res.body);
    assert_eq!(key_count(&s).await, before, "nothing created");
    s.stop().await;
}

async fn offboarding_revokes_the_tenants_keys(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    s.create_tenant("other", "basic").await;
    s.wait_status("acme", "active").await;
    s.wait_status("other", "active").await;
    let acme = s.key("tenant", Some("acme")).await;
    let other = s.key("tenant", Some("other")).await;
    let res = s.call(Method::DELETE, "/v1/tenants/acme", None).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    s.wait_status("acme", "offboarded").await;

    let res = s.call_with(Some(&acme), Method::GET, "/v1/tenants/acme", None, &[]).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.body);
    let keys = s.get("/v1/api-keys?limit=100").await.body;
    let tenants: Vec<&str> = keys["items"].as_array().unwrap().iter().filter_map(|k| k["tenant_id"].as_str()).collect();
    assert_eq!(tenants, ["other"], "{keys}");
    let res = s.call_with(Some(&other), Method::GET, "/v1/tenants/other", None, &[]).await;
    assert_eq!(res.status, StatusCode::OK, "other tenants' keys stay: {}", res.body);
    // And none can be made for it.
    let res = s
        .call(Method::POST, "/v1/api-keys", Some(json!({"name": "late", "role": "tenant", "tenant_id": "acme"})))
        .await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "unknown-tenant"), "{}", res.body);
    s.stop().await;
}

/// `url` (`postgres://.../name`) with another database name.
fn with_database(url: &str, name: &str) -> String {
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_plane_roles_cannot_connect_to_the_control_plane() {
    let s = TestServer::start(Backend::Postgres).await;
    s.put_plan("vault", "silo").await;
    s.create_tenant("bank", "vault").await;
    s.wait_status("bank", "active").await;
    let creds = s.get("/v1/tenants/bank/database-credentials").await.body;
    let own = creds["url"].as_str().unwrap().to_owned();
    // Its own database, yes (so the refusal below is about the privilege).
    sqlx::PgConnection::connect(&own).await.expect("connects to its own database").close().await.unwrap();
    let control = s.database_url.as_deref().unwrap().rsplit_once('/').unwrap().1.to_owned();
    let Err(err) = sqlx::PgConnection::connect(&with_database(&own, &control)).await else {
        panic!("a tenant's role connected to the control-plane database {control}");
    };
    assert!(err.to_string().contains("permission denied"), "{err}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_wake_ups_carry_no_queue_names() {
    let s = TestServer::start(Backend::Postgres).await;
    let mut listener = sqlx::postgres::PgListener::connect(s.database_url.as_deref().unwrap()).await.unwrap();
    listener.listen_all(["tenancy_queues", "tenancy_wakeup"]).await.unwrap();
    let res = s.call(Method::PUT, "/v1/queues/payroll-acme", Some(json!({"visibility_timeout_s": 30}))).await;
    assert!(res.status.is_success(), "{}", res.body);
    let res = s.call(Method::POST, "/v1/queues/payroll-acme/messages", Some(json!({"body": {"n": 1}}))).await;
    assert!(res.status.is_success(), "{}", res.body);
    let mut payloads = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !payloads.iter().any(|(c, _): &(String, String)| c == "tenancy_queues") {
        let n = tokio::time::timeout_at(deadline, listener.recv()).await.expect("a queue wake-up").unwrap();
        payloads.push((n.channel().to_owned(), n.payload().to_owned()));
    }
    for (channel, payload) in &payloads {
        assert!(!payload.contains("payroll") && !payload.contains("acme"), "{channel}: {payload:?}");
    }
    s.stop().await;
}
