//! API rate limits (issue 14, item 6) on both backends, on servers with low limits: a
//! key over its burst is refused 429 `rate-limited` with `Retry-After` and the
//! RateLimit headers until `Retry-After` has passed, other keys going on; a tenant's
//! keys share its tenant's bucket, which other tenants do not feel. Plans and keys of
//! their own size: a plan's limit sizes its tenants' buckets (and a change of it takes
//! effect at once), a key's own limit its bucket, each named in `RateLimit-Policy`;
//! bad sizes are refused and change nothing; the CLI sets both.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, Res, TestServer};
use tenancy_http::{Limit, RateLimits};

both_backends!(
    a_key_over_its_limit_waits_retry_after,
    a_tenants_keys_share_its_bucket,
    a_plans_limit_sizes_its_tenants_buckets,
    a_keys_own_limit_sizes_its_bucket,
    bad_limits_are_refused_and_change_nothing,
    the_cli_sets_plan_and_key_limits
);

async fn server(backend: Backend, limits: RateLimits) -> TestServer {
    let url = support::database_url(backend).await;
    TestServer::start_configured(url, move |o| o.rate_limits = limits).await
}

/// Two tenants on a pool plan.
async fn tenants(s: &TestServer) {
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    s.create_tenant("globex", "basic").await;
}

async fn read(s: &TestServer, key: &str, tenant: &str) -> Res {
    s.call_with(Some(key), Method::GET, &format!("/v1/tenants/{tenant}"), None, &[]).await
}

fn assert_limited(res: &Res, policy: &str) -> u64 {
    assert_eq!((res.status, res.code()), (StatusCode::TOO_MANY_REQUESTS, "rate-limited"), "{}", res.body);
    assert_eq!(res.header("content-type"), Some("application/problem+json"));
    let retry: u64 = res.header("retry-after").expect("Retry-After").parse().expect("whole seconds");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let state = res.header("ratelimit").expect("RateLimit");
    assert!(state.contains(&format!("\"{policy}\";r=0;t={retry}")), "{state}");
    assert!(res.header("ratelimit-policy").is_some());
    retry
}

async fn a_key_over_its_limit_waits_retry_after(backend: Backend) {
    let limits = RateLimits { tenant_key: Limit::new(1, 3), tenant: Limit::new(0, 0), ..RateLimits::default() };
    let s = server(backend, limits).await;
    tenants(&s).await;
    let acme = s.key("tenant", Some("acme")).await;
    let globex = s.key("tenant", Some("globex")).await;

    for remaining in [2, 1, 0] {
        let res = read(&s, &acme, "acme").await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        assert_eq!(res.header("ratelimit-policy"), Some("\"key\";q=3;w=3"));
        let state = res.header("ratelimit").unwrap();
        assert!(state.starts_with(&format!("\"key\";r={remaining};t=")), "{state}");
    }
    let refused = read(&s, &acme, "acme").await;
    let retry = assert_limited(&refused, "key");
    assert!(refused.body["detail"].as_str().unwrap().contains("this API key"), "{}", refused.body);
    // A refused request is refused before the route's rules: another tenant's path too.
    assert_limited(&read(&s, &acme, "globex").await, "key");

    // Another key is unaffected; so is the admin, whose own bucket is reported.
    let res = read(&s, &globex, "globex").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let res = s.get("/v1/tenants/acme").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.header("ratelimit-policy"), Some("\"key\";q=20000;w=2"));
    // No credentials: 401, no bucket.
    let res = s.call_with(None, Method::GET, "/v1/tenants/acme", None, &[]).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.header("ratelimit"), None);

    tokio::time::sleep(Duration::from_secs(retry)).await;
    let res = read(&s, &acme, "acme").await;
    assert_eq!(res.status, StatusCode::OK, "after Retry-After: {}", res.body);
    s.stop().await;
}

async fn a_tenants_keys_share_its_bucket(backend: Backend) {
    let limits = RateLimits { tenant_key: Limit::new(100, 100), tenant: Limit::new(1, 4), ..RateLimits::default() };
    let s = server(backend, limits).await;
    tenants(&s).await;
    let acme1 = s.key("tenant", Some("acme")).await;
    let acme2 = s.key("tenant", Some("acme")).await;
    let globex = s.key("tenant", Some("globex")).await;

    for _ in 0..4 {
        let res = read(&s, &acme1, "acme").await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        assert_eq!(res.header("ratelimit-policy"), Some("\"key\";q=100;w=1, \"tenant\";q=4;w=4"));
    }
    let refused = read(&s, &acme1, "acme").await;
    assert_limited(&refused, "tenant");
    assert!(refused.body["detail"].as_str().unwrap().contains("tenant"), "{}", refused.body);
    // The other key of acme: its own bucket is full, its tenant's is empty.
    let refused = read(&s, &acme2, "acme").await;
    assert_limited(&refused, "tenant");
    assert!(refused.header("ratelimit").unwrap().starts_with("\"key\";r=99;"), "{:?}", refused.headers);
    // Another tenant's key is not.
    let res = read(&s, &globex, "globex").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(res.header("ratelimit").unwrap().contains("\"tenant\";r=3;"), "{:?}", res.headers);
    s.stop().await;
}

/// Roomy server-wide buckets, so that only the plans' and keys' own sizes refuse.
const ROOMY: RateLimits = RateLimits {
    admin: Limit::new(10_000, 20_000),
    operator: Limit::new(10_000, 20_000),
    viewer: Limit::new(100, 100),
    service: Limit::new(10_000, 20_000),
    tenant_key: Limit::new(100, 100),
    tenant: Limit::new(100, 100),
};

async fn put_plan(s: &TestServer, id: &str, rate_limit: Option<Value>) -> Res {
    let mut body = json!({"name": id, "isolation": "pool"});
    if let Some(r) = rate_limit {
        body["rate_limit"] = r;
    }
    s.call(Method::PUT, &format!("/v1/plans/{id}"), Some(body)).await
}

async fn patch_plan(s: &TestServer, id: &str, body: Value) -> Res {
    s.call(Method::PATCH, &format!("/v1/plans/{id}"), Some(body)).await
}

/// Creates a key with `body`'s members added; returns the answer.
async fn create_key(s: &TestServer, role: &str, tenant: Option<&str>, rate_limit: Option<Value>) -> Res {
    let mut body = json!({"name": format!("{role} key"), "role": role});
    if let Some(t) = tenant {
        body["tenant_id"] = json!(t);
    }
    if let Some(r) = rate_limit {
        body["rate_limit"] = r;
    }
    s.call(Method::POST, "/v1/api-keys", Some(body)).await
}

async fn a_plans_limit_sizes_its_tenants_buckets(backend: Backend) {
    let s = server(backend, ROOMY).await;
    let res = put_plan(&s, "tiny", Some(json!({"per_second": 1, "burst": 3}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["rate_limit"], json!({"per_second": 1, "burst": 3}));
    put_plan(&s, "roomy", None).await;
    s.create_tenant("acme", "tiny").await;
    s.create_tenant("globex", "roomy").await;
    let acme = s.key("tenant", Some("acme")).await;
    let acme2 = s.key("tenant", Some("acme")).await;
    let globex = s.key("tenant", Some("globex")).await;

    for remaining in [2, 1, 0] {
        let res = read(&s, &acme, "acme").await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        assert_eq!(res.header("ratelimit-policy"), Some("\"key\";q=100;w=1, \"plan:tiny\";q=3;w=3"));
        let state = res.header("ratelimit").unwrap();
        assert!(state.contains(&format!("\"plan:tiny\";r={remaining};t=")), "{state}");
    }
    // The plan's bucket is the tenant's: its other key is refused too.
    for key in [&acme, &acme2] {
        let refused = read(&s, key, "acme").await;
        assert_limited(&refused, "plan:tiny");
        let detail = refused.body["detail"].as_str().unwrap();
        assert!(detail.contains("tenant") && detail.contains("\"tiny\"") && detail.contains("burst 3"), "{detail}");
    }
    // A tenant on another plan has the server's size, and is not refused.
    for _ in 0..10 {
        let res = read(&s, &globex, "globex").await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        assert_eq!(res.header("ratelimit-policy"), Some("\"key\";q=100;w=1, \"tenant\";q=100;w=1"));
    }

    // A larger limit takes effect at once: a bucket of the new size, full.
    let res = patch_plan(&s, "tiny", json!({"rate_limit": {"per_second": 1, "burst": 6}})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    for _ in 0..6 {
        let res = read(&s, &acme, "acme").await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        assert_eq!(res.header("ratelimit-policy"), Some("\"key\";q=100;w=1, \"plan:tiny\";q=6;w=6"));
    }
    assert_limited(&read(&s, &acme, "acme").await, "plan:tiny");
    // Without a limit of its own the plan's tenants have the server's size again.
    let res = patch_plan(&s, "tiny", json!({"rate_limit": null})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(res.body.get("rate_limit").is_none(), "{}", res.body);
    let res = read(&s, &acme, "acme").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.header("ratelimit-policy"), Some("\"key\";q=100;w=1, \"tenant\";q=100;w=1"));
    s.stop().await;
}

async fn a_keys_own_limit_sizes_its_bucket(backend: Backend) {
    let s = server(backend, ROOMY).await;
    tenants(&s).await;
    let res = create_key(&s, "tenant", Some("acme"), Some(json!({"per_second": 1, "burst": 2}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["rate_limit"], json!({"per_second": 1, "burst": 2}));
    let (small_id, small) = (res.body["id"].as_str().unwrap().to_owned(), res.body["key"].as_str().unwrap().to_owned());
    let sibling = s.key("tenant", Some("acme")).await;

    for remaining in [1, 0] {
        let res = read(&s, &small, "acme").await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        assert_eq!(res.header("ratelimit-policy"), Some("\"key:own\";q=2;w=2, \"tenant\";q=100;w=1"));
        assert!(res.header("ratelimit").unwrap().starts_with(&format!("\"key:own\";r={remaining};")));
    }
    let refused = read(&s, &small, "acme").await;
    assert_limited(&refused, "key:own");
    assert!(refused.body["detail"].as_str().unwrap().contains("its own limit"), "{}", refused.body);
    // The sibling key of the same role and tenant has its role's size.
    for _ in 0..5 {
        let res = read(&s, &sibling, "acme").await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        assert!(res.header("ratelimit-policy").unwrap().starts_with("\"key\";q=100;"), "{:?}", res.headers);
    }

    // An admin may give a key more than its role's default (service: burst 20,000).
    let res = create_key(&s, "service", None, Some(json!({"per_second": 50_000, "burst": 100_000}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let big = res.body["key"].as_str().unwrap().to_owned();
    let res = read(&s, &big, "acme").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.header("ratelimit-policy"), Some("\"key:own\";q=100000;w=2"));

    // Listed with its key; keys without one list none.
    let list = s.get("/v1/api-keys?limit=100").await;
    let items = list.body["items"].as_array().unwrap();
    let listed = items.iter().find(|k| k["id"] == small_id.as_str()).expect("the key is listed");
    assert_eq!(listed["rate_limit"], json!({"per_second": 1, "burst": 2}));
    assert_eq!(items.iter().filter(|k| k.get("rate_limit").is_some()).count(), 2, "{}", list.body);
    s.stop().await;
}

fn assert_bad(res: &Res, what: &str) {
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{what}: {}", res.body);
    assert_eq!(res.header("content-type"), Some("application/problem+json"), "{what}");
}

async fn bad_limits_are_refused_and_change_nothing(backend: Backend) {
    let s = server(backend, ROOMY).await;
    let res = put_plan(&s, "pro", Some(json!({"per_second": 5, "burst": 10}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let plan = s.get("/v1/plans/pro").await.body;
    s.create_tenant("acme", "pro").await;
    // Provisioning writes audit entries of its own: let it finish first.
    s.wait_status("acme", "active").await;
    let keys = s.get("/v1/api-keys?limit=100").await.body["items"].as_array().unwrap().len();
    let audit = s.audit_count().await;
    let bad = [
        ("per_second 0", json!({"per_second": 0, "burst": 10})),
        ("burst 0", json!({"per_second": 5, "burst": 0})),
        ("burst below 1", json!({"per_second": 5, "burst": -1})),
        ("per_second over the bound", json!({"per_second": 1_000_001, "burst": 10})),
        ("burst over the bound", json!({"per_second": 5, "burst": 1_000_001})),
        ("beyond 32 bits", json!({"per_second": 10_000_000_000_u64, "burst": 10})),
        ("no burst", json!({"per_second": 5})),
        ("a stranger member", json!({"per_second": 5, "burst": 10, "per_minute": 3})),
        ("a number", json!(100)),
    ];
    for (what, value) in &bad {
        assert_bad(&put_plan(&s, "pro", Some(value.clone())).await, &format!("PUT {what}"));
        assert_bad(&patch_plan(&s, "pro", json!({"rate_limit": value})).await, &format!("PATCH {what}"));
        assert_bad(&create_key(&s, "tenant", Some("acme"), Some(value.clone())).await, &format!("key {what}"));
    }
    // The validation's own refusals name the member.
    let res = put_plan(&s, "pro", Some(json!({"per_second": 0, "burst": 10}))).await;
    assert_eq!(res.code(), "invalid-request");
    assert!(res.body["detail"].as_str().unwrap().contains("rate_limit.per_second"), "{}", res.body);
    let res = create_key(&s, "service", None, Some(json!({"per_second": 5, "burst": 2_000_000}))).await;
    assert!(res.body["detail"].as_str().unwrap().contains("rate_limit.burst"), "{}", res.body);
    // Nothing changed: the plan, its tenant's bucket, the keys, the audit log.
    assert_eq!(s.get("/v1/plans/pro").await.body, plan);
    assert_eq!(s.get("/v1/api-keys?limit=100").await.body["items"].as_array().unwrap().len(), keys);
    assert_eq!(s.audit_count().await, audit);
    let key = s.key("tenant", Some("acme")).await;
    let res = read(&s, &key, "acme").await;
    assert_eq!(res.header("ratelimit-policy"), Some("\"key\";q=100;w=1, \"plan:pro\";q=10;w=2"));
    s.stop().await;
}

async fn the_cli_sets_plan_and_key_limits(backend: Backend) {
    let s = server(backend, ROOMY).await;
    let url = s.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        let put = support::run_cli(
            &url,
            &["--output", "json", "plans", "put", "gold", "--name", "Gold", "--rate-limit", "5/10"],
        );
        let patch = support::run_cli(&url, &["--output", "json", "plans", "patch", "gold", "--rate-limit", "7/14"]);
        let key = support::run_cli(
            &url,
            &["--output", "json", "keys", "create", "--name", "ci", "--role", "service", "--rate-limit", "3/9"],
        );
        let bad = support::run_cli(&url, &["plans", "patch", "gold", "--rate-limit", "fast"]);
        let zero = support::run_cli(&url, &["plans", "patch", "gold", "--rate-limit", "0/5"]);
        let cleared = support::run_cli(&url, &["--output", "json", "plans", "patch", "gold", "--no-rate-limit"]);
        [put, patch, key, bad, zero, cleared]
    })
    .await
    .unwrap();
    let [put, patch, key, bad, zero, cleared] = out;
    let json_of = |o: &(i32, String, String)| -> Value {
        assert_eq!(o.0, 0, "{o:?}");
        serde_json::from_str(&o.1).unwrap()
    };
    assert_eq!(json_of(&put)["rate_limit"], json!({"per_second": 5, "burst": 10}));
    assert_eq!(json_of(&patch)["rate_limit"], json!({"per_second": 7, "burst": 14}));
    assert_eq!(json_of(&key)["rate_limit"], json!({"per_second": 3, "burst": 9}));
    assert_eq!(bad.0, 2, "a malformed flag is a usage error: {bad:?}");
    assert_ne!(zero.0, 0, "the server refuses 0: {zero:?}");
    assert!(zero.2.contains("rate_limit.per_second"), "{zero:?}");
    assert!(json_of(&cleared).get("rate_limit").is_none());
    s.stop().await;
}
