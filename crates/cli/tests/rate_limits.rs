//! API rate limits (issue 14, item 6) on both backends, on servers with low limits: a
//! key over its burst is refused 429 `rate-limited` with `Retry-After` and the
//! RateLimit headers until `Retry-After` has passed, other keys going on; a tenant's
//! keys share its tenant's bucket, which other tenants do not feel.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use support::{Backend, Res, TestServer};
use tenancy_http::{Limit, RateLimits};

both_backends!(a_key_over_its_limit_waits_retry_after, a_tenants_keys_share_its_bucket);

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
