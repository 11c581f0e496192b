//! The audit log end to end: sealing, verification, checkpoints, NDJSON exports that
//! `tenancy audit verify` accepts, blob exports, and tamper detection, on SQLite and
//! PostgreSQL.

mod events_support;

use reqwest::Method;
use serde_json::{json, Value};

use events_support::*;

async fn some_changes(s: &TestServer) {
    for i in 0..3 {
        let body = json!({"name": format!("Plan {i}"), "isolation": "pool", "features": [], "quotas": {}});
        let (status, res) = s.call(Method::PUT, &format!("/v1/plans/p{i}"), Some(body)).await;
        assert_eq!(status, 201, "{res}");
    }
    s.post("/v1/tenants", json!({"id": "acme", "name": "Acme", "plan": "p0"})).await;
}

/// Waits until every entry is sealed and returns the verification.
async fn verified(s: &TestServer, at_least: u64) -> Value {
    eventually("audit sealed", || async {
        let v = s.get("/v1/audit/verify").await;
        (v["pending"] == 0 && v["records"].as_u64().unwrap() >= at_least).then_some(v)
    })
    .await
}

async fn export(s: &TestServer, query: &str) -> String {
    let res = s.http.get(format!("{}/v1/audit/export{query}", s.base)).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    res.text().await.unwrap()
}

async fn chain_verifies_and_detects_tampering(db: Db) {
    let s = server(db, |_| {}).await;
    some_changes(&s).await;
    let v = verified(&s, 5).await;
    assert_eq!(v["ok"], true, "{v}");
    let records = v["records"].as_u64().unwrap();
    let head = v["head"].as_str().unwrap().to_owned();

    // The export is the sealed log; the offline verifier accepts it and agrees on the head.
    let ndjson = export(&s, "").await;
    assert_eq!(ndjson.lines().count() as u64, records);
    let summary = tenancy_audit::verify_ndjson(ndjson.as_bytes()).expect("export verifies");
    assert_eq!((summary.records, summary.first_seq, summary.head.as_str()), (records, Some(1), head.as_str()));
    let first: tenancy_audit::AuditRecord = serde_json::from_str(ndjson.lines().next().unwrap()).unwrap();
    assert_eq!(first.entry.actor_role, "admin");

    // The same through the CLI: `tenancy audit export > file` then `tenancy audit verify file`.
    let file = s.dir.path().join("export.ndjson");
    let bin = env!("CARGO_BIN_EXE_tenancy");
    let out = tokio::process::Command::new(bin)
        .args(["--server", &s.base, "--token", ADMIN, "audit", "export"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&file, &out.stdout).unwrap();
    let out = tokio::process::Command::new(bin)
        .args(["--output", "json", "audit", "verify", file.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["head"], head.as_str());

    // A time range exports a contiguous seq range that verifies on its own.
    let ranged = export(&s, &format!("?from={}", first.entry.time.to_rfc3339().replace(':', "%3A"))).await;
    tenancy_audit::verify_ndjson(ranged.as_bytes()).expect("range verifies");
    let empty = export(&s, "?from=2100-01-01T00:00:00Z").await;
    assert_eq!(empty, "");

    // To the blob store.
    let blob = s.post("/v1/audit/exports", json!({})).await;
    assert_eq!(blob["records"].as_u64(), Some(records));
    assert_eq!(blob["head"], head.as_str());
    let path = blob["location"].as_str().unwrap().strip_prefix("file://").unwrap().to_owned();
    let written = std::fs::read(&path).unwrap();
    assert_eq!(tenancy_audit::verify_ndjson(&written[..]).unwrap().head, head);

    // Someone edits a sealed record in the database: verification names it.
    let pool = s.raw_db().await;
    sqlx::query("UPDATE audit_log SET action = 'plan.nothing-to-see' WHERE seq = 2").execute(&pool).await.unwrap();
    let v = s.get("/v1/audit/verify").await;
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!((v["seq"].as_i64(), v["index"].as_u64()), (Some(2), Some(1)), "{v}");
    assert!(v["reason"].as_str().unwrap().contains("does not match its hash"), "{v}");
    // ...and an export to the blob store fails instead of writing a log that does not verify.
    let (status, problem) = s.call(Method::POST, "/v1/audit/exports", Some(json!({}))).await;
    assert_eq!(status, 500, "{problem}");
    let exports = std::path::Path::new(&path).parent().unwrap();
    assert_eq!(std::fs::read_dir(exports).unwrap().count(), 1, "nothing written but the first export");
    s.server.stop().await;
}

#[tokio::test]
async fn audit_chain_verifies_and_detects_tampering_sqlite() {
    chain_verifies_and_detects_tampering(Db::Sqlite).await;
}

#[tokio::test]
async fn audit_chain_verifies_and_detects_tampering_postgres() {
    chain_verifies_and_detects_tampering(Db::Postgres).await;
}

#[tokio::test]
async fn audit_endpoints_authorize() {
    let s = server(Db::Sqlite, |_| {}).await;
    let mut keys = std::collections::HashMap::new();
    for role in ["viewer", "service"] {
        let (_, k) = s.call(Method::POST, "/v1/api-keys", Some(json!({"name": role, "role": role}))).await;
        keys.insert(role, k["key"].as_str().unwrap().to_owned());
    }
    assert_eq!(s.call_as(&keys["viewer"], Method::GET, "/v1/audit/verify", None).await.0, 200);
    assert_eq!(s.call_as(&keys["viewer"], Method::GET, "/v1/audit/export", None).await.0, 200);
    assert_eq!(s.call_as(&keys["viewer"], Method::POST, "/v1/audit/exports", Some(json!({}))).await.0, 403);
    assert_eq!(s.call_as(&keys["service"], Method::GET, "/v1/audit/verify", None).await.0, 403);
    let (status, p) = s.call(Method::GET, "/v1/audit/export?from=yesterday", None).await;
    assert_eq!((status, p["code"].as_str()), (400, Some("invalid-request")));
    s.server.stop().await;
}
