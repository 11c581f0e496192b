//! Custom events (`POST /v1/events`, as EventBridge's PutEvents) and
//! `POST /v1/events/test-pattern` (as TestEventPattern), on SQLite and PostgreSQL.

mod events_support;

use reqwest::Method;
use serde_json::{json, Value};

use events_support::*;

fn entry(source: &str, detail_type: &str, detail: &str) -> Value {
    json!({"Source": source, "DetailType": detail_type, "Detail": detail})
}

async fn publish_and_deliver(db: Db) {
    let s = server(db, |_| {}).await;
    let r = Receiver::start().await;
    // Array consistency end to end: one line must be sku "a" with 2 units.
    let pattern = json!({"source": ["billing"], "detail": {"lines": {"sku": ["a"], "units": [2]}}});
    let (status, sub) = s
        .call(
            Method::POST,
            "/v1/subscriptions",
            Some(json!({"name": "usage", "pattern": pattern, "target": {"type": "webhook", "url": r.url("usage")}})),
        )
        .await;
    assert_eq!(status, 201, "{sub}");

    let mut matching = entry("billing", "Usage", r#"{"lines": [{"sku": "b", "units": 1}, {"sku": "a", "units": 2}]}"#);
    matching["Resources"] = json!(["meter/1"]);
    matching["Time"] = json!("2026-01-02T03:04:05Z");
    matching["TenantId"] = json!("acme");
    let entries = json!({"Entries": [
        matching,
        entry("billing", "Usage", r#"{"lines": [{"sku": "a", "units": 1}, {"sku": "b", "units": 2}]}"#),
        entry("tenancy", "TenantCreated", "{}"),
        entry("tenancy.billing", "Usage", "{}"),
        entry("billing", "Usage", "not json"),
        entry("billing", "Usage", "[1]"),
        json!({"Source": "billing", "Detail": "{}"}),
    ]});
    let (status, res) = s.call(Method::POST, "/v1/events", Some(entries)).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["FailedEntryCount"], 5, "{res}");
    let results = res["Entries"].as_array().unwrap();
    assert_eq!(results.len(), 7);
    let first = results[0]["EventId"].as_str().unwrap().to_owned();
    assert!(results[1]["EventId"].is_string() && results[1].get("ErrorCode").is_none(), "{res}");
    let codes: Vec<&str> = results[2..].iter().map(|e| e["ErrorCode"].as_str().unwrap()).collect();
    assert_eq!(
        codes,
        [
            "NotAuthorizedForSourceException",
            "NotAuthorizedForSourceException",
            "MalformedDetail",
            "MalformedDetail",
            "InvalidArgument"
        ]
    );
    assert!(results[6]["ErrorMessage"].as_str().unwrap().contains("DetailType"), "{res}");

    // The events are archived like Tenancy's own, with what was sent.
    let archived = s.get("/v1/events?detail_type=Usage").await["items"].as_array().unwrap().clone();
    assert_eq!(archived.len(), 2, "{archived:?}");
    let e = archived.iter().find(|e| e["id"] == first.as_str()).unwrap();
    assert_eq!(
        (&e["source"], &e["tenant_id"], &e["resources"], &e["time"]),
        (&json!("billing"), &json!("acme"), &json!(["meter/1"]), &json!("2026-01-02T03:04:05.000Z")),
        "{e}"
    );
    assert_eq!(e["detail"]["lines"][1]["sku"], "a");
    // Only the event whose one line meets both conditions is delivered.
    let got = eventually("the usage delivery", || async {
        let got = r.received("usage");
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(got[0].json()["id"], first.as_str());

    // Whole-request errors: no entries, too many, not the documented shape.
    for body in [
        json!({"Entries": []}),
        json!({"Entries": vec![entry("billing", "Usage", "{}"); 11]}),
        json!({"Entries": [], "EventBusName": "default"}),
    ] {
        let (status, problem) = s.call(Method::POST, "/v1/events", Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {problem}");
    }
    assert_eq!(s.get("/v1/events?detail_type=Usage").await["items"].as_array().unwrap().len(), 2);
    s.server.stop().await;
}

#[tokio::test]
async fn events_custom_publish_and_deliver_sqlite() {
    publish_and_deliver(Db::Sqlite).await;
}

#[tokio::test]
async fn events_custom_publish_and_deliver_postgres() {
    publish_and_deliver(Db::Postgres).await;
}

async fn tenant_keys_publish_for_their_tenant(db: Db) {
    let s = server(db, |_| {}).await;
    let (status, body) = s
        .call(
            Method::PUT,
            "/v1/plans/basic",
            Some(json!({"name": "Basic", "isolation": "pool", "features": [], "quotas": {}})),
        )
        .await;
    assert!(status == 200 || status == 201, "{body}");
    s.post("/v1/tenants", json!({"id": "acme", "name": "Acme", "plan": "basic"})).await;
    let key = s.post("/v1/api-keys", json!({"name": "acme", "role": "tenant", "tenant_id": "acme"})).await;
    let key = key["key"].as_str().unwrap().to_owned();
    let mut claims_other = entry("billing", "Usage", r#"{"units": 3}"#);
    claims_other["TenantId"] = json!("other");
    let body = json!({"Entries": [claims_other, entry("billing", "Usage", r#"{"units": 4}"#)]});
    let (status, res) = s.call_as(&key, Method::POST, "/v1/events", Some(body)).await;
    assert_eq!((status, &res["FailedEntryCount"]), (200, &json!(0)), "{res}");
    let archived = s.get("/v1/events?detail_type=Usage").await["items"].as_array().unwrap().clone();
    let tenants: Vec<&Value> = archived.iter().map(|e| &e["tenant_id"]).collect();
    assert_eq!(tenants, [&json!("acme"), &json!("acme")]);
    // A viewer may not publish; anyone may test a pattern.
    let viewer = s.post("/v1/api-keys", json!({"name": "v", "role": "viewer"})).await;
    let viewer = viewer["key"].as_str().unwrap();
    let one = json!({"Entries": [entry("billing", "Usage", "{}")]});
    assert_eq!(s.call_as(viewer, Method::POST, "/v1/events", Some(one)).await.0, 403);
    let test = json!({"pattern": {"detail": {"units": [{"numeric": [">", 3]}]}}, "event": {"detail": {"units": 4}}});
    let (status, res) = s.call_as(&key, Method::POST, "/v1/events/test-pattern", Some(test)).await;
    assert_eq!((status, res), (200, json!({"result": true})));
    s.server.stop().await;
}

#[tokio::test]
async fn events_custom_tenant_keys_publish_for_their_tenant_sqlite() {
    tenant_keys_publish_for_their_tenant(Db::Sqlite).await;
}

#[tokio::test]
async fn events_custom_tenant_keys_publish_for_their_tenant_postgres() {
    tenant_keys_publish_for_their_tenant(Db::Postgres).await;
}

#[tokio::test]
async fn events_test_pattern_answers_and_refuses_bad_patterns() {
    let s = server(Db::Sqlite, |_| {}).await;
    let event = json!({"source": "billing", "detail": {"lines": [{"sku": "a", "units": 1}, {"sku": "b", "units": 2}]}});
    for (pattern, result) in [
        (json!({"source": ["billing"]}), true),
        (json!({"detail": {"lines": {"sku": ["a"], "units": [1]}}}), true),
        (json!({"detail": {"lines": {"sku": ["a"], "units": [2]}}}), false),
        (json!({"source": [{"anything-but": "billing"}]}), false),
    ] {
        let (status, res) =
            s.call(Method::POST, "/v1/events/test-pattern", Some(json!({"pattern": pattern, "event": event}))).await;
        assert_eq!((status, res), (200, json!({"result": result})), "{pattern}");
    }
    for pattern in [json!({"source": "billing"}), json!({"n": [{"numeric": ["<", 1, ">", 5]}]})] {
        let (status, problem) =
            s.call(Method::POST, "/v1/events/test-pattern", Some(json!({"pattern": pattern, "event": event}))).await;
        assert_eq!((status, problem["code"].as_str()), (400, Some("invalid-pattern")), "{problem}");
    }
    let res = s
        .http
        .post(format!("{}/v1/events/test-pattern", s.base))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body(r#"{"pattern": {"n": [1E-325]}, "event": {"n": 0}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "invalid-pattern", "{problem}");
    s.server.stop().await;
}
