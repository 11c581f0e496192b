//! Two replicas on one PostgreSQL database deliver every event: dispatch and delivery
//! are shared through row locks and leases, and each replica's commits wake the other
//! (LISTEN/NOTIFY).

mod events_support;

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::json;
use tenancy::serve::{start, ServeOptions};

use events_support::*;

#[tokio::test]
async fn events_two_replicas_deliver_every_event() {
    // Replicas share the master key that seals the webhook secrets.
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let a = server(Db::Postgres, |o| o.master_key = Some(key.to_owned().into())).await;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ServeOptions::for_tests(dir.path().to_path_buf(), Some(a.db_url.clone()), ADMIN);
    opts.master_key = Some(key.to_owned().into());
    let b = start(opts).await.unwrap();
    let r = Receiver::start().await;
    let (status, _) = a
        .call(
            Method::PUT,
            "/v1/plans/basic",
            Some(json!({"name": "Basic", "isolation": "pool", "features": [], "quotas": {}})),
        )
        .await;
    assert_eq!(status, 201);
    let body = json!({"name": "all", "pattern": {"detail-type": ["TenantCreated"]}, "target": {"type": "webhook", "url": r.url("all")}});
    let (status, sub) = a.call(Method::POST, "/v1/subscriptions", Some(body)).await;
    assert_eq!(status, 201);
    let sub = sub["id"].as_str().unwrap().to_owned();
    let http = tenancy_client::http_client();
    for i in 0..40 {
        // Alternate replicas.
        let base = if i % 2 == 0 { a.base.clone() } else { b.url() };
        let res = http
            .post(format!("{base}/v1/tenants"))
            .bearer_auth(ADMIN)
            .json(&json!({"id": format!("t{i}"), "name": "T", "plan": "basic"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
    }
    eventually("40 deliveries", || async {
        let d = a.get(&format!("/v1/subscriptions/{sub}/deliveries?limit=1000")).await;
        let items = d["items"].as_array().unwrap().clone();
        (items.len() == 40 && items.iter().all(|d| d["status"] == "delivered")).then_some(())
    })
    .await;
    let ids: BTreeSet<String> = r.received("all").iter().map(|x| x.header("webhook-id")).collect();
    assert_eq!(ids.len(), 40, "every event delivered");
    b.stop().await;
    a.server.stop().await;
}
