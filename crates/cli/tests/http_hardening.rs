//! Hostile and careless HTTP input (issue 11): idempotency keys only for callers who
//! may make the request, replays re-checked, stored responses sealed, keys of
//! disconnected requests usable again; unconditional writes that survive concurrency;
//! If-Match per RFC 9110; NUL characters; request ids; one code for 413; slow and
//! excess connections.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestServer, ADMIN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

both_backends!(
    strangers_write_no_idempotency_keys,
    replays_recheck_the_caller,
    stored_responses_are_sealed,
    a_disconnected_request_leaves_its_key_usable,
    an_expired_claim_is_taken_over,
    concurrent_unconditional_writes_all_land,
    nul_characters_are_400,
);

async fn idempotency_rows(s: &TestServer) -> Vec<String> {
    let pool = s.raw_db().await;
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT COALESCE(response, '') FROM idempotency_keys").fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows.into_iter().map(|r| r.0).collect()
}

async fn strangers_write_no_idempotency_keys(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    let body = json!({"name": "Acme", "plan": "basic"});
    for i in 0..20 {
        let key = format!("k-{i}");
        let res =
            s.call_with(None, Method::POST, "/v1/tenants", Some(body.clone()), &[("idempotency-key", &key)]).await;
        assert_eq!((res.status, res.code()), (StatusCode::UNAUTHORIZED, "unauthenticated"));
        let bogus = "tny_000000000000000000000000000000000000000000000000";
        let res = s
            .call_with(Some(bogus), Method::POST, "/v1/tenants", Some(body.clone()), &[("idempotency-key", &key)])
            .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }
    // Unauthenticated: 401 before the body is looked at, malformed or too large.
    let res =
        s.send_bytes(None, Method::POST, "/v1/tenants", b"{\"name\":".to_vec(), &[("idempotency-key", "m")]).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.status_of_large(None, "POST", "/v1/tenants", (1 << 20) + 100).await, 401);
    // Authenticated but not allowed: 403, and no key either.
    let viewer = s.key("viewer", None).await;
    let res = s
        .call_with(
            Some(&viewer),
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name": "x", "role": "admin"})),
            &[("idempotency-key", "v-1")],
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(idempotency_rows(&s).await.len(), 0, "no caller who may not make the request writes a key");
    s.stop().await;
}

async fn replays_recheck_the_caller(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin_key = s.key("admin", None).await;
    let body = json!({"name": "minted", "role": "admin"});
    let headers = [("idempotency-key", "mint-1")];
    let first = s.call_with(Some(&admin_key), Method::POST, "/v1/api-keys", Some(body.clone()), &headers).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let again = s.call_with(Some(&admin_key), Method::POST, "/v1/api-keys", Some(body.clone()), &headers).await;
    assert_eq!((again.status, again.header("idempotent-replayed")), (StatusCode::CREATED, Some("true")));
    assert_eq!(again.body, first.body, "a live caller gets the replay");

    // The caller's key is deleted: its replay is refused like any of its requests.
    let id = format!("key_{}", &admin_key[4..16]);
    assert_eq!(s.call(Method::DELETE, &format!("/v1/api-keys/{id}"), None).await.status, StatusCode::NO_CONTENT);
    let replay = s.call_with(Some(&admin_key), Method::POST, "/v1/api-keys", Some(body), &headers).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED, "{}", replay.body);
    assert!(replay.body.get("key").is_none());
    s.stop().await;
}

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        Value::Object(o) => o.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

async fn stored_responses_are_sealed(backend: Backend) {
    let s = TestServer::start(backend).await;
    let key = s
        .call_with(
            Some(ADMIN),
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name": "k", "role": "operator"})),
            &[("idempotency-key", "key-1")],
        )
        .await;
    assert_eq!(key.status, StatusCode::CREATED);
    let plaintext_key = key.body["key"].as_str().unwrap().to_owned();
    let sub_body = json!({"name": "s", "pattern": {"source": ["x"]}, "target": {"type": "webhook", "url": "http://127.0.0.1:9/x"}});
    let sub = s
        .call_with(
            Some(ADMIN),
            Method::POST,
            "/v1/subscriptions",
            Some(sub_body.clone()),
            &[("idempotency-key", "sub-1")],
        )
        .await;
    assert_eq!(sub.status, StatusCode::CREATED, "{}", sub.body);
    let mut secrets = vec![plaintext_key.clone()];
    strings(&sub.body, &mut secrets);
    secrets.retain(|v| v.starts_with("whsec_") || v.starts_with("tny_"));
    assert_eq!(secrets.len(), 2, "{}", sub.body);

    let rows = idempotency_rows(&s).await;
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert!(!row.is_empty());
        for secret in &secrets {
            assert!(!row.contains(secret.as_str()), "a stored response holds a secret in plaintext: {row}");
        }
        assert!(!row.contains("tny_") && !row.contains("whsec_"), "{row}");
    }
    // Replays still carry what the first response carried.
    let again = s
        .call_with(Some(ADMIN), Method::POST, "/v1/subscriptions", Some(sub_body), &[("idempotency-key", "sub-1")])
        .await;
    assert_eq!((again.status, &again.body), (StatusCode::CREATED, &sub.body));
    s.stop().await;
}

async fn a_disconnected_request_leaves_its_key_usable(backend: Backend) {
    let s = TestServer::start(backend).await;
    let res = s.call(Method::PUT, "/v1/queues/jobs", Some(json!({"visibility_timeout_s": 300}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    // A long poll with a key; its client goes away while it waits.
    let body = json!({"max": 1, "wait_s": 20}).to_string();
    let addr = s.url.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/queues/jobs/receive HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/json\r\nIdempotency-Key: poll-1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while idempotency_rows(&s).await.is_empty() {
        assert!(Instant::now() < deadline, "the long poll never claimed its key");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(conn);
    let sent = s.call(Method::POST, "/v1/queues/jobs/messages", Some(json!({"body": "hello"}))).await;
    assert_eq!(sent.status, StatusCode::CREATED);

    // The retry gets the outcome: 409 only while the first request still runs.
    let deadline = Instant::now() + Duration::from_secs(15);
    let retry = loop {
        let res = s
            .send_bytes(
                Some(ADMIN),
                Method::POST,
                "/v1/queues/jobs/receive",
                body.clone().into_bytes(),
                &[("idempotency-key", "poll-1")],
            )
            .await;
        if res.status != StatusCode::CONFLICT || Instant::now() > deadline {
            break res;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.body);
    assert_eq!(retry.body["messages"][0]["body"], "hello", "{}", retry.body);
    s.stop().await;
}

/// A key claimed by a request whose process died (its row in progress, its lease run
/// out) is taken over by a retry; one whose lease still runs is 409.
async fn an_expired_claim_is_taken_over(backend: Backend) {
    let s = TestServer::start(backend).await;
    let body = json!({"name": "Basic", "isolation": "pool"});
    let put = |key: &'static str| {
        let (s, body) = (&s, body.clone());
        async move {
            s.call_with(Some(ADMIN), Method::PUT, "/v1/plans/basic", Some(body), &[("idempotency-key", key)]).await
        }
    };
    assert_eq!(put("done").await.status, StatusCode::CREATED);
    // The same request under two more keys, claimed by nobody alive: one lease ran out,
    // one still runs.
    let pool = s.raw_db().await;
    let (scope, hash): (String, String) =
        sqlx::query_as("SELECT scope, request_hash FROM idempotency_keys WHERE key = 'done'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    for (key, lease) in [("crashed", now - 1_000), ("running", now + 60_000)] {
        sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, request_hash, created_at, lease_expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&scope)
        .bind(key)
        .bind(&hash)
        .bind(now - 120_000)
        .bind(lease)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
    let res = put("crashed").await;
    assert_eq!((res.status, res.header("idempotent-replayed")), (StatusCode::OK, None), "runs again: {}", res.body);
    let again = put("crashed").await;
    assert_eq!((again.status, again.header("idempotent-replayed")), (StatusCode::OK, Some("true")));
    let res = put("running").await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "idempotency-key-in-use"));
    s.stop().await;
}

async fn concurrent_unconditional_writes_all_land(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    let before = s.wait_status("acme", "active").await["version"].as_i64().unwrap();
    let patches = (0..64).map(|i| {
        let s = &s;
        async move { s.call(Method::PATCH, "/v1/tenants/acme", Some(json!({"name": format!("Name {i}")}))).await }
    });
    let results = futures::future::join_all(patches).await;
    let failed: Vec<String> =
        results.iter().filter(|r| r.status != StatusCode::OK).map(|r| format!("{} {}", r.status, r.body)).collect();
    assert!(failed.is_empty(), "{} of 64 PATCHes failed: {:?}", failed.len(), &failed[..failed.len().min(3)]);
    assert_eq!(s.get("/v1/tenants/acme").await.body["version"].as_i64().unwrap(), before + 64, "none lost");

    // Plans: concurrent PUTs of a new plan without If-Match all land too.
    let puts = (0..16).map(|i| {
        let s = &s;
        async move {
            s.call(Method::PUT, "/v1/plans/fresh", Some(json!({"name": format!("Fresh {i}"), "isolation": "pool"})))
                .await
        }
    });
    let results = futures::future::join_all(puts).await;
    assert!(
        results.iter().all(|r| r.status.is_success()),
        "{:?}",
        results.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(s.get("/v1/plans/fresh").await.body["version"], 16);

    // If-Match (RFC 9110 §13.1.1): well-formed but not current is 412; malformed is 400.
    let patch = |if_match: &'static str| {
        let s = &s;
        async move {
            s.call_with(
                Some(ADMIN),
                Method::PATCH,
                "/v1/tenants/acme",
                Some(json!({"name": "X"})),
                &[("if-match", if_match)],
            )
            .await
        }
    };
    for stale in ["\"stale-0\"", "\"999\"", "W/\"x\"", "\"a\", \"b\""] {
        let res = patch(stale).await;
        assert_eq!((res.status, res.code()), (StatusCode::PRECONDITION_FAILED, "precondition-failed"), "{stale}");
    }
    for malformed in ["stale-0", "\"unterminated", "\"a b\""] {
        let res = patch(malformed).await;
        assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-header"), "{malformed}");
    }
    assert_eq!(patch("*").await.status, StatusCode::OK);
    let res = s
        .call_with(
            Some(ADMIN),
            Method::PUT,
            "/v1/plans/never",
            Some(json!({"name": "n", "isolation": "pool"})),
            &[("if-match", "\"stale-0\"")],
        )
        .await;
    assert_eq!(res.status, StatusCode::PRECONDITION_FAILED, "{}", res.body);
    assert_eq!(s.get("/v1/plans/never").await.status, StatusCode::NOT_FOUND);
    s.stop().await;
}

async fn nul_characters_are_400(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    s.wait_status("acme", "active").await;
    let queue = s.call(Method::PUT, "/v1/queues/q", Some(json!({"visibility_timeout_s": 30}))).await;
    assert_eq!(queue.status, StatusCode::CREATED);
    let before = (s.get("/v1/tenants").await.body, s.audit_count().await);
    let cases = vec![
        s.call(Method::POST, "/v1/tenants", Some(json!({"name": "a\u{0}b", "plan": "basic"}))).await,
        s.call(Method::POST, "/v1/tenants", Some(json!({"id": "nul\u{0}", "name": "n", "plan": "basic"}))).await,
        s.call(Method::PATCH, "/v1/tenants/acme", Some(json!({"metadata": {"k\u{0}": "v"}}))).await,
        s.call(Method::PATCH, "/v1/tenants/acme", Some(json!({"name": "\u{0}"}))).await,
        s.call(Method::PUT, "/v1/plans/p%00", Some(json!({"name": "p", "isolation": "pool"}))).await,
        s.call(Method::POST, "/v1/queues/q/messages", Some(json!({"body": "a\u{0}"}))).await,
        s.call(Method::POST, "/v1/api-keys", Some(json!({"name": "k\u{0}", "role": "viewer"}))).await,
        s.get("/v1/tenants/acme%00").await,
        s.get("/v1/plans/basic%00x").await,
        s.get("/v1/tenants?cursor=%00").await,
        s.get("/v1/tenants?region=x%00").await,
        s.get("/v1/events?tenant_id=%00").await,
        s.get("/v1/queues/q%00").await,
        s.get("/v1/executions/exe_%00").await,
    ];
    for (i, res) in cases.iter().enumerate() {
        assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-request"), "case {i}: {}", res.body);
    }
    assert_eq!((s.get("/v1/tenants").await.body, s.audit_count().await), before, "nothing changed");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_bounded_and_visible() {
    let s = TestServer::start(Backend::Sqlite).await;
    let fits = "a".repeat(128);
    let res = s.call_with(Some(ADMIN), Method::GET, "/v1/plans", None, &[("x-request-id", &fits)]).await;
    assert_eq!(res.header("x-request-id"), Some(fits.as_str()));
    for unfit in ["a".repeat(129), "two words".to_owned(), "x".repeat(8192)] {
        let res = s.call_with(Some(ADMIN), Method::GET, "/v1/plans", None, &[("x-request-id", &unfit)]).await;
        let id = res.header("x-request-id").unwrap();
        assert!(id != unfit && id.len() == 36, "replaced by a generated id: {id}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_code_for_payload_too_large() {
    let s = TestServer::start(Backend::Sqlite).await;
    let big = {
        let mut b = b"{\"name\": \"".to_vec();
        b.extend(std::iter::repeat_n(b'a', (1 << 20) + 100));
        b.extend(b"\", \"plan\": \"basic\"}");
        b
    };
    let plain = s.send_bytes(Some(ADMIN), Method::POST, "/v1/tenants", big.clone(), &[]).await;
    let keyed =
        s.send_bytes(Some(ADMIN), Method::POST, "/v1/tenants", big.clone(), &[("idempotency-key", "big")]).await;
    let raw = s.send_bytes(Some(ADMIN), Method::POST, "/v1/executions/exe_x/stop", big, &[]).await;
    for res in [plain, keyed, raw] {
        assert_eq!((res.status, res.code()), (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large"), "{}", res.body);
        assert_eq!(res.header("content-type"), Some("application/problem+json"));
    }
    s.stop().await;
}

/// Opens a connection that sends half a request head and nothing more.
async fn slow_connection(addr: &str) -> tokio::net::TcpStream {
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_are_cut_off() {
    let s = TestServer::start_configured(None, |o| o.connections.header_read_timeout = Duration::from_secs(1)).await;
    let addr = s.url.trim_start_matches("http://").to_owned();
    let mut slow = Vec::new();
    for _ in 0..50 {
        slow.push(slow_connection(&addr).await);
    }
    // Served while they hang on.
    assert_eq!(reqwest::get(format!("{}/healthz", s.url)).await.unwrap().status(), StatusCode::OK);
    // Each is closed once the header read timeout has passed.
    let started = Instant::now();
    for c in &mut slow {
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "a connection with half a request head was still open after 10 s");
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_for_a_free_one() {
    let s = TestServer::start_configured(None, |o| {
        o.connections.max_connections = 4;
        o.connections.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    let addr = s.url.trim_start_matches("http://").to_owned();
    let mut slow = Vec::new();
    for _ in 0..4 {
        slow.push(slow_connection(&addr).await);
    }
    let client = reqwest::Client::new();
    let mut request = Box::pin(client.get(format!("{}/healthz", s.url)).send());
    let early = tokio::time::timeout(Duration::from_millis(500), &mut request).await;
    assert!(early.is_err(), "a fifth connection was served while four were open: the cap is 4");
    drop(slow.remove(0));
    let res = tokio::time::timeout(Duration::from_secs(10), request).await.expect("served once one closed").unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    drop(slow);
    s.stop().await;
}
