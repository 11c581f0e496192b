//! Event delivery end to end: subscriptions with EventBridge patterns, signed webhook
//! deliveries checked by an independent implementation, retries, dead-lettering,
//! operator retry, replay and secret rotation, on SQLite and PostgreSQL.

mod events_support;

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use tenancy_events::webhook::{self, WebhookHeaders, WebhookSecret};

use events_support::*;

async fn subscribe(s: &TestServer, name: &str, pattern: Value, target: Value) -> (String, String) {
    let body = json!({"name": name, "pattern": pattern, "target": target});
    let (status, sub) = s.call(Method::POST, "/v1/subscriptions", Some(body)).await;
    assert_eq!(status, 201, "{sub}");
    (sub["id"].as_str().unwrap().to_owned(), sub["secret"].as_str().unwrap().to_owned())
}

async fn deliveries(s: &TestServer, sub: &str) -> Vec<Value> {
    s.get(&format!("/v1/subscriptions/{sub}/deliveries?limit=1000")).await["items"].as_array().unwrap().clone()
}

/// Waits until the subscription has `n` deliveries, all in `status`.
async fn settled(s: &TestServer, sub: &str, n: usize, status: &str) -> Vec<Value> {
    eventually(&format!("{n} {status} deliveries of {sub}"), || async {
        let d = deliveries(s, sub).await;
        (d.len() == n && d.iter().all(|d| d["status"] == status)).then_some(d)
    })
    .await
}

/// (detail-type, tenant) of every distinct event a receiver path got.
fn got(r: &Receiver, name: &str) -> BTreeSet<(String, String)> {
    r.received(name)
        .iter()
        .map(|x| {
            let e = x.json();
            (e["detail-type"].as_str().unwrap().to_owned(), e["tenant_id"].as_str().unwrap_or("").to_owned())
        })
        .collect()
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

/// Checks a delivery's signature with Python's standard library (an implementation
/// that shares nothing with ours) when python3 is there, and with ours always.
fn check_signature(secrets: &[&str], r: &Received) {
    let (id, ts, sig) = (r.header("webhook-id"), r.header("webhook-timestamp"), r.header("webhook-signature"));
    assert!(id.starts_with("evt_"), "webhook-id is the event id: {id}");
    assert_eq!(r.json()["id"], id.as_str());
    let parsed: Vec<WebhookSecret> = secrets.iter().map(|s| WebhookSecret::parse(s).unwrap()).collect();
    let headers = WebhookHeaders { id: &id, timestamp: &ts, signature: &sig };
    let now = ts.parse::<i64>().unwrap();
    for s in &parsed {
        webhook::verify(s, &headers, &r.body, now, webhook::DEFAULT_TOLERANCE).expect("signature verifies");
    }
    assert_eq!(sig.split(' ').count(), secrets.len(), "one signature per active secret: {sig}");
    let script = r#"
import base64, hashlib, hmac, sys
secrets, msg_id, ts, sigs = sys.argv[1].split(","), sys.argv[2], sys.argv[3], sys.argv[4].split(" ")
body = sys.stdin.buffer.read()
for s in secrets:
    key = base64.b64decode(s[len("whsec_"):])
    mac = base64.b64encode(hmac.new(key, msg_id.encode() + b"." + ts.encode() + b"." + body, hashlib.sha256).digest()).decode()
    assert "v1," + mac in sigs, (s, sigs)
print("ok")
"#;
    let child = std::process::Command::new("python3")
        .args(["-c", script, &secrets.join(","), &id, &ts, &sig])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else { return };
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&r.body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python rejected the signature: {}", String::from_utf8_lossy(&out.stderr));
}

async fn setup_plans(s: &TestServer) {
    for (id, name) in [("pro-a", "Pro"), ("basic", "Basic")] {
        let (status, body) = s
            .call(
                Method::PUT,
                &format!("/v1/plans/{id}"),
                Some(json!({"name": name, "isolation": "pool", "features": [], "quotas": {}})),
            )
            .await;
        assert!(status == 201 || status == 200, "{body}");
    }
}

async fn patterns_route_events(db: Db) {
    let s = server(db, |_| {}).await;
    let r = Receiver::start().await;
    setup_plans(&s).await;
    let hook = |name: &str| json!({"type": "webhook", "url": r.url(name)});
    let subs = [
        ("prefix", json!({"detail-type": ["TenantCreated"], "detail": {"plan": [{"prefix": "pro"}]}})),
        ("anything-but", json!({"detail-type": [{"anything-but": ["TenantCreated", "TenantProvisioned"]}]})),
        (
            "ignore-case-suffix",
            json!({"detail": {"region": [{"equals-ignore-case": "EU-WEST"}]}, "detail-type": [{"suffix": "Provisioned"}]}),
        ),
        ("numeric", json!({"detail": {"version": [{"numeric": [">=", 3]}]}})),
        ("or-wildcard", json!({"$or": [{"tenant_id": ["acme"]}, {"detail-type": [{"wildcard": "*Suspend*"}]}]})),
        ("exists", json!({"detail": {"previous_status": [{"exists": false}]}, "source": ["tenancy"]})),
    ];
    let mut ids = Vec::new();
    let mut secrets = Vec::new();
    for (name, pattern) in &subs {
        let (id, secret) = subscribe(&s, name, pattern.clone(), hook(name)).await;
        ids.push(id);
        secrets.push(secret);
    }
    for (id, plan, region) in [("acme", "pro-a", "eu-west"), ("beta", "basic", "us-east")] {
        s.post("/v1/tenants", json!({"id": id, "name": id, "plan": plan, "region": region})).await;
    }
    eventually("beta active", || async { (s.get("/v1/tenants/beta").await["status"] == "active").then_some(()) }).await;
    s.post("/v1/tenants/beta/suspend", json!({})).await;

    let expected = [
        set(&[("TenantCreated", "acme")]),
        set(&[("TenantSuspended", "beta")]),
        set(&[("TenantProvisioned", "acme")]),
        set(&[("TenantSuspended", "beta")]),
        set(&[("TenantCreated", "acme"), ("TenantProvisioned", "acme"), ("TenantSuspended", "beta")]),
        set(&[("TenantCreated", "acme"), ("TenantCreated", "beta")]),
    ];
    for (i, (name, _)) in subs.iter().enumerate() {
        settled(&s, &ids[i], expected[i].len(), "delivered").await;
        assert_eq!(got(&r, name), expected[i], "subscription {name}");
        for x in r.received(name) {
            check_signature(&[&secrets[i]], &x);
        }
    }
    let d = &deliveries(&s, &ids[0]).await[0];
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["attempt_log"][0]["status_code"], 200);
    s.server.stop().await;
}

#[tokio::test]
async fn events_patterns_route_events_sqlite() {
    patterns_route_events(Db::Sqlite).await;
}

#[tokio::test]
async fn events_patterns_route_events_postgres() {
    patterns_route_events(Db::Postgres).await;
}

async fn retries_dead_letters_and_replays(db: Db) {
    let s = server(db, |o| o.delivery_retry_window = Duration::from_millis(600)).await;
    let r = Receiver::start().await;
    setup_plans(&s).await;
    let created = json!({"detail-type": ["TenantCreated"]});
    let (flaky, flaky_secret) =
        subscribe(&s, "flaky", created.clone(), json!({"type": "webhook", "url": r.url("flaky"), "max_attempts": 5}))
            .await;
    let (dead, _) =
        subscribe(&s, "dead", created.clone(), json!({"type": "webhook", "url": r.url("dead"), "max_attempts": 2}))
            .await;
    r.fail_next("flaky", 2);
    r.fail_next("dead", usize::MAX);
    s.post("/v1/tenants", json!({"id": "acme", "name": "Acme", "plan": "pro-a"})).await;

    // Fails twice, then succeeds; every attempt is recorded with its status.
    let d = settled(&s, &flaky, 1, "delivered").await.remove(0);
    let codes: Vec<i64> =
        d["attempt_log"].as_array().unwrap().iter().map(|a| a["status_code"].as_i64().unwrap()).collect();
    assert_eq!(codes, [500, 500, 200]);
    assert_eq!(d["attempts"], 3);
    let ids: BTreeSet<String> = r.received("flaky").iter().map(|x| x.header("webhook-id")).collect();
    assert_eq!(ids.len(), 1, "webhook-id is stable across retries");
    for x in r.received("flaky") {
        check_signature(&[&flaky_secret], &x);
    }

    // Dead after its two attempts; an operator retry delivers it once the endpoint is back.
    let d = settled(&s, &dead, 1, "dead").await.remove(0);
    assert_eq!(d["attempts"], 2);
    assert_eq!(d["last_error"], "HTTP 500");
    let dead_id = d["id"].as_str().unwrap();
    let retry = format!("/v1/subscriptions/{dead}/deliveries/{dead_id}/retry");
    r.fail_next("dead", 0);
    let (status, viewer_key) = s.call(Method::POST, "/v1/api-keys", Some(json!({"name": "v", "role": "viewer"}))).await;
    assert_eq!(status, 201);
    let viewer = viewer_key["key"].as_str().unwrap();
    assert_eq!(s.call_as(viewer, Method::POST, &retry, None).await.0, 403, "viewers do not retry");
    // The response is the delivery as it is by then: queued, or already delivered by
    // a worker woken by the retry's commit.
    let queued = s.post(&retry, json!({})).await;
    assert!(["pending", "delivered"].contains(&queued["status"].as_str().unwrap_or("")), "{queued}");
    let d = settled(&s, &dead, 1, "delivered").await.remove(0);
    assert_eq!(d["attempts"], 3);
    let (status, problem) = s.call(Method::POST, &retry, None).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("delivery-not-dead")));

    // Replay: the archived TenantCreated goes out again with the same webhook-id.
    let before = r.received("flaky").len();
    let body = json!({"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"});
    let res = s.post(&format!("/v1/subscriptions/{flaky}/replay"), body).await;
    assert_eq!(res["count"], 1);
    settled(&s, &flaky, 2, "delivered").await;
    let after = r.received("flaky");
    assert_eq!(after.len(), before + 1);
    assert_eq!(after.last().unwrap().header("webhook-id"), after[0].header("webhook-id"));
    let (status, _) = s
        .call(
            Method::POST,
            &format!("/v1/subscriptions/{flaky}/replay"),
            Some(json!({"from": "2100-01-01T00:00:00Z", "to": "2000-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, 400);
    s.server.stop().await;
}

#[tokio::test]
async fn events_retries_dead_letters_and_replays_sqlite() {
    retries_dead_letters_and_replays(Db::Sqlite).await;
}

#[tokio::test]
async fn events_retries_dead_letters_and_replays_postgres() {
    retries_dead_letters_and_replays(Db::Postgres).await;
}

#[tokio::test]
async fn events_rotation_signs_with_both_secrets() {
    let s = server(Db::Sqlite, |_| {}).await;
    let r = Receiver::start().await;
    setup_plans(&s).await;
    let (id, old) = subscribe(
        &s,
        "rot",
        json!({"detail-type": ["TenantCreated"]}),
        json!({"type": "webhook", "url": r.url("rot")}),
    )
    .await;
    let rotated = s.post(&format!("/v1/subscriptions/{id}/rotate-secret"), json!({})).await;
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(rotated["version"], 2);
    s.post("/v1/tenants", json!({"id": "acme", "name": "Acme", "plan": "pro-a"})).await;
    settled(&s, &id, 1, "delivered").await;
    let x = &r.received("rot")[0];
    check_signature(&[&new, &old], x);
    // Secrets rest encrypted under the master key.
    let pool = s.raw_db().await;
    let row: (String, String) = sqlx::query_as("SELECT secret, previous_secret FROM subscriptions WHERE id = $1")
        .bind(&id)
        .fetch_one(&pool)
        .await
        .unwrap();
    for stored in [&row.0, &row.1] {
        assert!(stored.starts_with("v1:") && *stored != new && *stored != old, "{stored}");
    }
    assert!(s.dir.path().join("master.key").exists());
    // The secret is never shown again.
    let got = s.get(&format!("/v1/subscriptions/{id}")).await;
    assert!(got.get("secret").is_none(), "{got}");
    s.server.stop().await;
}

#[tokio::test]
async fn events_subscriptions_validate_and_authorize() {
    let s = server(Db::Sqlite, |_| {}).await;
    let url = "http://127.0.0.1:9/hook";
    let cases = [
        (
            json!({"name": "x", "pattern": {"source": "tenancy"}, "target": {"type": "webhook", "url": url}}),
            "invalid-pattern",
        ),
        (
            json!({"name": "x", "pattern": {"a": [{"regex": "x"}]}, "target": {"type": "webhook", "url": url}}),
            "invalid-pattern",
        ),
        (
            json!({"name": "x", "pattern": {"source": ["tenancy"]}, "target": {"type": "webhook", "url": "ftp://x/y"}}),
            "invalid-url",
        ),
        (
            json!({"name": "x", "pattern": {"source": ["tenancy"]}, "target": {"type": "queue", "queue": "q"}}),
            "unknown-queue",
        ),
        (
            json!({"name": "x", "pattern": {"source": ["tenancy"]}, "target": {"type": "carrier-pigeon"}}),
            "invalid-body",
        ),
    ];
    for (body, code) in cases {
        let (status, problem) = s.call(Method::POST, "/v1/subscriptions", Some(body.clone())).await;
        assert_eq!((status, problem["code"].as_str()), (400, Some(code)), "{body}: {problem}");
    }
    let (_, problem) = s
        .call(
            Method::POST,
            "/v1/subscriptions",
            Some(json!({"name": "x", "pattern": {"source": "tenancy"}, "target": {"type": "webhook", "url": url}})),
        )
        .await;
    assert_eq!(problem["detail"], "source: match values must be in an array");

    let (id, _) = subscribe(&s, "ok", json!({"source": ["tenancy"]}), json!({"type": "webhook", "url": url})).await;
    let mut keys = std::collections::HashMap::new();
    for role in ["viewer", "operator", "service"] {
        let (_, k) = s.call(Method::POST, "/v1/api-keys", Some(json!({"name": role, "role": role}))).await;
        keys.insert(role, k["key"].as_str().unwrap().to_owned());
    }
    let body = json!({"name": "y", "pattern": {"source": ["tenancy"]}, "target": {"type": "webhook", "url": url}});
    assert_eq!(s.call_as(&keys["viewer"], Method::GET, "/v1/subscriptions", None).await.0, 200);
    assert_eq!(s.call_as(&keys["viewer"], Method::POST, "/v1/subscriptions", Some(body.clone())).await.0, 403);
    assert_eq!(s.call_as(&keys["service"], Method::GET, "/v1/subscriptions", None).await.0, 403);
    assert_eq!(s.call_as(&keys["operator"], Method::POST, "/v1/subscriptions", Some(body)).await.0, 201);
    let (status, patched) = s
        .call(Method::PATCH, &format!("/v1/subscriptions/{id}"), Some(json!({"pattern": {"source": ["other"]}})))
        .await;
    assert_eq!((status, patched["version"].as_i64()), (200, Some(2)), "{patched}");
    assert_eq!(s.call(Method::DELETE, &format!("/v1/subscriptions/{id}"), None).await.0, 204);
    assert_eq!(s.call(Method::GET, &format!("/v1/subscriptions/{id}"), None).await.0, 404);
    // Every change was audited.
    let audit = s.get("/v1/audit?limit=1000").await;
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    for a in ["subscription.create", "subscription.update", "subscription.delete"] {
        assert!(actions.contains(&a), "{a} not in {actions:?}");
    }
    s.server.stop().await;
}

/// A PATCH of a subscription's target applies to the very next attempt (the worker
/// used to keep its copy of the old URL for up to 2 s).
async fn patch_applies_to_the_next_attempt(db: Db) {
    let s = server(db, |_| {}).await;
    let r = Receiver::start().await;
    r.fail_next("old", 1);
    let target = |name: &str| json!({"type": "webhook", "url": r.url(name), "max_attempts": 1});
    let (id, _) = subscribe(&s, "moving", json!({"source": ["billing"]}), target("old")).await;
    let entry = json!({"Source": "billing", "DetailType": "Usage", "Detail": "{}"});
    let (status, res) = s.call(Method::POST, "/v1/events", Some(json!({"Entries": [entry]}))).await;
    assert_eq!((status, &res["FailedEntryCount"]), (200, &json!(0)), "{res}");
    let dead = settled(&s, &id, 1, "dead").await;
    let delivery = dead[0]["id"].as_str().unwrap().to_owned();
    let (status, patched) =
        s.call(Method::PATCH, &format!("/v1/subscriptions/{id}"), Some(json!({"target": target("new")}))).await;
    assert_eq!(status, 200, "{patched}");
    let (status, retried) =
        s.call(Method::POST, &format!("/v1/subscriptions/{id}/deliveries/{delivery}/retry"), None).await;
    assert_eq!(status, 200, "{retried}");
    settled(&s, &id, 1, "delivered").await;
    assert_eq!((r.received("old").len(), r.received("new").len()), (1, 1));
    s.server.stop().await;
}

#[tokio::test]
async fn events_patch_applies_to_the_next_attempt_sqlite() {
    patch_applies_to_the_next_attempt(Db::Sqlite).await;
}

#[tokio::test]
async fn events_patch_applies_to_the_next_attempt_postgres() {
    patch_applies_to_the_next_attempt(Db::Postgres).await;
}

/// Patterns event-ruler refuses are 400 `invalid-pattern` at create and at PATCH, and a
/// refused PATCH changes nothing.
#[tokio::test]
async fn events_patterns_refused_as_event_ruler_refuses_them() {
    let s = server(Db::Sqlite, |_| {}).await;
    let url = "http://127.0.0.1:9/hook";
    let (id, _) = subscribe(&s, "ok", json!({"source": ["tenancy"]}), json!({"type": "webhook", "url": url})).await;
    let raw = |method: Method, path: String, body: String| {
        s.http
            .request(method, format!("{}{path}", s.base))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let bad = [
        (r#"{"n": [{"numeric": [">", 1E-325]}]}"#, "number 1E-325 cannot be represented"),
        (r#"{"n": [1E400]}"#, "number 1E400 cannot be represented"),
        (r#"{"f": [{"anything-but": {"prefix": ""}}]}"#, "f: \"anything-but\" prefix must not be empty"),
        (r#"{"f": [{"anything-but": {"suffix": ""}}]}"#, "f: \"anything-but\" suffix must not be empty"),
        (r#"{"n": [{"numeric": ["<", 1, ">", 5]}]}"#, "n: \"numeric\" range must give its lower bound"),
        (r#"{"n": [{"numeric": [">", 5, "<", 1]}]}"#, "n: \"numeric\" range is empty"),
        (r#"{"f": [{"exists": "yes"}]}"#, "f: \"exists\" expects true or false"),
        (r#"{"f": [{"wildcard": "a**"}]}"#, "f: wildcard has consecutive '*' characters"),
        (r#"{"f": [{"anything-but": {"anything-but": "x"}}]}"#, "f: unknown operator"),
    ];
    for (pattern, detail) in bad {
        let create =
            format!(r#"{{"name": "x", "pattern": {pattern}, "target": {{"type": "webhook", "url": "{url}"}}}}"#);
        let patch = format!(r#"{{"pattern": {pattern}}}"#);
        for (method, path, body) in [
            (Method::POST, "/v1/subscriptions".to_owned(), create),
            (Method::PATCH, format!("/v1/subscriptions/{id}"), patch),
        ] {
            let res = raw(method.clone(), path, body).await.expect("request");
            let status = res.status().as_u16();
            let problem: Value = res.json().await.expect("problem+json");
            assert_eq!(
                (status, problem["code"].as_str()),
                (400, Some("invalid-pattern")),
                "{method} {pattern}: {problem}"
            );
            let got = problem["detail"].as_str().unwrap();
            assert!(got.contains(detail), "{method} {pattern}: {got}");
        }
    }
    let sub = s.get(&format!("/v1/subscriptions/{id}")).await;
    assert_eq!((sub["version"].as_i64(), &sub["pattern"]), (Some(1), &json!({"source": ["tenancy"]})));
    assert_eq!(s.get("/v1/subscriptions").await["items"].as_array().unwrap().len(), 1);
    s.server.stop().await;
}

#[tokio::test]
async fn events_a_slow_endpoint_does_not_hold_up_others() {
    let s = server(Db::Sqlite, |_| {}).await;
    let r = Receiver::start().await;
    setup_plans(&s).await;
    let created = json!({"detail-type": ["TenantCreated"]});
    let slow_target = json!({"type": "webhook", "url": r.url("slow"), "max_concurrency": 1, "timeout_ms": 200});
    let (slow, _) = subscribe(&s, "slow", created.clone(), slow_target).await;
    let (fast, _) = subscribe(&s, "fast", created, json!({"type": "webhook", "url": r.url("fast")})).await;
    for i in 0..30 {
        s.post("/v1/tenants", json!({"id": format!("t{i}"), "name": "T", "plan": "basic"})).await;
    }
    // Every fast delivery arrives while the slow endpoint has worked through at most a
    // few of its own (one at a time, each timing out after 200 ms).
    settled(&s, &fast, 30, "delivered").await;
    let slow_done = deliveries(&s, &slow).await.iter().filter(|d| d["attempts"].as_i64() > Some(0)).count();
    assert!(slow_done < 30, "the slow subscription finished first ({slow_done})");
    let d = deliveries(&s, &slow).await;
    let failed = d.iter().find(|d| d["attempts"].as_i64() > Some(0)).expect("an attempt on the slow endpoint");
    assert_eq!(failed["attempt_log"][0]["status_code"], Value::Null);
    assert!(failed["last_error"].as_str().unwrap().contains("timed out"), "{failed}");
    s.server.stop().await;
}
