//! The growth test of retention (docs/storage.md, "Retention"), on both backends:
//! provisionings, lifecycle operations, user executions, queue and webhook traffic and
//! idempotent requests, then one prune as of a clock moved past every retention (the
//! pruner takes its `now`): every table that only grows is back to its live size (a
//! tenant's current lifecycle execution with its history, the execution of a state
//! machine keeping its runs for a year; no idempotency key, event, delivery, queue
//! message past its retention), nothing of the audit log is pruned and its chain still
//! verifies, and `GET /v1/storage` reports the same rows.
//!
//! Scale: `TENANCY_GROWTH_TENANTS` tenants (default 120 in the normal suite, which must
//! stay fast in a debug build; the figure is `TENANCY_GROWTH_TENANTS=10000`).

mod events_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::AnyPool;

use events_support::*;
use tenancy_app::retention::pruner::{Pruner, PrunerOptions};
use tenancy_app::retention::RetentionPolicy;
use tenancy_domain::time::Timestamp;

#[tokio::test]
async fn growth_is_pruned_back_to_live_size_sqlite() {
    growth(Db::Sqlite).await;
}

#[tokio::test]
async fn growth_is_pruned_back_to_live_size_postgres() {
    growth(Db::Postgres).await;
}

/// The scale of the test: tenants provisioned.
// A test knob read once, as the database URL of the PostgreSQL tests is.
#[allow(clippy::disallowed_methods)]
fn tenants() -> usize {
    std::env::var("TENANCY_GROWTH_TENANTS").ok().and_then(|v| v.parse().ok()).unwrap_or(120)
}

const TABLES: &[&str] = &[
    "executions",
    "execution_history",
    "idempotency_keys",
    "events",
    "deliveries",
    "delivery_attempts",
    "queue_messages",
    "queue_dedup",
    "quota_grants",
    "signups",
    "audit_log",
];

async fn count(db: &AnyPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn sizes(db: &AnyPool) -> BTreeMap<&'static str, i64> {
    let mut out = BTreeMap::new();
    for t in TABLES {
        out.insert(*t, count(db, &format!("SELECT COUNT(*) FROM {t}")).await);
    }
    out
}

/// Polls `f` for up to `secs`.
async fn wait_for<F, Fut>(what: &str, secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn growth(db: Db) {
    let n = tenants();
    let r = Receiver::start().await;
    let s = server(db, |o| o.prune_interval = Duration::from_secs(3600)).await;
    let pool = s.raw_db().await;

    let ok = |st: u16| (200..300).contains(&st);
    assert!(ok(s.call(Method::PUT, "/v1/plans/p0", Some(json!({"name": "P0", "isolation": "pool"}))).await.0));
    let hook = json!({"type": "webhook", "url": r.url("hook")});
    let sub = json!({"name": "all", "pattern": {"source": ["tenancy"]}, "target": hook});
    assert!(ok(s.call(Method::POST, "/v1/subscriptions", Some(sub)).await.0));
    let pass = json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}});
    let (st, _) = s.call(Method::PUT, "/v1/state-machines/batch", Some(json!({"definition": pass}))).await;
    assert!(ok(st), "{st}");
    let keep = json!({"definition": pass, "retention_days": 365});
    let (st, body) = s.call(Method::PUT, "/v1/state-machines/yearly", Some(keep)).await;
    assert!(ok(st), "{body}");
    assert_eq!(body["retention_days"], 365);
    let (st, body) =
        s.call(Method::PUT, "/v1/state-machines/x", Some(json!({"definition": pass, "retention_days": 40000}))).await;
    assert_eq!(st, 400, "{body}");

    // Provisionings, each with an Idempotency-Key (a row per request), 16 at a time.
    let started = Instant::now();
    stream::iter(0..n)
        .for_each_concurrent(16, |i| {
            let s = &s;
            async move {
                let res = s
                    .http
                    .post(format!("{}/v1/tenants", s.base))
                    .bearer_auth(ADMIN)
                    .header("Idempotency-Key", format!("create-{i}"))
                    .json(&json!({"id": format!("t{i:05}"), "name": "T", "plan": "p0"}))
                    .send()
                    .await
                    .unwrap();
                assert!(res.status().is_success(), "{}", res.text().await.unwrap());
            }
        })
        .await;
    // A lifecycle round trip for a third of them, and user executions.
    stream::iter((0..n).step_by(3))
        .for_each_concurrent(8, |i| {
            let s = &s;
            async move {
                let t = format!("t{i:05}");
                wait_for("provisioned", 300, || async {
                    s.get(&format!("/v1/tenants/{t}")).await["status"] == "active"
                })
                .await;
                assert!((200..300).contains(&s.call(Method::POST, &format!("/v1/tenants/{t}/suspend"), None).await.0));
                wait_for("suspended", 300, || async {
                    s.get(&format!("/v1/tenants/{t}")).await["status"] == "suspended"
                })
                .await;
                assert!((200..300).contains(&s.call(Method::POST, &format!("/v1/tenants/{t}/resume"), None).await.0));
            }
        })
        .await;
    for (machine, k) in [("batch", n), ("yearly", 1)] {
        stream::iter(0..k)
            .for_each_concurrent(8, |_| {
                let s = &s;
                async move {
                    let body = json!({"state_machine": machine});
                    let (st, e) = s.call(Method::POST, "/v1/executions", Some(body)).await;
                    assert!((200..300).contains(&st), "{e}");
                }
            })
            .await;
    }
    // Queue traffic: 100 sent, 90 received and deleted, 10 left.
    assert!(ok(s.call(Method::PUT, "/v1/queues/jobs", Some(json!({}))).await.0));
    for i in 0..100 {
        let (st, _) = s
            .call(Method::POST, "/v1/queues/jobs/messages", Some(json!({"body": i, "dedup_id": format!("d{i}")})))
            .await;
        assert!(ok(st), "{st}");
    }
    let mut deleted = 0;
    while deleted < 90 {
        let (_, got) = s.call(Method::POST, "/v1/queues/jobs/receive", Some(json!({"max": 10, "wait_s": 0}))).await;
        for m in got["messages"].as_array().unwrap().iter().take(90 - deleted) {
            let path = format!("/v1/queues/jobs/messages/{}", m["receipt"].as_str().unwrap());
            assert!(ok(s.call(Method::DELETE, &path, None).await.0));
            deleted += 1;
        }
    }

    // Everything settled: no execution running, every event dispatched and delivered.
    wait_for("executions finished", 600, || async {
        count(&pool, "SELECT COUNT(*) FROM executions WHERE status = 'RUNNING'").await == 0
    })
    .await;
    wait_for("events delivered", 600, || async {
        count(&pool, "SELECT COUNT(*) FROM events WHERE dispatched = 0").await == 0
            && count(&pool, "SELECT COUNT(*) FROM deliveries WHERE status = 'pending'").await == 0
    })
    .await;
    wait_for("audit sealed", 120, || async { s.get("/v1/audit/verify").await["pending"] == 0 }).await;
    let traffic = started.elapsed();
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM tenants WHERE status = 'active'").await, n as i64);

    let before = sizes(&pool).await;
    // Live: each tenant's current lifecycle execution, the year-long machine's run.
    let live = "SELECT id FROM executions WHERE id IN (SELECT lifecycle_execution_id FROM tenants) \
                OR state_machine = 'yearly'";
    let live_executions = count(&pool, &format!("SELECT COUNT(*) FROM ({live}) l")).await;
    let live_history =
        count(&pool, &format!("SELECT COUNT(*) FROM execution_history WHERE execution_id IN ({live})")).await;
    assert_eq!(live_executions, n as i64 + 1);
    assert!(before["executions"] >= live_executions + n as i64 + 2 * ((n as i64 + 2) / 3), "{before:?}");
    assert!(before["execution_history"] > live_history);
    for t in ["idempotency_keys", "events", "deliveries", "delivery_attempts", "queue_messages", "queue_dedup"] {
        assert!(before[t] > 0, "{t} grew: {before:?}");
    }

    // Nothing is past retention now: the report's next prune removes no execution.
    let (st, report) = s.call(Method::GET, "/v1/storage", None).await;
    assert_eq!(st, 200, "{report}");
    let row = |report: &Value, t: &str| {
        report["tables"].as_array().unwrap().iter().find(|r| r["table"] == t).cloned().unwrap()
    };
    assert_eq!(row(&report, "executions")["rows"], json!(before["executions"]));
    assert_eq!(row(&report, "executions")["next_prune_rows"], 0);
    assert!(row(&report, "execution_history")["bytes"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["execution_retention_days"], 90);
    assert_eq!(report["state_machine_retention"], json!({"yearly": 365}));

    // One prune with the clock moved past every retention.
    let later = Timestamp::now().plus_millis(91 * 86_400_000);
    let mut opts = PrunerOptions::new("growth-test".into());
    opts.policy = RetentionPolicy::default();
    opts.pause = Duration::ZERO;
    let pruner = Pruner::new(s.server.app.store().clone(), opts);
    let t = Instant::now();
    let report_of_pass = pruner.run_once(later).await.unwrap().expect("the lease is free at that time");
    let pass = t.elapsed();
    let after = sizes(&pool).await;
    eprintln!(
        "growth: {n} tenants, traffic {traffic:?}; before {before:?}; pruned {report_of_pass:?} in {pass:?}; after {after:?}"
    );
    assert_eq!(after["executions"], live_executions, "{after:?}");
    assert_eq!(after["execution_history"], live_history, "{after:?}");
    for t in ["idempotency_keys", "events", "deliveries", "delivery_attempts", "queue_messages", "queue_dedup"] {
        assert_eq!(after[t], 0, "{t}: {after:?}");
    }
    assert_eq!(report_of_pass.executions as i64, before["executions"] - live_executions);
    assert_eq!(report_of_pass.history as i64, before["execution_history"] - live_history);
    // The audit log is never pruned, and its chain still verifies.
    assert_eq!(after["audit_log"], before["audit_log"]);
    let v = s.get("/v1/audit/verify").await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["records"], json!(before["audit_log"]), "{v}");
    // A second pass finds nothing; the report agrees with the tables.
    assert_eq!(pruner.run_once(later).await.unwrap().unwrap().total(), 0);
    let (_, report) = s.call(Method::GET, "/v1/storage", None).await;
    assert_eq!(row(&report, "execution_history")["rows"], json!(live_history));
    // A tenant still reads its current lifecycle execution.
    let t0 = s.get("/v1/tenants/t00000").await;
    let current = t0["lifecycle_execution_id"].as_str().map(str::to_owned);
    if let Some(id) = current {
        assert_eq!(s.call(Method::GET, &format!("/v1/executions/{id}"), None).await.0, 200);
    }
    pool.close().await;
}
