//! `soak`: a fixed mixed load on the release server for `--minutes` (30 by default),
//! sampling every `--interval-s` (30) the server's RSS and open file descriptors (from
//! `/proc/<pid>`), the size of the SQLite WAL (on PostgreSQL: the cluster's `pg_wal`)
//! and of the database, and the p50/p99 latency of the interval's requests; then a
//! table and a verdict on whether each stayed flat.
//!
//! RSS is the highest of the interval, read every second: a transient, such as the
//! archiver's pass every five minutes (a few seconds, tens of MiB), then counts in
//! whichever interval it falls, not only when a 30-second sample happens to land on it
//! (the server's timers and the sampler start together, so they would keep landing
//! on it, or keep missing it).
//!
//! The server is the `tenancy` binary next to this one (`--server-bin` to choose
//! another), run as its own process with `tenancy serve`, so its RSS and descriptors
//! are its own and not the load generator's. Rate limits are off (0) and the
//! loopback receivers are allowed outbound.
//!
//! The load is open loop: `--rate` operations a second in a fixed cycle of 20
//! (so the offered load does not drop when the server slows down, which a closed loop
//! would hide), with at most 256 in flight (a tick finding them all busy is counted as
//! `skipped`, and a run that skips is overloaded, not a soak). One cycle of 20:
//! - 1 tenant create (every 10th on a silo plan: its own SQLite database), provisioned
//!   through a `sync` provision hook on a local receiver, its events fanned out to a
//!   webhook subscription on another local receiver;
//! - 5 tenant gets, 4 secret reads (each commits a `secret.read` audit entry) and 3
//!   quota consumes (1 unit of a quota far from its limit) over 100 tenants created
//!   before the clock starts;
//! - 4 queue sends and 3 receives, each receive deleting in one batch what it got
//!   (up to 10 messages, no long poll), so the queue's depth stays bounded.
//!
//! Before the clock starts, a warm-up runs the same mix at full speed until the
//! database has grown by `--warm-up-mib` (32 MiB, the default page-cache bound): see
//! [`warm_up`] for why.
//!
//! Flat means: for each figure, the mean of the last third of the samples against the
//! mean of the first third (the first minute left out: caches and pools fill there),
//! within a tolerance (see [`TOLERANCES`] and docs/BENCHMARKS.md for why these).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};
use sqlx::Connection;
use tenancy_client::Client;
use tenancy_domain::hook::{HookEvent, HookMode, HookSpec};
use tenancy_domain::plan::{Isolation, PlanSpec, Quota, QuotaSpec};
use tenancy_domain::queue::QueueSpec;
use tenancy_domain::secret::SecretPut;
use tenancy_domain::subscription::{NewSubscription, Target};

use crate::tenants::fresh_database;

/// Tenants read from (gets, secret reads, quota consumes), created before the clock.
const WORKING_SET: usize = 100;
/// Requests in flight at most; a tick finding them all taken is skipped.
const MAX_IN_FLIGHT: usize = 256;
const QUEUE: &str = "soak";
/// The admin token (`tenancy serve` wants 32 characters at least).
const TOKEN: &str = "soak-admin-token-0123456789abcdefghij";

/// One cycle of the fixed mix (20 operations).
const MIX: [Op; 20] = {
    use Op::*;
    [
        Create, Get, Secret, Send, Consume, Receive, Get, Secret, Send, Receive, Get, Consume, Secret, Send, Get,
        Receive, Secret, Send, Consume, Get,
    ]
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Get,
    Secret,
    Consume,
    Send,
    Receive,
}

/// Allowed growth, last third against first third, of: RSS, file descriptors, WAL
/// size, p99 latency. Each is `(relative, absolute)`: flat if
/// `last <= first * (1 + relative) + absolute`.
pub const TOLERANCES: [(&str, f64, f64); 4] = [
    // RSS: 10%. A leak of one allocation per request grows without bound, at this rate
    // far beyond 10% in 20 minutes; allocator and page-cache noise stay within it.
    ("rss", 0.10, 0.0),
    // Descriptors: 8 over the count. Pools open and close connections on demand, and
    // in-flight HTTP connections come and go between samples; a leaked descriptor per
    // request or per tenant grows by thousands.
    ("fds", 0.0, 8.0),
    // WAL: checkpoints reset it; twice the first third's mean plus 4 MiB (its size
    // between checkpoints wanders with how much the last pass could copy).
    ("wal", 1.0, 4.0 * 1024.0 * 1024.0),
    // p99: 50% plus 5 ms. The machine is shared (other builds run beside the soak), so
    // latency is noisy; a table or index scan that grows with the data shows as a
    // steady rise well beyond it.
    ("p99", 0.50, 5.0),
];

#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// `postgres://...` server to create a fresh database on (default: SQLite).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Minutes of load.
    #[arg(long, default_value_t = 30)]
    pub minutes: u64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 30)]
    pub interval_s: u64,
    /// Operations a second (open loop, in the fixed mix).
    #[arg(long, default_value_t = 100)]
    pub rate: u64,
    /// The `tenancy` binary to run [default: the one next to this program].
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Write the samples as CSV to this file too.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Before the clock starts, run the mix at full speed until the database has grown
    /// by this many MiB (0: no warm-up). The default is SQLite's page-cache bound
    /// (`--sqlite-cache-mib`, 32), so the soak measures the server with its caches
    /// full, not filling them.
    #[arg(long, default_value_t = WARM_UP_MIB)]
    pub warm_up_mib: u64,
}

/// The default warm-up: the server's default `--sqlite-cache-mib`.
pub const WARM_UP_MIB: u64 = 32;
/// Requests in flight during the warm-up (closed loop).
const WARM_UP_CLIENTS: usize = 32;

/// What the load generator collects between two samples.
#[derive(Default)]
struct Interval {
    latencies: Vec<Duration>,
    errors: usize,
}

#[derive(Debug, Clone)]
struct Sample {
    at_s: f64,
    requests: usize,
    errors: usize,
    skipped: usize,
    p50_ms: f64,
    p99_ms: f64,
    rss: u64,
    fds: u64,
    wal: u64,
    db: u64,
    tenants: i64,
    hook_calls: usize,
    deliveries: usize,
}

/// Counts of what the local receivers were sent.
#[derive(Default)]
struct Received {
    hook_calls: AtomicUsize,
    deliveries: AtomicUsize,
}

async fn receivers(received: Arc<Received>) -> anyhow::Result<String> {
    let hooks = received.clone();
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(move |_body: axum::Json<Value>| {
                let r = hooks.clone();
                async move {
                    r.hook_calls.fetch_add(1, Ordering::Relaxed);
                    axum::http::StatusCode::OK
                }
            }),
        )
        .route(
            "/webhook",
            axum::routing::post(move || {
                let r = received.clone();
                async move {
                    r.deliveries.fetch_add(1, Ordering::Relaxed);
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// Fields of `/proc/<process>/status` given in kB (`VmRSS:`, `VmHWM:`), in KiB, in
/// the order asked; `process` is a pid or `self`.
pub fn status_kib<const N: usize>(process: &str, fields: [&str; N]) -> anyhow::Result<[u64; N]> {
    let status = std::fs::read_to_string(format!("/proc/{process}/status"))?;
    let mut out = [0; N];
    for (value, name) in out.iter_mut().zip(fields) {
        *value = status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .with_context(|| format!("no {name} in /proc/{process}/status"))?;
    }
    Ok(out)
}

/// `VmRSS` of a process, in bytes.
fn rss(pid: u32) -> anyhow::Result<u64> {
    let [kib] = status_kib(&pid.to_string(), ["VmRSS:"])?;
    Ok(kib * 1024)
}

fn fds(pid: u32) -> anyhow::Result<u64> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64)
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// The WAL and database sizes: the SQLite files, or on PostgreSQL the cluster's
/// `pg_wal` (shared with whatever else runs on the cluster) and this database.
async fn storage(database_url: &str, conn: &mut sqlx::AnyConnection, dir: &Path) -> anyhow::Result<(u64, u64)> {
    if database_url.starts_with("sqlite") {
        let db = dir.join("tenancy.db");
        return Ok((file_len(&dir.join("tenancy.db-wal")), file_len(&db)));
    }
    let row: (i64, i64) = sqlx::query_as(
        "SELECT CAST((SELECT COALESCE(SUM(size), 0) FROM pg_ls_waldir()) AS BIGINT), \
         CAST(pg_database_size(current_database()) AS BIGINT)",
    )
    .fetch_one(conn)
    .await?;
    Ok((row.0 as u64, row.1 as u64))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `tenancy serve` on a free loopback port; returns the child and its URL once
/// `/readyz` answers.
async fn start_server(
    bin: &Path,
    dir: &Path,
    database_url: &str,
    http: &reqwest::Client,
) -> anyhow::Result<(tokio::process::Child, String)> {
    let port = free_port()?;
    let log = std::fs::File::create(dir.join("server.log"))?;
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("serve")
        .env("TENANCY_LISTEN", format!("127.0.0.1:{port}"))
        .env("TENANCY_DATA_DIR", dir)
        .env("TENANCY_DATABASE_URL", database_url)
        .env("TENANCY_ADMIN_TOKEN", TOKEN)
        .env("TENANCY_NODE_ID", "soak")
        .env("TENANCY_OUTBOUND_ALLOW", "127.0.0.0/8")
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    for role in ["ADMIN", "OPERATOR", "VIEWER", "SERVICE", "TENANT_KEY", "TENANT"] {
        cmd.env(format!("TENANCY_RATE_LIMIT_{role}_PER_S"), "0");
    }
    let mut child = cmd.spawn().with_context(|| format!("run {}", bin.display()))?;
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if http.get(format!("{url}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok((child, url));
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the server exited ({status}); see {}", dir.join("server.log").display());
        }
        anyhow::ensure!(Instant::now() < deadline, "the server was not ready in 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tenant_id(i: usize) -> String {
    format!("w{i:04}")
}

async fn setup(client: &Client, receiver: &str) -> anyhow::Result<()> {
    let hook = HookSpec {
        url: Some(format!("{receiver}/hook")),
        queue: None,
        events: vec![HookEvent::Provision],
        mode: Some(HookMode::Sync),
        timeout_s: None,
        max_attempts: None,
        rotate_secret: false,
        connection: None,
    };
    client.hook_put("soak-crm", &hook).await.context("PUT /v1/hooks/soak-crm")?;
    let sub = NewSubscription {
        name: "soak".into(),
        pattern: json!({"detail-type": [{"prefix": "Tenant"}]}),
        target: Target::Webhook {
            url: format!("{receiver}/webhook"),
            max_concurrency: Some(8),
            timeout_ms: None,
            max_attempts: None,
            connection: None,
        },
    };
    client.subscription_create(&sub).await.context("POST /v1/subscriptions")?;
    for (id, isolation) in [("pooled", Isolation::Pool), ("dedicated", Isolation::Silo)] {
        let spec = PlanSpec {
            name: id.to_owned(),
            isolation,
            features: vec![],
            quotas: [("calls".to_owned(), QuotaSpec::Full(Quota { limit: 1 << 50, period: None, soft: false }))].into(),
            workflows: Default::default(),
            config: Default::default(),
            rate_limit: None,
            regions: vec![],
            max_tenants: None,
            self_service: false,
        };
        client.plan_put(id, &spec).await.with_context(|| format!("PUT /v1/plans/{id}"))?;
    }
    let spec = QueueSpec {
        visibility_timeout_s: 30,
        max_receive_count: None,
        dead_letter_queue: None,
        delay_s: None,
        retention_s: None,
    };
    client.queue_put(QUEUE, &spec).await.context("PUT /v1/queues/soak")?;
    for i in 0..WORKING_SET {
        let t = tenancy_domain::tenant::NewTenant {
            id: Some(tenant_id(i)),
            name: format!("Working {i}"),
            plan: "pooled".into(),
            region: None,
            metadata: None,
        };
        client.tenant_create(&t).await.context("POST /v1/tenants")?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for i in 0..WORKING_SET {
        loop {
            let t = client.tenant_get(&tenant_id(i)).await?;
            if t.status == tenancy_domain::tenant::TenantStatus::Active {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "tenant {} not active: {:?}", tenant_id(i), t.status);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let body = SecretPut {
            value: Some(format!("soak-password-{i:04}-{}", "x".repeat(24))),
            generate: None,
            rotation: None,
        };
        client.secret_put(Some(&tenant_id(i)), "db-password", &body).await.context("secret put")?;
    }
    Ok(())
}

/// One operation; whether it succeeded.
async fn op(http: &reqwest::Client, base: &str, op: Op, n: usize) -> bool {
    let ok = |r: Result<reqwest::Response, reqwest::Error>| r.is_ok_and(|r| r.status().is_success());
    let w = tenant_id((n * 7) % WORKING_SET);
    match op {
        Op::Create => {
            let plan = if (n / MIX.len()).is_multiple_of(10) { "dedicated" } else { "pooled" };
            let body = json!({"id": format!("s{n:08}"), "name": format!("Soak {n}"), "plan": plan});
            ok(http.post(format!("{base}/v1/tenants")).bearer_auth(TOKEN).json(&body).send().await)
        }
        Op::Get => ok(http.get(format!("{base}/v1/tenants/{w}")).bearer_auth(TOKEN).send().await),
        Op::Secret => {
            ok(http.get(format!("{base}/v1/tenants/{w}/secrets/db-password")).bearer_auth(TOKEN).send().await)
        }
        Op::Consume => ok(http
            .post(format!("{base}/v1/tenants/{w}/quotas/calls/consume"))
            .bearer_auth(TOKEN)
            .json(&json!({"amount": 1}))
            .send()
            .await),
        Op::Send => ok(http
            .post(format!("{base}/v1/queues/{QUEUE}/messages"))
            .bearer_auth(TOKEN)
            .json(&json!({"body": {"n": n, "payload": "x".repeat(64)}}))
            .send()
            .await),
        Op::Receive => {
            let got = http
                .post(format!("{base}/v1/queues/{QUEUE}/receive"))
                .bearer_auth(TOKEN)
                .json(&json!({"max": 10, "wait_s": 0}))
                .send()
                .await;
            let Ok(got) = got else { return false };
            if !got.status().is_success() {
                return false;
            }
            let Ok(body) = got.json::<Value>().await else { return false };
            let receipts: Vec<Value> = body["messages"]
                .as_array()
                .map(|m| m.iter().map(|m| m["receipt"].clone()).collect())
                .unwrap_or_default();
            if receipts.is_empty() {
                return true;
            }
            ok(http
                .post(format!("{base}/v1/queues/{QUEUE}/messages/delete"))
                .bearer_auth(TOKEN)
                .json(&json!({"receipts": receipts}))
                .send()
                .await)
        }
    }
}

/// The warm-up: the mix, closed loop with [`WARM_UP_CLIENTS`] in flight, until the
/// database has grown by `mib` MiB. The page cache (SQLite's, bounded by
/// `--sqlite-cache-mib`) fills as the database grows, so without it the first third of
/// the soak would measure the cache filling (minutes 0-6 at 100 ops/s) rather than a
/// server in its steady state. Returns the operations it ran: the clocked load numbers
/// its operations after them (tenant ids stay unique).
async fn warm_up(
    http: &reqwest::Client,
    base: &str,
    database_url: &str,
    conn: &mut sqlx::AnyConnection,
    dir: &Path,
    grow_mib: u64,
) -> anyhow::Result<usize> {
    if grow_mib == 0 {
        return Ok(0);
    }
    let started = Instant::now();
    let (_, db0) = storage(database_url, conn, dir).await?;
    let target = db0 + grow_mib * 1024 * 1024;
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let errors = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..WARM_UP_CLIENTS)
        .map(|_| {
            let (http, base) = (http.clone(), base.to_owned());
            let (next, stop, errors) = (next.clone(), stop.clone(), errors.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if !op(&http, &base, MIX[n % MIX.len()], n).await {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let deadline = started + Duration::from_secs(600);
    let grown = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (_, db) = storage(database_url, conn, dir).await?;
        if db >= target || Instant::now() > deadline {
            break db.saturating_sub(db0);
        }
    };
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await?;
    }
    let errors = errors.load(Ordering::Relaxed);
    anyhow::ensure!(errors == 0, "{errors} requests failed during the warm-up");
    anyhow::ensure!(
        grown >= grow_mib * 1024 * 1024,
        "the warm-up did not grow the database by {grow_mib} MiB in 10 minutes"
    );
    // Round up to a whole cycle of the mix, so the clocked load starts at its beginning.
    let ops = next.load(Ordering::Relaxed).next_multiple_of(MIX.len());
    eprintln!(
        "soak: warm-up of {ops} operations in {:.1} s: the database grew by {:.1} MiB",
        started.elapsed().as_secs_f64(),
        mib(grown)
    );
    Ok(ops)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// Mean of the first and of the last third of `values` (samples of the first minute
/// left out of the first third).
fn thirds(samples: &[Sample], value: impl Fn(&Sample) -> f64) -> (f64, f64) {
    let steady: Vec<f64> = samples.iter().filter(|s| s.at_s > 60.0).map(&value).collect();
    let third = (steady.len() / 3).max(1);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    (mean(&steady[..third.min(steady.len())]), mean(&steady[steady.len().saturating_sub(third)..]))
}

pub async fn run(args: SoakArgs) -> anyhow::Result<()> {
    let bin = match args.server_bin.clone() {
        Some(b) => b,
        None => std::env::current_exe()?.with_file_name("tenancy"),
    };
    anyhow::ensure!(bin.is_file(), "no server binary at {} (cargo build --release -p tenancy)", bin.display());
    let dir = tempfile::tempdir()?;
    let (database_url, backend) = fresh_database(args.database_url.as_deref(), dir.path()).await?;
    let http = crate::http_load::client(MAX_IN_FLIGHT);
    let (mut child, base) = start_server(&bin, dir.path(), &database_url, &http).await?;
    let pid = child.id().context("the server's pid")?;
    let received = Arc::new(Received::default());
    let receiver = receivers(received.clone()).await?;
    let client = Client::with_http(http.clone(), &base, Some(TOKEN.to_owned()));
    setup(&client, &receiver).await?;
    sqlx::any::install_default_drivers();
    let conn = &mut sqlx::AnyConnection::connect(&database_url).await?;
    let first_op = warm_up(&http, &base, &database_url, conn, dir.path(), args.warm_up_mib).await?;

    eprintln!(
        "soak: {} min at {} ops/s ({backend}, server pid {pid}, {}), a sample every {} s",
        args.minutes,
        args.rate,
        bin.display(),
        args.interval_s
    );
    let interval = Arc::new(Mutex::new(Interval::default()));
    let skipped = Arc::new(AtomicUsize::new(0));
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let started = Instant::now();
    let end = started + Duration::from_secs(args.minutes * 60);
    let load = {
        let (interval, skipped, http, base) = (interval.clone(), skipped.clone(), http.clone(), base.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate.max(1) as f64));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n = first_op;
            while Instant::now() < end {
                tick.tick().await;
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let kind = MIX[n % MIX.len()];
                let (interval, http, base) = (interval.clone(), http.clone(), base.clone());
                tokio::spawn(async move {
                    let t = Instant::now();
                    let ok = op(&http, &base, kind, n).await;
                    let took = t.elapsed();
                    let mut i = interval.lock().expect("interval");
                    i.latencies.push(took);
                    if !ok {
                        i.errors += 1;
                    }
                    drop(permit);
                });
                n += 1;
            }
        })
    };

    // The highest RSS since the last sample, read every second.
    let peak_rss = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let watcher = {
        let peak_rss = peak_rss.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                if let Ok(now) = rss(pid) {
                    peak_rss.fetch_max(now, Ordering::Relaxed);
                }
            }
        })
    };
    let mut samples: Vec<Sample> = Vec::new();
    let mut next = started + Duration::from_secs(args.interval_s);
    println!(
        "{:>6} {:>7} {:>6} {:>7} {:>8} {:>8} {:>8} {:>5} {:>8} {:>8} {:>7} {:>7} {:>8}",
        "min",
        "reqs",
        "errors",
        "skipped",
        "p50 ms",
        "p99 ms",
        "RSS max",
        "fds",
        "WAL MiB",
        "DB MiB",
        "tenants",
        "hooks",
        "webhooks"
    );
    while next <= end + Duration::from_millis(10) {
        tokio::time::sleep_until(next.into()).await;
        next += Duration::from_secs(args.interval_s);
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the server exited ({status}); see {}", dir.path().join("server.log").display());
        }
        let i = std::mem::take(&mut *interval.lock().expect("interval"));
        let (wal, db) = storage(&database_url, conn, dir.path()).await?;
        let tenants: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM tenants").fetch_one(&mut *conn).await?;
        let s = Sample {
            at_s: started.elapsed().as_secs_f64(),
            requests: i.latencies.len(),
            errors: i.errors,
            skipped: skipped.swap(0, Ordering::Relaxed),
            p50_ms: ms(crate::http_load::percentile(&i.latencies, 50.0)),
            p99_ms: ms(crate::http_load::percentile(&i.latencies, 99.0)),
            rss: {
                let now = rss(pid)?;
                peak_rss.swap(now, Ordering::Relaxed).max(now)
            },
            fds: fds(pid)?,
            wal,
            db,
            tenants: tenants.0,
            hook_calls: received.hook_calls.load(Ordering::Relaxed),
            deliveries: received.deliveries.load(Ordering::Relaxed),
        };
        println!(
            "{:>6.1} {:>7} {:>6} {:>7} {:>8.2} {:>8.2} {:>8.1} {:>5} {:>8.2} {:>8.1} {:>7} {:>7} {:>8}",
            s.at_s / 60.0,
            s.requests,
            s.errors,
            s.skipped,
            s.p50_ms,
            s.p99_ms,
            mib(s.rss),
            s.fds,
            mib(s.wal),
            mib(s.db),
            s.tenants,
            s.hook_calls,
            s.deliveries
        );
        samples.push(s);
    }
    load.await?;
    watcher.abort();
    let _ = child.start_kill();
    let _ = child.wait().await;

    if let Some(path) = &args.csv {
        let mut csv = String::from(
            "minute,requests,errors,skipped,p50_ms,p99_ms,rss_mib,fds,wal_mib,db_mib,tenants,hook_calls,deliveries\n",
        );
        for s in &samples {
            csv.push_str(&format!(
                "{:.2},{},{},{},{:.3},{:.3},{:.2},{},{:.3},{:.2},{},{},{}\n",
                s.at_s / 60.0,
                s.requests,
                s.errors,
                s.skipped,
                s.p50_ms,
                s.p99_ms,
                mib(s.rss),
                s.fds,
                mib(s.wal),
                mib(s.db),
                s.tenants,
                s.hook_calls,
                s.deliveries
            ));
        }
        std::fs::write(path, csv).with_context(|| format!("write {}", path.display()))?;
    }

    let errors: usize = samples.iter().map(|s| s.errors).sum();
    let skipped: usize = samples.iter().map(|s| s.skipped).sum();
    let requests: usize = samples.iter().map(|s| s.requests).sum();
    let mut flat = true;
    let mut verdicts = Vec::new();
    for (name, rel, abs) in TOLERANCES {
        let (first, last) = thirds(&samples, |s| match name {
            "rss" => s.rss as f64,
            "fds" => s.fds as f64,
            "wal" => s.wal as f64,
            _ => s.p99_ms,
        });
        let ok = last <= first * (1.0 + rel) + abs;
        flat &= ok;
        let show = |v: f64| match name {
            "rss" | "wal" => format!("{:.1} MiB", mib(v as u64)),
            "fds" => format!("{v:.1}"),
            _ => format!("{v:.2} ms"),
        };
        verdicts.push(format!("{name} {} -> {} {}", show(first), show(last), if ok { "flat" } else { "GROWS" }));
    }
    println!("{}", verdicts.join("; "));
    println!(
        "soak: {} ({backend}, {} min at {} ops/s: {requests} requests, {errors} errors, {skipped} skipped)",
        if flat && errors == 0 && skipped == 0 { "flat" } else { "NOT FLAT" },
        args.minutes,
        args.rate
    );
    if tenancy::config::env_flag("BENCH_KEEP_DATA") {
        eprintln!("data kept in {}", dir.keep().display());
    }
    anyhow::ensure!(errors == 0, "{errors} requests failed");
    Ok(())
}
