//! Secret rotation end to end (docs/secrets.md, "Rotation"): the stages across puts
//! and rotations, every generator, one rotation at a time (409), a failing target that
//! leaves current untouched, a queue worker answering with task tokens, values absent
//! from executions, events and audit, schedules (once across two replicas), the CLI.

mod support;

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestServer};

both_backends!(
    rotations_move_the_stages,
    every_generator_makes_its_kind_of_value,
    a_second_rotation_while_one_runs_is_409,
    a_failing_hook_leaves_current_untouched,
    a_queue_worker_rotates_with_task_tokens,
    values_never_reach_the_execution_history,
    rotation_specs_are_checked,
    a_schedule_rotates_the_secret,
    the_cli_rotates,
    every_step_run_twice_changes_things_once,
    a_failure_at_each_step_leaves_current_untouched,
);

const P: &str = "/v1/tenants/acme/secrets/api-key";

async fn server(backend: Backend) -> TestServer {
    server_on(support::database_url(backend).await).await
}

async fn server_on(url: Option<String>) -> TestServer {
    let s = TestServer::start_configured(url, |o| {
        o.master_key = Some("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=".to_owned().into());
        o.rotation_min_interval = Some(Duration::from_secs(1));
        o.rotation_schedule_interval = Duration::from_millis(100);
    })
    .await;
    s
}

async fn with_tenant(s: &TestServer) {
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    s.wait_status("acme", "active").await;
}

async fn put(s: &TestServer, path: &str, body: Value) -> support::Res {
    let res = s.call(Method::PUT, path, Some(body)).await;
    assert!(res.status.is_success(), "{}", res.body);
    res
}

async fn value(s: &TestServer, path: &str, query: &str) -> (String, i64) {
    let res = s.get(&format!("{path}{query}")).await;
    assert_eq!(res.status, StatusCode::OK, "{query}: {}", res.body);
    (res.body["value"].as_str().unwrap().to_owned(), res.body["version"].as_i64().unwrap())
}

/// Starts a rotation: its execution id.
async fn rotate(s: &TestServer, path: &str) -> String {
    let res = s.call(Method::POST, &format!("{path}/rotate"), None).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    assert_eq!(res.body["status"], "running");
    res.body["execution_id"].as_str().unwrap().to_owned()
}

/// The secret's metadata from its scope's list.
async fn meta(s: &TestServer, list: &str, name: &str) -> Value {
    let res = s.get(&format!("{list}?limit=1000")).await;
    res.body["items"].as_array().unwrap().iter().find(|i| i["name"] == name).cloned().unwrap()
}

fn stages(meta: &Value) -> Vec<(i64, Value)> {
    meta["versions"].as_array().unwrap().iter().map(|v| (v["version"].as_i64().unwrap(), v["stages"].clone())).collect()
}

async fn events_of(s: &TestServer, kind: &str) -> Vec<Value> {
    let res = s.get("/v1/events?limit=1000").await;
    res.body["items"].as_array().unwrap().iter().filter(|e| e["detail-type"] == kind).cloned().collect()
}

async fn rotations_move_the_stages(backend: Backend) {
    let s = server(backend).await;
    with_tenant(&s).await;
    let res = put(&s, P, json!({"generate": {"type": "random_string", "length": 24}, "rotation": {}})).await;
    assert_eq!(res.body["generator"], json!({"type": "random_string", "length": 24, "charset": null}));
    let (v1, _) = value(&s, P, "").await;

    let id = rotate(&s, P).await;
    s.wait_execution(&id, "SUCCEEDED").await;
    let (v2, n) = value(&s, P, "").await;
    assert_eq!(n, 2);
    assert_ne!(v1, v2);
    assert_eq!(v2.len(), 24);
    assert_eq!(value(&s, P, "?stage=previous").await, (v1.clone(), 1));
    assert_eq!(s.get(&format!("{P}?stage=pending")).await.status, StatusCode::NOT_FOUND, "pending was moved");
    let m = meta(&s, "/v1/tenants/acme/secrets", "api-key").await;
    assert_eq!(stages(&m), [(2, json!(["current"])), (1, json!(["previous"]))]);
    assert_eq!(m["last_rotation"]["status"], "succeeded");
    assert_eq!(m["last_rotation"]["execution_id"], json!(id));
    assert_eq!(m["last_rotation"]["version"], 2);

    // A put after a rotation, then another rotation: each moves current -> previous.
    put(&s, P, json!({"value": "manual-distinctive-value"})).await;
    let id = rotate(&s, P).await;
    s.wait_execution(&id, "SUCCEEDED").await;
    let m = meta(&s, "/v1/tenants/acme/secrets", "api-key").await;
    assert_eq!(stages(&m), [(4, json!(["current"])), (3, json!(["previous"])), (2, json!([])), (1, json!([]))]);
    assert_eq!(value(&s, P, "?stage=previous").await.0, "manual-distinctive-value");
    assert_eq!(value(&s, P, "").await.0.len(), 24, "the generator of the first put is kept");

    // Events in the tenant's stream, without values; the rotation is audited.
    let rotated = events_of(&s, "SecretRotated").await;
    assert_eq!(rotated.len(), 2, "{rotated:?}");
    assert_eq!(rotated[0]["tenant_id"], "acme");
    let d = &rotated.iter().find(|e| e["detail"]["version"] == 4).unwrap()["detail"];
    assert_eq!((d["name"].clone(), d["previous_version"].clone()), (json!("api-key"), json!(3)));
    let audit = s.get("/v1/audit?action=secret.rotate&limit=100").await;
    assert_eq!(audit.body["items"].as_array().unwrap().len(), 2, "{}", audit.body);
    assert_eq!(audit.body["items"][0]["target"], "tenant/acme/secret/api-key");

    // A tenant key rotates its own secrets, but sets no platform target.
    let own = s.key("tenant", Some("acme")).await;
    let res = s.call_with(Some(&own), Method::POST, &format!("{P}/rotate"), None, &[]).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    s.wait_execution(res.body["execution_id"].as_str().unwrap(), "SUCCEEDED").await;
    let body = json!({"generate": {"type": "hmac_key"}, "rotation": {"every": "30d", "target": {"type": "queue", "queue": "q"}}});
    let res = s.call_with(Some(&own), Method::PUT, P, Some(body), &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    let body = json!({"rotation": {"every": "30d"}, "value": "tenant-typed"});
    assert_eq!(s.call_with(Some(&own), Method::PUT, P, Some(body), &[]).await.status, StatusCode::OK);

    // A platform secret rotates the same way; a secret without a generator does not.
    put(&s, "/v1/secrets/platform-key", json!({"generate": {"type": "hmac_key"}})).await;
    let id = rotate(&s, "/v1/secrets/platform-key").await;
    let done = s.wait_execution(&id, "SUCCEEDED").await;
    assert_eq!(done["tenant_id"], Value::Null);
    assert_eq!(value(&s, "/v1/secrets/platform-key", "").await.1, 2);
    put(&s, "/v1/secrets/typed", json!({"value": "typed-by-hand"})).await;
    let res = s.call(Method::POST, "/v1/secrets/typed/rotate", None).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-rotation"), "{}", res.body);
    assert_eq!(s.call(Method::POST, "/v1/secrets/nothing/rotate", None).await.status, StatusCode::NOT_FOUND);
    s.stop().await;
}

async fn every_generator_makes_its_kind_of_value(backend: Backend) {
    let s = server(backend).await;
    let cases = [
        ("s", json!({"type": "random_string", "length": 40, "charset": "xyz"})),
        ("b", json!({"type": "random_bytes", "length": 30})),
        ("h", json!({"type": "hmac_key"})),
        ("e", json!({"type": "ed25519"})),
        ("pg", json!({"type": "postgres_password"})),
    ];
    for (name, generate) in cases {
        let path = format!("/v1/secrets/{name}");
        put(&s, &path, json!({"generate": generate})).await;
        let (first, _) = value(&s, &path, "").await;
        let id = rotate(&s, &path).await;
        s.wait_execution(&id, "SUCCEEDED").await;
        let (second, version) = value(&s, &path, "").await;
        assert_eq!(version, 2);
        assert_ne!(first, second, "{name}: a rotation makes a new value");
        for v in [&first, &second] {
            match name {
                "s" => assert!(v.len() == 40 && v.chars().all(|c| "xyz".contains(c)), "{v}"),
                "b" => assert_eq!(v.len(), 40, "30 bytes in base64: {v}"),
                "h" => assert_eq!(v.len(), 44, "32 bytes in base64: {v}"),
                "e" => {
                    let pair: Value = serde_json::from_str(v).unwrap();
                    let private = pair["private_key"].as_str().unwrap();
                    let public = pair["public_key"].as_str().unwrap();
                    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{private}");
                    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{public}");
                    // 44 bytes of SubjectPublicKeyInfo: 60 base64 characters on one line.
                    assert_eq!(public.lines().nth(1).unwrap().len(), 60, "{public}");
                }
                _ => assert!(v.len() == 32 && v.chars().all(|c| c.is_ascii_alphanumeric()), "{v}"),
            }
        }
    }
    s.stop().await;
}

/// A worker queue and a secret rotating through it; returns the service key.
async fn queue_secret(s: &TestServer, path: &str) -> String {
    let res = s.call(Method::PUT, "/v1/queues/rotations", Some(json!({"visibility_timeout_s": 60}))).await;
    assert!(res.status.is_success(), "{}", res.body);
    put(
        s,
        path,
        json!({"generate": {"type": "random_string", "length": 16},
               "rotation": {"target": {"type": "queue", "queue": "rotations"}}}),
    )
    .await;
    s.key("service", None).await
}

async fn receive(s: &TestServer, key: &str) -> Value {
    let res = s
        .call_with(Some(key), Method::POST, "/v1/queues/rotations/receive", Some(json!({"max": 1, "wait_s": 20})), &[])
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let messages = res.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{}", res.body);
    messages[0].clone()
}

async fn a_second_rotation_while_one_runs_is_409(backend: Backend) {
    let s = server(backend).await;
    with_tenant(&s).await;
    queue_secret(&s, P).await;
    // Many at once: exactly one starts.
    let path = format!("{P}/rotate");
    let starts = (0..8).map(|_| s.call(Method::POST, &path, None));
    let answers = join_all(starts).await;
    let started: Vec<_> = answers.iter().filter(|r| r.status == StatusCode::ACCEPTED).collect();
    assert_eq!(started.len(), 1, "{:?}", answers.iter().map(|r| r.body.clone()).collect::<Vec<_>>());
    for r in answers.iter().filter(|r| r.status != StatusCode::ACCEPTED) {
        assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "rotation-in-progress"), "{}", r.body);
    }
    let id = started[0].body["execution_id"].as_str().unwrap().to_owned();
    // And one more while it waits for its worker.
    let res = s.call(Method::POST, &format!("{P}/rotate"), None).await;
    assert_eq!(res.code(), "rotation-in-progress");
    assert!(res.body["detail"].as_str().unwrap_or_default().contains(&id), "{}", res.body);
    assert_eq!(meta(&s, "/v1/tenants/acme/secrets", "api-key").await["last_rotation"]["status"], "running");

    // A rotation stopped through the API does not block the secret for ever.
    let res = s.call(Method::POST, &format!("/v1/executions/{id}/stop"), Some(json!({}))).await;
    assert!(res.status.is_success(), "{}", res.body);
    let again = rotate(&s, P).await;
    assert_ne!(again, id);
    s.stop().await;
}

/// A hook receiver whose answer can be switched; records every body.
async fn hook(status: Arc<AtomicU16>) -> (String, Arc<Mutex<Vec<Value>>>) {
    let calls: Arc<Mutex<Vec<Value>>> = Arc::default();
    let c = calls.clone();
    let app = axum::Router::new().route(
        "/rotate",
        axum::routing::post(move |body: axum::Json<Value>| {
            let (c, status) = (c.clone(), status.clone());
            async move {
                c.lock().unwrap().push(body.0);
                axum::http::StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/rotate", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

async fn a_failing_hook_leaves_current_untouched(backend: Backend) {
    let s = server(backend).await;
    with_tenant(&s).await;
    let status = Arc::new(AtomicU16::new(500));
    let (url, calls) = hook(status.clone()).await;
    let spec = json!({"url": url, "events": ["secret_rotation"], "max_attempts": 1});
    assert_eq!(s.call(Method::PUT, "/v1/hooks/vault", Some(spec)).await.status, StatusCode::CREATED);
    put(
        &s,
        P,
        json!({"generate": {"type": "random_string", "length": 20},
               "rotation": {"target": {"type": "hook", "hook": "vault"}}}),
    )
    .await;
    let (before, _) = value(&s, P, "").await;

    let id = rotate(&s, P).await;
    let failed = s.wait_execution(&id, "FAILED").await;
    assert_eq!(failed["error"], "Tenancy.RotationTargetFailed", "{failed}");
    assert!(failed["cause"].as_str().unwrap().contains("HTTP 500"), "{failed}");
    assert_eq!(value(&s, P, "").await, (before.clone(), 1), "current untouched");
    assert_eq!(s.get(&format!("{P}?stage=pending")).await.status, StatusCode::NOT_FOUND, "pending dropped");
    let m = meta(&s, "/v1/tenants/acme/secrets", "api-key").await;
    assert_eq!(m["last_rotation"]["status"], "failed");
    assert_eq!(m["last_rotation"]["execution_id"], json!(id));
    assert!(m["last_rotation"]["error"].as_str().unwrap().contains("set of version 2 failed"), "{m}");
    let failures = events_of(&s, "SecretRotationFailed").await;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["tenant_id"], "acme");
    assert_eq!(failures[0]["detail"]["name"], "api-key");
    assert!(failures[0]["detail"]["reason"].as_str().unwrap().contains("HTTP 500"));
    assert!(events_of(&s, "SecretRotated").await.is_empty());
    // The hook was asked to set the pending value; it never reached a record.
    let set = calls.lock().unwrap()[0].clone();
    assert_eq!(
        (set["action"].clone(), set["secret"].clone(), set["version"].clone()),
        (json!("set"), json!("api-key"), json!(2))
    );
    let pending_value = set["value"].as_str().unwrap().to_owned();
    assert_eq!(pending_value.len(), 20);
    let records = format!(
        "{}{}{}",
        s.get("/v1/events?limit=1000").await.body,
        s.get("/v1/audit?limit=1000").await.body,
        s.get(&format!("/v1/executions/{id}/history?limit=1000")).await.body
    );
    assert!(!records.contains(&pending_value) && !records.contains(&before), "a value in a record: {records}");

    // Fixed, the next rotation sets, tests and finishes.
    status.store(200, Ordering::SeqCst);
    calls.lock().unwrap().clear();
    let id = rotate(&s, P).await;
    s.wait_execution(&id, "SUCCEEDED").await;
    let (now, version) = value(&s, P, "").await;
    let calls = calls.lock().unwrap().clone();
    let actions: Vec<_> = calls.iter().map(|c| c["action"].as_str().unwrap().to_owned()).collect();
    assert_eq!(actions, ["set", "test"]);
    assert_eq!(calls[0]["value"], json!(now), "the hook got the value that became current");
    assert_eq!(calls[0]["version"], json!(version));
    assert_eq!(value(&s, P, "?stage=previous").await.0, before);
    s.stop().await;
}

async fn a_queue_worker_rotates_with_task_tokens(backend: Backend) {
    let s = server(backend).await;
    with_tenant(&s).await;
    let worker = queue_secret(&s, P).await;
    let (before, _) = value(&s, P, "").await;
    let id = rotate(&s, P).await;
    let mut pending_value = String::new();
    for action in ["set", "test"] {
        let m = receive(&s, &worker).await;
        let body = &m["body"];
        assert_eq!((body["action"].as_str(), body["secret"].as_str()), (Some(action), Some("api-key")));
        assert_eq!(body["tenant_id"], "acme");
        assert_eq!(body["version"], 2);
        assert!(body.get("value").is_none(), "no value in a message: {body}");
        // The worker reads the pending value with its own key.
        let res = s.call_with(Some(&worker), Method::GET, &format!("{P}?stage=pending"), None, &[]).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        assert_eq!(res.body["version"], 2);
        pending_value = res.body["value"].as_str().unwrap().to_owned();
        assert_eq!(value(&s, P, "").await.0, before, "current stays until finish");
        let token = body["task_token"].as_str().unwrap();
        let res = s
            .call_with(
                Some(&worker),
                Method::POST,
                &format!("/v1/task-tokens/{token}/success"),
                Some(json!({"output": {}})),
                &[],
            )
            .await;
        assert!(res.status.is_success(), "{}", res.body);
        let path = format!("/v1/queues/rotations/messages/{}", m["receipt"].as_str().unwrap());
        s.call_with(Some(&worker), Method::DELETE, &path, None, &[]).await;
    }
    s.wait_execution(&id, "SUCCEEDED").await;
    assert_eq!(value(&s, P, "").await, (pending_value, 2));
    assert_eq!(value(&s, P, "?stage=previous").await, (before, 1));

    // A worker that reports a failure fails the rotation; current stays.
    let id = rotate(&s, P).await;
    let m = receive(&s, &worker).await;
    let token = m["body"]["task_token"].as_str().unwrap();
    let res = s
        .call_with(
            Some(&worker),
            Method::POST,
            &format!("/v1/task-tokens/{token}/failure"),
            Some(json!({"error": "Vault.Refused", "cause": "the vault is sealed"})),
            &[],
        )
        .await;
    assert!(res.status.is_success(), "{}", res.body);
    let failed = s.wait_execution(&id, "FAILED").await;
    assert_eq!(failed["error"], "Vault.Refused");
    let m = meta(&s, "/v1/tenants/acme/secrets", "api-key").await;
    assert_eq!(m["last_rotation"]["error"], "Vault.Refused: the vault is sealed");
    assert_eq!(m["current_version"], 2);
    s.stop().await;
}

async fn values_never_reach_the_execution_history(backend: Backend) {
    let s = server(backend).await;
    with_tenant(&s).await;
    put(&s, P, json!({"generate": {"type": "ed25519"}})).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let id = rotate(&s, P).await;
        s.wait_execution(&id, "SUCCEEDED").await;
        ids.push(id);
    }
    let mut values = Vec::new();
    for v in 1..=3 {
        let (text, _) = value(&s, P, &format!("?version={v}")).await;
        let pair: Value = serde_json::from_str(&text).unwrap();
        // The base64 body of the private key, without PEM lines, is what a leak shows.
        let key = pair["private_key"].as_str().unwrap().lines().nth(1).unwrap().to_owned();
        values.push(key);
    }
    let mut records = String::new();
    for id in &ids {
        records.push_str(&s.get(&format!("/v1/executions/{id}/history?limit=1000")).await.body.to_string());
        records.push_str(&s.get(&format!("/v1/executions/{id}")).await.body.to_string());
    }
    assert!(records.contains("tenancy:secret.finish"), "the history was read: {records}");
    records.push_str(&s.get("/v1/events?limit=1000").await.body.to_string());
    records.push_str(&s.get("/v1/audit?limit=1000").await.body.to_string());
    for v in &values {
        assert!(!records.contains(v.as_str()), "a private key in a record");
    }
    s.stop().await;
}

async fn rotation_specs_are_checked(backend: Backend) {
    let s = server(backend).await;
    let g = json!({"type": "hmac_key"});
    let (url, _) = hook(Arc::new(AtomicU16::new(200))).await;
    s.call(Method::PUT, "/v1/hooks/provisioner", Some(json!({"url": url, "events": ["provision"]}))).await;
    for (rotation, why) in [
        (json!({"every": "30d", "cron": "0 3 * * *"}), "both"),
        (json!({"every": "soon"}), "not a duration"),
        (json!({"every": "1001d"}), "too long"),
        (json!({"every": "500ms"}), "too short"),
        (json!({"cron": "61 * * * *"}), "bad cron"),
        (json!({"target": {"type": "hook", "hook": "nobody"}}), "no such hook"),
        (json!({"target": {"type": "hook", "hook": "provisioner"}}), "not subscribed to secret_rotation"),
        (json!({"target": {"type": "queue", "queue": "nowhere"}}), "no such queue"),
    ] {
        let res = s.call(Method::PUT, "/v1/secrets/k", Some(json!({"generate": g, "rotation": rotation}))).await;
        assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-rotation"), "{why}: {}", res.body);
    }
    let res = s.call(Method::PUT, "/v1/secrets/k", Some(json!({"value": "v", "rotation": {"every": "30d"}}))).await;
    assert_eq!(res.code(), "invalid-rotation", "no generator to rotate with: {}", res.body);
    assert_eq!(s.get("/v1/secrets/k").await.status, StatusCode::NOT_FOUND, "nothing was written");
    let res = s
        .call(Method::PUT, "/v1/secrets/k", Some(json!({"rotation": {"target": {"type": "ftp"}}, "value": "v"})))
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);

    // Valid: the schedule is stored with the next rotation; a put by value keeps both.
    let before = tenancy_now();
    let res = put(&s, "/v1/secrets/k", json!({"generate": g, "rotation": {"cron": "0 3 * * *"}})).await;
    assert_eq!(res.body["rotation"], json!({"cron": "0 3 * * *"}));
    let next = res.body["next_rotation_at"].as_str().unwrap().to_owned();
    assert!(next.contains("T03:00:00.000Z") && next > before, "{next}");
    let res = put(&s, "/v1/secrets/k", json!({"value": "by hand"})).await;
    assert_eq!(
        (res.body["rotation"]["cron"].as_str(), res.body["next_rotation_at"].as_str()),
        (Some("0 3 * * *"), Some(next.as_str()))
    );
    assert_eq!(res.body["generator"], json!({"type": "hmac_key"}));
    // A postgres target rotates a tenant's database login: on a platform secret the
    // rotation fails, saying so.
    put(
        &s,
        "/v1/secrets/k",
        json!({"rotation": {"target": {"type": "postgres", "strategy": "single_user"}}, "generate": g}),
    )
    .await;
    let id = rotate(&s, "/v1/secrets/k").await;
    let failed = s.wait_execution(&id, "FAILED").await;
    assert_eq!(failed["error"], "Tenancy.RotationTargetUnavailable", "{failed}");
    assert_eq!(failed["cause"], "the postgres rotation target rotates a tenant's database login", "{failed}");
    assert_eq!(meta(&s, "/v1/secrets", "k").await["current_version"], 3);
    s.stop().await;
}

fn tenancy_now() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let days = now / 86_400;
    // Good enough for a comparison of RFC 3339 strings of the same format: the date.
    let (y, m, d) = civil(days as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

async fn a_schedule_rotates_the_secret(backend: Backend) {
    let url = support::database_url(backend).await;
    // Two replicas on PostgreSQL (one on SQLite, whose data directory is one server's).
    let a = server_on(url.clone()).await;
    let b = match backend {
        Backend::Postgres => Some(server_on(url).await),
        Backend::Sqlite => None,
    };
    let start = Instant::now();
    put(&a, "/v1/secrets/sched", json!({"generate": {"type": "hmac_key"}, "rotation": {"every": "2s"}})).await;
    loop {
        let m = meta(&a, "/v1/secrets", "sched").await;
        if m["current_version"].as_i64().unwrap() >= 3 && m["last_rotation"]["status"] == "succeeded" {
            assert!(m["next_rotation_at"].is_string(), "{m}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "never rotated twice: {m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each due time started one rotation, whichever replica saw it: starts are at
    // least the interval apart, by the system.
    let audit = a.get("/v1/audit?action=secret.rotate&limit=100").await;
    let items = audit.body["items"].as_array().unwrap();
    let mut times: Vec<String> = items.iter().map(|i| i["time"].as_str().unwrap().to_owned()).collect();
    times.sort();
    assert!(times.len() >= 2, "{}", audit.body);
    assert!(items.iter().all(|i| i["actor_role"] == "system" && i["detail"]["scheduled"] == true), "{}", audit.body);
    for w in times.windows(2) {
        let ms = |t: &str| -> i64 {
            let secs: f64 = t[17..23].parse().unwrap();
            let mins: i64 = t[14..16].parse().unwrap();
            let hours: i64 = t[11..13].parse().unwrap();
            hours * 3_600_000 + mins * 60_000 + (secs * 1000.0) as i64
        };
        let gap = (ms(&w[1]) - ms(&w[0])).rem_euclid(86_400_000);
        assert!(gap >= 1_900, "two starts {gap} ms apart: {times:?}");
    }
    let rotated = events_of(&a, "SecretRotated").await.len();
    assert!(rotated >= 2 && rotated <= times.len(), "{rotated} rotations for {} starts", times.len());
    if let Some(b) = b {
        b.stop().await;
    }
    a.stop().await;
}

async fn the_cli_rotates(backend: Backend) {
    let s = server(backend).await;
    with_tenant(&s).await;
    let (code, out, err) = support::run_cli(
        &s.url,
        &[
            "-o",
            "json",
            "secrets",
            "put",
            "signing",
            "--tenant",
            "acme",
            "--generate",
            "ed25519",
            "--rotate-every",
            "30d",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let put: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(put["rotation"], json!({"every": "30d"}));
    assert_eq!(put["generator"], json!({"type": "ed25519"}));
    let (code, out, err) =
        support::run_cli(&s.url, &["-o", "json", "secrets", "rotate", "signing", "--tenant", "acme", "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    let done: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(done["status"], "SUCCEEDED");
    assert_eq!(done["last_rotation"]["version"], 2);
    let (code, out, _) = support::run_cli(&s.url, &["-o", "json", "secrets", "rotate", "signing", "--tenant", "acme"]);
    assert_eq!(code, 0);
    assert!(out.contains("execution_id"), "{out}");

    // A failing rotation: --wait exits non-zero with the reason.
    let (code, _, err) = support::run_cli(
        &s.url,
        &[
            "secrets",
            "put",
            "db",
            "--tenant",
            "acme",
            "--generate",
            "postgres-password",
            "--rotation-target",
            "postgres",
            "--rotation-strategy",
            "alternating-users",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = support::run_cli(&s.url, &["secrets", "rotate", "db", "--tenant", "acme", "--wait"]);
    assert_ne!(code, 0);
    // SQLite files have no logins; on the PostgreSQL data plane the value is a bare
    // password, not a login's credentials.
    assert!(err.contains("needs the PostgreSQL data plane") || err.contains("is not database credentials"), "{err}");
    s.stop().await;
}

/// Runs every step it wraps twice in a row with the same call (a re-run after a crash).
struct Twice {
    inner: Arc<dyn tenancy_app::engine::TaskHandler>,
}

#[async_trait::async_trait]
impl tenancy_app::engine::TaskHandler for Twice {
    async fn call(&self, call: tenancy_app::engine::TaskCall<'_>) -> tenancy_app::engine::TaskResult {
        let first = self.inner.call(call).await;
        let second = self.inner.call(call).await;
        match (&first, &second) {
            (Ok(a), Ok(b)) => assert_eq!(a.result, b.result, "{}: a repeated step gave another result", call.resource),
            (Err(a), Err(b)) => assert_eq!(a.error, b.error, "{}", call.resource),
            (a, b) => panic!("{}: one run failed: {:?} / {:?}", call.resource, a.as_ref().err(), b.as_ref().err()),
        }
        second
    }
}

async fn every_step_run_twice_changes_things_once(backend: Backend) {
    let s = server(backend).await;
    with_tenant(&s).await;
    let registry = s.server.as_ref().unwrap().app.engine().handlers();
    for step in ["create", "set", "test", "finish", "fail"] {
        let resource = format!("tenancy:secret.{step}");
        let inner = registry.get(&resource).unwrap();
        registry.register(&resource, Twice { inner });
    }
    let status = Arc::new(AtomicU16::new(200));
    let (url, calls) = hook(status.clone()).await;
    let spec = json!({"url": url, "events": ["secret_rotation"], "max_attempts": 1});
    s.call(Method::PUT, "/v1/hooks/vault", Some(spec)).await;
    put(
        &s,
        P,
        json!({"generate": {"type": "random_string", "length": 20},
               "rotation": {"target": {"type": "hook", "hook": "vault"}}}),
    )
    .await;
    // Quick: a step that panicked (results differing between runs) would be retried
    // only after the engine's lease expires.
    let started = Instant::now();
    let id = rotate(&s, P).await;
    s.wait_execution(&id, "SUCCEEDED").await;
    assert!(started.elapsed() < Duration::from_secs(20), "a re-run step failed its check");
    let m = meta(&s, "/v1/tenants/acme/secrets", "api-key").await;
    assert_eq!(stages(&m), [(2, json!(["current"])), (1, json!(["previous"]))], "one new version: {m}");
    assert_eq!(events_of(&s, "SecretRotated").await.len(), 1);
    // The hook got the same call (key and value) twice: it can tell it is a repeat.
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 4, "set and test, each twice");
    assert_eq!(calls[0], calls[1]);

    status.store(500, Ordering::SeqCst);
    let started = Instant::now();
    let id = rotate(&s, P).await;
    s.wait_execution(&id, "FAILED").await;
    assert!(started.elapsed() < Duration::from_secs(20), "a re-run step failed its check");
    assert_eq!(events_of(&s, "SecretRotationFailed").await.len(), 1);
    assert_eq!(meta(&s, "/v1/tenants/acme/secrets", "api-key").await["current_version"], 2);
    s.stop().await;
}

/// Fails every call with `Test.Injected`.
struct Failing;

#[async_trait::async_trait]
impl tenancy_app::engine::TaskHandler for Failing {
    async fn call(&self, _: tenancy_app::engine::TaskCall<'_>) -> tenancy_app::engine::TaskResult {
        Err(tenancy_app::engine::failure("Test.Injected", "injected"))
    }
}

async fn a_failure_at_each_step_leaves_current_untouched(backend: Backend) {
    let s = server(backend).await;
    with_tenant(&s).await;
    put(&s, P, json!({"generate": {"type": "random_string", "length": 20}})).await;
    let (before, _) = value(&s, P, "").await;
    let registry = s.server.as_ref().unwrap().app.engine().handlers();
    for (i, step) in ["create", "set", "test", "finish"].iter().enumerate() {
        let resource = format!("tenancy:secret.{step}");
        let original = registry.get(&resource).unwrap();
        registry.register(&resource, Failing);
        let id = rotate(&s, P).await;
        let failed = s.wait_execution(&id, "FAILED").await;
        registry.register_arc(&resource, original);
        assert_eq!(failed["error"], "Test.Injected", "{step}: {failed}");
        assert_eq!(value(&s, P, "").await, (before.clone(), 1), "{step}: current untouched");
        assert_eq!(s.get(&format!("{P}?stage=pending")).await.status, StatusCode::NOT_FOUND, "{step}");
        let m = meta(&s, "/v1/tenants/acme/secrets", "api-key").await;
        assert_eq!(m["last_rotation"]["status"], "failed", "{step}");
        assert_eq!(m["last_rotation"]["error"], "Test.Injected: injected", "{step}");
        assert_eq!(events_of(&s, "SecretRotationFailed").await.len(), i + 1, "{step}");
    }
    assert!(events_of(&s, "SecretRotated").await.is_empty());
    // And afterwards a rotation goes through.
    let id = rotate(&s, P).await;
    s.wait_execution(&id, "SUCCEEDED").await;
    assert_eq!(value(&s, P, "?stage=previous").await, (before, 1));
    s.stop().await;
}
