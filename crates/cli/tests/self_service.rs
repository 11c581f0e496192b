//! Self-service (docs/self-service.md): sign-up and activation, what a tenant key does
//! for its own tenant (keys, plan changes), and key hygiene (expiry, last use,
//! rotation with a grace).

mod support;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, Res, TestServer};

both_backends!(
    signup_activates_a_tenant_whose_key_sees_only_it,
    expired_tokens_are_refused_and_swept,
    known_and_unknown_emails_get_the_same_answer,
    signups_are_rate_limited_per_address_and_per_domain,
    tenant_keys_manage_only_their_tenants_keys,
    tenant_keys_change_plans_only_to_self_service_plans,
    expired_keys_are_told_so_and_wrong_keys_are_not,
    a_rotated_key_keeps_its_old_secret_for_the_grace,
    the_cli_signs_up_activates_and_rotates,
);

/// A plan, open to self-service sign-up or not.
async fn plan(s: &TestServer, id: &str, self_service: bool) {
    let body = json!({"name": id, "isolation": "pool", "self_service": self_service, "quotas": {"seats": 5}});
    let res = s.call(Method::PUT, &format!("/v1/plans/{id}"), Some(body)).await;
    assert!(res.status.is_success(), "{}", res.body);
}

async fn signup(s: &TestServer, email: &str, org: &str, plan: Option<&str>) -> Res {
    let mut body = json!({"email": email, "org_name": org});
    if let Some(p) = plan {
        body["plan"] = json!(p);
    }
    s.call_with(None, Method::POST, "/v1/signup", Some(body), &[]).await
}

async fn activate(s: &TestServer, token: &str) -> Res {
    s.call_with(None, Method::POST, "/v1/signup/activate", Some(json!({"token": token})), &[]).await
}

/// The `SignupRequested` events (as an admin reads them), oldest first.
async fn signup_events(s: &TestServer) -> Vec<Value> {
    let res = s.get("/v1/events?detail_type=SignupRequested&limit=1000").await;
    res.body["items"].as_array().unwrap().clone()
}

/// The activation token of the last sign-up of `email`.
async fn token_of(s: &TestServer, email: &str) -> String {
    let events = signup_events(s).await;
    let e = events.iter().rev().find(|e| e["detail"]["email"] == email).unwrap_or_else(|| panic!("{events:?}"));
    e["detail"]["activation_token"].as_str().unwrap().to_owned()
}

/// Polls `check` until it holds, failing after 30 s.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn signup_activates_a_tenant_whose_key_sees_only_it(backend: Backend) {
    let s = TestServer::start(backend).await;
    plan(&s, "starter", true).await;
    plan(&s, "pro", false).await;
    s.create_tenant("other", "pro").await;

    // Only self-service plans; without a plan, the only one.
    let res = signup(&s, "ann@example.com", "Acme", Some("pro")).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "unknown-plan"), "{}", res.body);
    assert!(signup_events(&s).await.is_empty(), "a refused sign-up writes nothing");
    let res = signup(&s, "ann@Example.COM", "Acme", None).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    assert_eq!(res.body["status"], "accepted");

    // The event carries the token; the audit log never does.
    let events = signup_events(&s).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let detail = &events[0]["detail"];
    assert_eq!(
        (&detail["email"], &detail["org_name"], &detail["plan"]),
        (&json!("ann@example.com"), &json!("Acme"), &json!("starter"))
    );
    let token = detail["activation_token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("act_") && token.len() == 47, "{token}");
    assert!(detail["expires_at"].is_string());
    let audit = s.get("/v1/audit?action=signup.request").await.body;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
    assert_eq!(audit["items"][0]["actor_role"], "anonymous");
    let everything = s.get("/v1/audit?limit=1000").await.body.to_string();
    assert!(!everything.contains(&token[4..]), "the token is not audited");
    // A viewer reads the archive with the token redacted.
    let viewer = s.key("viewer", None).await;
    let res = s.call_with(Some(&viewer), Method::GET, "/v1/events?detail_type=SignupRequested", None, &[]).await;
    assert_eq!(res.body["items"][0]["detail"]["activation_token"], "[redacted]", "{}", res.body);

    // Activation: the tenant (org name, email in metadata) and its key, once.
    let res = activate(&s, &token).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let tenant = res.body["tenant"]["id"].as_str().unwrap().to_owned();
    assert_eq!((&res.body["tenant"]["name"], &res.body["tenant"]["plan"]), (&json!("Acme"), &json!("starter")));
    assert_eq!(res.body["tenant"]["metadata"]["email"], "ann@example.com");
    assert_eq!((&res.body["api_key"]["role"], &res.body["api_key"]["tenant_id"]), (&json!("tenant"), &json!(tenant)));
    let key = res.body["api_key"]["key"].as_str().unwrap().to_owned();
    s.wait_status(&tenant, "active").await;
    let audit = s.get(&format!("/v1/audit?action=signup.activate&tenant_id={tenant}")).await.body;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");

    // The key: its own tenant, its plan, entitlements and usage; nothing of others.
    for path in [
        format!("/v1/tenants/{tenant}"),
        "/v1/plans/starter".to_owned(),
        format!("/v1/tenants/{tenant}/entitlements"),
        format!("/v1/tenants/{tenant}/quotas"),
    ] {
        let res = s.call_with(Some(&key), Method::GET, &path, None, &[]).await;
        assert_eq!(res.status, StatusCode::OK, "{path}: {}", res.body);
    }
    for path in ["/v1/tenants/other", "/v1/tenants/other/entitlements", "/v1/plans/pro"] {
        let res = s.call_with(Some(&key), Method::GET, path, None, &[]).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{path}: {}", res.body);
    }

    // Single use: a second activation is refused exactly as an unknown token is.
    let again = activate(&s, &token).await;
    assert_eq!((again.status, again.code()), (StatusCode::BAD_REQUEST, "activation-invalid"), "{}", again.body);
    let unknown = activate(&s, &format!("act_{}", "A".repeat(43))).await;
    assert_eq!((unknown.status, &unknown.body["detail"]), (again.status, &again.body["detail"]));
    let garbage = activate(&s, "not-a-token").await;
    assert_eq!((garbage.status, &garbage.body["detail"]), (again.status, &again.body["detail"]));
    s.stop().await;
}

async fn expired_tokens_are_refused_and_swept(backend: Backend) {
    let url = support::database_url(backend).await;
    // A TTL of 1 s; no sweep but the one at start.
    let s = TestServer::start_configured(url, |o| {
        o.signup.token_ttl = Duration::from_secs(1);
        o.signup.sweep_interval = Duration::from_secs(3600);
    })
    .await;
    plan(&s, "starter", true).await;
    assert_eq!(signup(&s, "ann@example.com", "Acme", None).await.status, StatusCode::ACCEPTED);
    let token = token_of(&s, "ann@example.com").await;
    let events = signup_events(&s).await;
    let expires =
        tenancy_domain::time::Timestamp::parse_rfc3339(events[0]["detail"]["expires_at"].as_str().unwrap()).unwrap();
    until("the token's TTL has passed", || async { tenancy_domain::time::Timestamp::now() > expires }).await;
    let res = activate(&s, &token).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "activation-invalid"), "{}", res.body);
    assert!(res.body["detail"].as_str().unwrap().contains("expired at"), "{}", res.body);
    s.stop().await;

    // A sweeper running often purges it: then it is unknown.
    let url = support::database_url(backend).await;
    let s = TestServer::start_configured(url, |o| {
        o.signup.token_ttl = Duration::from_secs(1);
        o.signup.sweep_interval = Duration::from_millis(100);
    })
    .await;
    plan(&s, "starter", true).await;
    assert_eq!(signup(&s, "cy@example.com", "Cy", None).await.status, StatusCode::ACCEPTED);
    let token = token_of(&s, "cy@example.com").await;
    let db = s.raw_db().await;
    until("expired sign-ups are purged", || {
        let db = db.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM signups").fetch_one(&db).await.unwrap();
            n == 0
        }
    })
    .await;
    let res = activate(&s, &token).await;
    assert_eq!(res.code(), "activation-invalid", "{}", res.body);
    assert!(res.body["detail"].as_str().unwrap().contains("unknown or already used"), "{}", res.body);
    s.stop().await;
}

/// What a sign-up answer shows a caller, but for what differs per request anyway.
fn visible(res: &Res) -> (StatusCode, Value, Vec<(String, String)>) {
    let mut headers: Vec<(String, String)> = res
        .headers
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "date" | "x-request-id" | "ratelimit"))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    headers.sort();
    (res.status, res.body.clone(), headers)
}

async fn known_and_unknown_emails_get_the_same_answer(backend: Backend) {
    let s = TestServer::start(backend).await;
    plan(&s, "starter", true).await;
    // ann has a tenant already; bob has a sign-up pending; cy is unknown.
    signup(&s, "ann@example.com", "Acme", None).await;
    let token = token_of(&s, "ann@example.com").await;
    assert_eq!(activate(&s, &token).await.status, StatusCode::CREATED);
    signup(&s, "bob@example.com", "Bob", None).await;
    let known = signup(&s, "ann@example.com", "Acme", None).await;
    let pending = signup(&s, "bob@example.com", "Bob", None).await;
    let unknown = signup(&s, "cy@example.com", "Cy", None).await;
    assert_eq!(known.status, StatusCode::ACCEPTED, "{}", known.body);
    assert_eq!(visible(&known), visible(&unknown));
    assert_eq!(visible(&pending), visible(&unknown));
    s.stop().await;
}

async fn signups_are_rate_limited_per_address_and_per_domain(backend: Backend) {
    let url = support::database_url(backend).await;
    let s = TestServer::start_configured(url, |o| {
        o.signup.limits = tenancy_http::SignupLimits { per_address_per_hour: 5, per_domain_per_hour: 2 };
    })
    .await;
    plan(&s, "starter", true).await;
    for who in ["a1", "a2"] {
        let res = signup(&s, &format!("{who}@a.example"), "A", None).await;
        assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
        assert!(res.header("ratelimit-policy").unwrap().contains("\"signup:domain\";q=2;w=3600"), "{:?}", res.headers);
    }
    let res = signup(&s, "a3@A.example", "A", None).await;
    assert_eq!((res.status, res.code()), (StatusCode::TOO_MANY_REQUESTS, "rate-limited"), "{}", res.body);
    assert!(res.header("ratelimit").unwrap().contains("\"signup:domain\";r=0"), "{:?}", res.headers);
    assert!(res.header("retry-after").is_some());
    assert!(res.body["detail"].as_str().unwrap().contains("email domain"), "{}", res.body);
    // Another domain: its own bucket, until the address's 5 an hour are taken.
    for who in ["b1", "b2"] {
        assert_eq!(signup(&s, &format!("{who}@b.example"), "B", None).await.status, StatusCode::ACCEPTED);
    }
    let res = signup(&s, "c1@c.example", "C", None).await;
    assert_eq!((res.status, res.code()), (StatusCode::TOO_MANY_REQUESTS, "rate-limited"), "{}", res.body);
    assert!(res.header("ratelimit-policy").unwrap().contains("\"signup:address\";q=5;w=3600"), "{:?}", res.headers);
    assert!(res.body["detail"].as_str().unwrap().contains("client address"), "{}", res.body);
    // Activations count against the address too; nothing was created by the refusals.
    let res = activate(&s, &format!("act_{}", "A".repeat(43))).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "{}", res.body);
    assert_eq!(signup_events(&s).await.len(), 4);
    s.stop().await;
}

async fn tenant_keys_manage_only_their_tenants_keys(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    for t in ["acme", "other"] {
        s.create_tenant(t, "basic").await;
        s.wait_status(t, "active").await;
    }
    let acme = s.key("tenant", Some("acme")).await;
    s.key("tenant", Some("other")).await;
    let viewer_id = s.call(Method::POST, "/v1/api-keys", Some(json!({"name": "v", "role": "viewer"}))).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let call = |method: Method, path: &str, body: Option<Value>| {
        let (s, acme) = (&s, acme.clone());
        let path = path.to_owned();
        async move { s.call_with(Some(&acme), method, &path, body, &[]).await }
    };

    // A key of its own role for its own tenant (tenant_id filled in).
    let res = call(Method::POST, "/v1/api-keys", Some(json!({"name": "ci", "role": "tenant"}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!((&res.body["role"], &res.body["tenant_id"]), (&json!("tenant"), &json!("acme")));
    let (ci_id, ci) = (res.body["id"].as_str().unwrap().to_owned(), res.body["key"].as_str().unwrap().to_owned());
    let res = s.call_with(Some(&ci), Method::GET, "/v1/tenants/acme", None, &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    // Never a wider role, never another tenant, never an own rate limit.
    for role in ["admin", "operator", "viewer", "service"] {
        let res = call(Method::POST, "/v1/api-keys", Some(json!({"name": "x", "role": role}))).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{role}: {}", res.body);
        assert!(res.body["detail"].as_str().unwrap().contains("never a wider role"), "{}", res.body);
    }
    let res =
        call(Method::POST, "/v1/api-keys", Some(json!({"name": "x", "role": "tenant", "tenant_id": "other"}))).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);
    let limited = json!({"name": "x", "role": "tenant", "rate_limit": {"per_second": 1000, "burst": 1000}});
    assert_eq!(call(Method::POST, "/v1/api-keys", Some(limited)).await.status, StatusCode::FORBIDDEN);
    // Its tenant's keys only.
    let res = call(Method::GET, "/v1/api-keys", None).await;
    let mut tenants: Vec<&str> =
        res.body["items"].as_array().unwrap().iter().map(|k| k["tenant_id"].as_str().unwrap()).collect();
    tenants.dedup();
    assert_eq!(tenants, ["acme"], "{}", res.body);
    // Other keys are not found; its own are revoked (and rotated, below).
    for path in [format!("/v1/api-keys/{viewer_id}"), format!("/v1/api-keys/{viewer_id}/rotate")] {
        let method = if path.ends_with("rotate") { Method::POST } else { Method::DELETE };
        assert_eq!(call(method, &path, None).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    let res = call(Method::DELETE, &format!("/v1/api-keys/{ci_id}"), None).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.body);
    let res = s.call_with(Some(&ci), Method::GET, "/v1/tenants/acme", None, &[]).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.body);
    let audit = s.get("/v1/audit?action=api_key.delete&tenant_id=acme").await.body;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
    s.stop().await;
}

async fn tenant_keys_change_plans_only_to_self_service_plans(backend: Backend) {
    let s = TestServer::start(backend).await;
    plan(&s, "basic", true).await;
    plan(&s, "starter", true).await;
    plan(&s, "pro", false).await;
    for t in ["acme", "other"] {
        s.create_tenant(t, "basic").await;
        s.wait_status(t, "active").await;
    }
    let key = s.key("tenant", Some("acme")).await;
    // It sees what it may move to: its plan and the self-service plans.
    let res = s.call_with(Some(&key), Method::GET, "/v1/plans", None, &[]).await;
    let ids: Vec<&str> = res.body["items"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["basic", "starter"], "{}", res.body);
    let res = s.call_with(Some(&key), Method::GET, "/v1/plans/starter", None, &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let res = s.call_with(Some(&key), Method::GET, "/v1/plans/pro", None, &[]).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);
    let change = |tenant: &str, body: Value| {
        let (s, key) = (&s, key.clone());
        let path = format!("/v1/tenants/{tenant}/plan");
        async move { s.call_with(Some(&key), Method::POST, &path, Some(body), &[]).await }
    };
    for body in [json!({"plan": "pro"}), json!({"plan": "nope"}), json!({"plan": "starter", "force": true})] {
        let res = change("acme", body.clone()).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{body}: {}", res.body);
    }
    let res = change("acme", json!({"plan": "pro"})).await;
    assert!(res.body["detail"].as_str().unwrap().contains("self_service"), "{}", res.body);
    assert_eq!(change("other", json!({"plan": "starter"})).await.status, StatusCode::NOT_FOUND);
    let res = change("acme", json!({"plan": "starter"})).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    until("acme is on starter", || async {
        let t = s.get("/v1/tenants/acme").await.body;
        t["plan"] == "starter" && t["status"] == "active"
    })
    .await;
    // Offboarding itself: not without a policy that allows it (issue 17).
    let res = s.call_with(Some(&key), Method::DELETE, "/v1/tenants/acme", None, &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    s.stop().await;
}

async fn expired_keys_are_told_so_and_wrong_keys_are_not(backend: Backend) {
    let s = TestServer::start(backend).await;
    let expires = tenancy_domain::time::Timestamp::now().plus_millis(1_500);
    let body = json!({"name": "short", "role": "viewer", "expires_at": expires});
    let res = s.call(Method::POST, "/v1/api-keys", Some(body)).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let (id, key) = (res.body["id"].as_str().unwrap().to_owned(), res.body["key"].as_str().unwrap().to_owned());
    assert_eq!(s.call_with(Some(&key), Method::GET, "/v1/plans", None, &[]).await.status, StatusCode::OK);
    // Its use is recorded (off the request path).
    until("last_used_at is recorded", || async {
        let keys = s.get("/v1/api-keys?limit=100").await.body;
        keys["items"].as_array().unwrap().iter().any(|k| k["id"] == id.as_str() && k["last_used_at"].is_string())
    })
    .await;
    let mut res = s.call_with(Some(&key), Method::GET, "/v1/plans", None, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while res.status == StatusCode::OK && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        res = s.call_with(Some(&key), Method::GET, "/v1/plans", None, &[]).await;
    }
    assert_eq!((res.status, res.code()), (StatusCode::UNAUTHORIZED, "key-expired"), "{}", res.body);
    // The same key id with a wrong secret, an unknown key, garbage: the generic 401.
    let mut rng = rand::thread_rng();
    let wrong = tenancy_domain::apikey::regenerate(&mut rng, &id).unwrap().plaintext;
    let unknown = tenancy_domain::apikey::generate(&mut rng).plaintext;
    for token in [wrong.as_str(), unknown.as_str(), "tny_garbage"] {
        let res = s.call_with(Some(token), Method::GET, "/v1/plans", None, &[]).await;
        assert_eq!((res.status, res.code()), (StatusCode::UNAUTHORIZED, "unauthenticated"), "{token}: {}", res.body);
    }
    s.stop().await;
}

async fn a_rotated_key_keeps_its_old_secret_for_the_grace(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    let body = json!({"name": "ci", "role": "tenant", "tenant_id": "acme"});
    let res = s.call(Method::POST, "/v1/api-keys", Some(body)).await;
    let (id, old) = (res.body["id"].as_str().unwrap().to_owned(), res.body["key"].as_str().unwrap().to_owned());
    let get = |token: String| {
        let s = &s;
        async move { s.call_with(Some(&token), Method::GET, "/v1/tenants/acme", None, &[]).await.status }
    };
    // Out of bounds: refused, nothing changes.
    let res = s.call(Method::POST, &format!("/v1/api-keys/{id}/rotate"), Some(json!({"grace_s": 604_801}))).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    // The key rotates itself with a grace of 2 s.
    let res = s
        .call_with(Some(&old), Method::POST, &format!("/v1/api-keys/{id}/rotate"), Some(json!({"grace_s": 2})), &[])
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(
        (&res.body["id"], &res.body["role"], &res.body["tenant_id"]),
        (&json!(id), &json!("tenant"), &json!("acme"))
    );
    assert!(res.body["previous_secret_expires_at"].is_string(), "{}", res.body);
    let new = res.body["key"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(get(new.clone()).await, StatusCode::OK);
    assert_eq!(get(old.clone()).await, StatusCode::OK, "the old secret works during the grace");
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(old.clone()).await == StatusCode::OK {
        assert!(Instant::now() < deadline, "the old secret never stopped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get(old.clone()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(get(new.clone()).await, StatusCode::OK);
    // Audited, without either secret; no body: the default grace.
    let audit = s.get("/v1/audit?action=api_key.rotate").await.body;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
    assert_eq!(audit["items"][0]["detail"]["grace_s"], 2);
    let text = audit.to_string();
    assert!(!text.contains(&old[4..30]) && !text.contains(&new[4..30]), "{text}");
    let res = s.call(Method::POST, &format!("/v1/api-keys/{id}/rotate"), None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(get(new).await, StatusCode::OK, "the default grace is an hour");
    s.stop().await;
}

async fn the_cli_signs_up_activates_and_rotates(backend: Backend) {
    let s = TestServer::start(backend).await;
    plan(&s, "starter", true).await;
    let url = s.url.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        support::run_cli(&url, &["signup", "--email", "dee@example.com", "--org", "Dee Inc"])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("accepted"), "{out}");
    let url = s.url.clone();
    let (code, _, err) =
        tokio::task::spawn_blocking(move || support::run_cli(&url, &["signup", "--org", "Dee Inc"])).await.unwrap();
    assert_eq!(code, 2, "an email is needed: {err}");
    let token = token_of(&s, "dee@example.com").await;
    let url = s.url.clone();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || support::run_cli(&url, &["-o", "json", "signup", "activate", &token]))
            .await
            .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let activated: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(activated["tenant"]["name"], "Dee Inc");
    let id = activated["api_key"]["id"].as_str().unwrap().to_owned();
    assert!(activated["api_key"]["key"].as_str().unwrap().starts_with("tny_"));
    let url = s.url.clone();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || support::run_cli(&url, &["keys", "rotate", &id, "--grace", "1h"]))
            .await
            .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("tny_"), "the new key is printed: {out}");
    let audit = s.get("/v1/audit?action=api_key.rotate").await.body;
    assert_eq!(audit["items"][0]["detail"]["grace_s"], 3600, "{audit}");
    s.stop().await;
}
