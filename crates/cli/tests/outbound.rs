//! The outbound policy (issue 11, finding 7): `http:invoke`, webhooks and provisioning
//! hooks refuse loopback, private and link-local destinations (cloud metadata
//! included), by address and by a name resolving to one, unless the operator allows
//! them; a refusal is reported in a fixed text, transport failures in a coarse one;
//! redirects are not followed; response bodies are capped while being read; only
//! descriptive response headers reach the history.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

both_backends!(internal_destinations_are_refused_by_default, allowed_destinations_are_reached_within_limits);

const REFUSED: &str = "destination not allowed by the outbound policy";

/// A loopback receiver: `/redirect` answers 302 to `/secret`, `/headers` answers with
/// a cookie and a secret header, anything else 200. Counts every request.
struct Receiver {
    port: u16,
    hits: Arc<AtomicUsize>,
    secret_hits: Arc<AtomicUsize>,
}

async fn receiver() -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let secret_hits = Arc::new(AtomicUsize::new(0));
    let (h, sh) = (hits.clone(), secret_hits.clone());
    let app = axum::Router::new()
        .route(
            "/redirect",
            axum::routing::any(move || async move {
                (StatusCode::FOUND, [("location", format!("http://127.0.0.1:{port}/secret"))])
            }),
        )
        .route(
            "/secret",
            axum::routing::any(move || {
                sh.fetch_add(1, Ordering::SeqCst);
                async { "the metadata" }
            }),
        )
        .route(
            "/headers",
            axum::routing::any(|| async {
                (
                    [
                        ("content-type", "application/json"),
                        ("set-cookie", "session=s3cr3t"),
                        ("x-internal-token", "t0k3n"),
                    ],
                    r#"{"ok": true}"#,
                )
            }),
        )
        .fallback(|| async { StatusCode::OK });
    let app = app.layer(axum::middleware::from_fn(move |req, next: axum::middleware::Next| {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            next.run(req).await
        }
    }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { port, hits, secret_hits }
}

/// A raw HTTP server answering one request with `size` bytes, chunked (no
/// Content-Length). Returns its port, the bytes it managed to write and whether it is
/// done writing (all of it, or the client went away).
async fn big_body_server(size: usize) -> (u16, Arc<AtomicUsize>, Arc<AtomicBool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let written = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (w, d) = (written.clone(), done.clone());
    tokio::spawn(async move {
        if let Ok((mut sock, _)) = listener.accept().await {
            let w = w.clone();
            async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                let mut sent = 0;
                while sent < size {
                    let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                    if sock.write_all(&frame).await.is_err() {
                        return;
                    }
                    sent += chunk.len();
                    w.fetch_add(chunk.len(), Ordering::SeqCst);
                }
                let _ = sock.write_all(b"0\r\n\r\n").await;
            }
            .await;
        }
        d.store(true, Ordering::SeqCst);
    });
    (port, written, done)
}

async fn put_machine(s: &TestServer, name: &str, definition: Value) {
    let res = s.call(Method::PUT, &format!("/v1/state-machines/{name}"), Some(json!({"definition": definition}))).await;
    assert!(res.status.is_success(), "put state machine {name}: {} {}", res.status, res.body);
}

/// `invoke`: one http:invoke of `$.url`, its result in the output.
async fn put_invoke(s: &TestServer) {
    put_machine(
        s,
        "invoke",
        json!({"StartAt": "Call", "States": {"Call": {"Type": "Task", "Resource": "arn:aws:states:::http:invoke",
            "Parameters": {"ApiEndpoint.$": "$.url", "Method": "GET"}, "End": true}}}),
    )
    .await;
}

/// Runs `invoke` on `url` until it stops; the execution.
async fn invoke(s: &TestServer, url: &str) -> Value {
    let res =
        s.call(Method::POST, "/v1/executions", Some(json!({"state_machine": "invoke", "input": {"url": url}}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let id = res.body["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let e = s.get(&format!("/v1/executions/{id}")).await.body;
        if e["status"] != "RUNNING" {
            return e;
        }
        assert!(Instant::now() < deadline, "execution on {url} never stopped: {e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Subscribes a webhook to `TenantCreated` with one attempt; its id.
async fn subscribe(s: &TestServer, name: &str, url: &str) -> String {
    let body = json!({"name": name, "pattern": {"detail-type": ["TenantCreated"]},
                      "target": {"type": "webhook", "url": url, "max_attempts": 1}});
    let res = s.call(Method::POST, "/v1/subscriptions", Some(body)).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    res.body["id"].as_str().unwrap().to_owned()
}

/// Waits until the subscription's delivery is no longer pending; the delivery.
async fn delivery(s: &TestServer, sub: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let items = s.get(&format!("/v1/subscriptions/{sub}/deliveries")).await.body["items"].clone();
        if let Some(d) = items.as_array().and_then(|a| a.first()) {
            if d["status"] != "pending" {
                return d.clone();
            }
        }
        assert!(Instant::now() < deadline, "no finished delivery of {sub}: {items}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn provisioning_failure(s: &TestServer, tenant: &str) -> Value {
    s.wait_status(tenant, "failed").await;
    let events = s.get(&format!("/v1/events?tenant_id={tenant}&detail_type=TenantProvisioningFailed")).await.body;
    events["items"][0]["detail"]["error"].clone()
}

async fn internal_destinations_are_refused_by_default(backend: Backend) {
    let db = support::database_url(backend).await;
    // The policy as shipped: nothing allowed beyond public addresses.
    let s = TestServer::start_configured(db, |o| o.outbound_allow.clear()).await;
    let r = receiver().await;
    let port = r.port;

    put_invoke(&s).await;
    for url in [
        format!("http://127.0.0.1:{port}/x"),
        format!("http://localhost:{port}/x"),
        format!("http://[::ffff:127.0.0.1]:{port}/x"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
    ] {
        let e = invoke(&s, &url).await;
        assert_eq!(e["status"], "FAILED", "{url}: {e}");
        assert_eq!(e["error"], "Tenancy.DestinationNotAllowed", "{url}: {e}");
        assert_eq!(e["cause"], REFUSED, "{url}: {e}");
    }

    let by_address = subscribe(&s, "by-address", &format!("http://127.0.0.1:{port}/hook")).await;
    let by_name = subscribe(&s, "by-name", &format!("http://localhost:{port}/hook")).await;
    let metadata = subscribe(&s, "metadata", "http://169.254.169.254/latest/meta-data/").await;
    let hook = json!({"url": format!("http://localhost:{port}/hook"), "events": ["provision"], "max_attempts": 1});
    assert_eq!(s.call(Method::PUT, "/v1/hooks/crm", Some(hook)).await.status, StatusCode::CREATED);
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    let error = provisioning_failure(&s, "acme").await;
    assert_eq!(error["Error"], "Tenancy.HookFailed", "{error}");
    assert_eq!(error["Cause"], format!("hook \"crm\" failed: {REFUSED}"), "{error}");
    for sub in [&by_address, &by_name, &metadata] {
        let d = delivery(&s, sub).await;
        assert_eq!(d["status"], "dead", "{d}");
        assert_eq!(d["last_error"], REFUSED, "{d}");
    }
    assert_eq!(r.hits.load(Ordering::SeqCst), 0, "nothing reached the loopback receiver");
    s.stop().await;
}

async fn allowed_destinations_are_reached_within_limits(backend: Backend) {
    let db = support::database_url(backend).await;
    let s = TestServer::start_configured(db, |o| o.outbound_allow = vec!["127.0.0.0/8".into(), "::1".into()]).await;
    let r = receiver().await;
    let port = r.port;

    // Allowed by address and by a name resolving to an allowed address.
    put_invoke(&s).await;
    for url in [format!("http://127.0.0.1:{port}/x"), format!("http://localhost:{port}/x")] {
        let e = invoke(&s, &url).await;
        assert_eq!(e["status"], "SUCCEEDED", "{url}: {e}");
    }
    // The metadata address stays refused: only loopback was allowed.
    let e = invoke(&s, "http://169.254.169.254/latest/meta-data/").await;
    assert_eq!(e["error"], "Tenancy.DestinationNotAllowed", "{e}");

    // Redirects are not followed: a 3xx is the answer.
    let e = invoke(&s, &format!("http://127.0.0.1:{port}/redirect")).await;
    assert_eq!(e["error"], "States.Http.StatusCode.302", "{e}");
    assert_eq!(r.secret_hits.load(Ordering::SeqCst), 0, "the redirect was not followed");

    // Only descriptive response headers are kept.
    let e = invoke(&s, &format!("http://127.0.0.1:{port}/headers")).await;
    assert_eq!(e["status"], "SUCCEEDED", "{e}");
    let headers = e["output"]["Headers"].as_object().unwrap();
    assert_eq!(headers["content-type"], "application/json", "{e}");
    assert!(!headers.contains_key("set-cookie") && !headers.contains_key("x-internal-token"), "{e}");
    assert_eq!(e["output"]["ResponseBody"], json!({"ok": true}));

    // A 32 MB body is cut at 256 KiB: the client stops reading (what the server could
    // write is bounded by the sockets' buffers, a few MB).
    let (big, written, done) = big_body_server(32 << 20).await;
    let e = invoke(&s, &format!("http://127.0.0.1:{big}/big")).await;
    assert_eq!(e["status"], "FAILED", "{e}");
    assert_eq!(e["error"], "States.DataLimitExceeded", "{e}");
    assert!(e["cause"].as_str().unwrap().contains("262144"), "{e}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the client neither read the body nor closed the connection");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let written = written.load(Ordering::SeqCst);
    assert!(written < 16 << 20, "the client stopped reading: {written} bytes of 32 MB written");

    // Webhooks and hooks reach allowed names; a closed port is a coarse failure.
    let delivered = subscribe(&s, "local", &format!("http://localhost:{port}/hook")).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let refused = subscribe(&s, "closed", &format!("http://127.0.0.1:{closed}/hook")).await;
    let hook = json!({"url": format!("http://localhost:{port}/hook"), "events": ["provision"], "max_attempts": 1});
    assert_eq!(s.call(Method::PUT, "/v1/hooks/crm", Some(hook)).await.status, StatusCode::CREATED);
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    s.wait_status("acme", "active").await;
    assert_eq!(delivery(&s, &delivered).await["status"], "delivered");
    let d = delivery(&s, &refused).await;
    assert_eq!(d["last_error"], "connection failed", "no network detail: {d}");
    s.stop().await;
}

/// A bad allow-list entry stops `tenancy serve` with a clear message, whether it comes
/// from the flag, the environment or the config file.
#[test]
fn a_bad_allow_list_entry_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tenancy.toml");
    std::fs::write(&config, "outbound_allow = [\"127.0.0.0/8\", \"10.0.0.0/33\"]\n").unwrap();
    let serve = || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tenancy"));
        c.args(["serve", "--listen", "127.0.0.1:0"])
            .env("TENANCY_DATA_DIR", dir.path())
            .env_remove("TENANCY_DATABASE_URL")
            .env_remove("TENANCY_OUTBOUND_ALLOW");
        c
    };
    let runs = [
        serve().args(["--outbound-allow", "127.0.0.0/8,http://x"]).output().unwrap(),
        serve().env("TENANCY_OUTBOUND_ALLOW", "::1,not a host").output().unwrap(),
        serve().arg("--config").arg(&config).output().unwrap(),
    ];
    for out in runs {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains("invalid outbound allow-list entry"), "{err}");
    }
}
