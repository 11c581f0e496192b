//! Releases on both backends: put, list and get; bundles streamed to the blob store and
//! back with their SHA-256 checked (a corrupted object is never served whole); the
//! bundle limit; new tenants on the default release; pins; and the per-tenant upgrade
//! through the upgrade hooks, with the rollback after a failed apply.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::{run_cli, Backend, TestServer, ADMIN};

both_backends!(
    releases_are_put_listed_and_read,
    a_bundle_round_trips_with_its_sha256,
    a_corrupted_bundle_is_never_served_whole,
    a_bundle_over_the_limit_is_413,
    new_tenants_start_on_the_default_release,
    an_upgrade_runs_the_hooks_and_moves_the_tenant,
    a_failed_apply_rolls_back_to_the_old_release,
    pinned_tenants_are_upgraded_only_by_force,
    a_second_upgrade_of_an_updating_tenant_is_409,
);

/// (event, body) of every hook call, in order.
type Calls = Arc<Mutex<Vec<(String, Value)>>>;

/// A hook receiver: answers 500 to the events in `failing`, 200 to the others, after
/// `delay`.
async fn receiver(failing: &'static [&'static str], delay: Duration) -> (String, Calls) {
    let calls: Calls = Arc::default();
    let c = calls.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<Value>| {
            let c = c.clone();
            async move {
                let event = body["event"].as_str().unwrap_or("").to_owned();
                c.lock().unwrap().push((event.clone(), body.0));
                tokio::time::sleep(delay).await;
                if failing.contains(&event.as_str()) {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

async fn put_release(s: &TestServer, version: &str, body: Value) -> support::Res {
    s.call(Method::PUT, &format!("/v1/releases/{version}"), Some(body)).await
}

async fn put_bundle(s: &TestServer, version: &str, bytes: Vec<u8>) -> support::Res {
    let path = format!("/v1/releases/{version}/bundle");
    s.send_bytes(Some(ADMIN), Method::PUT, &path, bytes, &[]).await
}

/// Deterministic, incompressible-looking bytes.
fn bytes_of(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// The raw response of a bundle download: status, headers and the body as far as it
/// came (`Err` when the connection was cut before the end).
async fn download(s: &TestServer, version: &str) -> (StatusCode, reqwest::header::HeaderMap, Result<Vec<u8>, String>) {
    let res = reqwest::Client::new()
        .get(format!("{}/v1/releases/{version}/bundle", s.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let body = res.bytes().await.map(|b| b.to_vec()).map_err(|e| format!("{e:?}"));
    (status, headers, body)
}

async fn events_of(s: &TestServer, detail_type: &str) -> Vec<Value> {
    let res = s.get(&format!("/v1/events?detail_type={detail_type}&limit=1000")).await;
    res.body["items"].as_array().unwrap().clone()
}

async fn releases_are_put_listed_and_read(backend: Backend) {
    let s = TestServer::start(backend).await;
    let res = put_release(&s, "1.0.0", json!({"description": "first"})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!((res.body["version"].clone(), res.body["default"].clone()), (json!("1.0.0"), json!(false)));
    let res = put_release(&s, "1.0.0", json!({"description": "first, again", "default": true})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["default"], json!(true));
    let res = put_release(&s, "2.0.0-rc.1+b5", json!({"default": true})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);

    // The default moved: one default at a time.
    let list = s.get("/v1/releases").await;
    let items = list.body["items"].as_array().unwrap();
    let shown: Vec<(&str, bool)> =
        items.iter().map(|r| (r["version"].as_str().unwrap(), r["default"].as_bool().unwrap())).collect();
    assert_eq!(shown, [("1.0.0", false), ("2.0.0-rc.1+b5", true)]);
    let one = s.get("/v1/releases/1.0.0").await;
    assert_eq!(one.body["description"], json!("first, again"));
    // A replace without `default` keeps the flag as it is.
    put_release(&s, "2.0.0-rc.1+b5", json!({"description": "rc"})).await;
    assert_eq!(s.get("/v1/releases/2.0.0-rc.1+b5").await.body["default"], json!(true));

    for bad in ["a%20b", "x%2Fy", &"9".repeat(65)] {
        let res = put_release(&s, bad, json!({})).await;
        assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-release"), "{bad}: {}", res.body);
    }
    let res = put_release(&s, "3.0.0", json!({"upgrade_workflow": "mine"})).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-release"), "{}", res.body);
    let res = put_release(&s, "3.0.0", json!({"upgrade_workflow": "tenancy.lifecycle.missing"})).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "unknown-state-machine"), "{}", res.body);
    assert_eq!(s.get("/v1/releases/3.0.0").await.status, StatusCode::NOT_FOUND, "a refused put writes nothing");

    // Events and audit entries committed with the writes.
    assert_eq!(events_of(&s, "ReleaseCreated").await.len(), 2);
    assert_eq!(events_of(&s, "ReleaseUpdated").await.len(), 2);
    let audited = s.get("/v1/audit?action=release.put").await.body;
    assert_eq!(audited["items"].as_array().unwrap().len(), 4);

    // The CLI.
    let (code, out, err) = run_cli(&s.url, &["releases", "put", "4.0.0", "--description", "cli", "--default"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("4.0.0"), "{out}");
    let (code, out, err) = run_cli(&s.url, &["--output", "json", "releases", "list"]);
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    let defaults: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["default"] == json!(true))
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    assert_eq!(defaults, ["4.0.0"]);
    let (code, out, _) = run_cli(&s.url, &["releases", "get", "1.0.0"]);
    assert_eq!(code, 0);
    assert!(out.contains("first, again"), "{out}");
}

async fn a_bundle_round_trips_with_its_sha256(backend: Backend) {
    let s = TestServer::start(backend).await;
    put_release(&s, "1.0.0", json!({})).await;
    let bytes = bytes_of(9 * 1024 * 1024 + 123, 7);
    let digest = sha256_hex(&bytes);
    let res = put_bundle(&s, "1.0.0", bytes.clone()).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let bundle = &res.body["bundle"];
    assert_eq!((bundle["sha256"].as_str().unwrap(), bundle["size"].as_u64().unwrap()), (digest.as_str(), 9437307));
    assert_eq!(s.get("/v1/releases/1.0.0").await.body["bundle"]["sha256"], json!(digest));

    let (status, headers, body) = download(&s, "1.0.0").await;
    assert_eq!(status, StatusCode::OK);
    let got = body.expect("the whole bundle");
    assert_eq!(got.len(), bytes.len());
    assert_eq!(sha256_hex(&got), digest);
    let b64 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes));
    assert_eq!(headers.get("repr-digest").unwrap().to_str().unwrap(), format!("sha-256=:{b64}:"));
    assert_eq!(events_of(&s, "ReleaseBundleUploaded").await.len(), 1);

    // A new bundle replaces the old one, whose object goes.
    let smaller = bytes_of(1000, 8);
    let res = put_bundle(&s, "1.0.0", smaller.clone()).await;
    assert_eq!(res.body["bundle"]["sha256"], json!(sha256_hex(&smaller)));
    let (_, _, body) = download(&s, "1.0.0").await;
    assert_eq!(body.unwrap(), smaller);
    let objects = std::fs::read_dir(s.dir.path().join("blobs/releases/1.0.0")).unwrap().count();
    assert_eq!(objects, 1, "the replaced bundle's object is deleted");

    // No bundle, no release.
    put_release(&s, "2.0.0", json!({})).await;
    assert_eq!(download(&s, "2.0.0").await.0, StatusCode::NOT_FOUND);
    let res = put_bundle(&s, "9.9.9", b"x".to_vec()).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);

    // The CLI uploads a file, streamed.
    let file = s.dir.path().join("bundle.tar");
    let cli_bytes = bytes_of(3 * 1024 * 1024, 9);
    std::fs::write(&file, &cli_bytes).unwrap();
    let (code, out, err) =
        run_cli(&s.url, &["--output", "json", "releases", "put", "3.0.0", "--bundle", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let put: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(put["bundle"]["sha256"], json!(sha256_hex(&cli_bytes)));
    assert_eq!(download(&s, "3.0.0").await.2.unwrap(), cli_bytes);
}

/// The one object of a release's bundle in the local blob store.
fn bundle_file(s: &TestServer, version: &str) -> std::path::PathBuf {
    let dir = s.dir.path().join(format!("blobs/releases/{version}"));
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.pop().unwrap()
}

async fn a_corrupted_bundle_is_never_served_whole(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bytes = bytes_of(3 * 1024 * 1024, 11);
    for v in ["1.0.0", "2.0.0"] {
        put_release(&s, v, json!({})).await;
        assert_eq!(put_bundle(&s, v, bytes.clone()).await.status, StatusCode::OK);
    }

    // Same size, one byte flipped: the stream is cut before its end.
    let path = bundle_file(&s, "1.0.0");
    let mut on_disk = std::fs::read(&path).unwrap();
    on_disk[1_500_000] ^= 0xff;
    std::fs::write(&path, &on_disk).unwrap();
    let (status, _, body) = download(&s, "1.0.0").await;
    assert_eq!(status, StatusCode::OK, "the head went out before the end was read");
    match body {
        Err(_) => {}
        Ok(got) => panic!("a corrupt bundle was served whole ({} of {} bytes)", got.len(), bytes.len()),
    }

    // Another size: 500 bundle-integrity before any byte.
    let path = bundle_file(&s, "2.0.0");
    let mut on_disk = std::fs::read(&path).unwrap();
    on_disk.extend_from_slice(b"tampered");
    std::fs::write(&path, &on_disk).unwrap();
    let res = s.get("/v1/releases/2.0.0/bundle").await;
    assert_eq!((res.status, res.code()), (StatusCode::INTERNAL_SERVER_ERROR, "bundle-integrity"), "{}", res.body);

    // Gone altogether: the same.
    std::fs::remove_file(&path).unwrap();
    let res = s.get("/v1/releases/2.0.0/bundle").await;
    assert_eq!((res.status, res.code()), (StatusCode::INTERNAL_SERVER_ERROR, "bundle-integrity"), "{}", res.body);
}

async fn a_bundle_over_the_limit_is_413(backend: Backend) {
    let url = support::database_url(backend).await;
    let s = TestServer::start_configured(url, |o| o.bundle_max_bytes = 2 * 1024 * 1024).await;
    put_release(&s, "1.0.0", json!({})).await;
    // Declared too large: refused before the body is read.
    let res = put_bundle(&s, "1.0.0", bytes_of(2 * 1024 * 1024 + 1, 1)).await;
    assert_eq!((res.status, res.code()), (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large"), "{}", res.body);
    // Streamed without a length: refused once past the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..5).map(|i| Ok(bytes_of(512 * 1024, i))).collect();
    let res = reqwest::Client::new()
        .put(format!("{}/v1/releases/1.0.0/bundle", s.url))
        .bearer_auth(ADMIN)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(s.get("/v1/releases/1.0.0").await.body.get("bundle").is_none(), "nothing was recorded");
    // At the limit: accepted (above the 1 MiB of JSON bodies).
    let res = put_bundle(&s, "1.0.0", bytes_of(2 * 1024 * 1024, 2)).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
}

async fn new_tenants_start_on_the_default_release(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("basic", "pool").await;
    s.create_tenant("early", "basic").await;
    assert_eq!(s.wait_status("early", "active").await["release"], Value::Null);
    put_release(&s, "1.0.0", json!({"default": true})).await;
    s.create_tenant("acme", "basic").await;
    assert_eq!(s.wait_status("acme", "active").await["release"], json!("1.0.0"));
    put_release(&s, "2.0.0", json!({"default": true})).await;
    s.create_tenant("globex", "basic").await;
    assert_eq!(s.wait_status("globex", "active").await["release"], json!("2.0.0"));

    let ids = |v: Value| -> Vec<String> {
        v["items"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(ids(s.get("/v1/tenants?release=1.0.0").await.body), ["acme"]);
    assert_eq!(ids(s.get("/v1/tenants?release=2.0.0").await.body), ["globex"]);
    let (code, out, err) = run_cli(&s.url, &["tenants", "list", "--release", "2.0.0"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("globex") && !out.contains("acme"), "{out}");
}

/// A plan, a tenant `id` on release `1.0.0`, release `2.0.0`, and a hook of the four
/// upgrade events.
async fn setup_upgrade(s: &TestServer, id: &str, hook_url: &str) {
    s.put_plan("basic", "pool").await;
    put_release(s, "1.0.0", json!({"default": true})).await;
    put_release(s, "2.0.0", json!({"description": "next"})).await;
    put_bundle(s, "2.0.0", b"config: v2".to_vec()).await;
    let events = ["upgrade_pre_check", "upgrade_apply", "upgrade_verify", "upgrade_rollback"];
    let hook = json!({"url": hook_url, "events": events, "max_attempts": 1});
    let res = s.call(Method::PUT, "/v1/hooks/product", Some(hook)).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    s.create_tenant(id, "basic").await;
    s.wait_status(id, "active").await;
}

async fn upgrade(s: &TestServer, id: &str, body: Value) -> support::Res {
    s.call(Method::POST, &format!("/v1/tenants/{id}/upgrade"), Some(body)).await
}

async fn an_upgrade_runs_the_hooks_and_moves_the_tenant(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (url, calls) = receiver(&[], Duration::ZERO).await;
    setup_upgrade(&s, "acme", &url).await;
    let res = upgrade(&s, "acme", json!({"version": "2.0.0"})).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    assert_eq!(res.body["status"], json!("updating"));
    let execution = res.body["execution_id"].as_str().unwrap().to_owned();
    let done = s.wait_execution(&execution, "SUCCEEDED").await;
    assert_eq!(done["state_machine"], json!("tenancy.tenant.upgrade"));
    let t = s.get("/v1/tenants/acme").await.body;
    assert_eq!((t["status"].clone(), t["release"].clone()), (json!("active"), json!("2.0.0")));

    let calls = calls.lock().unwrap().clone();
    let order: Vec<&str> = calls.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(order, ["upgrade_pre_check", "upgrade_apply", "upgrade_verify"]);
    let apply = &calls[1].1;
    assert_eq!(apply["tenant"]["id"], json!("acme"));
    assert_eq!(apply["upgrade"]["release"], json!("2.0.0"));
    assert_eq!(apply["upgrade"]["previous_release"], json!("1.0.0"));
    assert_eq!(apply["upgrade"]["bundle"]["sha256"], json!(sha256_hex(b"config: v2")));

    let types = s.event_types("acme").await;
    let upgraded = types.iter().position(|t| t == "TenantUpgraded").expect("TenantUpgraded");
    assert!(types.iter().position(|t| t == "TenantUpgradeStarted").unwrap() < upgraded, "{types:?}");
    let ev = events_of(&s, "TenantUpgraded").await;
    assert_eq!(ev[0]["detail"]["previous_release"], json!("1.0.0"));
    assert_eq!(ev[0]["detail"]["release"], json!("2.0.0"));
    // On the release already: nothing to do.
    let res = upgrade(&s, "acme", json!({"version": "2.0.0"})).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "invalid-transition"), "{}", res.body);
    let res = upgrade(&s, "acme", json!({"version": "7.7.7"})).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-release"), "{}", res.body);

    // The CLI waits for the end.
    s.create_tenant("globex", "basic").await;
    s.wait_status("globex", "active").await;
    let (code, out, err) =
        run_cli(&s.url, &["--output", "json", "tenants", "upgrade", "globex", "--version", "2.0.0", "--wait"]);
    assert_eq!(code, 0, "{err}");
    let got: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((got["status"].clone(), got["release"].clone()), (json!("active"), json!("2.0.0")));
}

async fn a_failed_apply_rolls_back_to_the_old_release(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (url, calls) = receiver(&["upgrade_apply"], Duration::ZERO).await;
    setup_upgrade(&s, "acme", &url).await;
    let res = upgrade(&s, "acme", json!({"version": "2.0.0"})).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    let execution = res.body["execution_id"].as_str().unwrap().to_owned();
    let failed = s.wait_execution(&execution, "FAILED").await;
    assert_eq!(failed["error"], json!("Tenancy.UpgradeFailed"));
    let t = s.get("/v1/tenants/acme").await.body;
    assert_eq!((t["status"].clone(), t["release"].clone()), (json!("active"), json!("1.0.0")));

    let order: Vec<String> = calls.lock().unwrap().iter().map(|(e, _)| e.clone()).collect();
    assert_eq!(order, ["upgrade_pre_check", "upgrade_apply", "upgrade_rollback"]);
    let ev = events_of(&s, "TenantUpgradeFailed").await;
    assert_eq!(ev.len(), 1);
    let d = &ev[0]["detail"];
    assert_eq!(
        (d["step"].clone(), d["target_release"].clone(), d["release"].clone()),
        (json!("apply"), json!("2.0.0"), json!("1.0.0"))
    );
    assert!(d["reason"].as_str().unwrap().contains("product"), "{d}");
    assert!(events_of(&s, "TenantUpgraded").await.is_empty());

    let (code, _, err) = run_cli(&s.url, &["tenants", "upgrade", "acme", "--version", "2.0.0", "--wait"]);
    assert_eq!(code, 1, "a rolled back upgrade fails the command");
    assert!(err.contains("rolled back"), "{err}");
}

async fn pinned_tenants_are_upgraded_only_by_force(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (url, _) = receiver(&[], Duration::ZERO).await;
    setup_upgrade(&s, "acme", &url).await;
    let res = s.call(Method::PUT, "/v1/tenants/acme/pin", Some(json!({"reason": "customer freeze"}))).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["pinned"]["reason"], json!("customer freeze"));
    let res = s.call(Method::PUT, "/v1/tenants/acme/pin", Some(json!({"reason": " "}))).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);

    let res = upgrade(&s, "acme", json!({"version": "2.0.0"})).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "tenant-pinned"), "{}", res.body);
    let t = s.get("/v1/tenants/acme").await.body;
    assert_eq!((t["status"].clone(), t["release"].clone()), (json!("active"), json!("1.0.0")), "nothing changed");

    let res = upgrade(&s, "acme", json!({"version": "2.0.0", "force": true})).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    s.wait_execution(res.body["execution_id"].as_str().unwrap(), "SUCCEEDED").await;
    let audit = s.get("/v1/audit?action=tenant.upgrade").await.body;
    assert_eq!(audit["items"][0]["detail"]["force"], json!(true));

    let (code, out, err) = run_cli(&s.url, &["tenants", "unpin", "acme"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("customer freeze"), "{out}");
    assert_eq!(s.get("/v1/tenants/acme").await.body["pinned"], Value::Null);
    let (code, out, err) = run_cli(&s.url, &["tenants", "pin", "acme", "--reason", "audit week"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("audit week"), "the table shows the reason: {out}");
    let types = s.event_types("acme").await;
    assert_eq!(types.iter().filter(|t| *t == "TenantPinned").count(), 2, "{types:?}");
    assert_eq!(types.iter().filter(|t| *t == "TenantUnpinned").count(), 1, "{types:?}");
}

async fn a_second_upgrade_of_an_updating_tenant_is_409(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (url, _) = receiver(&[], Duration::from_millis(1500)).await;
    setup_upgrade(&s, "acme", &url).await;
    let first = upgrade(&s, "acme", json!({"version": "2.0.0"})).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    let second = upgrade(&s, "acme", json!({"version": "2.0.0"})).await;
    assert_eq!((second.status, second.code()), (StatusCode::CONFLICT, "invalid-transition"), "{}", second.body);
    put_release(&s, "3.0.0", json!({})).await;
    let third = upgrade(&s, "acme", json!({"version": "3.0.0"})).await;
    assert_eq!((third.status, third.code()), (StatusCode::CONFLICT, "invalid-transition"), "{}", third.body);
    s.wait_execution(first.body["execution_id"].as_str().unwrap(), "SUCCEEDED").await;
    assert_eq!(s.get("/v1/tenants/acme").await.body["release"], json!("2.0.0"));
}
