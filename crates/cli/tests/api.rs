//! The v1 API end to end on both backends: real server, real database, HTTP.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{Backend, TestServer};

both_backends!(
    tenant_lifecycle,
    caller_supplied_ids_and_duplicates,
    illegal_transitions_are_409,
    etag_and_if_match,
    idempotency_keys,
    rejected_requests_change_nothing,
    tenant_list_filters_and_pagination,
    plans_crud_and_in_use,
    plan_isolation_is_fixed_while_in_use,
    plan_patch_merges,
    generated_tenant_ids,
);

async fn tenant_lifecycle(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    s.put_plan("pro", "pool").await;
    let created = s.create_tenant("acme", "basic").await;
    assert_eq!(created.body["status"], "provisioning");
    assert!(created.body["execution_id"].as_str().unwrap().starts_with("exe_"));
    assert_eq!(created.header("location"), Some("/v1/tenants/acme"));
    s.wait_status("acme", "active").await;

    let res = s.call(Method::POST, "/v1/tenants/acme/suspend", None).await;
    assert_eq!((res.status, res.body["status"].as_str()), (StatusCode::OK, Some("suspended")));
    let res = s.call(Method::POST, "/v1/tenants/acme/resume", None).await;
    assert_eq!((res.status, res.body["status"].as_str()), (StatusCode::OK, Some("active")));

    let res = s.call(Method::POST, "/v1/tenants/acme/plan", Some(json!({"plan": "pro"}))).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    assert_eq!(res.body["status"], "updating");
    let t = s.wait_status("acme", "active").await;
    assert_eq!(t["plan"], "pro");

    let res = s
        .call(Method::PATCH, "/v1/tenants/acme", Some(json!({"name": "Acme Corp", "metadata": {"tier": "gold"}})))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!((res.body["name"].as_str(), &res.body["metadata"]), (Some("Acme Corp"), &json!({"tier": "gold"})));

    let res = s.call(Method::DELETE, "/v1/tenants/acme", None).await;
    assert_eq!((res.status, res.body["status"].as_str()), (StatusCode::ACCEPTED, Some("offboarding")));
    s.wait_status("acme", "offboarded").await;
    // The tombstone stays readable and changes no more.
    let res = s.call(Method::PATCH, "/v1/tenants/acme", Some(json!({"name": "x"}))).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "invalid-transition"));

    assert_eq!(
        s.event_types("acme").await,
        [
            "TenantCreated",
            "TenantProvisioned",
            "TenantSuspended",
            "TenantResumed",
            "TenantPlanChanged",
            "TenantUpdated",
            "TenantOffboardingStarted",
            "TenantOffboarded"
        ]
    );
    let changed = s.get("/v1/events?detail_type=TenantPlanChanged").await;
    let detail = &changed.body["items"][0]["detail"];
    assert_eq!((detail["plan"].as_str(), detail["previous_plan"].as_str()), (Some("pro"), Some("basic")));
    // Every mutation is audited, with the caller's request id.
    let audit = s.get("/v1/audit?tenant_id=acme&action=tenant.suspend").await;
    let rec = &audit.body["items"][0];
    assert_eq!(rec["actor_role"], "admin");
    assert!(!rec["request_id"].as_str().unwrap().is_empty());
    // The record's members: the entry's and the seal's (null until sealed), nothing else.
    let mut members: Vec<&str> = rec.as_object().unwrap().keys().map(String::as_str).collect();
    members.sort_unstable();
    assert_eq!(
        members,
        [
            "action",
            "actor_key_id",
            "actor_role",
            "detail",
            "hash",
            "id",
            "outcome",
            "prev_hash",
            "request_id",
            "seq",
            "source_ip",
            "target",
            "tenant_id",
            "time"
        ]
    );
    s.stop().await;
}

async fn caller_supplied_ids_and_duplicates(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    let dup = s.call(Method::POST, "/v1/tenants", Some(json!({"id": "acme", "name": "Other", "plan": "basic"}))).await;
    assert_eq!((dup.status, dup.code()), (StatusCode::CONFLICT, "already-exists"));
    assert_eq!(dup.header("content-type"), Some("application/problem+json"));
    assert_eq!(dup.body["status"], 409);
    let unknown = s.call(Method::POST, "/v1/tenants", Some(json!({"id": "x", "name": "X", "plan": "ghost"}))).await;
    assert_eq!((unknown.status, unknown.code()), (StatusCode::BAD_REQUEST, "unknown-plan"));
    let bad_id =
        s.call(Method::POST, "/v1/tenants", Some(json!({"id": "Not Valid", "name": "X", "plan": "basic"}))).await;
    assert_eq!((bad_id.status, bad_id.code()), (StatusCode::BAD_REQUEST, "invalid-request"));
    s.stop().await;
}

async fn generated_tenant_ids(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    let res =
        s.call(Method::POST, "/v1/tenants", Some(json!({"name": "No id", "plan": "basic", "region": "eu-west"}))).await;
    assert_eq!(res.status, StatusCode::ACCEPTED);
    let id = res.body["id"].as_str().unwrap();
    assert!(id.starts_with("t-"), "{id}");
    assert_eq!(s.get(&format!("/v1/tenants/{id}")).await.body["region"], "eu-west");
    s.stop().await;
}

async fn illegal_transitions_are_409(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    s.wait_status("acme", "active").await;
    let res = s.call(Method::POST, "/v1/tenants/acme/resume", None).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "invalid-transition"));
    assert_eq!(res.body["detail"], "cannot resume a tenant that is active");
    let res = s.call(Method::POST, "/v1/tenants/acme/plan", Some(json!({"plan": "basic"}))).await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    s.call(Method::POST, "/v1/tenants/acme/suspend", None).await;
    let res = s.call(Method::POST, "/v1/tenants/acme/suspend", None).await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    let res = s.call(Method::POST, "/v1/tenants/ghost/suspend", None).await;
    assert_eq!((res.status, res.code()), (StatusCode::NOT_FOUND, "not-found"));
    s.stop().await;
}

async fn etag_and_if_match(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    s.wait_status("acme", "active").await;
    let res = s.get("/v1/tenants/acme").await;
    let etag = res.header("etag").unwrap().to_owned();
    assert_eq!(etag, format!("\"{}\"", res.body["version"]));
    let patch = |name: &'static str, etag: String| {
        let s = &s;
        async move {
            s.call_with(
                Some(support::ADMIN),
                Method::PATCH,
                "/v1/tenants/acme",
                Some(json!({"name": name})),
                &[("if-match", &etag)],
            )
            .await
        }
    };
    let first = patch("First", etag.clone()).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_ne!(first.header("etag").unwrap(), etag);
    let stale = patch("Second", etag.clone()).await;
    assert_eq!((stale.status, stale.code()), (StatusCode::PRECONDITION_FAILED, "precondition-failed"));
    assert_eq!(s.get("/v1/tenants/acme").await.body["name"], "First");
    let bad = patch("Third", "not-a-version".into()).await;
    assert_eq!((bad.status, bad.code()), (StatusCode::BAD_REQUEST, "invalid-header"));
    // Plans too.
    let res = s
        .call_with(
            Some(support::ADMIN),
            Method::PUT,
            "/v1/plans/basic",
            Some(json!({"name": "b", "isolation": "silo"})),
            &[("if-match", "\"7\"")],
        )
        .await;
    assert_eq!(res.status, StatusCode::PRECONDITION_FAILED);
    s.stop().await;
}

async fn idempotency_keys(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    let body = json!({"name": "Acme", "plan": "basic"});
    let post = |body: serde_json::Value, key: &'static str| {
        let s = &s;
        async move {
            s.call_with(Some(support::ADMIN), Method::POST, "/v1/tenants", Some(body), &[("idempotency-key", key)])
                .await
        }
    };
    let first = post(body.clone(), "k-1").await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let again = post(body.clone(), "k-1").await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body, first.body, "the replay is the first response");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let other = post(json!({"name": "Other", "plan": "basic"}), "k-1").await;
    assert_eq!((other.status, other.code()), (StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused"));
    let list = s.get("/v1/tenants").await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1, "one tenant for one key");
    // Another caller's identical key is its own.
    let key = s.key("operator", None).await;
    let theirs = s.call_with(Some(&key), Method::POST, "/v1/tenants", Some(body), &[("idempotency-key", "k-1")]).await;
    assert_eq!(theirs.status, StatusCode::ACCEPTED);
    assert_ne!(theirs.body["id"], first.body["id"]);
    s.stop().await;
}

async fn rejected_requests_change_nothing(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    s.wait_status("acme", "active").await;
    let before = (s.get("/v1/tenants/acme").await.body, s.event_types("acme").await, s.audit_count().await);

    let cases: Vec<(support::Res, StatusCode, &str)> = vec![
        (
            s.raw(Method::POST, "/v1/tenants", "application/json", "{\"name\": ").await,
            StatusCode::BAD_REQUEST,
            "malformed-json",
        ),
        (
            s.raw(Method::POST, "/v1/tenants", "text/plain", "{}").await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        (
            s.call(Method::POST, "/v1/tenants", Some(json!({"name": "x", "plan": "basic", "bogus": 1}))).await,
            StatusCode::BAD_REQUEST,
            "invalid-body",
        ),
        (
            s.call(Method::POST, "/v1/tenants", Some(json!({"name": 5, "plan": "basic"}))).await,
            StatusCode::BAD_REQUEST,
            "invalid-body",
        ),
        (
            s.call(Method::PATCH, "/v1/tenants/acme", Some(json!({"region": "Not A Slug"}))).await,
            StatusCode::BAD_REQUEST,
            "invalid-request",
        ),
        (
            s.call(Method::PATCH, "/v1/tenants/acme", Some(json!({"status": "suspended"}))).await,
            StatusCode::BAD_REQUEST,
            "invalid-body",
        ),
        (s.get("/v1/tenants?status=sleeping").await, StatusCode::BAD_REQUEST, "invalid-query"),
        (s.get("/v1/tenants?limit=0").await, StatusCode::BAD_REQUEST, "invalid-request"),
        (s.get("/v1/tenants?limit=abc").await, StatusCode::BAD_REQUEST, "invalid-query"),
        (s.get("/v1/tenants?colour=red").await, StatusCode::BAD_REQUEST, "invalid-query"),
        (s.get("/v1/events?after=yesterday").await, StatusCode::BAD_REQUEST, "invalid-request"),
        (s.get("/v1/events?cursor=zzz").await, StatusCode::BAD_REQUEST, "invalid-request"),
        (
            s.call(Method::POST, "/v1/tenants/acme/plan", Some(json!({"plan": "ghost"}))).await,
            StatusCode::BAD_REQUEST,
            "unknown-plan",
        ),
        (
            s.call(Method::PUT, "/v1/plans/pro", Some(json!({"name": "Pro", "isolation": "shared"}))).await,
            StatusCode::BAD_REQUEST,
            "invalid-body",
        ),
        (
            s.call(
                Method::PUT,
                "/v1/plans/pro",
                Some(json!({"name": "Pro", "isolation": "pool", "quotas": {"seats": -1}})),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "invalid-body",
        ),
        (
            s.call(Method::POST, "/v1/api-keys", Some(json!({"name": "k", "role": "tenant"}))).await,
            StatusCode::BAD_REQUEST,
            "invalid-request",
        ),
        (
            s.call(Method::POST, "/v1/api-keys", Some(json!({"name": "k", "role": "root"}))).await,
            StatusCode::BAD_REQUEST,
            "invalid-body",
        ),
        (s.call(Method::GET, "/v1/nowhere", None).await, StatusCode::NOT_FOUND, "not-found"),
        (s.call(Method::PUT, "/v1/tenants/acme", None).await, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed"),
        (s.call_with(None, Method::GET, "/v1/tenants", None, &[]).await, StatusCode::UNAUTHORIZED, "unauthenticated"),
        (
            s.call_with(Some("tny_wrong"), Method::GET, "/v1/tenants", None, &[]).await,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        ),
    ];
    for (i, (res, status, code)) in cases.iter().enumerate() {
        assert_eq!((res.status, res.code()), (*status, *code), "case {i}: {}", res.body);
        assert_eq!(res.header("content-type"), Some("application/problem+json"), "case {i}");
        assert!(!res.body["detail"].as_str().unwrap_or("").is_empty(), "case {i}");
    }
    let after = (s.get("/v1/tenants/acme").await.body, s.event_types("acme").await, s.audit_count().await);
    assert_eq!(before, after, "a rejected request changed something");
    assert_eq!(s.get("/v1/plans/pro").await.status, StatusCode::NOT_FOUND);
    s.stop().await;
}

async fn tenant_list_filters_and_pagination(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    s.put_plan("pro", "silo").await;
    for i in 0..12 {
        let plan = if i % 3 == 0 { "pro" } else { "basic" };
        let region = if i % 2 == 0 { "eu" } else { "us" };
        let res = s
            .call(
                Method::POST,
                "/v1/tenants",
                Some(json!({"id": format!("t{i:02}"), "name": "T", "plan": plan, "region": region})),
            )
            .await;
        assert_eq!(res.status, StatusCode::ACCEPTED);
    }
    for i in 0..12 {
        s.wait_status(&format!("t{i:02}"), "active").await;
    }
    s.call(Method::POST, "/v1/tenants/t03/suspend", None).await;
    let mut ids = Vec::new();
    let mut path = "/v1/tenants?plan=basic&limit=3".to_owned();
    loop {
        let page = s.get(&path).await;
        assert_eq!(page.status, StatusCode::OK);
        ids.extend(page.body["items"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()));
        match page.body["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/tenants?plan=basic&limit=3&cursor={c}"),
            None => break,
        }
    }
    let expected: Vec<String> = (0..12).filter(|i| i % 3 != 0).map(|i| format!("t{i:02}")).collect();
    assert_eq!(ids, expected);
    let res = s.get("/v1/tenants?plan=pro&status=suspended&region=us").await;
    let ids: Vec<&str> = res.body["items"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["t03"]);
    s.stop().await;
}

async fn plans_crud_and_in_use(backend: Backend) {
    let s = TestServer::start(backend).await;
    let res = s
        .call(Method::PUT, "/v1/plans/pro", Some(json!({"name": "Pro", "isolation": "silo", "features": ["sso", "audit"], "quotas": {"seats": 10, "api_calls": {"limit": 1000, "period": "month", "soft": true}}})))
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    assert_eq!(res.body["quotas"]["seats"], json!({"limit": 10, "soft": false}));
    assert_eq!(res.body["quotas"]["api_calls"], json!({"limit": 1000, "period": "month", "soft": true}));
    let res = s.call(Method::PUT, "/v1/plans/pro", Some(json!({"name": "Pro 2", "isolation": "silo"}))).await;
    assert_eq!((res.status, res.body["version"].as_i64()), (StatusCode::OK, Some(2)));
    assert_eq!(s.get("/v1/plans").await.body["items"].as_array().unwrap().len(), 1);
    s.create_tenant("acme", "pro").await;
    let res = s.call(Method::DELETE, "/v1/plans/pro", None).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "plan-in-use"));
    s.wait_status("acme", "active").await;
    s.call(Method::DELETE, "/v1/tenants/acme", None).await;
    s.wait_status("acme", "offboarded").await;
    assert_eq!(s.call(Method::DELETE, "/v1/plans/pro", None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(s.get("/v1/plans/pro").await.status, StatusCode::NOT_FOUND);
    s.stop().await;
}

/// A plan's isolation cannot change under its tenants (the reconciler would then create
/// a silo database for a pool tenant): 409 `plan-in-use`, and nothing changes.
async fn plan_isolation_is_fixed_while_in_use(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    s.wait_status("acme", "active").await;
    let put = s.call(Method::PUT, "/v1/plans/basic", Some(json!({"name": "basic", "isolation": "silo"}))).await;
    assert_eq!((put.status, put.code()), (StatusCode::CONFLICT, "plan-in-use"), "{}", put.body);
    assert_eq!(put.header("content-type"), Some("application/problem+json"));
    assert!(put.body["detail"].as_str().unwrap().contains("isolation"), "{}", put.body);
    let patch = s.call(Method::PATCH, "/v1/plans/basic", Some(json!({"isolation": "silo"}))).await;
    assert_eq!((patch.status, patch.code()), (StatusCode::CONFLICT, "plan-in-use"), "{}", patch.body);
    let plan = s.get("/v1/plans/basic").await.body;
    assert_eq!((plan["isolation"].as_str(), plan["version"].as_i64()), (Some("pool"), Some(1)));
    // The same isolation with other changes is fine.
    let same = s.call(Method::PUT, "/v1/plans/basic", Some(json!({"name": "Basic", "isolation": "pool"}))).await;
    assert_eq!(same.status, StatusCode::OK, "{}", same.body);
    // A plan no tenant uses may change.
    s.put_plan("spare", "pool").await;
    let spare = s.call(Method::PATCH, "/v1/plans/spare", Some(json!({"isolation": "silo"}))).await;
    assert_eq!((spare.status, spare.body["isolation"].as_str()), (StatusCode::OK, Some("silo")));
    s.stop().await;
}

/// `PATCH /v1/plans/{id}` changes only what it gives (JSON merge patch), honours
/// If-Match and returns the new ETag; `PUT` stays a full replacement.
async fn plan_patch_merges(backend: Backend) {
    let s = TestServer::start(backend).await;
    let body = json!({"name": "Pro", "isolation": "pool", "features": ["sso", "audit"],
                      "quotas": {"seats": 10, "api_calls": {"limit": 1000, "period": "month"}}});
    assert_eq!(s.call(Method::PUT, "/v1/plans/pro", Some(body)).await.status, StatusCode::CREATED);
    let res = s.call(Method::PATCH, "/v1/plans/pro", Some(json!({"name": "Pro+"}))).await;
    assert_eq!((res.status, res.header("etag")), (StatusCode::OK, Some("\"2\"")), "{}", res.body);
    assert_eq!(res.body["name"], "Pro+");
    assert_eq!(res.body["features"], json!(["audit", "sso"]));
    assert_eq!(res.body["quotas"]["seats"], json!({"limit": 10, "soft": false}));
    assert_eq!(res.body["quotas"]["api_calls"], json!({"limit": 1000, "period": "month", "soft": false}));
    // Quotas merge by name; null removes one.
    let res = s
        .call_with(
            Some(support::ADMIN),
            Method::PATCH,
            "/v1/plans/pro",
            Some(json!({"quotas": {"seats": null, "projects": 3}})),
            &[("If-Match", "\"2\"")],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["quotas"].as_object().unwrap().keys().collect::<Vec<_>>(), ["api_calls", "projects"]);
    let stale = s
        .call_with(
            Some(support::ADMIN),
            Method::PATCH,
            "/v1/plans/pro",
            Some(json!({"name": "X"})),
            &[("If-Match", "\"2\"")],
        )
        .await;
    assert_eq!((stale.status, stale.code()), (StatusCode::PRECONDITION_FAILED, "precondition-failed"));
    for (bad, code) in [
        (json!({"name": null}), "invalid-request"),
        (json!({"quota": {}}), "invalid-body"),
        (json!({"features": ["not valid"]}), "invalid-request"),
    ] {
        let res = s.call(Method::PATCH, "/v1/plans/pro", Some(bad.clone())).await;
        assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, code), "{bad}: {}", res.body);
    }
    let missing = s.call(Method::PATCH, "/v1/plans/ghost", Some(json!({"name": "G"}))).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let plan = s.get("/v1/plans/pro").await.body;
    assert_eq!(
        (plan["name"].as_str(), plan["version"].as_i64()),
        (Some("Pro+"), Some(3)),
        "rejected patches change nothing"
    );

    // The CLI: `plans patch` keeps what it does not name.
    let url = s.url.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        support::run_cli(
            &url,
            &["plans", "patch", "pro", "--quota", "seats=20", "--remove-quota", "projects", "-o", "json"],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["quotas"].as_object().unwrap().keys().collect::<Vec<_>>(), ["api_calls", "seats"]);
    assert_eq!((v["name"].as_str(), v["features"].clone()), (Some("Pro+"), json!(["audit", "sso"])));
    // PUT replaces: what it leaves out is gone.
    let res = s.call(Method::PUT, "/v1/plans/pro", Some(json!({"name": "Pro", "isolation": "pool"}))).await;
    assert_eq!((res.status, res.body["quotas"].clone()), (StatusCode::OK, json!({})));
    s.stop().await;
}
