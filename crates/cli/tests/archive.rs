//! The archive (docs/audit.md, "Archives"), on both backends: the leased archiver
//! writes every sealed audit record and every event to the blob store as Parquet,
//! partitioned by day, each file with its manifest; `GET /v1/audit/verify?archive=true`
//! verifies the archive against the chain and finds a changed file; an archiving
//! pruner drops only archived events; a replay of a range the database no longer holds
//! reads the archive and delivers the original events again.

mod events_support;

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use sqlx::AnyPool;

use events_support::*;
use tenancy_app::archive::worker::{Archiver, ArchiverOptions};
use tenancy_app::retention::pruner::{Pruner, PrunerOptions};
use tenancy_domain::time::Timestamp;

#[tokio::test]
async fn archive_verifies_and_replays_sqlite() {
    archive(Db::Sqlite).await;
}

#[tokio::test]
async fn archive_verifies_and_replays_postgres() {
    archive(Db::Postgres).await;
}

async fn count(db: &AnyPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn files(dir: &std::path::Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p, ext));
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
    out.sort();
    out
}

async fn archive(db: Db) {
    let r = Receiver::start().await;
    // The archiver and the pruner are driven by the test (with their `now`).
    let s = server(db, |o| {
        o.archive_interval = None;
        o.prune_interval = Duration::from_secs(3600);
    })
    .await;
    let pool = s.raw_db().await;
    let blobs = s.server.app.services().blobs.clone().expect("serve has a blob store");
    let store = s.server.app.store().clone();
    // Pages of 3 rows: each file is written a page at a time, as a pass over a long
    // backlog writes it.
    let archiver =
        Archiver::new(store.clone(), blobs, ArchiverOptions { page: 3, ..ArchiverOptions::new("archive-test".into()) });

    s.post(
        "/v1/subscriptions",
        json!({"name": "all", "pattern": {"source": ["tenancy"]}, "target": {"type": "webhook", "url": r.url("all")}}),
    )
    .await;
    let sub = s.get("/v1/subscriptions").await["items"][0]["id"].as_str().unwrap().to_owned();
    assert!((200..300).contains(
        &s.call(Method::PUT, "/v1/plans/basic", Some(json!({"name": "Basic", "isolation": "pool"}))).await.0
    ));
    assert!((200..300)
        .contains(&s.call(Method::PUT, "/v1/plans/pro", Some(json!({"name": "Pro", "isolation": "pool"}))).await.0));
    for (t, region) in [("eu1", "eu-west-1"), ("us1", "us-east-1")] {
        s.post("/v1/tenants", json!({"id": t, "name": t, "plan": "basic", "region": region})).await;
    }
    for t in ["eu1", "us1"] {
        eventually("provisioned", || async {
            (s.get(&format!("/v1/tenants/{t}")).await["status"] == "active").then_some(())
        })
        .await;
        s.post(&format!("/v1/tenants/{t}/plan"), json!({"plan": "pro"})).await;
    }
    for t in ["eu1", "us1"] {
        eventually("plan changed", || async {
            let v = s.get(&format!("/v1/tenants/{t}")).await;
            (v["status"] == "active" && v["plan"] == "pro").then_some(())
        })
        .await;
    }
    eventually("events delivered", || async {
        (count(&pool, "SELECT COUNT(*) FROM events WHERE dispatched = 0").await == 0
            && count(&pool, "SELECT COUNT(*) FROM deliveries WHERE status <> 'delivered'").await == 0)
            .then_some(())
    })
    .await;
    eventually("audit sealed", || async { (s.get("/v1/audit/verify").await["pending"] == 0).then_some(()) }).await;
    let events = count(&pool, "SELECT COUNT(*) FROM events").await;
    let delivered_before = r.received("all").len();
    assert_eq!(delivered_before as i64, events);

    // Past the events' retention, an archiving pruner keeps what is not archived yet.
    let later = Timestamp::now().plus_millis(31 * 86_400_000);
    let mut popts = PrunerOptions::new("archive-test".into());
    popts.archived_events_only = true;
    popts.pause = Duration::ZERO;
    let pruner = Pruner::new(store.clone(), popts);
    assert_eq!(pruner.run_once(later).await.unwrap().unwrap().events, 0);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM events").await, events);

    // One pass archives everything, as of now; a second finds nothing to write.
    let report = archiver.run_once(Timestamp::now()).await.unwrap().expect("the lease is free");
    let sealed = s.get("/v1/audit/verify").await["records"].as_i64().unwrap();
    assert_eq!(report.audit_records as i64, sealed);
    assert_eq!(report.events as i64, events);
    assert_eq!(archiver.run_once(Timestamp::now()).await.unwrap().unwrap().audit_records, 0);
    let root = s.dir.path().join("blobs");
    let today = Timestamp::now().to_rfc3339()[..10].to_owned();
    let parquet = files(&root, "parquet");
    assert!(parquet.iter().any(|p| p.starts_with(root.join(format!("audit/date={today}")))), "{parquet:?}");
    assert!(parquet.iter().any(|p| p.starts_with(root.join(format!("events/date={today}")))), "{parquet:?}");
    let manifests = files(&root.join("manifests"), "json");
    assert_eq!(manifests.len(), parquet.len(), "a manifest per file");
    let m: Value = serde_json::from_slice(&std::fs::read(&manifests[0]).unwrap()).unwrap();
    for k in ["rows", "sha256", "first_seq", "last_seq", "bytes"] {
        assert!(!m[k].is_null(), "{k}: {m}");
    }

    let v = s.get("/v1/audit/verify?archive=true").await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["archive"]["last_seq"], json!(sealed), "{v}");
    assert_eq!(v["archive"]["audit_records"], json!(sealed), "{v}");
    assert_eq!(v["archive"]["events"], json!(events), "{v}");

    // Archived: the pruner drops the events past retention.
    assert_eq!(pruner.run_once(later).await.unwrap().unwrap().events as i64, events);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM events").await, 0);

    // A replay of the range reads the archive and delivers the same events again.
    let from = Timestamp::now().plus_millis(-3_600_000);
    let to = Timestamp::now().plus_millis(60_000);
    let (st, res) =
        s.call(Method::POST, &format!("/v1/subscriptions/{sub}/replay"), Some(json!({"from": from, "to": to}))).await;
    assert_eq!(st, 202, "{res}");
    assert_eq!(res["count"], json!(events), "{res}");
    let replayed = eventually("replayed deliveries", || async {
        let got = r.received("all");
        (got.len() >= 2 * delivered_before).then_some(got)
    })
    .await;
    let ids = |got: &[Received]| {
        let mut ids: Vec<String> = got.iter().map(|g| g.json()["id"].as_str().unwrap().to_owned()).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&replayed[delivered_before..]), ids(&replayed[..delivered_before]), "the original events");
    let plan_changed = replayed[delivered_before..].iter().find(|g| g.json()["detail-type"] == "TenantPlanChanged");
    assert!(plan_changed.is_some(), "the archived events keep their detail");

    // An offboarding export in Parquet: the events and audit records in the archive's
    // columns, each file as its manifest lists it.
    let (st, op) = s.call(Method::DELETE, "/v1/tenants/eu1?format=parquet", None).await;
    assert_eq!(st, 202, "{op}");
    let (st, body) = s.call(Method::DELETE, "/v1/tenants/us1?format=xml", None).await;
    assert_eq!(st, 400, "{body}");
    let execution = op["execution_id"].as_str().unwrap().to_owned();
    eventually("offboarded", || async { (s.get("/v1/tenants/eu1").await["status"] == "offboarded").then_some(()) })
        .await;
    let export = root.join(format!("tenants/eu1/offboard-{execution}"));
    let manifest: Value = serde_json::from_slice(&std::fs::read(export.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["files_format"], "parquet", "{manifest}");
    let names: Vec<&str> = manifest["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names[..2], ["events.parquet", "audit.parquet"], "and the silo database on PostgreSQL");
    let bytes = std::fs::read(export.join("events.parquet")).unwrap();
    use sha2::Digest;
    assert_eq!(manifest["files"][0]["sha256"], hex::encode(sha2::Sha256::digest(&bytes)));
    let exported = tenancy_app::archive::columns::events_from_parquet(bytes.into()).unwrap();
    assert_eq!(exported.len() as u64, manifest["counts"]["events"].as_u64().unwrap());
    assert!(!exported.is_empty() && exported.iter().all(|e| e.event.tenant_id.as_deref() == Some("eu1")));
    assert!(manifest["counts"]["audit_records"].as_u64().unwrap() > 0);

    // A changed file no longer verifies, and the answer names it.
    let victim = parquet.iter().find(|p| p.starts_with(root.join("audit"))).unwrap();
    let mut bytes = std::fs::read(victim).unwrap();
    bytes[10] ^= 1;
    std::fs::write(victim, bytes).unwrap();
    let v = s.get("/v1/audit/verify?archive=true").await;
    assert_eq!(v["ok"], false, "{v}");
    let reason = v["archive"]["reason"].as_str().unwrap();
    assert!(reason.contains("SHA-256") && reason.contains(".parquet"), "{reason}");
    pool.close().await;
}
