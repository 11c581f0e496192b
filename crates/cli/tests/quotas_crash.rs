//! The quota ledger across a `kill -9`: 32 consumers race on one hard quota, the
//! server process is killed mid-stream and restarted on the same data (a SQLite data
//! directory, or a PostgreSQL database). No acknowledged grant is lost and none is
//! invented: the usage after the restart is at least the grants answered 200 and at
//! most those plus the requests whose answer the kill cut off (they may or may not
//! have committed). Then consumers run the quota to its limit on the new process:
//! exactly `limit - used` more are granted and usage ends at the limit.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::process::{try_spawn, Server, Spawn};
use support::{Backend, TestServer, ADMIN};

const CONSUMERS: usize = 32;
const LIMIT: u64 = 1_000;
/// Grants answered before the kill.
const ACKED_BEFORE_KILL: usize = 300;

fn spawn(dir: &std::path::Path, database_url: &Option<String>) -> (Server, String) {
    let env = database_url.iter().map(|u| ("TENANCY_DATABASE_URL", u.clone())).collect();
    try_spawn(dir, Spawn { env, ..Spawn::default() })
        .unwrap_or_else(|(code, stderr)| panic!("the server exited ({code}): {stderr}"))
}

/// What the consumers saw.
#[derive(Default)]
struct Tally {
    /// 200s.
    granted: AtomicUsize,
    /// 429s.
    refused: AtomicUsize,
    /// Requests without an answer (the connection failed): their consume may or may
    /// not have committed.
    unanswered: AtomicUsize,
    /// Set to stop the consumers before their next request.
    stop: AtomicBool,
}

/// Consumers of one seat each until `stop`, a refusal (429) or an unanswered request.
fn consumers(url: &str, tally: &Arc<Tally>) -> Vec<tokio::task::JoinHandle<()>> {
    let http = tenancy_client::http_client();
    (0..CONSUMERS)
        .map(|_| {
            let (http, tally) = (http.clone(), tally.clone());
            let url = format!("{url}/v1/tenants/race/quotas/seats/consume");
            tokio::spawn(async move {
                while !tally.stop.load(Ordering::SeqCst) {
                    let res = http.post(&url).bearer_auth(ADMIN).json(&json!({"amount": 1})).send().await;
                    let counter = match res.map(|r| r.status()) {
                        Ok(StatusCode::OK) => &tally.granted,
                        Ok(StatusCode::TOO_MANY_REQUESTS) => &tally.refused,
                        Ok(other) => panic!("a consume answered {other}"),
                        Err(_) => &tally.unanswered,
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                    if !std::ptr::eq(counter, &tally.granted) {
                        return;
                    }
                }
            })
        })
        .collect()
}

async fn used(s: &TestServer) -> u64 {
    let res = s.get("/v1/tenants/race/quotas").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res.body["items"].as_array().unwrap().iter().find(|q| q["name"] == "seats").unwrap()["used"].as_u64().unwrap()
}

async fn kill_9_mid_consumption(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let database_url = support::database_url(backend).await;
    let (mut first, url) = spawn(dir.path(), &database_url);
    let s = TestServer::attach(url.clone());
    let plan = json!({"name": "Race", "isolation": "pool", "quotas": {"seats": LIMIT}});
    assert!(s.call(Method::PUT, "/v1/plans/race", Some(plan)).await.status.is_success());
    s.create_tenant("race", "race").await;
    s.wait_status("race", "active").await;

    let tally = Arc::new(Tally::default());
    let tasks = consumers(&url, &tally);
    let deadline = Instant::now() + Duration::from_secs(60);
    while tally.granted.load(Ordering::SeqCst) < ACKED_BEFORE_KILL {
        assert!(Instant::now() < deadline, "the consumers stalled");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // No consumer starts a request after the kill; those in flight now are cut off.
    tally.stop.store(true, Ordering::SeqCst);
    first.kill_9();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = tally.granted.load(Ordering::SeqCst) as u64;
    let unanswered = tally.unanswered.load(Ordering::SeqCst) as u64;
    assert_eq!(tally.refused.load(Ordering::SeqCst), 0, "nothing is refused under the limit");
    assert!((ACKED_BEFORE_KILL as u64) <= acked && acked < LIMIT, "{acked}");

    let (_second, url) = spawn(dir.path(), &database_url);
    let s = TestServer::attach(url.clone());
    let after_restart = used(&s).await;
    assert!(
        acked <= after_restart && after_restart <= acked + unanswered,
        "{acked} grants answered, {unanswered} cut off by the kill, {after_restart} used after the restart"
    );

    // The new process goes on from the usage it found: exactly the rest is granted.
    let tally = Arc::new(Tally::default());
    for t in consumers(&url, &tally) {
        t.await.unwrap();
    }
    let more = tally.granted.load(Ordering::SeqCst) as u64;
    assert_eq!(tally.unanswered.load(Ordering::SeqCst), 0);
    assert_eq!(tally.refused.load(Ordering::SeqCst), CONSUMERS, "every consumer ends on a refusal");
    assert_eq!(after_restart + more, LIMIT, "{after_restart} used after the restart, {more} granted since");
    assert_eq!(used(&s).await, LIMIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_kill_9_mid_consumption_loses_and_invents_no_grant() {
    kill_9_mid_consumption(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_kill_9_mid_consumption_loses_and_invents_no_grant() {
    kill_9_mid_consumption(Backend::Postgres).await;
}
