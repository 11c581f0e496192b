//! Rollouts on both backends, through the upgrade hooks on a local receiver: waves
//! (canary, percentages, the rest) at a bounded concurrency until every tenant is on
//! the release; a wave failing over its threshold halts and rolls back; pause and
//! resume; abort; pinned tenants skipped; overlapping rollouts refused; the bake time;
//! the CLI; `kill -9` mid-rollout with no tenant's upgrade started twice; 200 tenants
//! with a tenth failing; maintenance windows on an injected clock; bulk plan changes;
//! and, on PostgreSQL, two replicas driving rollouts.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{run_cli, Backend, TestServer};

both_backends!(
    a_rollout_in_waves_moves_every_tenant,
    a_wave_over_its_threshold_halts_and_rolls_back,
    a_paused_rollout_starts_nothing_until_resumed,
    an_aborted_rollout_stops,
    pinned_tenants_are_skipped_and_overlapping_rollouts_refused,
    the_bake_time_separates_waves,
    tenants_without_a_previous_release_are_left_and_listed,
    a_wave_stops_starting_once_over_its_threshold,
    two_hundred_tenants_with_a_tenth_failing_halt_at_the_first_wave_over_threshold,
    maintenance_windows_are_read_on_the_injected_clock,
    a_bulk_plan_change_moves_tenants_in_waves_and_rolls_a_failed_wave_back,
    kill_9_mid_rollout_finishes_and_upgrades_each_tenant_once,
);

/// The hook receiver's record: apply calls by tenant, in order, and the most applies
/// seen running at once.
#[derive(Default)]
struct Seen {
    applied: Mutex<Vec<String>>,
    running: AtomicUsize,
    peak: AtomicUsize,
}

/// A hook receiver: `upgrade_apply` answers 500 for the tenants in `failing` (only
/// when upgrading to 2.0.0), 200 otherwise, after `delay`.
async fn receiver(failing: &'static [&'static str], delay: Duration) -> (String, Arc<Seen>) {
    let seen: Arc<Seen> = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<Value>| {
            let s = s.clone();
            async move {
                let event = body["event"].as_str().unwrap_or("").to_owned();
                let tenant = body["tenant"]["id"].as_str().unwrap_or("").to_owned();
                let to = body["upgrade"]["release"].as_str().unwrap_or("").to_owned();
                if event == "plan_change" {
                    // A failing tenant's first plan change fails; its rollback passes.
                    let mut applied = s.applied.lock().unwrap();
                    let first = !applied.iter().any(|a| a == &format!("{tenant}->plan"));
                    applied.push(format!("{tenant}->plan"));
                    if first && failing.contains(&tenant.as_str()) {
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                }
                if event == "upgrade_apply" {
                    s.applied.lock().unwrap().push(format!("{tenant}->{to}"));
                    let now = s.running.fetch_add(1, Ordering::SeqCst) + 1;
                    s.peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    s.running.fetch_sub(1, Ordering::SeqCst);
                    if to == "2.0.0" && failing.contains(&tenant.as_str()) {
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// Releases 1.0.0 (the default) and 2.0.0, an upgrade hook, and `n` active tenants
/// `t00`, `t01`, ... on 1.0.0.
async fn setup(s: &TestServer, n: usize, hook_url: &str) -> Vec<String> {
    s.put_plan("basic", "pool").await;
    s.call(Method::PUT, "/v1/releases/1.0.0", Some(json!({"default": true}))).await;
    s.call(Method::PUT, "/v1/releases/2.0.0", Some(json!({}))).await;
    let events = ["upgrade_pre_check", "upgrade_apply", "upgrade_verify", "upgrade_rollback"];
    let hook = json!({"url": hook_url, "events": events, "max_attempts": 1});
    let res = s.call(Method::PUT, "/v1/hooks/product", Some(hook)).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    // Ids sort as the tenants were made: `t00` ... `t99`, or `t000` ... past 100.
    let ids: Vec<String> = (0..n).map(|i| if n > 100 { format!("t{i:03}") } else { format!("t{i:02}") }).collect();
    for id in &ids {
        s.create_tenant(id, "basic").await;
    }
    for id in &ids {
        s.wait_status(id, "active").await;
    }
    ids
}

async fn start(s: &TestServer, body: Value) -> support::Res {
    s.call(Method::POST, "/v1/rollouts", Some(body)).await
}

/// Polls a rollout until `done(rollout)`, failing after 120 s.
async fn wait_rollout(s: &TestServer, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = s.get(&format!("/v1/rollouts/{id}")).await.body;
        if done(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "rollout {id} never {what}: {r:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether nothing of the rollout is in flight.
fn settled(r: &Value) -> bool {
    r["waves"].as_array().unwrap().iter().flat_map(|w| w["tenants"].as_array().unwrap()).all(|t| {
        !["starting", "upgrading", "rollback_pending", "rollback_starting", "rolling_back"]
            .contains(&t["state"].as_str().unwrap())
    })
}

async fn release_of(s: &TestServer, id: &str) -> Value {
    s.get(&format!("/v1/tenants/{id}")).await.body["release"].clone()
}

async fn events_of(s: &TestServer, detail_type: &str) -> Vec<Value> {
    s.get(&format!("/v1/events?detail_type={detail_type}&limit=1000")).await.body["items"].as_array().unwrap().clone()
}

async fn a_rollout_in_waves_moves_every_tenant(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (url, seen) = receiver(&[], Duration::from_millis(40)).await;
    let ids = setup(&s, 40, &url).await;
    let res =
        start(&s, json!({"release": "2.0.0", "strategy": {"canary": 2, "waves": ["10%"], "max_concurrency": 4}})).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    assert_eq!(res.body["status"], json!("running"));
    assert_eq!(res.body["tenants"], json!(40));
    let id = res.body["id"].as_str().unwrap().to_owned();

    let r = wait_rollout(&s, &id, "completed", |r| r["status"] == "completed").await;
    let shape: Vec<(String, u64)> = r["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["name"].as_str().unwrap().to_owned(), w["counts"]["succeeded"].as_u64().unwrap()))
        .collect();
    assert_eq!(shape, [("canary".to_owned(), 2), ("wave 1".to_owned(), 4), ("rest".to_owned(), 34)]);
    for id in &ids {
        assert_eq!(release_of(&s, id).await, json!("2.0.0"), "{id}");
    }
    // Waves in order: the canary's tenants were applied before any other, wave 1's
    // before the rest's; never more than max_concurrency at once.
    let applied = seen.applied.lock().unwrap().clone();
    assert_eq!(applied.len(), 40, "each tenant upgraded once: {applied:?}");
    let first: HashSet<&str> = applied[..2].iter().map(String::as_str).collect();
    assert_eq!(first, HashSet::from(["t00->2.0.0", "t01->2.0.0"]));
    let next: HashSet<&str> = applied[2..6].iter().map(String::as_str).collect();
    assert_eq!(next, HashSet::from(["t02->2.0.0", "t03->2.0.0", "t04->2.0.0", "t05->2.0.0"]));
    assert!(seen.peak.load(Ordering::SeqCst) <= 4, "peak {}", seen.peak.load(Ordering::SeqCst));

    assert_eq!(events_of(&s, "RolloutStarted").await.len(), 1);
    assert_eq!(events_of(&s, "WaveCompleted").await.len(), 3);
    assert_eq!(events_of(&s, "RolloutCompleted").await.len(), 1);
    assert_eq!(events_of(&s, "TenantUpgraded").await.len(), 40);
    let audited = s.get("/v1/audit?action=rollout.start").await.body;
    assert_eq!(audited["items"].as_array().unwrap().len(), 1, "{audited}");

    let list = s.get("/v1/rollouts").await.body;
    assert_eq!(list["items"][0]["id"], json!(id));
    let (code, out, err) = run_cli(&s.url, &["--output", "json", "rollouts", "watch", &id]);
    assert_eq!(code, 0, "{err}");
    let got: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((got["status"].clone(), got["succeeded"].clone()), (json!("completed"), json!(40)));
    // Everyone is on the release: a new rollout has nothing to do and completes.
    let res = start(&s, json!({"release": "2.0.0"})).await;
    assert_eq!((res.status, res.body["status"].clone()), (StatusCode::ACCEPTED, json!("completed")), "{}", res.body);
}

async fn a_wave_over_its_threshold_halts_and_rolls_back(backend: Backend) {
    let s = TestServer::start(backend).await;
    // Wave 1 is t02..t05: two of its four fail (50% > 25%).
    let (url, seen) = receiver(&["t04", "t05"], Duration::ZERO).await;
    let ids = setup(&s, 10, &url).await;
    let body = json!({"release": "2.0.0",
        "strategy": {"canary": 2, "waves": [4], "tolerated_failure_percent": 25, "max_concurrency": 4}});
    let res = start(&s, body).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    let id = res.body["id"].as_str().unwrap().to_owned();
    let r = wait_rollout(&s, &id, "halted and rolled back", |r| r["status"] == "halted" && settled(r)).await;
    assert!(r["halted_reason"].as_str().unwrap().contains("2 of 4"), "{r}");
    let wave = &r["waves"][1];
    assert_eq!(wave["status"], json!("halted"));
    assert_eq!(
        (wave["counts"]["failed"].clone(), wave["counts"]["rolled_back"].clone(), wave["counts"]["succeeded"].clone()),
        (json!(2), json!(2), json!(0)),
        "{wave}"
    );
    assert_eq!(r["waves"][2]["counts"]["pending"], json!(4), "the next wave did not start");
    let failed: Vec<(&str, &str)> = r["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["tenant_id"].as_str().unwrap(), f["step"].as_str().unwrap()))
        .collect();
    assert_eq!(failed, [("t04", "apply"), ("t05", "apply")]);
    assert!(r["failed"][0]["reason"].as_str().unwrap().contains("product"), "{r}");
    // The canary stays upgraded; wave 1's are all back on 1.0.0; the rest untouched.
    for (id, want) in
        ids.iter().zip(["2.0.0", "2.0.0", "1.0.0", "1.0.0", "1.0.0", "1.0.0", "1.0.0", "1.0.0", "1.0.0", "1.0.0"])
    {
        assert_eq!(release_of(&s, id).await, json!(want), "{id}");
    }
    let applied = seen.applied.lock().unwrap().clone();
    assert!(applied.contains(&"t02->1.0.0".to_owned()) && applied.contains(&"t03->1.0.0".to_owned()), "{applied:?}");
    assert!(!applied.iter().any(|a| a.starts_with("t06")), "{applied:?}");
    let halted = events_of(&s, "RolloutHalted").await;
    assert_eq!(halted.len(), 1);
    assert_eq!(halted[0]["detail"]["wave"], json!("wave 1"));

    // The CLI's watch ends on the halt, exit 1.
    let (code, _, err) = run_cli(&s.url, &["rollouts", "watch", &id]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("halted"), "{err}");
    // Resumed: the rest goes on (nothing fails there) and the rollout completes.
    let res = s.call(Method::POST, &format!("/v1/rollouts/{id}/resume"), None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    wait_rollout(&s, &id, "completed", |r| r["status"] == "completed").await;
    assert_eq!(release_of(&s, "t09").await, json!("2.0.0"));
    assert_eq!(release_of(&s, "t02").await, json!("1.0.0"), "a halted wave is not retried");
}

async fn a_paused_rollout_starts_nothing_until_resumed(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (url, seen) = receiver(&[], Duration::from_millis(300)).await;
    let ids = setup(&s, 6, &url).await;
    let res = start(&s, json!({"release": "2.0.0", "strategy": {"max_concurrency": 1}})).await;
    let id = res.body["id"].as_str().unwrap().to_owned();
    wait_rollout(&s, &id, "upgraded a tenant", |r| r["waves"][0]["counts"]["succeeded"].as_u64() >= Some(1)).await;
    let res = s.call(Method::POST, &format!("/v1/rollouts/{id}/pause"), None).await;
    assert_eq!((res.status, res.body["status"].clone()), (StatusCode::OK, json!("paused")), "{}", res.body);
    let r = wait_rollout(&s, &id, "settled", settled).await;
    let done = r["waves"][0]["counts"]["succeeded"].as_u64().unwrap();
    assert!(done < 6, "{r}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = s.get(&format!("/v1/rollouts/{id}")).await.body;
    assert_eq!(r["status"], json!("paused"));
    assert_eq!(r["waves"][0]["counts"]["succeeded"].as_u64().unwrap(), done, "nothing started while paused");
    assert_eq!(seen.applied.lock().unwrap().len() as u64, done);
    let res = s.call(Method::POST, &format!("/v1/rollouts/{id}/pause"), None).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "invalid-transition"), "{}", res.body);

    let (code, out, err) = run_cli(&s.url, &["--output", "json", "rollouts", "resume", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("running"), "{out}");
    wait_rollout(&s, &id, "completed", |r| r["status"] == "completed").await;
    for id in &ids {
        assert_eq!(release_of(&s, id).await, json!("2.0.0"), "{id}");
    }
}

async fn an_aborted_rollout_stops(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (url, seen) = receiver(&[], Duration::from_millis(300)).await;
    setup(&s, 5, &url).await;
    let res = start(&s, json!({"release": "2.0.0", "strategy": {"max_concurrency": 1}})).await;
    let id = res.body["id"].as_str().unwrap().to_owned();
    wait_rollout(&s, &id, "upgraded a tenant", |r| r["waves"][0]["counts"]["succeeded"].as_u64() >= Some(1)).await;
    let (code, _, err) = run_cli(&s.url, &["rollouts", "abort", &id, "--yes"]);
    assert_eq!(code, 0, "{err}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = s.get(&format!("/v1/rollouts/{id}")).await.body;
    assert_eq!(r["status"], json!("aborted"));
    let applied = seen.applied.lock().unwrap().len();
    assert!(applied < 5, "an aborted rollout starts nothing more: {applied}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(seen.applied.lock().unwrap().len(), applied);
    let res = s.call(Method::POST, &format!("/v1/rollouts/{id}/resume"), None).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "invalid-transition"), "{}", res.body);
    assert_eq!(events_of(&s, "RolloutAborted").await.len(), 1);
    // Its tenants are free: a new rollout takes the rest and finishes them.
    let res = start(&s, json!({"release": "2.0.0"})).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    assert_eq!(res.body["tenants"].as_u64().unwrap() as usize, 5 - applied);
}

async fn pinned_tenants_are_skipped_and_overlapping_rollouts_refused(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (url, _) = receiver(&[], Duration::from_millis(500)).await;
    setup(&s, 4, &url).await;
    let res = s.call(Method::PUT, "/v1/tenants/t01/pin", Some(json!({"reason": "big customer"}))).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);

    for bad in [
        json!({"release": "2.0.0", "strategy": {"waves": ["0%"]}}),
        json!({"release": "2.0.0", "strategy": {"max_concurrency": 0}}),
        json!({"release": "2.0.0", "strategy": {"tolerated_failure_percent": 150}}),
        json!({"release": "2.0.0", "selector": {"statuses": ["sleeping"]}}),
        json!({"release": "2.0.0", "selector": {"tenant_ids": ["t00", "nobody"]}}),
        json!({"release": "2.0.0", "strategy": {"bake_s": 100000}}),
    ] {
        let res = start(&s, bad.clone()).await;
        assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-rollout"), "{bad}: {}", res.body);
    }
    // An unknown field is a malformed body, as everywhere.
    let res = start(&s, json!({"release": "2.0.0", "strategy": {"surprise": 1}})).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-body"), "{}", res.body);
    let res = start(&s, json!({"release": "9.9.9"})).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-release"), "{}", res.body);
    assert!(s.get("/v1/rollouts").await.body["items"].as_array().unwrap().is_empty(), "refusals record nothing");

    let res = start(
        &s,
        json!({"release": "2.0.0", "selector": {"tenant_ids": ["t00", "t01", "t02"]},
        "strategy": {"max_concurrency": 1}}),
    )
    .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    assert_eq!(res.body["skipped"], json!([{"tenant_id": "t01", "reason": "pinned"}]));
    assert_eq!(res.body["tenants"], json!(2));
    let first = res.body["id"].as_str().unwrap().to_owned();
    let res = start(&s, json!({"release": "2.0.0", "selector": {"tenant_ids": ["t02", "t03"]}})).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "rollout-conflict"), "{}", res.body);
    assert!(res.body["detail"].as_str().unwrap().contains("t02"), "{}", res.body);
    // Paused still holds its tenants; a disjoint set is fine.
    s.call(Method::POST, &format!("/v1/rollouts/{first}/pause"), None).await;
    let res = start(&s, json!({"release": "2.0.0", "selector": {"tenant_ids": ["t02"]}})).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "rollout-conflict"), "{}", res.body);
    let (code, out, err) =
        run_cli(&s.url, &["--output", "json", "rollouts", "start", "--release", "2.0.0", "--tenant", "t03"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"release\""), "{out}");
    s.call(Method::POST, &format!("/v1/rollouts/{first}/resume"), None).await;
    let r = wait_rollout(&s, &first, "completed", |r| r["status"] == "completed").await;
    assert_eq!(r["skipped"], json!([{"tenant_id": "t01", "reason": "pinned"}]));
    assert_eq!(release_of(&s, "t01").await, json!("1.0.0"), "a pinned tenant stays");
    assert_eq!(release_of(&s, "t02").await, json!("2.0.0"));
}

/// `kill -9` of the server in the middle of a rollout: a new process on the same data
/// directory (same node id, so it takes its own lease back at once) finishes it, and no
/// tenant's upgrade was started twice.
async fn kill_9_mid_rollout_finishes_and_upgrades_each_tenant_once(backend: Backend) {
    use support::process::{try_spawn, Spawn};
    let dir = tempfile::tempdir().unwrap();
    let database_url = support::database_url(backend).await;
    let spawn = |dir: &std::path::Path| {
        let mut env = vec![("TENANCY_NODE_ID", "n1".to_owned())];
        env.extend(database_url.iter().map(|u| ("TENANCY_DATABASE_URL", u.clone())));
        let how = Spawn { env, ..Default::default() };
        try_spawn(dir, how).unwrap_or_else(|(code, err)| panic!("the server exited ({code}): {err}"))
    };
    let (url, seen) = receiver(&[], Duration::from_millis(150)).await;
    let (mut first, base) = spawn(dir.path());
    let s = TestServer::attach(base);
    let ids = setup(&s, 24, &url).await;
    let res =
        start(&s, json!({"release": "2.0.0", "strategy": {"canary": 2, "waves": ["25%"], "max_concurrency": 3}})).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    let id = res.body["id"].as_str().unwrap().to_owned();
    wait_rollout(&s, &id, "half way", |r| {
        r["waves"].as_array().unwrap().iter().map(|w| w["counts"]["succeeded"].as_u64().unwrap()).sum::<u64>() >= 8
    })
    .await;
    first.kill_9();
    let before = seen.applied.lock().unwrap().len();
    assert!(before < 24, "the kill came too late: {before}");

    let (_second, base) = spawn(dir.path());
    let s = TestServer::attach(base);
    wait_rollout(&s, &id, "completed after the restart", |r| r["status"] == "completed").await;
    for t in &ids {
        assert_eq!(release_of(&s, t).await, json!("2.0.0"), "{t}");
        let started = s.get(&format!("/v1/events?tenant_id={t}&detail_type=TenantUpgradeStarted&limit=100")).await;
        assert_eq!(started.body["items"].as_array().unwrap().len(), 1, "{t} was upgraded once: {}", started.body);
    }
}

async fn the_bake_time_separates_waves(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (url, seen) = receiver(&[], Duration::ZERO).await;
    setup(&s, 3, &url).await;
    let res = start(&s, json!({"release": "2.0.0", "strategy": {"canary": 1, "bake_s": 3}})).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    let id = res.body["id"].as_str().unwrap().to_owned();
    let r = wait_rollout(&s, &id, "past the canary", |r| r["waves"][0]["status"] == "completed").await;
    let ended = Instant::now();
    assert!(r["bake_until"].is_string(), "{r}");
    assert_eq!(r["current_wave"], json!(1));
    // The canary's tenant alone for the bake time.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(seen.applied.lock().unwrap().clone(), ["t00->2.0.0"]);
    assert_eq!(s.get(&format!("/v1/rollouts/{id}")).await.body["waves"][1]["counts"]["pending"], json!(2));
    wait_rollout(&s, &id, "completed", |r| r["status"] == "completed").await;
    assert!(ended.elapsed() >= Duration::from_millis(2000), "{:?}", ended.elapsed());
}

async fn tenants_without_a_previous_release_are_left_and_listed(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (url, _) = receiver(&["t02"], Duration::ZERO).await;
    // Tenants created before any default release: on no release.
    s.put_plan("basic", "pool").await;
    for id in ["t00", "t01", "t02"] {
        s.create_tenant(id, "basic").await;
        s.wait_status(id, "active").await;
    }
    s.call(Method::PUT, "/v1/releases/2.0.0", Some(json!({}))).await;
    let events = ["upgrade_pre_check", "upgrade_apply", "upgrade_verify", "upgrade_rollback"];
    let hook = json!({"url": url, "events": events, "max_attempts": 1});
    s.call(Method::PUT, "/v1/hooks/product", Some(hook)).await;
    let res = start(&s, json!({"release": "2.0.0"})).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    let id = res.body["id"].as_str().unwrap().to_owned();
    let r = wait_rollout(&s, &id, "halted", |r| r["status"] == "halted" && settled(r)).await;
    let left: Vec<&str> =
        r["not_rolled_back"].as_array().unwrap().iter().map(|t| t["tenant_id"].as_str().unwrap()).collect();
    assert_eq!(left, ["t00", "t01"], "{r}");
    assert!(r["not_rolled_back"][0]["reason"].as_str().unwrap().contains("no previous release"), "{r}");
    assert_eq!(release_of(&s, "t00").await, json!("2.0.0"));
    assert_eq!(release_of(&s, "t02").await, Value::Null, "the failed one was rolled back to none");
    // Aborted: terminal.
    let res = s.call(Method::POST, &format!("/v1/rollouts/{id}/abort"), None).await;
    assert_eq!((res.status, res.body["status"].clone()), (StatusCode::OK, json!("aborted")), "{}", res.body);
}

/// Two replicas on one PostgreSQL database: each rollout is driven by one replica at a
/// time (its lease), an operator's pause on either replica holds, and every tenant's
/// upgrade is started once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_drive_rollouts_once() {
    let url = support::database_url(Backend::Postgres).await;
    let a = TestServer::start_replica(url.clone()).await;
    let b = TestServer::start_replica(url).await;
    let (hook, _) = receiver(&[], Duration::from_millis(100)).await;
    let ids = setup(&a, 12, &hook).await;
    let body = |ids: &[String]| json!({"release": "2.0.0", "selector": {"tenant_ids": ids}, "strategy": {"canary": 1, "max_concurrency": 2}});
    let first = start(&a, body(&ids[..6])).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    let second = start(&b, body(&ids[6..])).await;
    assert_eq!(second.status, StatusCode::ACCEPTED, "{}", second.body);
    let (first, second) =
        (first.body["id"].as_str().unwrap().to_owned(), second.body["id"].as_str().unwrap().to_owned());
    // Paused through the other replica than the one it was started on.
    let res = b.call(Method::POST, &format!("/v1/rollouts/{first}/pause"), None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let r = wait_rollout(&a, &first, "settled", settled).await;
    assert_eq!(r["status"], json!("paused"));
    let res = a.call(Method::POST, &format!("/v1/rollouts/{first}/resume"), None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    for id in [&first, &second] {
        wait_rollout(&b, id, "completed", |r| r["status"] == "completed").await;
    }
    for t in &ids {
        assert_eq!(release_of(&a, t).await, json!("2.0.0"), "{t}");
        let started = a.get(&format!("/v1/events?tenant_id={t}&detail_type=TenantUpgradeStarted&limit=100")).await;
        assert_eq!(started.body["items"].as_array().unwrap().len(), 1, "{t} was upgraded once: {}", started.body);
    }
}

async fn a_wave_stops_starting_once_over_its_threshold(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (url, seen) = receiver(&["t00"], Duration::ZERO).await;
    setup(&s, 5, &url).await;
    // One wave of five, one at a time: t00 fails first, which is over 10% of five.
    let body = json!({"release": "2.0.0", "strategy": {"max_concurrency": 1, "tolerated_failure_percent": 10}});
    let res = start(&s, body).await;
    let id = res.body["id"].as_str().unwrap().to_owned();
    let r = wait_rollout(&s, &id, "halted", |r| r["status"] == "halted").await;
    assert_eq!(r["waves"][0]["counts"]["pending"], json!(4), "{r}");
    assert_eq!(seen.applied.lock().unwrap().clone(), ["t00->2.0.0"], "nothing more started");
    // Resumed: nothing is left after the halted wave; its unstarted tenants stay.
    let res = s.call(Method::POST, &format!("/v1/rollouts/{id}/resume"), None).await;
    assert_eq!((res.status, res.body["status"].clone()), (StatusCode::OK, json!("completed")), "{}", res.body);
    let skipped: Vec<&str> =
        res.body["skipped"].as_array().unwrap().iter().map(|t| t["reason"].as_str().unwrap()).collect();
    assert_eq!(skipped, ["halted-wave"; 4]);
    assert_eq!(release_of(&s, "t04").await, json!("1.0.0"));
}

/// 200 tenants, every tenth failing its apply hook (`t007`, `t017`, ...): the canary has
/// none and completes; wave 1 (`10%`: t005-t024) fails 2 of 20, over the 5% tolerated,
/// so it halts there, its succeeded tenants go back to 1.0.0, and nothing after it starts.
async fn two_hundred_tenants_with_a_tenth_failing_halt_at_the_first_wave_over_threshold(backend: Backend) {
    let s = TestServer::start(backend).await;
    let failing: Vec<&'static str> = (0..20).map(|k| &*format!("t{:03}", k * 10 + 7).leak()).collect();
    let failing: &'static [&'static str] = failing.leak();
    let (url, seen) = receiver(failing, Duration::ZERO).await;
    let ids = setup(&s, 200, &url).await;
    let body = json!({"release": "2.0.0", "strategy": {"canary": 5, "waves": ["10%", "25%"],
        "tolerated_failure_percent": 5, "max_concurrency": 10}});
    let res = start(&s, body).await;
    assert_eq!(
        (res.status, res.body["tenants"].clone(), res.body["waves"].clone()),
        (StatusCode::ACCEPTED, json!(200), json!(4)),
        "{}",
        res.body
    );
    let id = res.body["id"].as_str().unwrap().to_owned();
    let r = wait_rollout(&s, &id, "halted and rolled back", |r| r["status"] == "halted" && settled(r)).await;
    assert_eq!(r["current_wave"], json!(1), "{}", r["halted_reason"]);
    assert_eq!(r["waves"][0]["status"], json!("completed"));
    assert_eq!(r["waves"][0]["counts"]["succeeded"], json!(5));
    let wave = &r["waves"][1];
    assert_eq!(wave["status"], json!("halted"));
    assert_eq!(wave["counts"]["failed"], json!(2), "{wave}");
    assert_eq!(wave["counts"]["succeeded"], json!(0), "every succeeded tenant was rolled back: {wave}");
    let rolled = wave["counts"]["rolled_back"].as_u64().unwrap();
    let pending = wave["counts"]["pending"].as_u64().unwrap();
    assert_eq!(rolled + pending + 2, 20, "{wave}");
    assert!(rolled >= 8, "the wave ran up to its second failure: {wave}");
    let failed: Vec<&str> = r["failed"].as_array().unwrap().iter().map(|f| f["tenant_id"].as_str().unwrap()).collect();
    assert_eq!(failed, ["t007", "t017"]);
    for w in &r["waves"].as_array().unwrap()[2..] {
        assert_eq!(
            w["counts"]["pending"].as_u64().unwrap() as usize,
            w["tenants"].as_array().unwrap().len(),
            "{}",
            w["name"]
        );
    }
    // On the releases: the canary moved, wave 1 and everything after it did not.
    for (i, t) in ids.iter().enumerate() {
        let want = if i < 5 { "2.0.0" } else { "1.0.0" };
        assert_eq!(release_of(&s, t).await, json!(want), "{t}");
    }
    let applied = seen.applied.lock().unwrap().clone();
    assert!(applied.iter().all(|a| a[1..4].parse::<usize>().unwrap() < 25), "nothing past wave 1: {applied:?}");
    assert_eq!(applied.iter().filter(|a| a.ends_with("->1.0.0")).count() as u64, rolled, "{applied:?}");
    let halted = events_of(&s, "RolloutHalted").await;
    assert_eq!(halted.len(), 1);
    assert_eq!(
        (halted[0]["detail"]["wave"].clone(), halted[0]["detail"]["failed"].clone()),
        (json!("wave 1"), json!(2))
    );
    assert_eq!(events_of(&s, "WaveCompleted").await.len(), 1, "the canary's only");
}

/// Maintenance windows against the server's injected clock (Saturday 23:00 UTC, then
/// Sunday 01:30): a tenant outside its own window (metadata) or the strategy's is
/// skipped and listed when its turn comes; one with a window that does not parse is
/// skipped at the start; the same tenant inside its window later is upgraded.
async fn maintenance_windows_are_read_on_the_injected_clock(backend: Backend) {
    use std::sync::atomic::AtomicI64;
    let at = |s: &str| tenancy_domain::time::Timestamp::parse_rfc3339(s).unwrap().millis();
    let now = Arc::new(AtomicI64::new(at("2026-12-05T23:00:00Z"))); // a Saturday
    let clock = {
        let now = now.clone();
        tenancy_app::Clock::from_fn(move || tenancy_domain::time::Timestamp(now.load(Ordering::SeqCst)))
    };
    let database_url = support::database_url(backend).await;
    let s = TestServer::start_configured(database_url, |o| o.clock = Some(clock)).await;
    let (url, seen) = receiver(&[], Duration::ZERO).await;
    setup(&s, 5, &url).await;
    let window = |days: &[&str], start: &str, m: u32| json!({"days": days, "start": start, "duration_m": m});
    for (t, w) in [
        ("t01", window(&["sun"], "01:00", 60)),
        ("t02", window(&["sat"], "22:00", 120)),
        ("t03", json!({"days": ["someday"], "start": "01:00", "duration_m": 10})),
    ] {
        let res = s
            .call(Method::PATCH, &format!("/v1/tenants/{t}"), Some(json!({"metadata": {"maintenance_window": w}})))
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    }
    let res =
        start(&s, json!({"release": "2.0.0", "strategy": {"maintenance_window": window(&["sat"], "25:00", 60)}})).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid-rollout"), "{}", res.body);
    // t00 and t04 take the strategy's window (Saturdays 22:30 for an hour): inside.
    let body = json!({"release": "2.0.0", "strategy": {"maintenance_window": window(&["sat"], "22:30", 60)}});
    let res = start(&s, body).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    assert_eq!(res.body["skipped"], json!([{"tenant_id": "t03", "reason": "invalid-maintenance-window"}]));
    let id = res.body["id"].as_str().unwrap().to_owned();
    let r = wait_rollout(&s, &id, "completed", |r| r["status"] == "completed").await;
    let skipped: Vec<(&str, &str)> = r["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["tenant_id"].as_str().unwrap(), t["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(skipped, [("t03", "invalid-maintenance-window"), ("t01", "outside-maintenance-window")]);
    let t01 = r["waves"][0]["tenants"].as_array().unwrap().iter().find(|t| t["tenant_id"] == "t01").unwrap().clone();
    assert_eq!(t01["state"], json!("skipped"));
    assert!(t01["reason"].as_str().unwrap().contains("2026-12-05T23:00"), "the injected time: {t01}");
    for (t, want) in [("t00", "2.0.0"), ("t01", "1.0.0"), ("t02", "2.0.0"), ("t03", "1.0.0"), ("t04", "2.0.0")] {
        assert_eq!(release_of(&s, t).await, json!(want), "{t}");
    }

    // Sunday 01:30: t01's window is open, the strategy's (Saturdays) is not.
    now.store(at("2026-12-06T01:30:00Z"), Ordering::SeqCst);
    let body = json!({"release": "2.0.0", "selector": {"tenant_ids": ["t01"]},
        "strategy": {"maintenance_window": window(&["sat"], "22:30", 60)}});
    let id = start(&s, body).await.body["id"].as_str().unwrap().to_owned();
    let r = wait_rollout(&s, &id, "completed", |r| r["status"] == "completed").await;
    assert_eq!(r["skipped"], json!([]), "{r}");
    assert_eq!(release_of(&s, "t01").await, json!("2.0.0"));
    let (code, _, err) =
        run_cli(&s.url, &["rollouts", "start", "--release", "2.0.0", "--tenant", "t03", "--window", "sun@01:00+60"]);
    assert_eq!(code, 0, "{err}");
    let applied = seen.applied.lock().unwrap().clone();
    assert_eq!(applied.iter().filter(|a| a.starts_with("t01")).count(), 1, "{applied:?}");
}

/// A bulk plan change through the rollout machinery: `{plan}` instead of `{release}`;
/// each tenant's step is its plan change (same checks, events and audit as one
/// tenant's); a wave whose plan changes fail over the threshold halts and its changed
/// tenants go back to their plan.
async fn a_bulk_plan_change_moves_tenants_in_waves_and_rolls_a_failed_wave_back(backend: Backend) {
    let s = TestServer::start(backend).await;
    // Wave 1 is t02..t05: the first plan change of t04 and t05 fails (50% > 25%).
    let (url, seen) = receiver(&["t04", "t05"], Duration::ZERO).await;
    let ids = setup(&s, 10, &url).await;
    s.put_plan("pro", "pool").await;
    let hook = json!({"url": url, "events": ["plan_change"], "max_attempts": 1});
    let res = s.call(Method::PUT, "/v1/hooks/plans", Some(hook)).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);

    for (bad, code) in [
        (json!({"release": "2.0.0", "plan": "pro"}), "invalid-rollout"),
        (json!({"selector": {"plans": ["basic"]}}), "invalid-rollout"),
        (json!({"plan": "platinum"}), "unknown-plan"),
    ] {
        let res = start(&s, bad.clone()).await;
        assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, code), "{bad}: {}", res.body);
    }
    let viewer = s.key("viewer", None).await;
    let res = s.call_with(Some(&viewer), Method::POST, "/v1/rollouts", Some(json!({"plan": "pro"})), &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);

    let body = json!({"plan": "pro", "selector": {"plans": ["basic"]},
        "strategy": {"canary": 2, "waves": [4], "tolerated_failure_percent": 25, "max_concurrency": 4}});
    let res = start(&s, body).await;
    assert_eq!((res.status, res.body["tenants"].clone()), (StatusCode::ACCEPTED, json!(10)), "{}", res.body);
    let id = res.body["id"].as_str().unwrap().to_owned();
    let r = wait_rollout(&s, &id, "halted and rolled back", |r| r["status"] == "halted" && settled(r)).await;
    assert_eq!((r["plan"].clone(), r.get("release").cloned()), (json!("pro"), None), "{r}");
    let wave = &r["waves"][1];
    assert_eq!(
        (wave["counts"]["failed"].clone(), wave["counts"]["rolled_back"].clone()),
        (json!(2), json!(2)),
        "{wave}"
    );
    assert_eq!(wave["tenants"][0]["previous_plan"], json!("basic"));
    let failed: Vec<&str> = r["failed"].as_array().unwrap().iter().map(|f| f["tenant_id"].as_str().unwrap()).collect();
    assert_eq!(failed, ["t04", "t05"]);
    let plan_of = |t: String| {
        let s = &s;
        async move { s.get(&format!("/v1/tenants/{t}")).await.body["plan"].clone() }
    };
    for (i, t) in ids.iter().enumerate() {
        let want = if i < 2 { "pro" } else { "basic" };
        assert_eq!(plan_of(t.clone()).await, json!(want), "{t}");
    }
    // The same record as one tenant's plan change: its audit entry and event.
    let audited = s.get("/v1/audit?action=tenant.change_plan&limit=100").await.body;
    // The canary's 2 and wave 1's 4, then the 2 rollbacks.
    assert_eq!(audited["items"].as_array().unwrap().len(), 8, "{audited}");
    assert!(events_of(&s, "TenantPlanChanged").await.len() >= 2);

    // Resumed: the rest moves (their first change fails only for t04 and t05).
    let res = s.call(Method::POST, &format!("/v1/rollouts/{id}/resume"), None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    wait_rollout(&s, &id, "completed", |r| r["status"] == "completed").await;
    for t in &ids[6..] {
        assert_eq!(plan_of(t.clone()).await, json!("pro"), "{t}");
    }
    // The CLI: the tenants left on basic, to pro, all of them this time.
    let (code, out, err) = run_cli(
        &s.url,
        &["--output", "json", "rollouts", "start", "--to-plan", "pro", "--plan", "basic", "--max-concurrency", "2"],
    );
    assert_eq!(code, 0, "{err}");
    let started: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(started["plan"], json!("pro"), "{out}");
    let id = started["id"].as_str().unwrap().to_owned();
    wait_rollout(&s, &id, "completed", |r| r["status"] == "completed").await;
    for t in &ids {
        assert_eq!(plan_of(t.clone()).await, json!("pro"), "{t}");
    }
    assert!(seen.applied.lock().unwrap().iter().filter(|a| a.ends_with("->plan")).count() >= 14);
}
