//! The quota ledger's housekeeping on both backends (docs/entitlements.md,
//! "Housekeeping"): a pass deletes usage rows of periods that ended more than two full
//! periods ago and idempotency records past their 24 hours, and nothing a caller still
//! reads: a count quota's usage and the kept periods stay, a consume repeating a pruned
//! key counts again.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::Row;
use support::{Backend, TestServer};
use tenancy_app::quotas::pruner::{QuotaPruner, GRANT_RETENTION};
use tenancy_domain::plan::QuotaPeriod;
use tenancy_domain::time::Timestamp;

both_backends!(a_pass_prunes_ended_periods_and_old_grants_only);

const DAY: i64 = 86_400_000;

async fn used(s: &TestServer, quota: &str) -> u64 {
    let res = s.get("/v1/tenants/acme/quotas").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res.body["items"].as_array().unwrap().iter().find(|q| q["name"] == quota).unwrap()["used"].as_u64().unwrap()
}

async fn consume(s: &TestServer, quota: &str, key: Option<&str>) -> u64 {
    let mut body = json!({"amount": 2});
    if let Some(k) = key {
        body["idempotency_key"] = json!(k);
    }
    let res = s.call(Method::POST, &format!("/v1/tenants/acme/quotas/{quota}/consume"), Some(body)).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res.body["used"].as_u64().unwrap()
}

/// The usage rows of acme's `quota`: (period start, used), by start.
async fn rows(pool: &sqlx::AnyPool, quota: &str) -> Vec<(i64, i64)> {
    sqlx::query("SELECT period_start, used FROM quota_usage WHERE tenant_id = 'acme' AND quota = $1 ORDER BY 1")
        .bind(quota)
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn a_pass_prunes_ended_periods_and_old_grants_only(backend: Backend) {
    let s = TestServer::start(backend).await;
    let plan = json!({"name": "Metered", "isolation": "pool", "quotas": {
        "seats": 10,
        "exports": {"limit": 100, "period": "day"},
        "reports": {"limit": 100, "period": "month"},
    }});
    assert!(s.call(Method::PUT, "/v1/plans/metered", Some(plan)).await.status.is_success());
    s.create_tenant("acme", "metered").await;
    s.wait_status("acme", "active").await;

    assert_eq!(consume(&s, "seats", Some("k1")).await, 2);
    assert_eq!(consume(&s, "seats", Some("k1")).await, 2, "a repeat within 24 h is recognised");
    assert_eq!(consume(&s, "exports", None).await, 2);
    assert_eq!(consume(&s, "reports", None).await, 2);

    // Rows of ended periods, as a server running for months leaves them.
    let now = Timestamp::now();
    let today = QuotaPeriod::Day.start(now).millis();
    let month = |back: i32| {
        let mut m = QuotaPeriod::Month.start(now);
        for _ in 0..back {
            m = QuotaPeriod::Month.start(m.plus_millis(-1));
        }
        m.millis()
    };
    // A day's row on the first of a month is kept as long as a month's: not that day.
    let old_day = (5..7).map(|d| today - d * DAY).find(|t| QuotaPeriod::Month.start(Timestamp(*t)).millis() != *t);
    let db = s.raw_db().await;
    for (quota, start, used) in [
        ("exports", old_day.unwrap(), 7),
        ("exports", today - DAY, 6),
        ("reports", month(4), 9),
        ("reports", month(1), 4),
    ] {
        sqlx::query(
            "INSERT INTO quota_usage (tenant_id, quota, period_start, used, refused) VALUES ('acme', $1, $2, $3, 0)",
        )
        .bind(quota)
        .bind(start)
        .bind(used)
        .execute(&db)
        .await
        .unwrap();
    }

    // A pass a little over 24 h from now: k1's grant is past its retention. Still
    // tomorrow, though: run after 23:00 UTC, an hour more would be the day after, when
    // yesterday's row has ended two full days ago.
    let later = (now.millis() + GRANT_RETENTION.as_millis() as i64 + 3_600_000).min(today + 2 * DAY - 1);
    let later = Timestamp(later);
    let pruner = QuotaPruner::new(s.server.as_ref().unwrap().app.store().clone(), GRANT_RETENTION);
    let pruned = pruner.run_once(later).await.unwrap();
    assert_eq!(pruned.grants, 1, "{pruned:?}");
    // Five days ago ended more than two full days ago; yesterday (and today) did not.
    assert_eq!(rows(&db, "exports").await, [(today - DAY, 6), (today, 2)]);
    // Four months back ended more than two full months ago; last month did not.
    assert_eq!(rows(&db, "reports").await, [(month(1), 4), (month(0), 2)]);
    assert_eq!(rows(&db, "seats").await, [(0, 2)], "a count quota's row is the count: never pruned");
    assert_eq!(pruner.run_once(later).await.unwrap(), Default::default(), "nothing is left to prune");

    // What callers read is unchanged; a repeat of the pruned key counts again.
    assert_eq!((used(&s, "seats").await, used(&s, "exports").await, used(&s, "reports").await), (2, 2, 2));
    assert_eq!(consume(&s, "seats", Some("k1")).await, 4, "a repeat after the retention counts");
    db.close().await;
    s.stop().await;
}
