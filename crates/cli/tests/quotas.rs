//! Quotas end to end: exact consumption, soft overage, events, idempotency, batches,
//! release, who may consume, periods, and replicas racing on one PostgreSQL.

mod support;

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestServer};
use tenancy_domain::plan::QuotaPeriod;
use tenancy_domain::time::Timestamp;

both_backends!(
    a_hard_limit_refuses_and_consumes_nothing,
    a_soft_quota_allows_overage_and_says_so_once,
    the_threshold_event_is_sent_once_per_crossing,
    an_idempotency_key_counts_once,
    a_batch_is_all_or_nothing,
    release_gives_usage_back,
    who_may_consume,
    a_period_quota_resets_at_the_next_utc_boundary,
    the_cli_lists_consumes_and_releases,
    overrides_set_the_limits_consumption_obeys,
    an_enormous_amount_is_refused_and_changes_nothing,
    a_plan_change_of_limits_applies_to_the_next_consume,
);

async fn server(backend: Backend) -> TestServer {
    let s = TestServer::start(backend).await;
    let plan = json!({"name": "Metered", "isolation": "pool", "quotas": {
        "seats": 5,
        "projects": {"limit": 10},
        "calls": {"limit": 5, "soft": true},
        "exports": {"limit": 3, "period": "day"},
    }});
    let res = s.call(Method::PUT, "/v1/plans/metered", Some(plan)).await;
    assert!(res.status.is_success(), "{}", res.body);
    for t in ["acme", "globex"] {
        s.create_tenant(t, "metered").await;
        s.wait_status(t, "active").await;
    }
    s
}

async fn consume(s: &TestServer, tenant: &str, quota: &str, body: Value) -> support::Res {
    s.call(Method::POST, &format!("/v1/tenants/{tenant}/quotas/{quota}/consume"), Some(body)).await
}

async fn used(s: &TestServer, tenant: &str, quota: &str) -> u64 {
    let res = s.get(&format!("/v1/tenants/{tenant}/quotas")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let q = res.body["items"].as_array().unwrap().iter().find(|q| q["name"] == quota).unwrap().clone();
    q["used"].as_u64().unwrap()
}

async fn quota_events(s: &TestServer, tenant: &str, detail_type: &str) -> Vec<Value> {
    let res = s.get(&format!("/v1/events?tenant_id={tenant}&detail_type={detail_type}&limit=1000")).await;
    res.body["items"].as_array().unwrap().iter().map(|e| e["detail"].clone()).collect()
}

async fn a_hard_limit_refuses_and_consumes_nothing(backend: Backend) {
    let s = server(backend).await;
    let res = consume(&s, "acme", "seats", json!({"amount": 3})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(
        res.body,
        json!({"allowed": true, "name": "seats", "used": 3, "limit": 5, "remaining": 2, "soft": false})
    );
    let res = consume(&s, "acme", "seats", json!({"amount": 2})).await;
    assert_eq!((res.body["used"].as_u64(), res.body["remaining"].as_u64()), (Some(5), Some(0)));
    let res = consume(&s, "acme", "seats", json!({"amount": 1})).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "{}", res.body);
    assert_eq!(res.code(), "quota-exceeded");
    assert!(res.body["detail"].as_str().unwrap().contains("\"seats\""), "{}", res.body);
    assert_eq!(used(&s, "acme", "seats").await, 5, "a refusal consumes nothing");
    // Another refusal is the same crossing: one QuotaExceeded.
    assert_eq!(consume(&s, "acme", "seats", json!({"amount": 1})).await.status, StatusCode::TOO_MANY_REQUESTS);
    let exceeded = quota_events(&s, "acme", "QuotaExceeded").await;
    assert_eq!(exceeded.len(), 1, "{exceeded:?}");
    assert_eq!(exceeded[0]["quota"], "seats");
    assert_eq!((exceeded[0]["used"].as_u64(), exceeded[0]["limit"].as_u64()), (Some(5), Some(5)));
    // The other tenant's seats are its own.
    assert_eq!(used(&s, "globex", "seats").await, 0);
    // Bad input changes nothing.
    let res = consume(&s, "globex", "seats", json!({"amount": 0})).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    let res = consume(&s, "globex", "nonexistent", json!({"amount": 1})).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);
    assert_eq!(used(&s, "globex", "seats").await, 0);
}

async fn a_soft_quota_allows_overage_and_says_so_once(backend: Backend) {
    let s = server(backend).await;
    for expect in 1..=7u64 {
        let res = consume(&s, "acme", "calls", json!({"amount": 1})).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        assert_eq!((res.body["used"].as_u64(), res.body["soft"].as_bool()), (Some(expect), Some(true)));
    }
    assert_eq!(used(&s, "acme", "calls").await, 7);
    let exceeded = quota_events(&s, "acme", "QuotaExceeded").await;
    assert_eq!(exceeded.len(), 1, "{exceeded:?}");
    assert_eq!((exceeded[0]["used"].as_u64(), exceeded[0]["limit"].as_u64()), (Some(6), Some(5)));
    assert_eq!(exceeded[0]["tenant_id"], "acme");
}

async fn the_threshold_event_is_sent_once_per_crossing(backend: Backend) {
    let s = server(backend).await;
    // projects: limit 10, 80% is 8.
    for _ in 0..9 {
        assert_eq!(consume(&s, "acme", "projects", json!({"amount": 1})).await.status, StatusCode::OK);
    }
    let reached = quota_events(&s, "acme", "QuotaThresholdReached").await;
    assert_eq!(reached.len(), 1, "{reached:?}");
    assert_eq!((reached[0]["quota"].as_str(), reached[0]["used"].as_u64()), (Some("projects"), Some(8)));
    // Down under 80% and up again: a second crossing.
    let res = s.call(Method::POST, "/v1/tenants/acme/quotas/projects/release", Some(json!({"amount": 3}))).await;
    assert_eq!(res.body["used"], 6, "{}", res.body);
    assert_eq!(consume(&s, "acme", "projects", json!({"amount": 1})).await.body["used"], 7);
    assert_eq!(quota_events(&s, "acme", "QuotaThresholdReached").await.len(), 1);
    assert_eq!(consume(&s, "acme", "projects", json!({"amount": 2})).await.body["used"], 9);
    assert_eq!(quota_events(&s, "acme", "QuotaThresholdReached").await.len(), 2);
}

async fn an_idempotency_key_counts_once(backend: Backend) {
    let s = server(backend).await;
    let first = consume(&s, "acme", "seats", json!({"amount": 2, "idempotency_key": "order-1"})).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(consume(&s, "acme", "seats", json!({"amount": 1})).await.body["used"], 3);
    let again = consume(&s, "acme", "seats", json!({"amount": 2, "idempotency_key": "order-1"})).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, first.body, "a repeat answers as the first time");
    assert_eq!(used(&s, "acme", "seats").await, 3);
    // The key is the tenant's own: another tenant's same key is another grant.
    let other = consume(&s, "globex", "seats", json!({"amount": 2, "idempotency_key": "order-1"})).await;
    assert_eq!(other.body["used"], 2);
}

async fn a_batch_is_all_or_nothing(backend: Backend) {
    let s = server(backend).await;
    let batch = |seats: u64, projects: u64| json!({"items": {"seats": seats, "projects": projects}});
    let res = s.call(Method::POST, "/v1/tenants/acme/quotas/consume", Some(batch(4, 4))).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let items = res.body["items"].as_array().unwrap();
    assert_eq!(items.iter().map(|i| i["used"].as_u64().unwrap()).collect::<Vec<_>>(), [4, 4]);
    // projects would fit, seats would not: neither is consumed.
    let res = s.call(Method::POST, "/v1/tenants/acme/quotas/consume", Some(batch(2, 2))).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "{}", res.body);
    assert!(res.body["detail"].as_str().unwrap().contains("\"seats\""), "{}", res.body);
    assert_eq!((used(&s, "acme", "seats").await, used(&s, "acme", "projects").await), (4, 4));
    // A quota the plan lacks refuses the whole batch too.
    let res = s
        .call(Method::POST, "/v1/tenants/acme/quotas/consume", Some(json!({"items": {"projects": 1, "gpus": 1}})))
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);
    assert_eq!(used(&s, "acme", "projects").await, 4);
}

async fn release_gives_usage_back(backend: Backend) {
    let s = server(backend).await;
    assert_eq!(consume(&s, "acme", "seats", json!({"amount": 5})).await.status, StatusCode::OK);
    assert_eq!(consume(&s, "acme", "seats", json!({"amount": 1})).await.status, StatusCode::TOO_MANY_REQUESTS);
    let release = |n: u64| s.call(Method::POST, "/v1/tenants/acme/quotas/seats/release", Some(json!({"amount": n})));
    let res = release(2).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!((res.body["used"].as_u64(), res.body["remaining"].as_u64()), (Some(3), Some(2)));
    assert_eq!(consume(&s, "acme", "seats", json!({"amount": 2})).await.body["used"], 5);
    assert_eq!(release(9).await.body["used"], 0, "never below 0");
    assert_eq!(release(0).await.status, StatusCode::BAD_REQUEST);
    // After usage went down, a refusal is a new crossing: a second QuotaExceeded.
    assert_eq!(consume(&s, "acme", "seats", json!({"amount": 6})).await.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(quota_events(&s, "acme", "QuotaExceeded").await.len(), 2);
}

async fn who_may_consume(backend: Backend) {
    let s = server(backend).await;
    let acme_key = s.key("tenant", Some("acme")).await;
    let service = s.key("service", None).await;
    let viewer = s.key("viewer", None).await;
    let call = |token: String, tenant: &'static str| {
        let s = &s;
        async move {
            let path = format!("/v1/tenants/{tenant}/quotas/seats/consume");
            s.call_with(Some(&token), Method::POST, &path, Some(json!({"amount": 1})), &[]).await
        }
    };
    assert_eq!(call(acme_key.clone(), "acme").await.status, StatusCode::OK);
    let res = call(acme_key.clone(), "globex").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "a tenant key learns nothing of another tenant: {}", res.body);
    let res = s.call_with(Some(&acme_key), Method::GET, "/v1/tenants/globex/quotas", None, &[]).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(call(service.clone(), "globex").await.status, StatusCode::OK);
    assert_eq!(call(viewer.clone(), "globex").await.status, StatusCode::FORBIDDEN);
    let res = s.call_with(Some(&viewer), Method::GET, "/v1/tenants/globex/quotas", None, &[]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!((used(&s, "acme", "seats").await, used(&s, "globex", "seats").await), (1, 1));
    // A suspended tenant consumes nothing.
    let res = s.call(Method::POST, "/v1/tenants/globex/suspend", None).await;
    assert!(res.status.is_success(), "{}", res.body);
    s.wait_status("globex", "suspended").await;
    let res = call(service, "globex").await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "tenant-not-active"), "{}", res.body);
    assert_eq!(used(&s, "globex", "seats").await, 1);
}

async fn a_period_quota_resets_at_the_next_utc_boundary(backend: Backend) {
    let s = server(backend).await;
    let res = consume(&s, "acme", "exports", json!({"amount": 3})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["period"], "day");
    let resets_at = Timestamp::parse_rfc3339(res.body["resets_at"].as_str().unwrap()).unwrap();
    // The next UTC midnight (the arithmetic itself is unit-tested in the domain).
    let now = Timestamp::now();
    assert_eq!(resets_at, QuotaPeriod::Day.next(now));
    assert_eq!(resets_at.millis() % 86_400_000, 0);
    assert!(resets_at > now && resets_at.millis() - now.millis() <= 86_400_000);
    assert_eq!(consume(&s, "acme", "exports", json!({"amount": 1})).await.status, StatusCode::TOO_MANY_REQUESTS);
    let list = s.get("/v1/tenants/acme/quotas").await;
    let exports = list.body["items"].as_array().unwrap().iter().find(|q| q["name"] == "exports").unwrap().clone();
    assert_eq!(exports["used"], 3);
    assert_eq!(exports["resets_at"], res.body["resets_at"]);
    // Every quota of the plan is listed, used or not.
    let names: Vec<&str> = list.body["items"].as_array().unwrap().iter().map(|q| q["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["calls", "exports", "projects", "seats"]);
}

async fn the_cli_lists_consumes_and_releases(backend: Backend) {
    let s = server(backend).await;
    let url = s.url.clone();
    let cli = |args: Vec<&'static str>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || support::run_cli(&url, &args))
    };
    let (code, out, err) =
        cli(vec!["--output", "json", "quotas", "consume", "acme", "seats", "--amount", "4", "--key", "k1"])
            .await
            .unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["used"], 4);
    let (code, _, _) = cli(vec!["quotas", "consume", "acme", "seats", "--amount", "4", "--key", "k1"]).await.unwrap();
    assert_eq!(code, 0, "a repeat with the same key counts once");
    let (code, _, err) = cli(vec!["quotas", "consume", "acme", "seats", "--amount", "2"]).await.unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("quota-exceeded") || err.contains("seats"), "{err}");
    let (code, out, err) = cli(vec!["--output", "json", "quotas", "release", "acme", "seats"]).await.unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["used"], 3);
    let (code, out, err) = cli(vec!["quotas", "list", "acme"]).await.unwrap();
    assert_eq!(code, 0, "{err}");
    let seats = out.lines().find(|l| l.trim_start().starts_with("seats")).unwrap_or_else(|| panic!("{out}"));
    assert_eq!(seats.split_whitespace().take(3).collect::<Vec<_>>(), ["seats", "3", "5"]);
}

/// 64 consumers of one seat each, through two replicas on one PostgreSQL database,
/// against a limit of 50: exactly 50 are granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_never_over_grant() {
    let url = support::database_url(Backend::Postgres).await;
    let a = TestServer::start_replica(url.clone()).await;
    let b = TestServer::start_replica(url).await;
    let plan = json!({"name": "Fifty", "isolation": "pool", "quotas": {"seats": 50}});
    assert!(a.call(Method::PUT, "/v1/plans/fifty", Some(plan)).await.status.is_success());
    a.create_tenant("race", "fifty").await;
    b.wait_status("race", "active").await;
    let calls = (0..64).map(|i| {
        let s = if i % 2 == 0 { &a } else { &b };
        async move { consume(s, "race", "seats", json!({"amount": 1})).await.status }
    });
    let statuses = join_all(calls).await;
    let granted = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((granted, refused), (50, 14), "{statuses:?}");
    assert_eq!(used(&a, "race", "seats").await, 50);
    assert_eq!(used(&b, "race", "seats").await, 50);
}

/// An override's quota limit is the one consumption obeys and the entitlements view
/// shows, with the usage the ledger counted; when the override expires the plan's
/// limit is back.
async fn overrides_set_the_limits_consumption_obeys(backend: Backend) {
    let s = server(backend).await;
    let res = s.call(Method::PUT, "/v1/tenants/acme/overrides", Some(json!({"quotas": {"seats": 7}}))).await;
    assert!(res.status.is_success(), "{}", res.body);
    let res = consume(&s, "acme", "seats", json!({"amount": 7})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!((res.body["limit"].as_u64(), res.body["used"].as_u64()), (Some(7), Some(7)));
    assert_eq!(consume(&s, "acme", "seats", json!({"amount": 1})).await.status, StatusCode::TOO_MANY_REQUESTS);
    let view = s.get("/v1/tenants/acme/entitlements").await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.body);
    let seats = &view.body["quotas"]["seats"];
    assert_eq!(
        (seats["limit"].as_u64(), seats["used"].as_u64(), seats["remaining"].as_u64()),
        (Some(7), Some(7), Some(0))
    );
    assert!(view.body["quotas"]["exports"]["resets_at"].is_string(), "{}", view.body);
    // The other tenant keeps the plan's limit.
    assert_eq!(consume(&s, "globex", "seats", json!({"amount": 6})).await.status, StatusCode::TOO_MANY_REQUESTS);
    // Expired overrides no longer apply: the plan's 5 seats, 7 used, nothing more.
    let past = json!({"quotas": {"seats": 7}, "expires_at": "2020-01-01T00:00:00Z"});
    assert!(s.call(Method::PUT, "/v1/tenants/acme/overrides", Some(past)).await.status.is_success());
    let view = s.get("/v1/tenants/acme/entitlements").await;
    assert_eq!(view.body["quotas"]["seats"]["limit"].as_u64(), Some(5), "{}", view.body);
    assert_eq!(consume(&s, "acme", "seats", json!({"amount": 1})).await.status, StatusCode::TOO_MANY_REQUESTS);
}

/// An amount past the bound (which keeps usage far inside the 64-bit counters, however
/// often a soft quota is overdrawn) is a 400, and nothing is consumed.
async fn an_enormous_amount_is_refused_and_changes_nothing(backend: Backend) {
    let s = server(backend).await;
    for body in [json!({"amount": u64::MAX}), json!({"amount": 1_000_000_000_001u64})] {
        let res = consume(&s, "acme", "calls", body).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    }
    let batch = json!({"items": {"calls": u64::MAX}});
    let res = s.call(Method::POST, "/v1/tenants/acme/quotas/consume", Some(batch)).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert_eq!(used(&s, "acme", "calls").await, 0);
}

/// Terms are kept in memory (`App::tenant_terms`): a plan's new limit, a suspension
/// and a resumption apply to the very next consume, however warm the memory was.
async fn a_plan_change_of_limits_applies_to_the_next_consume(backend: Backend) {
    let s = server(backend).await;
    let plan = |seats: u64| json!({"name": "Metered", "isolation": "pool", "quotas": {"seats": seats}});
    for _ in 0..5 {
        assert_eq!(consume(&s, "acme", "seats", json!({"amount": 1})).await.status, StatusCode::OK);
    }
    assert_eq!(consume(&s, "acme", "seats", json!({"amount": 1})).await.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(s.call(Method::PUT, "/v1/plans/metered", Some(plan(8))).await.status.is_success());
    let res = consume(&s, "acme", "seats", json!({"amount": 3})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!((res.body["used"].as_u64(), res.body["limit"].as_u64()), (Some(8), Some(8)));
    assert!(s.call(Method::PUT, "/v1/plans/metered", Some(plan(20))).await.status.is_success());
    assert_eq!(consume(&s, "acme", "seats", json!({"amount": 1})).await.body["limit"], 20);
    let res = s.call(Method::POST, "/v1/tenants/acme/suspend", None).await;
    assert!(res.status.is_success(), "{}", res.body);
    s.wait_status("acme", "suspended").await;
    let res = consume(&s, "acme", "seats", json!({"amount": 1})).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "tenant-not-active"), "{}", res.body);
    let res = s.call(Method::POST, "/v1/tenants/acme/resume", None).await;
    assert!(res.status.is_success(), "{}", res.body);
    s.wait_status("acme", "active").await;
    assert_eq!(consume(&s, "acme", "seats", json!({"amount": 1})).await.body["used"], 10);
}
