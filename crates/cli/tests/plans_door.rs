//! Validation at the door (issue 14 item 2), on both backends: a plan's regions,
//! `max_tenants` (exact under concurrent creates) and `self_service`; a plan change
//! that current usage does not fit (409 `entitlement-violation` listing the quotas,
//! unless `force`); the `validate` hook refusing a create or a plan change, or failing
//! closed when it cannot be asked; and the CLI's view of plans.

mod support;

use std::sync::{Arc, Mutex};

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestServer};

both_backends!(
    plans_carry_regions_caps_and_self_service,
    a_plan_is_available_only_in_its_regions,
    max_tenants_is_exact_under_concurrent_creates,
    max_tenants_is_exact_under_concurrent_moves,
    a_downgrade_usage_does_not_fit_is_refused_with_the_violations,
    force_moves_anyway_and_the_audit_record_says_so,
    a_validate_hook_refuses_a_create_and_a_plan_change,
    a_validate_hook_that_cannot_be_asked_fails_closed,
    a_validate_hook_is_a_sync_url_hook,
    the_cli_shows_plans_with_quotas_and_availability,
);

async fn put_plan(s: &TestServer, id: &str, body: Value) {
    let res = s.call(Method::PUT, &format!("/v1/plans/{id}"), Some(body)).await;
    assert!(res.status.is_success(), "put plan {id}: {}", res.body);
}

async fn create(s: &TestServer, id: &str, plan: &str, region: &str) -> support::Res {
    s.call(Method::POST, "/v1/tenants", Some(json!({"id": id, "name": id, "plan": plan, "region": region}))).await
}

async fn change_plan(s: &TestServer, id: &str, body: Value) -> support::Res {
    s.call(Method::POST, &format!("/v1/tenants/{id}/plan"), Some(body)).await
}

/// The tenant has not moved: still on `plan` and active, and no plan change was audited.
async fn unmoved(s: &TestServer, id: &str, plan: &str) {
    let t = s.get(&format!("/v1/tenants/{id}")).await.body;
    assert_eq!((t["plan"].as_str(), t["status"].as_str()), (Some(plan), Some("active")), "{t}");
    let audit = s.get(&format!("/v1/audit?tenant_id={id}&action=tenant.change_plan")).await.body;
    assert_eq!(audit["items"], json!([]), "{audit}");
}

/// Nothing of a refused create exists: no tenant, no event, no audit record.
async fn never_created(s: &TestServer, id: &str) {
    assert_eq!(s.get(&format!("/v1/tenants/{id}")).await.status, StatusCode::NOT_FOUND);
    assert!(s.event_types(id).await.is_empty(), "no event of {id}");
    let audit = s.get(&format!("/v1/audit?tenant_id={id}")).await.body;
    assert_eq!(audit["items"], json!([]), "{audit}");
}

async fn plans_carry_regions_caps_and_self_service(backend: Backend) {
    let s = TestServer::start(backend).await;
    put_plan(
        &s,
        "pro",
        json!({"name": "Pro", "isolation": "pool", "regions": ["us-east", "eu-west", "us-east"], "max_tenants": 2,
               "self_service": true}),
    )
    .await;
    let p = s.get("/v1/plans/pro").await.body;
    assert_eq!(
        (&p["regions"], &p["max_tenants"], &p["self_service"]),
        (&json!(["eu-west", "us-east"]), &json!(2), &json!(true))
    );
    // A plan without them: everywhere, no cap, not self-service.
    s.put_plan("basic", "pool").await;
    let b = s.get("/v1/plans/basic").await.body;
    assert_eq!((&b["regions"], &b["max_tenants"], &b["self_service"]), (&json!([]), &Value::Null, &json!(false)));
    // PATCH: null removes the regions and the cap; the rest stays.
    let res = s.call(Method::PATCH, "/v1/plans/pro", Some(json!({"regions": null, "max_tenants": null}))).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(
        (&res.body["regions"], &res.body["max_tenants"], &res.body["self_service"]),
        (&json!([]), &Value::Null, &json!(true))
    );
    let res = s.call(Method::PATCH, "/v1/plans/pro", Some(json!({"self_service": false, "max_tenants": 7}))).await;
    assert_eq!((&res.body["max_tenants"], &res.body["self_service"]), (&json!(7), &json!(false)), "{}", res.body);
    // Bad input: 400, nothing changes.
    for bad in [json!({"regions": ["EU West"]}), json!({"self_service": null}), json!({"max_tenants": -1})] {
        let res = s.call(Method::PATCH, "/v1/plans/pro", Some(bad.clone())).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}: {}", res.body);
    }
    assert_eq!(s.get("/v1/plans/pro").await.body["max_tenants"], 7);
    s.stop().await;
}

async fn a_plan_is_available_only_in_its_regions(backend: Backend) {
    let s = TestServer::start(backend).await;
    put_plan(&s, "eu", json!({"name": "EU", "isolation": "pool", "regions": ["eu-west", "eu-central"]})).await;
    s.put_plan("basic", "pool").await;
    let res = create(&s, "acme", "eu", "us-east").await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    assert_eq!(res.code(), "plan-unavailable");
    let detail = res.body["detail"].as_str().unwrap();
    assert!(detail.contains("\"us-east\"") && detail.contains("\"eu-central\", \"eu-west\""), "{detail}");
    never_created(&s, "acme").await;
    assert_eq!(create(&s, "acme", "eu", "eu-west").await.status, StatusCode::ACCEPTED);
    // A plan without regions is offered everywhere.
    assert_eq!(create(&s, "globex", "basic", "us-east").await.status, StatusCode::ACCEPTED);
    s.wait_status("globex", "active").await;
    // Moving to a plan not offered in the tenant's region is refused the same way.
    let res = change_plan(&s, "globex", json!({"plan": "eu"})).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "plan-unavailable"), "{}", res.body);
    unmoved(&s, "globex", "basic").await;
    // A tenant moves only to a region its plan is offered in.
    s.wait_status("acme", "active").await;
    let res = s.call(Method::PATCH, "/v1/tenants/acme", Some(json!({"region": "us-east"}))).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "plan-unavailable"), "{}", res.body);
    assert_eq!(s.get("/v1/tenants/acme").await.body["region"], "eu-west");
    let res = s.call(Method::PATCH, "/v1/tenants/acme", Some(json!({"region": "eu-central", "name": "Acme"}))).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    s.stop().await;
}

async fn max_tenants_is_exact_under_concurrent_creates(backend: Backend) {
    let s = TestServer::start(backend).await;
    put_plan(&s, "tiny", json!({"name": "Tiny", "isolation": "pool", "max_tenants": 5})).await;
    s.put_plan("basic", "pool").await;
    let creates = (0..24).map(|i| {
        let s = &s;
        async move { create(s, &format!("t{i}"), "tiny", "default").await }
    });
    let results = join_all(creates).await;
    let accepted = results.iter().filter(|r| r.status == StatusCode::ACCEPTED).count();
    let full: Vec<_> = results.iter().filter(|r| r.status == StatusCode::CONFLICT).collect();
    assert_eq!(accepted, 5, "exactly max_tenants creates pass");
    assert_eq!(full.len(), 19, "the others are refused");
    assert!(full.iter().all(|r| r.code() == "plan-unavailable"), "{}", full[0].body);
    assert!(full[0].body["detail"].as_str().unwrap().contains("max_tenants (5)"), "{}", full[0].body);
    let listed = s.get("/v1/tenants?plan=tiny&limit=100").await.body;
    assert_eq!(listed["items"].as_array().unwrap().len(), 5, "{listed}");
    let created = s.get("/v1/events?detail_type=TenantCreated&limit=1000").await.body;
    assert_eq!(created["items"].as_array().unwrap().len(), 5, "an event per tenant created, none for the refused");

    // Moving onto the full plan is refused too.
    assert_eq!(create(&s, "mover", "basic", "default").await.status, StatusCode::ACCEPTED);
    s.wait_status("mover", "active").await;
    let res = change_plan(&s, "mover", json!({"plan": "tiny"})).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "plan-unavailable"), "{}", res.body);
    unmoved(&s, "mover", "basic").await;

    // An offboarded tenant makes room; raising the cap does too.
    let first =
        results.iter().find(|r| r.status == StatusCode::ACCEPTED).unwrap().body["id"].as_str().unwrap().to_owned();
    s.wait_status(&first, "active").await;
    assert_eq!(s.call(Method::DELETE, &format!("/v1/tenants/{first}"), None).await.status, StatusCode::ACCEPTED);
    s.wait_status(&first, "offboarded").await;
    assert_eq!(create(&s, "late", "tiny", "default").await.status, StatusCode::ACCEPTED);
    assert_eq!(create(&s, "later", "tiny", "default").await.code(), "plan-unavailable");
    s.call(Method::PATCH, "/v1/plans/tiny", Some(json!({"max_tenants": 6}))).await;
    assert_eq!(create(&s, "later", "tiny", "default").await.status, StatusCode::ACCEPTED);
    s.stop().await;
}

/// Tenants moving to a plan count toward its cap from the request that starts the move
/// (they hold their old plan until the move is applied): concurrent moves and creates
/// never pass it.
async fn max_tenants_is_exact_under_concurrent_moves(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    put_plan(&s, "roomy", json!({"name": "Roomy", "isolation": "pool", "max_tenants": 3})).await;
    assert_eq!(create(&s, "first", "roomy", "default").await.status, StatusCode::ACCEPTED);
    let ids: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    for id in &ids {
        assert_eq!(create(&s, id, "basic", "default").await.status, StatusCode::ACCEPTED);
    }
    for id in &ids {
        s.wait_status(id, "active").await;
    }
    let moves = ids.iter().map(|id| {
        let s = &s;
        async move { change_plan(s, id, json!({"plan": "roomy"})).await }
    });
    let results = join_all(moves).await;
    let moved: Vec<&String> =
        ids.iter().zip(&results).filter(|(_, r)| r.status == StatusCode::ACCEPTED).map(|(id, _)| id).collect();
    assert_eq!(
        moved.len(),
        2,
        "exactly the room left: {:?}",
        results.iter().map(|r| r.body.to_string()).collect::<Vec<_>>()
    );
    assert!(results.iter().filter(|r| r.status != StatusCode::ACCEPTED).all(|r| r.code() == "plan-unavailable"));
    // While they move (still on basic), the plan is full for creates too.
    assert_eq!(create(&s, "late", "roomy", "default").await.code(), "plan-unavailable");
    for id in &moved {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while s.get(&format!("/v1/tenants/{id}")).await.body["plan"] != "roomy" {
            assert!(std::time::Instant::now() < deadline, "{id} never moved");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        s.wait_status(id, "active").await;
    }
    let listed = s.get("/v1/tenants?plan=roomy&limit=100").await.body;
    assert_eq!(listed["items"].as_array().unwrap().len(), 3, "{listed}");
    assert_eq!(create(&s, "late", "roomy", "default").await.code(), "plan-unavailable");
    // A finished move counts once, as a holder: moving one away makes room for one.
    assert_eq!(change_plan(&s, moved[0], json!({"plan": "basic"})).await.status, StatusCode::ACCEPTED);
    s.wait_status(moved[0], "active").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while s.get(&format!("/v1/tenants/{}", moved[0])).await.body["plan"] != "basic" {
        assert!(std::time::Instant::now() < deadline, "never moved back");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(create(&s, "late", "roomy", "default").await.status, StatusCode::ACCEPTED);
    s.stop().await;
}

/// A tenant on `big` using 5 seats (hard) and 50 calls (soft): `small` allows 3 seats
/// and 1 call, and more projects.
async fn downgrade_server(backend: Backend) -> TestServer {
    let s = TestServer::start(backend).await;
    put_plan(
        &s,
        "big",
        json!({"name": "Big", "isolation": "pool", "quotas": {"seats": 10, "projects": 10, "exports": {"limit": 9, "period": "day"}, "calls": {"limit": 100, "soft": true}}}),
    )
    .await;
    put_plan(
        &s,
        "small",
        json!({"name": "Small", "isolation": "pool", "quotas": {"seats": 3, "projects": 20, "exports": {"limit": 1, "period": "day"}, "calls": {"limit": 1, "soft": true}}}),
    )
    .await;
    assert_eq!(create(&s, "acme", "big", "default").await.status, StatusCode::ACCEPTED);
    s.wait_status("acme", "active").await;
    for (quota, amount) in [("seats", 5), ("calls", 50), ("projects", 4), ("exports", 2)] {
        let res = s
            .call(Method::POST, &format!("/v1/tenants/acme/quotas/{quota}/consume"), Some(json!({"amount": amount})))
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    }
    s
}

async fn a_downgrade_usage_does_not_fit_is_refused_with_the_violations(backend: Backend) {
    let s = downgrade_server(backend).await;
    let audit_before = s.audit_count().await;
    let res = change_plan(&s, "acme", json!({"plan": "small"})).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    assert_eq!(res.code(), "entitlement-violation");
    assert_eq!(res.header("content-type"), Some("application/problem+json"));
    // Each hard quota over its new limit; the soft one (calls) never blocks, projects fits.
    assert_eq!(
        res.body["violations"],
        json!([{"quota": "exports", "used": 2, "limit": 1}, {"quota": "seats", "used": 5, "limit": 3}]),
        "{}",
        res.body
    );
    let detail = res.body["detail"].as_str().unwrap();
    assert!(detail.contains("seats (5 used, limit 3)") && detail.contains("force"), "{detail}");
    unmoved(&s, "acme", "big").await;
    assert_eq!(s.audit_count().await, audit_before, "a refusal writes nothing");

    // The tenant's overrides apply on top of the new plan: with them the usage fits.
    let res =
        s.call(Method::PUT, "/v1/tenants/acme/overrides", Some(json!({"quotas": {"seats": 5, "exports": 2}}))).await;
    assert!(res.status.is_success(), "{}", res.body);
    let res = change_plan(&s, "acme", json!({"plan": "small"})).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    s.wait_status("acme", "active").await;
    assert_eq!(s.get("/v1/tenants/acme").await.body["plan"], "small");
    s.stop().await;
}

async fn force_moves_anyway_and_the_audit_record_says_so(backend: Backend) {
    let s = downgrade_server(backend).await;
    let res = change_plan(&s, "acme", json!({"plan": "small", "force": true})).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while s.get("/v1/tenants/acme").await.body["plan"] != "small" {
        assert!(std::time::Instant::now() < deadline, "the forced move never finished");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    s.wait_status("acme", "active").await;
    let audit = s.get("/v1/audit?tenant_id=acme&action=tenant.change_plan").await.body;
    let request = &audit["items"][0]["detail"]["request"];
    assert_eq!(request["force"], true, "{audit}");
    assert_eq!(request["violations"][1], json!({"quota": "seats", "used": 5, "limit": 3}), "{audit}");
    // The ledger now holds the tenant to the new limits: usage stays, more is refused.
    let res = s.call(Method::POST, "/v1/tenants/acme/quotas/seats/consume", Some(json!({"amount": 1}))).await;
    assert_eq!(res.code(), "quota-exceeded", "{}", res.body);
    // A move the usage fits needs no force and notes none.
    let res = change_plan(&s, "acme", json!({"plan": "big"})).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    s.wait_status("acme", "active").await;
    let audit = s.get("/v1/audit?tenant_id=acme&action=tenant.change_plan").await.body;
    let unforced = audit["items"].as_array().unwrap().iter().find(|a| a["detail"]["request"]["plan"] == "big").unwrap();
    assert!(unforced["detail"]["request"].get("force").is_none(), "{unforced}");
    s.stop().await;
}

/// A request a receiver got: headers and body.
#[derive(Clone)]
struct Asked {
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

type Asks = Arc<Mutex<Vec<Asked>>>;

/// A receiver answering what `answer` holds at the time of each request: (status, body).
async fn validator(answer: Arc<Mutex<(u16, Value)>>) -> (String, Asks) {
    let asks: Asks = Arc::default();
    let a = asks.clone();
    let app = axum::Router::new().route(
        "/validate",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (a, answer) = (a.clone(), answer.clone());
            async move {
                a.lock().unwrap().push(Asked { headers, body: body.to_vec() });
                let (status, body) = answer.lock().unwrap().clone();
                (axum::http::StatusCode::from_u16(status).unwrap(), axum::Json(body))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/validate", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, asks)
}

fn verifies(secret: &str, asked: &Asked) -> bool {
    use tenancy_events::webhook::{verify, WebhookHeaders, WebhookSecret};
    let h = |n: &str| asked.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let headers =
        WebhookHeaders { id: h("webhook-id"), timestamp: h("webhook-timestamp"), signature: h("webhook-signature") };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let secrets = [WebhookSecret::parse(secret).unwrap()];
    verify(&secrets[..], &headers, &asked.body, now, std::time::Duration::from_secs(300)).is_ok()
}

async fn a_validate_hook_refuses_a_create_and_a_plan_change(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    s.put_plan("pro", "pool").await;
    let answer = Arc::new(Mutex::new((200, json!({"allow": false, "reason": "billing: card declined"}))));
    let (url, asks) = validator(answer.clone()).await;
    let res = s
        .call(Method::PUT, "/v1/hooks/billing", Some(json!({"url": url, "events": ["validate"], "timeout_s": 5})))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let secret = res.body["secret"].as_str().unwrap().to_owned();

    let res = create(&s, "acme", "basic", "default").await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(res.code(), "validation-refused");
    assert!(res.body["detail"].as_str().unwrap().contains("billing: card declined"), "{}", res.body);
    never_created(&s, "acme").await;
    let asked = asks.lock().unwrap()[0].clone();
    assert!(verifies(&secret, &asked), "signed with the hook's secret (Standard Webhooks)");
    let body: Value = serde_json::from_slice(&asked.body).unwrap();
    assert_eq!((&body["event"], &body["action"]), (&json!("validate"), &json!("tenant.create")), "{body}");
    assert_eq!((&body["tenant"]["id"], &body["plan"]["id"]), (&json!("acme"), &json!("basic")), "{body}");
    assert!(body.get("from_plan").is_none(), "{body}");

    // Allowed (an empty object), the tenant is created; a long reason is cut.
    *answer.lock().unwrap() = (200, json!({}));
    assert_eq!(create(&s, "acme", "basic", "default").await.status, StatusCode::ACCEPTED);
    s.wait_status("acme", "active").await;
    *answer.lock().unwrap() = (200, json!({"allow": false, "reason": "x".repeat(5000)}));
    let res = change_plan(&s, "acme", json!({"plan": "pro"})).await;
    assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, "validation-refused"), "{}", res.body);
    let detail = res.body["detail"].as_str().unwrap();
    assert!(detail.len() < 700 && detail.ends_with("..."), "the reason is bounded: {} chars", detail.len());
    unmoved(&s, "acme", "basic").await;
    let asked = asks.lock().unwrap().last().unwrap().clone();
    let body: Value = serde_json::from_slice(&asked.body).unwrap();
    assert_eq!(
        (&body["action"], &body["plan"]["id"], &body["from_plan"]["id"]),
        (&json!("tenant.change_plan"), &json!("pro"), &json!("basic")),
        "{body}"
    );
    assert!(s.event_types("acme").await.iter().all(|t| t != "TenantUpdated" && t != "TenantPlanChanged"));
    s.stop().await;
}

async fn a_validate_hook_that_cannot_be_asked_fails_closed(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/validate", l.local_addr().unwrap())
    };
    let hook = json!({"url": closed, "events": ["validate"], "timeout_s": 2});
    assert_eq!(s.call(Method::PUT, "/v1/hooks/gate", Some(hook)).await.status, StatusCode::CREATED);
    let res = create(&s, "acme", "basic", "default").await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.body);
    assert_eq!(res.code(), "hook-unavailable");
    let detail = res.body["detail"].as_str().unwrap();
    assert!(detail.contains("\"gate\"") && detail.contains("connection failed"), "{detail}");
    never_created(&s, "acme").await;

    // A hook answering an error status is no answer either.
    let answer = Arc::new(Mutex::new((500, json!({"allow": true}))));
    let (url, _) = validator(answer.clone()).await;
    let hook = json!({"url": url, "events": ["validate"], "timeout_s": 2});
    assert_eq!(s.call(Method::PUT, "/v1/hooks/gate", Some(hook)).await.status, StatusCode::OK);
    let res = create(&s, "acme", "basic", "default").await;
    assert_eq!((res.status, res.code()), (StatusCode::SERVICE_UNAVAILABLE, "hook-unavailable"), "{}", res.body);
    assert!(res.body["detail"].as_str().unwrap().contains("HTTP 500"), "{}", res.body);
    never_created(&s, "acme").await;
    // Nor is an answer that comes after timeout_s.
    let slow = axum::Router::new().route(
        "/validate",
        axum::routing::post(|| async {
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            axum::Json(json!({"allow": true}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow_url = format!("http://{}/validate", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, slow).await });
    let hook = json!({"url": slow_url, "events": ["validate"], "timeout_s": 1});
    assert_eq!(s.call(Method::PUT, "/v1/hooks/gate", Some(hook)).await.status, StatusCode::OK);
    let started = std::time::Instant::now();
    let res = create(&s, "acme", "basic", "default").await;
    assert_eq!((res.status, res.code()), (StatusCode::SERVICE_UNAVAILABLE, "hook-unavailable"), "{}", res.body);
    assert!(res.body["detail"].as_str().unwrap().contains("timed out"), "{}", res.body);
    assert!(started.elapsed() < std::time::Duration::from_millis(2900), "the caller waits timeout_s, not the hook");
    never_created(&s, "acme").await;
    let hook = json!({"url": url, "events": ["validate"], "timeout_s": 2});
    assert_eq!(s.call(Method::PUT, "/v1/hooks/gate", Some(hook)).await.status, StatusCode::OK);
    // Once it answers, creates go through; without validate hooks nothing is asked.
    *answer.lock().unwrap() = (200, json!({"allow": true}));
    assert_eq!(create(&s, "acme", "basic", "default").await.status, StatusCode::ACCEPTED);
    assert_eq!(s.call(Method::DELETE, "/v1/hooks/gate", None).await.status, StatusCode::NO_CONTENT);
    *answer.lock().unwrap() = (500, json!({}));
    assert_eq!(create(&s, "globex", "basic", "default").await.status, StatusCode::ACCEPTED);
    s.stop().await;
}

async fn a_validate_hook_is_a_sync_url_hook(backend: Backend) {
    let s = TestServer::start(backend).await;
    let callback = json!({"url": "http://127.0.0.1:9/v", "events": ["validate"], "mode": "callback"});
    let res = s.call(Method::PUT, "/v1/hooks/gate", Some(callback)).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-hook"), "{}", res.body);
    assert!(res.body["detail"].as_str().unwrap().contains("sync"), "{}", res.body);
    let res = s.call(Method::PUT, "/v1/queues/gate", Some(json!({}))).await;
    assert!(res.status.is_success(), "{}", res.body);
    let queue = json!({"queue": "gate", "events": ["validate", "provision"]});
    let res = s.call(Method::PUT, "/v1/hooks/gate", Some(queue)).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-hook"), "{}", res.body);
    let slow = json!({"url": "http://127.0.0.1:9/v", "events": ["validate"], "timeout_s": 60});
    assert_eq!(s.call(Method::PUT, "/v1/hooks/gate", Some(slow)).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(s.get("/v1/hooks/gate").await.status, StatusCode::NOT_FOUND, "nothing was stored");
    s.stop().await;
}

async fn the_cli_shows_plans_with_quotas_and_availability(backend: Backend) {
    let s = TestServer::start(backend).await;
    let url = s.url.clone();
    let cli = |args: Vec<&'static str>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || support::run_cli(&url, &args))
    };
    let (code, _, err) = cli(vec![
        "plans",
        "create",
        "pro",
        "--name",
        "Pro",
        "--quota",
        "seats=5",
        "--quota",
        "calls=100/day/soft",
        "--region",
        "eu-west",
        "--max-tenants",
        "3",
        "--self-service",
    ])
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    let p = s.get("/v1/plans/pro").await.body;
    assert_eq!((&p["regions"], &p["max_tenants"], &p["self_service"]), (&json!(["eu-west"]), &json!(3), &json!(true)));

    let (code, out, err) = cli(vec!["plans", "show", "pro"]).await.unwrap();
    assert_eq!(code, 0, "{err}");
    let row = |name: &str| -> Vec<String> {
        let line =
            out.lines().find(|l| l.split_whitespace().nth(1) == Some(name)).unwrap_or_else(|| panic!("{name}: {out}"));
        line.split_whitespace().map(str::to_owned).collect()
    };
    assert_eq!(row("calls"), ["quota", "calls", "100", "day", "true"], "{out}");
    assert_eq!(row("seats"), ["quota", "seats", "5", "-", "false"], "{out}");
    assert_eq!(row("regions"), ["plan", "regions", "eu-west"], "{out}");
    assert_eq!(row("max_tenants"), ["plan", "max_tenants", "3"], "{out}");
    assert_eq!(row("self_service"), ["plan", "self_service", "true"], "{out}");

    let (code, out, err) = cli(vec!["plans", "list"]).await.unwrap();
    assert_eq!(code, 0, "{err}");
    let line = out.lines().find(|l| l.trim_start().starts_with("pro")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("calls=100/day/soft,seats=5") && line.contains("eu-west"), "{out}");

    let (code, _, err) =
        cli(vec!["plans", "update", "pro", "--all-regions", "--no-max-tenants", "--self-service", "false"])
            .await
            .unwrap();
    assert_eq!(code, 0, "{err}");
    let p = s.get("/v1/plans/pro").await.body;
    assert_eq!((&p["regions"], &p["max_tenants"], &p["self_service"]), (&json!([]), &Value::Null, &json!(false)));

    // A refused downgrade, then a forced one, from the CLI.
    cli(vec!["plans", "create", "one", "--name", "One", "--quota", "seats=1"]).await.unwrap();
    assert_eq!(create(&s, "acme", "pro", "default").await.status, StatusCode::ACCEPTED);
    s.wait_status("acme", "active").await;
    s.call(Method::POST, "/v1/tenants/acme/quotas/seats/consume", Some(json!({"amount": 2}))).await;
    let (code, _, err) = cli(vec!["tenants", "change-plan", "acme", "--plan", "one"]).await.unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("entitlement-violation") && err.contains("seats (2 used, limit 1)"), "{err}");
    let (code, _, err) = cli(vec!["tenants", "change-plan", "acme", "--plan", "one", "--force"]).await.unwrap();
    assert_eq!(code, 0, "{err}");
    s.stop().await;
}
