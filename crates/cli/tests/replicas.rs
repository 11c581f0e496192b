//! Two `tenancy serve` replicas on one PostgreSQL database: no lost updates, and
//! background work done once.

mod support;

use std::collections::HashMap;

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{Backend, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_database() {
    let url = support::database_url(Backend::Postgres).await;
    let a = TestServer::start_replica(url.clone()).await;
    let b = TestServer::start_replica(url).await;
    a.put_plan("basic", "pool").await;
    a.put_plan("pro", "pool").await;

    // Tenants created through both replicas; each replica's worker competes for the
    // provisioning jobs of all of them.
    let creates = (0..40).map(|i| {
        let s = if i % 2 == 0 { &a } else { &b };
        async move {
            let res = s
                .call(
                    Method::POST,
                    "/v1/tenants",
                    Some(json!({"id": format!("t{i:02}"), "name": "T", "plan": "basic"})),
                )
                .await;
            assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
        }
    });
    join_all(creates).await;
    for i in 0..40 {
        let s = if i % 2 == 0 { &b } else { &a };
        s.wait_status(&format!("t{i:02}"), "active").await;
    }
    let events = a.get("/v1/events?detail_type=TenantProvisioned&limit=1000").await;
    let mut per_tenant: HashMap<String, usize> = HashMap::new();
    for e in events.body["items"].as_array().unwrap() {
        *per_tenant.entry(e["tenant_id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(per_tenant.len(), 40);
    assert!(per_tenant.values().all(|n| *n == 1), "a provisioning ran twice: {per_tenant:?}");

    // Plan changes raced from both replicas: exactly one wins per tenant.
    let races = (0..10).map(|i| {
        let (a, b) = (&a, &b);
        async move {
            let path = format!("/v1/tenants/t{i:02}/plan");
            let (ra, rb) = tokio::join!(
                a.call(Method::POST, &path, Some(json!({"plan": "pro"}))),
                b.call(Method::POST, &path, Some(json!({"plan": "pro"})))
            );
            let mut statuses = [ra.status.as_u16(), rb.status.as_u16()];
            statuses.sort();
            statuses
        }
    });
    for statuses in join_all(races).await {
        assert_eq!(statuses, [202, 409], "both plan changes went through");
    }

    // Concurrent writes with the same ETag through different replicas: one wins, the
    // other gets 412 and nothing of it is lost silently.
    let t = a.get("/v1/tenants/t20").await;
    let etag = t.header("etag").unwrap().to_owned();
    let if_match = [("if-match", etag.as_str())];
    let (ra, rb) = tokio::join!(
        a.call_with(Some(support::ADMIN), Method::PATCH, "/v1/tenants/t20", Some(json!({"name": "A"})), &if_match),
        b.call_with(Some(support::ADMIN), Method::PATCH, "/v1/tenants/t20", Some(json!({"name": "B"})), &if_match)
    );
    let mut statuses = [ra.status.as_u16(), rb.status.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 412]);
    let winner = if ra.status == StatusCode::OK { "A" } else { "B" };
    assert_eq!(b.get("/v1/tenants/t20").await.body["name"], winner);

    // Without If-Match, concurrent patches of different fields both land.
    let (ra, rb) = tokio::join!(
        a.call(Method::PATCH, "/v1/tenants/t21", Some(json!({"name": "Renamed"}))),
        b.call(Method::PATCH, "/v1/tenants/t21", Some(json!({"metadata": {"k": 1}})))
    );
    assert_eq!((ra.status, rb.status), (StatusCode::OK, StatusCode::OK));
    let t = a.get("/v1/tenants/t21").await.body;
    assert_eq!((t["name"].as_str(), &t["metadata"]), (Some("Renamed"), &json!({"k": 1})));
    a.stop().await;
    b.stop().await;
}
