//! Entitlements (issue 14 item 1): per-tenant overrides of the plan change the
//! effective view until they expire; bad overrides are refused and change nothing; a
//! tenant key reads its own entitlements and its own plan, nothing of another tenant's;
//! viewers read but do not write; the CLI sets, shows and clears them.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestServer};

both_backends!(
    overrides_change_the_effective_view,
    expired_overrides_no_longer_apply,
    invalid_overrides_change_nothing,
    tenant_keys_read_their_own_entitlements_and_plan,
    viewers_read_but_cannot_write,
    plans_carry_config_values,
    the_cli_sets_shows_and_clears_overrides,
    lifecycle_events_carry_the_effective_entitlements,
);

async fn setup(s: &TestServer) {
    let plan = json!({"name": "Pro", "isolation": "pool", "features": ["sso", "audit"],
        "quotas": {"seats": 5, "api_calls": {"limit": 1000, "period": "month", "soft": true}},
        "config": {"theme": "dark", "max_upload_mb": 50}});
    let res = s.call(Method::PUT, "/v1/plans/pro", Some(plan)).await;
    assert!(res.status.is_success(), "{}", res.body);
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "pro").await;
    s.create_tenant("globex", "basic").await;
    s.wait_status("acme", "active").await;
    s.wait_status("globex", "active").await;
}

async fn get_as(s: &TestServer, key: &str, path: &str) -> support::Res {
    s.call_with(Some(key), Method::GET, path, None, &[]).await
}

async fn entitlements(s: &TestServer, tenant: &str) -> Value {
    let res = s.get(&format!("/v1/tenants/{tenant}/entitlements")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res.body
}

async fn overrides_change_the_effective_view(backend: Backend) {
    let s = TestServer::start(backend).await;
    setup(&s).await;
    let before = entitlements(&s, "acme").await;
    assert_eq!(before["plan"], "pro");
    assert_eq!(before["features"], json!({"audit": true, "sso": true}));
    assert_eq!(before["quotas"]["seats"], json!({"limit": 5, "soft": false, "used": 0, "remaining": 5}));
    let calls = &before["quotas"]["api_calls"];
    assert_eq!((&calls["limit"], &calls["soft"], &calls["period"]), (&json!(1000), &json!(true), &json!("month")));
    assert!(calls["resets_at"].is_string(), "a period quota says when it resets: {calls}");
    assert_eq!(before["config"], json!({"theme": "dark", "max_upload_mb": 50}));
    assert!(before.get("overrides_expire_at").is_none(), "{before}");

    let body = json!({"features": {"sso": false, "beta": true}, "quotas": {"seats": 50, "projects": 3},
        "config": {"theme": "light", "banner": {"text": "hello"}}});
    let res = s.call(Method::PUT, "/v1/tenants/acme/overrides", Some(body)).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let after = entitlements(&s, "acme").await;
    assert_eq!(after["features"], json!({"audit": true, "beta": true, "sso": false}));
    assert_eq!(after["quotas"]["seats"], json!({"limit": 50, "soft": false, "used": 0, "remaining": 50}));
    assert_eq!(after["quotas"]["projects"], json!({"limit": 3, "soft": false, "used": 0, "remaining": 3}));
    assert_eq!(after["quotas"]["api_calls"]["limit"], 1000);
    assert_eq!(after["config"], json!({"theme": "light", "max_upload_mb": 50, "banner": {"text": "hello"}}));
    // Another tenant is untouched.
    assert_eq!(entitlements(&s, "globex").await["features"], json!({"sso": true}));

    let got = s.get("/v1/tenants/acme/overrides").await;
    assert_eq!(got.body["features"], json!({"beta": true, "sso": false}), "{}", got.body);
    assert_eq!(got.body["quotas"], json!({"projects": 3, "seats": 50}));

    // Audited and announced, once per change.
    let events = s.event_types("acme").await;
    assert_eq!(events.iter().filter(|e| *e == "TenantEntitlementsChanged").count(), 1, "{events:?}");
    let changed = s.get("/v1/events?tenant_id=acme&detail_type=TenantEntitlementsChanged").await;
    let detail = &changed.body["items"][0]["detail"];
    assert_eq!((detail["id"].clone(), detail["plan"].clone()), (json!("acme"), json!("pro")), "{detail}");
    assert_eq!(detail["overrides"]["features"], json!({"beta": true, "sso": false}), "{detail}");
    assert_eq!(detail["overrides"]["config"], json!(["banner", "theme"]), "{detail}");
    let res = s.call(Method::DELETE, "/v1/tenants/acme/overrides", None).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.body);
    assert_eq!(entitlements(&s, "acme").await, before);
    let got = s.get("/v1/tenants/acme/overrides").await;
    assert_eq!(got.body, json!({"tenant_id": "acme", "features": {}, "quotas": {}, "config": {}}));
    let events = s.event_types("acme").await;
    assert_eq!(events.iter().filter(|e| *e == "TenantEntitlementsChanged").count(), 2, "{events:?}");
    let audit = s.get("/v1/audit?tenant_id=acme&limit=1000").await;
    let actions: Vec<&str> =
        audit.body["items"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"tenant.overrides.put") && actions.contains(&"tenant.overrides.delete"), "{actions:?}");
    s.stop().await;
}

async fn expired_overrides_no_longer_apply(backend: Backend) {
    let s = TestServer::start(backend).await;
    setup(&s).await;
    let soon = tenancy_domain::time::Timestamp::now().plus_millis(1_500).to_rfc3339();
    let body = json!({"features": {"sso": false}, "quotas": {"seats": 1}, "expires_at": soon});
    let res = s.call(Method::PUT, "/v1/tenants/acme/overrides", Some(body)).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let during = entitlements(&s, "acme").await;
    assert_eq!(
        (during["features"]["sso"].clone(), during["quotas"]["seats"]["limit"].clone()),
        (json!(false), json!(1))
    );
    assert_eq!(during["overrides_expire_at"], json!(soon));
    tokio::time::sleep(std::time::Duration::from_millis(1_600)).await;
    let after = entitlements(&s, "acme").await;
    assert_eq!((after["features"]["sso"].clone(), after["quotas"]["seats"]["limit"].clone()), (json!(true), json!(5)));
    assert!(after.get("overrides_expire_at").is_none(), "{after}");
    // Still shown as set until cleared.
    assert_eq!(s.get("/v1/tenants/acme/overrides").await.body["expires_at"], json!(soon));
    // A past expiry is accepted and never applies.
    let body = json!({"features": {"sso": false}, "expires_at": "2000-01-01T00:00:00Z"});
    let res = s.call(Method::PUT, "/v1/tenants/acme/overrides", Some(body)).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(entitlements(&s, "acme").await["features"]["sso"], true);
    s.stop().await;
}

async fn invalid_overrides_change_nothing(backend: Backend) {
    let s = TestServer::start(backend).await;
    setup(&s).await;
    let res = s.call(Method::PUT, "/v1/tenants/acme/overrides", Some(json!({"features": {"beta": true}}))).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let set = s.get("/v1/tenants/acme/overrides").await.body;
    let view = entitlements(&s, "acme").await;
    let audits = s.audit_count().await;
    for bad in [
        json!({"features": {"bad name": true}}),
        json!({"features": {"x": "yes"}}),
        json!({"quotas": {"seats": -1}}),
        json!({"quotas": {"": 1}}),
        json!({"config": {"k": null}}),
        json!({"config": {"k": [1, 2]}}),
        json!({"expires_at": "tomorrow"}),
        json!({"feature": {"x": true}}),
    ] {
        let res = s.call(Method::PUT, "/v1/tenants/acme/overrides", Some(bad.clone())).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}: {}", res.body);
        assert_eq!(res.header("content-type"), Some("application/problem+json"), "{bad}");
    }
    assert_eq!(s.get("/v1/tenants/acme/overrides").await.body, set);
    assert_eq!(entitlements(&s, "acme").await, view);
    assert_eq!(s.audit_count().await, audits);
    // An unknown tenant: 404.
    let res = s.call(Method::PUT, "/v1/tenants/nobody/overrides", Some(json!({}))).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);
    s.stop().await;
}

async fn tenant_keys_read_their_own_entitlements_and_plan(backend: Backend) {
    let s = TestServer::start(backend).await;
    setup(&s).await;
    let key = s.key("tenant", Some("acme")).await;
    let own = get_as(&s, &key, "/v1/tenants/acme/entitlements").await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    assert_eq!(own.body, entitlements(&s, "acme").await);
    assert_eq!(get_as(&s, &key, "/v1/tenants/acme/overrides").await.status, StatusCode::OK);
    let plan = get_as(&s, &key, "/v1/plans/pro").await;
    assert_eq!(plan.status, StatusCode::OK, "{}", plan.body);
    assert_eq!(plan.body["config"]["theme"], "dark");
    for path in ["/v1/tenants/globex/entitlements", "/v1/tenants/globex/overrides", "/v1/plans/basic", "/v1/plans/nope"]
    {
        let res = get_as(&s, &key, path).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{path}: {}", res.body);
    }
    // It cannot change its own overrides, nor list the catalog (only its plan and the
    // plans marked self_service, none here).
    let res = s
        .call_with(Some(&key), Method::PUT, "/v1/tenants/acme/overrides", Some(json!({"features": {"x": true}})), &[])
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    let plans = get_as(&s, &key, "/v1/plans").await;
    let ids: Vec<&str> = plans.body["items"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["pro"], "{}", plans.body);
    // After a plan change, the new plan is its own and the old one is not.
    let res = s.call(Method::POST, "/v1/tenants/acme/plan", Some(json!({"plan": "basic"}))).await;
    assert!(res.status.is_success(), "{}", res.body);
    s.wait_status("acme", "active").await;
    let t = s.get("/v1/tenants/acme").await;
    assert_eq!(t.body["plan"], "basic", "{}", t.body);
    assert_eq!(get_as(&s, &key, "/v1/plans/basic").await.status, StatusCode::OK);
    assert_eq!(get_as(&s, &key, "/v1/plans/pro").await.status, StatusCode::NOT_FOUND);
    assert_eq!(get_as(&s, &key, "/v1/tenants/acme/entitlements").await.body["plan"], "basic");
    s.stop().await;
}

async fn viewers_read_but_cannot_write(backend: Backend) {
    let s = TestServer::start(backend).await;
    setup(&s).await;
    let viewer = s.key("viewer", None).await;
    let operator = s.key("operator", None).await;
    let body = json!({"features": {"beta": true}});
    let res = s.call_with(Some(&viewer), Method::PUT, "/v1/tenants/acme/overrides", Some(body.clone()), &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    let res = s.call_with(Some(&viewer), Method::DELETE, "/v1/tenants/acme/overrides", None, &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    assert!(entitlements(&s, "acme").await["features"].get("beta").is_none());
    let res = s.call_with(Some(&operator), Method::PUT, "/v1/tenants/acme/overrides", Some(body), &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let res = s.call_with(Some(&viewer), Method::GET, "/v1/tenants/acme/entitlements", None, &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["features"]["beta"], true);
    s.stop().await;
}

async fn plans_carry_config_values(backend: Backend) {
    let s = TestServer::start(backend).await;
    setup(&s).await;
    let plan = s.get("/v1/plans/pro").await;
    assert_eq!(plan.body["config"], json!({"theme": "dark", "max_upload_mb": 50}), "{}", plan.body);
    let patch = json!({"config": {"theme": null, "beta_banner": true}});
    let res = s.call(Method::PATCH, "/v1/plans/pro", Some(patch)).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(s.get("/v1/plans/pro").await.body["config"], json!({"max_upload_mb": 50, "beta_banner": true}));
    assert_eq!(entitlements(&s, "acme").await["config"], json!({"max_upload_mb": 50, "beta_banner": true}));
    let bad = json!({"name": "X", "isolation": "pool", "config": {"k": null}});
    let res = s.call(Method::PUT, "/v1/plans/pro", Some(bad)).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert_eq!(s.get("/v1/plans/pro").await.body["name"], "Pro");
    s.stop().await;
}

async fn the_cli_sets_shows_and_clears_overrides(backend: Backend) {
    let s = TestServer::start(backend).await;
    setup(&s).await;
    let url = s.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        let set = support::run_cli(
            &url,
            &[
                "--output",
                "json",
                "overrides",
                "set",
                "acme",
                "--feature",
                "sso=off",
                "--feature",
                "beta=on",
                "--quota",
                "seats=40",
                "--config",
                "theme=\"light\"",
                "--expires-at",
                "2999-01-01T00:00:00Z",
            ],
        );
        let show = support::run_cli(&url, &["--output", "json", "entitlements", "show", "acme"]);
        let table = support::run_cli(&url, &["entitlements", "show", "acme"]);
        let bad = support::run_cli(&url, &["overrides", "set", "acme", "--feature", "sso=maybe"]);
        let clear = support::run_cli(&url, &["overrides", "clear", "acme", "--yes"]);
        let after = support::run_cli(&url, &["--output", "json", "entitlements", "show", "acme"]);
        [set, show, table, bad, clear, after]
    })
    .await
    .unwrap();
    let [set, show, table, bad, clear, after] = out;
    assert_eq!(set.0, 0, "{set:?}");
    let show_json: Value = serde_json::from_str(&show.1).unwrap();
    assert_eq!(show_json["features"], json!({"audit": true, "beta": true, "sso": false}));
    assert_eq!(show_json["quotas"]["seats"]["limit"], 40);
    assert_eq!(show_json["config"]["theme"], "light");
    assert_eq!(show_json["overrides_expire_at"], "2999-01-01T00:00:00.000Z");
    assert_eq!(table.0, 0, "{table:?}");
    assert!(table.1.lines().any(|l| l.contains("feature") && l.contains("sso") && l.contains("off")), "{}", table.1);
    assert!(table.1.lines().any(|l| l.contains("quota") && l.contains("seats") && l.contains("40")), "{}", table.1);
    assert_eq!(bad.0, 2, "{bad:?}");
    assert_eq!(clear.0, 0, "{clear:?}");
    let after_json: Value = serde_json::from_str(&after.1).unwrap();
    assert_eq!(after_json["features"], json!({"audit": true, "sso": true}));
    assert_eq!(after_json["quotas"]["seats"]["limit"], 5);
    s.stop().await;
}

/// `TenantProvisioned` and `TenantPlanChanged` tell subscribers what the tenant may
/// now use: the features that are on and each quota's limit, overrides included.
async fn lifecycle_events_carry_the_effective_entitlements(backend: Backend) {
    let s = TestServer::start(backend).await;
    setup(&s).await;
    let events = |t: &'static str| {
        let s = &s;
        async move {
            let res = s.get(&format!("/v1/events?tenant_id=acme&detail_type={t}&limit=100")).await;
            res.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["detail"]["entitlements"].clone())
                .collect::<Vec<_>>()
        }
    };
    let provisioned = events("TenantProvisioned").await;
    assert_eq!(provisioned, [json!({"features": ["audit", "sso"], "quotas": {"api_calls": 1000, "seats": 5}})]);
    let body = json!({"features": {"sso": false}, "quotas": {"seats": 9}});
    assert!(s.call(Method::PUT, "/v1/tenants/acme/overrides", Some(body)).await.status.is_success());
    let res = s.call(Method::POST, "/v1/tenants/acme/plan", Some(json!({"plan": "basic"}))).await;
    assert!(res.status.is_success(), "{}", res.body);
    s.wait_execution(res.body["execution_id"].as_str().unwrap(), "SUCCEEDED").await;
    let changed = events("TenantPlanChanged").await;
    assert_eq!(
        changed,
        [json!({"features": [], "quotas": {"seats": 9}})],
        "basic has nothing; the override adds seats"
    );
}
