//! Chaos across replicas (docs/operations.md, "Chaos testing"): three `tenancy serve`
//! processes on one PostgreSQL cluster of this test's own, under mixed load
//! (provisionings with a sync hook, webhook fan-out, queue traffic, quota
//! consumption), while a driver kills -9 a random replica every few seconds and
//! restarts it, restarts PostgreSQL once (immediate mode: a crash and its recovery)
//! and cuts the data-plane database (a TCP proxy on loopback between the replicas and
//! the cluster) for a few seconds. At the end: every tenant active with exactly one
//! `TenantProvisioned` (or failed with none), no execution left running, every message
//! sent received and none received after its deletion was acknowledged, every event
//! delivered to the webhook at least once, the quota never granted past its limit,
//! the audit chain verifies, and no request was answered 500.
//!
//! Scale: `TENANCY_CHAOS_TENANTS` (default 60, the bounded form `scripts/test` runs;
//! `scripts/chaos` runs 1,000), `TENANCY_CHAOS_KILL_EVERY_MS` (default 3,000).

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::process::{try_spawn, Server, Spawn};
use support::ADMIN;
use tokio::net::{TcpListener, TcpStream};

const REPLICAS: usize = 3;
const MASTER_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
const QUOTA_LIMIT: u64 = 200;
/// Every n-th tenant is a silo tenant (a database of its own on the data plane).
const SILO_EVERY: usize = 4;

fn knob(name: &str, default: u64) -> u64 {
    tenancy::config::env_var(name).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}={v:?}")))
}

// ---------------------------------------------------------------------------------
// A PostgreSQL cluster of this test's own, so it can be restarted.

struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

fn as_postgres(cmd: &Path) -> Command {
    // Root runs PostgreSQL's tools as `postgres` (initdb refuses to run as root).
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(cmd);
        c
    } else {
        Command::new(cmd)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Cluster {
    fn start() -> Cluster {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's binaries under /usr/lib/postgresql")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|b| b.join("initdb").exists())
            .expect("an initdb under /usr/lib/postgresql/*/bin");
        let dir = tempfile::tempdir().unwrap();
        let _ = Command::new("chown").arg("postgres").arg(dir.path()).status();
        let out = as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(dir.path().join("data"))
            .args(["-U", "postgres", "--auth=trust"])
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let cluster = Cluster { bin, dir, port: free_port() };
        cluster.pg_ctl(&["start"]);
        cluster
    }

    fn pg_ctl(&self, action: &[&str]) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let out = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "-o", &opts])
            .args(action)
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl {action:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn url(&self, port: u16, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/{db}")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

// ---------------------------------------------------------------------------------
// The data-plane cut: a TCP proxy on loopback that can drop every connection and refuse
// new ones for a while.

struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (c, list) = (cut.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                if c.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut list = list.lock().unwrap();
                list.retain(|h| !h.is_finished());
                list.push(task.abort_handle());
            }
        });
        Proxy { port, cut, conns }
    }

    /// Drops every open connection and refuses new ones until [`Proxy::restore`].
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------
// The replicas and a client that goes to any live one.

struct Replicas {
    dirs: Vec<tempfile::TempDir>,
    procs: Mutex<Vec<Option<Server>>>,
    urls: Mutex<Vec<Option<String>>>,
    env: Vec<(&'static str, String)>,
}

impl Replicas {
    fn spawn_one(&self, i: usize) {
        let env = self.env.iter().cloned().chain([("TENANCY_NODE_ID", format!("replica-{i}"))]).collect();
        let (server, url) = try_spawn(self.dirs[i].path(), Spawn { env, ..Spawn::default() })
            .unwrap_or_else(|(code, stderr)| panic!("replica {i} exited ({code}): {stderr}"));
        self.procs.lock().unwrap()[i] = Some(server);
        self.urls.lock().unwrap()[i] = Some(url);
    }

    fn kill(&self, i: usize) {
        self.urls.lock().unwrap()[i] = None;
        if let Some(mut s) = self.procs.lock().unwrap()[i].take() {
            s.kill_9();
        }
    }

    fn any_url(&self) -> Option<String> {
        let live: Vec<String> = self.urls.lock().unwrap().iter().flatten().cloned().collect();
        (!live.is_empty()).then(|| live[rand::thread_rng().gen_range(0..live.len())].clone())
    }
}

/// What the client saw: answers that are bugs (500s), and what it retried.
#[derive(Default)]
struct Seen {
    errors: Mutex<Vec<String>>,
    dropped: AtomicUsize,
    unavailable: AtomicUsize,
    requests: AtomicUsize,
    /// Creates retried with their key that ran again (see [`provision`]).
    rerun: AtomicUsize,
}

struct Res {
    status: StatusCode,
    body: Value,
}

#[derive(Clone)]
struct Client {
    replicas: Arc<Replicas>,
    http: reqwest::Client,
    seen: Arc<Seen>,
}

/// How a request is retried when its connection drops.
#[derive(Clone, Copy, PartialEq)]
enum Retry {
    /// Safe to send again (a read, an idempotency key, a dedup id).
    Always,
    /// Not safe: a dropped one is reported as `None`.
    Never,
}

impl Client {
    /// Sends to a random live replica. A dropped connection or a 503 is retried on
    /// another (when `retry` allows); a 500 is recorded as an error.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
        retry: Retry,
    ) -> Option<Res> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last = String::new();
        loop {
            assert!(Instant::now() < deadline, "{method} {path}: no answer for 120 s, the last: {last}");
            let Some(base) = self.replicas.any_url() else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            self.seen.requests.fetch_add(1, Ordering::Relaxed);
            let mut req = self.http.request(method.clone(), format!("{base}{path}")).bearer_auth(ADMIN);
            if let Some(b) = body {
                req = req.json(b);
            }
            if let Some(k) = key {
                req = req.header("idempotency-key", k);
            }
            let res = match req.timeout(Duration::from_secs(30)).send().await {
                Ok(r) => r,
                Err(e) => {
                    last = format!("{e:?}");
                    self.seen.dropped.fetch_add(1, Ordering::Relaxed);
                    if retry == Retry::Never {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let status = res.status();
            let Ok(text) = res.text().await else {
                last = "the body was cut off".into();
                self.seen.dropped.fetch_add(1, Ordering::Relaxed);
                if retry == Retry::Never {
                    return None;
                }
                continue;
            };
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            if status == StatusCode::SERVICE_UNAVAILABLE
                || (status == StatusCode::CONFLICT && body["code"] == "idempotency-key-in-use")
            {
                self.seen.unavailable.fetch_add(1, Ordering::Relaxed);
                last = format!("{status} {body}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            if status.is_server_error() {
                eprintln!("chaos: {method} {path}: {status} {body}");
                self.seen.errors.lock().unwrap().push(format!("{method} {path}: {status} {body}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                if retry == Retry::Never {
                    return None;
                }
                continue;
            }
            return Some(Res { status, body });
        }
    }

    async fn get(&self, path: &str) -> Res {
        self.send(Method::GET, path, None, None, Retry::Always).await.unwrap()
    }

    async fn put(&self, path: &str, body: Value) -> Res {
        self.send(Method::PUT, path, Some(&body), None, Retry::Always).await.unwrap()
    }

    /// Every item of a paged list.
    async fn all(&self, path: &str) -> Vec<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = match &cursor {
                Some(c) => format!("{path}{sep}limit=1000&cursor={c}"),
                None => format!("{path}{sep}limit=1000"),
            };
            let res = self.get(&page).await;
            assert_eq!(res.status, StatusCode::OK, "{page}: {}", res.body);
            items.extend(res.body["items"].as_array().unwrap().iter().cloned());
            match res.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return items,
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Receivers: the provisioning hook and the webhook.

#[derive(Default)]
struct Received {
    /// Provisioning hook calls: tenant -> idempotency keys.
    hook: Mutex<BTreeMap<String, BTreeSet<String>>>,
    /// Webhook deliveries by `webhook-id`.
    webhooks: Mutex<BTreeMap<String, usize>>,
}

async fn receivers(received: Arc<Received>) -> String {
    let (r1, r2) = (received.clone(), received);
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::Json<Value>| {
                let r = r1.clone();
                async move {
                    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    let tenant = body.0["tenant"]["id"].as_str().unwrap_or("").to_owned();
                    r.hook.lock().unwrap().entry(tenant).or_default().insert(key);
                    axum::http::StatusCode::OK
                }
            }),
        )
        .route(
            "/webhook",
            axum::routing::post(move |headers: axum::http::HeaderMap| {
                let r = r2.clone();
                async move {
                    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    *r.webhooks.lock().unwrap().entry(id).or_default() += 1;
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

// ---------------------------------------------------------------------------------
// The load.

fn tenant_id(i: usize) -> String {
    format!("c{i:04}")
}

async fn provision(client: Client, tenants: usize, next: Arc<AtomicUsize>) {
    loop {
        let i = next.fetch_add(1, Ordering::SeqCst);
        if i >= tenants {
            return;
        }
        let plan = if i.is_multiple_of(SILO_EVERY) { "dedicated" } else { "pooled" };
        let body = json!({"id": tenant_id(i), "name": "Chaos", "plan": plan});
        let key = format!("create-{}", tenant_id(i));
        let res = client.send(Method::POST, "/v1/tenants", Some(&body), Some(&key), Retry::Always).await.unwrap();
        // A create whose replica died after its commit but before it recorded its
        // response under the key is run again by the retry once the key's lease ran
        // out, and finds its own tenant (docs/operations.md, "Chaos testing").
        let again = res.status == StatusCode::CONFLICT && res.body["code"] == "already-exists";
        assert!(res.status == StatusCode::ACCEPTED || again, "create {}: {}", tenant_id(i), res.body);
        if again {
            client.seen.rerun.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What the queue's users saw.
#[derive(Default)]
struct QueueLog {
    /// Message numbers whose send was answered 201.
    sent: Mutex<BTreeSet<u64>>,
    /// Message number -> when its delete was answered 204.
    deleted: Mutex<HashMap<u64, Instant>>,
    /// Message numbers received, with when their receive was sent.
    received: Mutex<Vec<(u64, Instant)>>,
}

async fn produce(client: Client, log: Arc<QueueLog>, next: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        let n = next.fetch_add(1, Ordering::SeqCst);
        // The dedup id makes a send retried after a dropped connection enqueue once.
        let body = json!({"body": {"n": n}, "dedup_id": format!("m{n}")});
        let res =
            client.send(Method::POST, "/v1/queues/work/messages", Some(&body), None, Retry::Always).await.unwrap();
        assert_eq!(res.status, StatusCode::CREATED, "send: {}", res.body);
        log.sent.lock().unwrap().insert(n);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Receives and deletes until `stop` and the queue answers empty.
async fn consume(client: Client, log: Arc<QueueLog>, stop: Arc<AtomicBool>) {
    loop {
        let asked = Instant::now();
        let body = json!({"max": 10, "wait_s": 1});
        let res = client.send(Method::POST, "/v1/queues/work/receive", Some(&body), None, Retry::Always).await.unwrap();
        assert_eq!(res.status, StatusCode::OK, "receive: {}", res.body);
        let messages = res.body["messages"].as_array().unwrap().clone();
        if messages.is_empty() && stop.load(Ordering::SeqCst) {
            return;
        }
        for m in messages {
            let n = m["body"]["n"].as_u64().unwrap();
            log.received.lock().unwrap().push((n, asked));
            let path = format!("/v1/queues/work/messages/{}", m["receipt"].as_str().unwrap());
            // A delete whose answer is lost is sent again: 404 then (deleted, or the
            // receipt went stale and the message comes back).
            if let Some(res) = client.send(Method::DELETE, &path, None, None, Retry::Always).await {
                if res.status == StatusCode::NO_CONTENT {
                    log.deleted.lock().unwrap().entry(n).or_insert_with(Instant::now);
                }
            }
        }
    }
}

#[derive(Default)]
struct QuotaLog {
    granted: AtomicU64,
    refused: AtomicU64,
    unanswered: AtomicU64,
}

async fn consume_quota(client: Client, log: Arc<QuotaLog>) {
    let body = json!({"amount": 1});
    loop {
        let res =
            client.send(Method::POST, "/v1/tenants/race/quotas/seats/consume", Some(&body), None, Retry::Never).await;
        match res.map(|r| r.status) {
            Some(StatusCode::OK) => log.granted.fetch_add(1, Ordering::SeqCst),
            Some(StatusCode::TOO_MANY_REQUESTS) => {
                log.refused.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Some(other) => panic!("a consume answered {other}"),
            None => log.unanswered.fetch_add(1, Ordering::SeqCst),
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

// ---------------------------------------------------------------------------------

async fn eventually<T, F: std::future::Future<Output = Result<T, String>>>(
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => panic!("{what} within {within:?}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_across_replicas_keeps_every_invariant() {
    let started = Instant::now();
    let tenants = knob("TENANCY_CHAOS_TENANTS", 60) as usize;
    let kill_every = Duration::from_millis(knob("TENANCY_CHAOS_KILL_EVERY_MS", 3_000));
    let cluster = Cluster::start();
    let admin = cluster.url(cluster.port, "postgres");
    let out = Command::new("psql").args([&admin, "-qc", "CREATE DATABASE tenancy"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let proxy = Proxy::start(cluster.port).await;

    let env = vec![
        ("TENANCY_DATABASE_URL", cluster.url(cluster.port, "tenancy")),
        ("TENANCY_DATA_PLANE_URL", cluster.url(proxy.port, "postgres")),
        ("TENANCY_MASTER_KEY", MASTER_KEY.to_owned()),
        // A killed replica's claimed deliveries go to the others after 5 s, not 5 minutes.
        ("TENANCY_DELIVERY_LEASE_S", "5".to_owned()),
    ];
    let replicas = Arc::new(Replicas {
        dirs: (0..REPLICAS).map(|_| tempfile::tempdir().unwrap()).collect(),
        procs: Mutex::new((0..REPLICAS).map(|_| None).collect()),
        urls: Mutex::new(vec![None; REPLICAS]),
        env,
    });
    for i in 0..REPLICAS {
        let r = replicas.clone();
        tokio::task::spawn_blocking(move || r.spawn_one(i)).await.unwrap();
    }
    let seen = Arc::new(Seen::default());
    let client = Client { replicas: replicas.clone(), http: tenancy_client::http_client(), seen: seen.clone() };

    // Set-up, before any chaos.
    let received = Arc::new(Received::default());
    let base = receivers(received.clone()).await;
    let hook = json!({"url": format!("{base}/hook"), "events": ["provision"], "mode": "sync", "timeout_s": 30});
    assert!(client.put("/v1/hooks/crm", hook).await.status.is_success());
    for (id, isolation) in [("pooled", "pool"), ("dedicated", "silo")] {
        let plan = json!({"name": id, "isolation": isolation, "quotas": {"seats": 5}});
        assert!(client.put(&format!("/v1/plans/{id}"), plan).await.status.is_success());
    }
    let race = json!({"name": "Race", "isolation": "pool", "quotas": {"seats": QUOTA_LIMIT}});
    assert!(client.put("/v1/plans/race", race).await.status.is_success());
    let sub = json!({
        "name": "chaos",
        "pattern": {"detail-type": ["TenantCreated", "TenantProvisioned"]},
        "target": {"type": "webhook", "url": format!("{base}/webhook")},
    });
    let res = client.send(Method::POST, "/v1/subscriptions", Some(&sub), Some("sub"), Retry::Always).await.unwrap();
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert!(client.put("/v1/queues/work", json!({"visibility_timeout_s": 5})).await.status.is_success());
    let body = json!({"id": "race", "name": "Race", "plan": "race"});
    let res = client.send(Method::POST, "/v1/tenants", Some(&body), Some("race"), Retry::Always).await.unwrap();
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    eventually("the quota tenant active", Duration::from_secs(60), || async {
        let t = client.get("/v1/tenants/race").await.body;
        if t["status"] == "active" {
            Ok(())
        } else {
            Err(t.to_string())
        }
    })
    .await;
    let setup = started.elapsed();

    // The load.
    let stop_queue = Arc::new(AtomicBool::new(false));
    let queue_log = Arc::new(QueueLog::default());
    let quota_log = Arc::new(QuotaLog::default());
    let next_tenant = Arc::new(AtomicUsize::new(0));
    let next_message = Arc::new(AtomicU64::new(0));
    let provisioning: Vec<_> =
        (0..12).map(|_| tokio::spawn(provision(client.clone(), tenants, next_tenant.clone()))).collect();
    let producers: Vec<_> = (0..2)
        .map(|_| tokio::spawn(produce(client.clone(), queue_log.clone(), next_message.clone(), stop_queue.clone())))
        .collect();
    let consumers: Vec<_> =
        (0..3).map(|_| tokio::spawn(consume(client.clone(), queue_log.clone(), stop_queue.clone()))).collect();
    let quota: Vec<_> = (0..4).map(|_| tokio::spawn(consume_quota(client.clone(), quota_log.clone()))).collect();

    // The chaos: a kill -9 and restart every `kill_every`; PostgreSQL restarted once
    // after the third kill, the data plane cut for 4 s after the sixth, until the
    // provisionings are all accepted and both happened.
    let mut kills = 0;
    let (mut pg_restarted, mut cut) = (false, false);
    let cluster = Arc::new(cluster);
    loop {
        tokio::time::sleep(kill_every).await;
        let victim = rand::thread_rng().gen_range(0..REPLICAS);
        replicas.kill(victim);
        kills += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = replicas.clone();
        tokio::task::spawn_blocking(move || r.spawn_one(victim)).await.unwrap();
        if kills == 3 && !pg_restarted {
            let c = cluster.clone();
            tokio::task::spawn_blocking(move || c.pg_ctl(&["-m", "fast", "restart"])).await.unwrap();
            pg_restarted = true;
        }
        if kills == 6 && !cut {
            proxy.cut();
            tokio::time::sleep(Duration::from_secs(4)).await;
            proxy.restore();
            cut = true;
        }
        let accepted = provisioning.iter().all(|t| t.is_finished());
        if accepted && pg_restarted && cut {
            break;
        }
    }
    let chaos = started.elapsed() - setup;
    for t in provisioning {
        t.await.unwrap();
    }
    stop_queue.store(true, Ordering::SeqCst);
    for t in producers.into_iter().chain(consumers).chain(quota) {
        t.await.unwrap();
    }

    // Invariants, once the background work settles.
    let settle = Instant::now();
    let all: Vec<String> = (0..tenants).map(tenant_id).collect();
    let statuses =
        eventually("every tenant in a terminal status", Duration::from_secs(120.max(tenants as u64 / 5)), || async {
            let list = client.all("/v1/tenants").await;
            let statuses: BTreeMap<String, String> = list
                .iter()
                .map(|t| (t["id"].as_str().unwrap().to_owned(), t["status"].as_str().unwrap().to_owned()))
                .collect();
            let pending: Vec<_> = all
                .iter()
                .filter(|id| !matches!(statuses.get(*id).map(String::as_str), Some("active" | "failed")))
                .collect();
            if pending.is_empty() {
                Ok(statuses)
            } else {
                Err(format!("{} not terminal, e.g. {:?}", pending.len(), &pending[..pending.len().min(5)]))
            }
        })
        .await;
    let failed: Vec<_> = statuses.iter().filter(|(_, s)| *s == "failed").map(|(id, _)| id.clone()).collect();

    let provisioned = client.all("/v1/events?detail_type=TenantProvisioned").await;
    let mut per_tenant: BTreeMap<String, usize> = BTreeMap::new();
    for e in &provisioned {
        *per_tenant.entry(e["tenant_id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    for id in &all {
        let expected = usize::from(statuses[id] == "active");
        assert_eq!(per_tenant.get(id).copied().unwrap_or(0), expected, "TenantProvisioned of {id} ({})", statuses[id]);
    }
    // The sync hook was called for every active tenant, with one idempotency key.
    {
        let hook = received.hook.lock().unwrap();
        for id in all.iter().filter(|id| statuses[*id] == "active") {
            let keys = hook.get(id).map_or(0, BTreeSet::len);
            assert_eq!(keys, 1, "provisioning hook of {id} called with {keys} keys");
        }
    }

    // A provisioning that failed (a step's retries outlasted by an outage) failed
    // whole, and a retry after the chaos provisions the tenant once.
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for id in &failed {
        let events = client.all(&format!("/v1/events?tenant_id={id}&detail_type=TenantProvisioningFailed")).await;
        let detail = events.first().map(|e| e["detail"].to_string()).unwrap_or_default();
        *reasons.entry(detail.chars().take(300).collect()).or_default() += 1;
        let res =
            client.send(Method::POST, &format!("/v1/tenants/{id}/retry"), None, None, Retry::Always).await.unwrap();
        assert_eq!(res.status, StatusCode::ACCEPTED, "retry {id}: {}", res.body);
    }
    if !failed.is_empty() {
        eprintln!("chaos: {} provisionings failed: {reasons:#?}", failed.len());
    }
    eventually("every retried tenant active", Duration::from_secs(60), || async {
        let list = client.all("/v1/tenants?status=active").await;
        let active: BTreeSet<&str> = list.iter().map(|t| t["id"].as_str().unwrap()).collect();
        let left: Vec<_> = failed.iter().filter(|id| !active.contains(id.as_str())).collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    })
    .await;
    let provisioned = client.all("/v1/events?detail_type=TenantProvisioned").await;
    let mut per_tenant: BTreeMap<String, usize> = BTreeMap::new();
    for e in &provisioned {
        *per_tenant.entry(e["tenant_id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    for id in &all {
        assert_eq!(per_tenant.get(id).copied(), Some(1), "TenantProvisioned of {id} after the retries");
    }

    eventually("no execution running", Duration::from_secs(60), || async {
        let running = client.all("/v1/executions?status=RUNNING").await;
        if running.is_empty() {
            Ok(())
        } else {
            Err(format!("{} running, e.g. {}", running.len(), running[0]))
        }
    })
    .await;

    // Every event the subscription matches was delivered at least once.
    let mut events: BTreeSet<String> = BTreeSet::new();
    for t in ["TenantCreated", "TenantProvisioned"] {
        events.extend(
            client
                .all(&format!("/v1/events?detail_type={t}"))
                .await
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned()),
        );
    }
    eventually("every event delivered to the webhook", Duration::from_secs(90), || async {
        let got = received.webhooks.lock().unwrap();
        let missing: Vec<_> = events.iter().filter(|id| !got.contains_key(*id)).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("{} of {} missing, e.g. {:?}", missing.len(), events.len(), missing[0]))
        }
    })
    .await;

    // Every message sent was received; none was received by a receive sent after its
    // deletion was acknowledged; the queue is empty.
    {
        let sent = queue_log.sent.lock().unwrap();
        let deleted = queue_log.deleted.lock().unwrap();
        let received = queue_log.received.lock().unwrap();
        let got: BTreeSet<u64> = received.iter().map(|(n, _)| *n).collect();
        let lost: Vec<_> = sent.difference(&got).collect();
        assert!(lost.is_empty(), "{} of {} messages never received: {lost:?}", lost.len(), sent.len());
        for (n, asked) in received.iter() {
            if let Some(at) = deleted.get(n) {
                assert!(asked <= at, "message {n} received by a receive sent after its deletion");
            }
        }
    }
    let depth = client.get("/v1/queues/work").await.body;
    assert_eq!((depth["visible"].as_u64(), depth["in_flight"].as_u64()), (Some(0), Some(0)), "{depth}");

    // The quota: never granted past its limit, usage at most the limit and at least the grants.
    let granted = quota_log.granted.load(Ordering::SeqCst);
    let unanswered = quota_log.unanswered.load(Ordering::SeqCst);
    let quotas = client.get("/v1/tenants/race/quotas").await.body;
    let used =
        quotas["items"].as_array().unwrap().iter().find(|q| q["name"] == "seats").unwrap()["used"].as_u64().unwrap();
    assert!(granted <= QUOTA_LIMIT, "{granted} seats granted of {QUOTA_LIMIT}");
    assert!(
        granted <= used && used <= QUOTA_LIMIT.min(granted + unanswered),
        "{granted} granted, {unanswered} unanswered, {used} used"
    );

    // The audit chain verifies, everything sealed.
    let verify = eventually("the audit log sealed", Duration::from_secs(60), || async {
        let v = client.get("/v1/audit/verify").await.body;
        if v["pending"] == 0 {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    })
    .await;
    assert_eq!(verify["ok"], true, "{verify}");

    let errors = seen.errors.lock().unwrap().clone();
    eprintln!(
        "chaos: {tenants} tenants ({} failed), {kills} kills, set-up {setup:?}, chaos {chaos:?}, settle {:?}; \
         {} requests, {} dropped connections, {} 503s or keys in use, {} creates run again; {} messages, {granted} seats granted, {unanswered} \
         consumes unanswered; {} events delivered; {} audit records",
        failed.len(),
        settle.elapsed(),
        seen.requests.load(Ordering::Relaxed),
        seen.dropped.load(Ordering::Relaxed),
        seen.unavailable.load(Ordering::Relaxed),
        seen.rerun.load(Ordering::Relaxed),
        queue_log.sent.lock().unwrap().len(),
        events.len(),
        verify["records"],
    );
    assert!(errors.is_empty(), "{} requests answered 5xx (not 503): {errors:#?}", errors.len());
}
