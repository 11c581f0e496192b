//! Cross-region recovery on PostgreSQL (docs/operations.md "Cross-region recovery").
//!
//! Two PostgreSQL clusters of the test's own on loopback ports: a primary and a
//! streaming standby made with `pg_basebackup`, which receives the primary's WAL
//! through a proxy that delays every byte by half a round trip each way (40 ms, or
//! `TENANCY_FAILOVER_RTT_MS`), like a link between two regions. Two `tenancy serve`
//! replicas (the real binary) run on the primary while clients create tenants through
//! both; then the primary's region is lost: the link first, cut with what it was
//! carrying, and half a second later the rest (both replicas killed with SIGKILL, the
//! primary stopped in immediate mode); the standby is promoted and a replica of the
//! other region starts on it.
//!
//! - With `synchronous_commit = remote_apply` (the standby named in
//!   `synchronous_standby_names`) every write a client saw acknowledged is there.
//! - With asynchronous replication the test prints the loss window (acknowledged
//!   writes missing: those in flight on the link, and those acknowledged while the
//!   primary outlived it) and asserts
//!   only what is guaranteed: what the standby had before the load is there, the
//!   promoted database is a prefix of the primary's history (a client's acknowledged
//!   write is missing only if everything it wrote after it is missing too), every
//!   tenant there finishes its provisioning, the audit chain verifies whole, and the
//!   promoted database takes writes.
//!
//! The clusters need PostgreSQL's server programs (initdb, pg_ctl, pg_basebackup):
//! `TENANCY_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`, as `scripts/postgres.sh`
//! finds them (and installs them when missing). Without them the test fails and says so.

mod support;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Connection;
use support::process::{try_spawn, Server, Spawn};
use support::ADMIN;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
/// The replication link's round trip: 40 ms, about that between two neighbouring cloud
/// regions; `TENANCY_FAILOVER_RTT_MS` sets another (for measuring, docs/BENCHMARKS.md).
fn link_delay() -> Duration {
    let rtt = tenancy::config::env_var("TENANCY_FAILOVER_RTT_MS").and_then(|v| v.parse().ok()).unwrap_or(40);
    Duration::from_millis(rtt) / 2
}
/// How long the clients write before the region is lost (at least; until
/// [`MIN_ACKS`] writes were acknowledged).
const LOAD: Duration = Duration::from_secs(3);
const MIN_ACKS: usize = 40;
/// How long the primary's region outlives its link to the standby before it dies.
const PARTITION: Duration = Duration::from_millis(500);
/// Clients writing through each of the two replicas, one request at a time each.
const CLIENTS_PER_REPLICA: usize = 4;

/// The two scenarios run one after the other so that neither's figures measure the
/// other's load.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Replication {
    /// `synchronous_commit = remote_apply`, the standby synchronous.
    RemoteApply,
    /// The defaults: the primary commits without waiting for the standby.
    Async,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_apply_loses_no_acknowledged_write_on_failover() {
    let _one = SERIAL.lock().await;
    let r = failover(Replication::RemoteApply).await;
    assert!(r.lost.is_empty(), "{} acknowledged writes lost with remote_apply: {:?}", r.lost.len(), r.lost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_replication_failover_keeps_a_consistent_prefix_and_reports_its_loss_window() {
    let _one = SERIAL.lock().await;
    failover(Replication::Async).await;
}

/// The server programs of PostgreSQL.
fn pg_bin_dir() -> PathBuf {
    if let Some(dir) = tenancy::config::env_var("TENANCY_PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(dir.join("initdb").is_file(), "TENANCY_PG_BIN={} holds no initdb", dir.display());
        return dir;
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
                .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").is_file() && bin.join("pg_basebackup").is_file())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "region_failover starts PostgreSQL clusters of its own and needs initdb, pg_ctl and pg_basebackup, \
             found neither in TENANCY_PG_BIN nor under /usr/lib/postgresql/*/bin: install PostgreSQL \
             (apt-get install postgresql; scripts/test does it when they are missing) or set TENANCY_PG_BIN"
        ),
    }
}

/// Runs PostgreSQL's programs, as the postgres user when the test runs as root
/// (initdb and postgres refuse root).
struct Pg {
    bin: PathBuf,
    root: bool,
}

impl Pg {
    fn new() -> Pg {
        Pg { bin: pg_bin_dir(), root: rustix::process::getuid().is_root() }
    }

    fn run(&self, tool: &str, args: &[&OsStr]) -> std::process::Output {
        let exe = self.bin.join(tool);
        let mut cmd = if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        cmd.args(args).output().unwrap_or_else(|e| panic!("run {tool}: {e}"))
    }

    fn run_ok(&self, tool: &str, args: &[&OsStr]) {
        let out = self.run(tool, args);
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// One cluster under `dir` (`data`, `log`, its socket), listening on 127.0.0.1:`port`;
/// stopped in immediate mode when dropped.
struct Cluster {
    pg: Arc<Pg>,
    dir: PathBuf,
    port: u16,
}

impl Cluster {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start(&self, settings: &[&str]) {
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
            self.port,
            self.dir.display()
        );
        for s in settings {
            opts.push_str(" -c ");
            opts.push_str(s);
        }
        let (data, log) = (self.data(), self.dir.join("log"));
        let out = self.pg.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-o".as_ref(),
                opts.as_ref(),
                "start".as_ref(),
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}\nits log: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops at once, as a crash would: no checkpoint, nothing more sent to standbys.
    fn stop_immediately(&self) {
        let data = self.data();
        self.pg.run("pg_ctl", &["-D".as_ref(), data.as_os_str(), "-m".as_ref(), "immediate".as_ref(), "stop".as_ref()]);
    }

    async fn connect(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.url()).await.unwrap_or_else(|e| panic!("connect to {}: {e}", self.url()))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_immediately();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A TCP proxy on loopback to `upstream` that delivers every byte `delay` after it
/// arrived, in both directions; cancelling the token cuts the link: its connections
/// close and what they were carrying is lost.
async fn delayed_link(upstream: u16, delay: Duration) -> (u16, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cut = CancellationToken::new();
    let c = cut.clone();
    tokio::spawn(async move {
        loop {
            let down = tokio::select! {
                _ = c.cancelled() => return,
                r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
            };
            let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)).await else { continue };
            let _ = (down.set_nodelay(true), up.set_nodelay(true));
            let (dr, dw) = down.into_split();
            let (ur, uw) = up.into_split();
            tokio::spawn(delayed_pipe(dr, uw, delay, c.clone()));
            tokio::spawn(delayed_pipe(ur, dw, delay, c.clone()));
        }
    });
    (port, cut)
}

async fn delayed_pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration, cut: CancellationToken) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf).await {
            if tx.send((tokio::time::Instant::now() + delay, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        _ = cut.cancelled() => {}
        _ = async { tokio::join!(reader, writer) } => {}
    }
}

/// Starts `tenancy serve` on `database_url` as node `node`, with a data dir of its own.
async fn replica(database_url: &str, node: &str) -> (Server, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (path, url, node) = (dir.path().to_owned(), database_url.to_owned(), node.to_owned());
    let (server, base) = tokio::task::spawn_blocking(move || {
        let how = Spawn {
            env: vec![("TENANCY_DATABASE_URL", url), ("TENANCY_MASTER_KEY", KEY.to_owned()), ("TENANCY_NODE_ID", node)],
            ..Spawn::default()
        };
        try_spawn(&path, how)
    })
    .await
    .unwrap()
    .unwrap_or_else(|(code, stderr)| panic!("tenancy serve exited ({code}): {stderr}"));
    (server, base, dir)
}

/// A write a client saw acknowledged: its `n`th attempt created tenant `id`.
#[derive(Debug, Clone)]
struct Ack {
    client: usize,
    n: usize,
    id: String,
    at: Instant,
    latency: Duration,
}

struct Outcome {
    lost: Vec<Ack>,
}

async fn call(http: &reqwest::Client, method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut req = http.request(method, url).bearer_auth(ADMIN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request sent");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Every tenant id the server at `base` lists.
async fn tenant_ids(http: &reqwest::Client, base: &str) -> std::collections::BTreeMap<String, String> {
    let mut all = std::collections::BTreeMap::new();
    let mut cursor = String::new();
    loop {
        let (status, page) =
            call(http, reqwest::Method::GET, format!("{base}/v1/tenants?limit=1000{cursor}"), None).await;
        assert_eq!(status, 200, "{page}");
        for t in page["items"].as_array().unwrap() {
            all.insert(t["id"].as_str().unwrap().to_owned(), t["status"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return all,
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn failover(mode: Replication) -> Outcome {
    let pg = Arc::new(Pg::new());
    let root = tempfile::tempdir().unwrap();
    let primary = Cluster { pg: pg.clone(), dir: root.path().join("primary"), port: free_port() };
    let standby = Cluster { pg: pg.clone(), dir: root.path().join("standby"), port: free_port() };
    std::fs::create_dir_all(&primary.dir).unwrap();
    std::fs::create_dir_all(&standby.dir).unwrap();
    if pg.root {
        let chown = Command::new("chown").args(["-R", "postgres"]).arg(root.path()).status().unwrap();
        assert!(chown.success(), "chown the clusters' directory to postgres");
    }
    let setup = Instant::now();

    // The primary, and the standby from its base backup, fed through the delayed link.
    let primary_data = primary.data();
    tokio::task::block_in_place(|| {
        pg.run_ok(
            "initdb",
            &[
                "-D".as_ref(),
                primary_data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "-N".as_ref(),
            ],
        );
        let sync: &[&str] = match mode {
            Replication::RemoteApply => &["synchronous_standby_names=standby", "synchronous_commit=remote_apply"],
            Replication::Async => &[],
        };
        primary.start(sync);
        let standby_data = standby.data();
        let port = primary.port.to_string();
        pg.run_ok(
            "pg_basebackup",
            &[
                "-h".as_ref(),
                "127.0.0.1".as_ref(),
                "-p".as_ref(),
                port.as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-D".as_ref(),
                standby_data.as_os_str(),
                "-X".as_ref(),
                "stream".as_ref(),
                "-c".as_ref(),
                "fast".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
    });
    let (link_port, cut) = delayed_link(primary.port, link_delay()).await;
    let standby_data = standby.data();
    std::fs::write(standby_data.join("standby.signal"), "").unwrap();
    let mut auto = std::fs::read_to_string(standby_data.join("postgresql.auto.conf")).unwrap_or_default();
    auto.push_str(&format!(
        "\nprimary_conninfo = 'host=127.0.0.1 port={link_port} user=postgres application_name=standby'\n"
    ));
    std::fs::write(standby_data.join("postgresql.auto.conf"), auto).unwrap();
    if pg.root {
        assert!(Command::new("chown").args(["-R", "postgres"]).arg(&standby_data).status().unwrap().success());
    }
    tokio::task::block_in_place(|| standby.start(&[]));
    let mut p = primary.connect().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let streaming: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'standby' AND state = 'streaming'",
        )
        .fetch_one(&mut p)
        .await
        .unwrap();
        if streaming == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the standby never streamed from the primary");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("{mode:?}: primary and streaming standby ready in {:?}", setup.elapsed());

    // Two replicas of region A on the primary; a plan and tenants the standby has
    // replayed before the load begins.
    let primary_url = primary.url();
    let ((a1, url1, _d1), (a2, url2, _d2)) =
        tokio::join!(replica(&primary_url, "region-a-1"), replica(&primary_url, "region-a-2"));
    let mut region_a = vec![a1, a2];
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let (status, body) = call(
        &http,
        reqwest::Method::PUT,
        format!("{url1}/v1/plans/basic"),
        Some(json!({"name": "basic", "isolation": "pool"})),
    )
    .await;
    assert!(status < 300, "{status} {body}");
    for i in 0..4 {
        let base = if i % 2 == 0 { &url1 } else { &url2 };
        let id = format!("before-{i}");
        let (status, body) = call(
            &http,
            reqwest::Method::POST,
            format!("{base}/v1/tenants"),
            Some(json!({"id": id, "name": id, "plan": "basic", "region": "eu-west"})),
        )
        .await;
        assert_eq!(status, 202, "{body}");
    }
    let lsn: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text").fetch_one(&mut p).await.unwrap();
    let mut s = standby.connect().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let replayed: bool = sqlx::query_scalar("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn")
            .bind(&lsn)
            .fetch_one(&mut s)
            .await
            .unwrap();
        if replayed {
            break;
        }
        assert!(Instant::now() < deadline, "the standby never replayed {lsn}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(s);

    // The load: clients creating tenants through both replicas, one request at a time,
    // recording every 202 they get.
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let stop = CancellationToken::new();
    let mut clients = Vec::new();
    for client in 0..2 * CLIENTS_PER_REPLICA {
        let base = if client % 2 == 0 { url1.clone() } else { url2.clone() };
        let (acks, stop, http) = (acks.clone(), stop.clone(), http.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.is_cancelled() {
                let id = format!("c{client}-{n:05}");
                let sent = Instant::now();
                let req = http
                    .post(format!("{base}/v1/tenants"))
                    .bearer_auth(ADMIN)
                    .json(&json!({"id": id, "name": id, "plan": "basic", "region": "eu-west"}))
                    .send();
                let res = tokio::select! {
                    _ = stop.cancelled() => break,
                    r = req => r,
                };
                match res {
                    Ok(r) if r.status() == 202 => {
                        let at = Instant::now();
                        acks.lock().unwrap().push(Ack { client, n, id, at, latency: at - sent });
                    }
                    Ok(r) => panic!("{id}: {} {}", r.status(), r.text().await.unwrap_or_default()),
                    // The region is being lost: the replica is gone.
                    Err(_) => break,
                }
                n += 1;
            }
        }));
    }
    let load_started = Instant::now();
    tokio::time::sleep(LOAD).await;
    while acks.lock().unwrap().len() < MIN_ACKS {
        assert!(
            load_started.elapsed() < Duration::from_secs(60),
            "{} writes acknowledged in 60 s",
            acks.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // How far behind the standby is as the region is lost.
    let (behind, lag): (Option<i64>, Option<String>) = sqlx::query_as(
        "SELECT (pg_current_wal_lsn() - replay_lsn)::bigint, replay_lag::text FROM pg_stat_replication \
         WHERE application_name = 'standby'",
    )
    .fetch_optional(&mut p)
    .await
    .unwrap()
    .unwrap_or_default();
    drop(p);

    // Region A is lost: the link goes first, with the WAL it was carrying; the primary
    // and its replicas go on for PARTITION (with remote_apply their commits wait for
    // the standby, so no write is acknowledged; without, every write acknowledged then
    // is lost), then die at once.
    let cut_at = Instant::now();
    let load = load_started.elapsed();
    cut.cancel();
    tokio::time::sleep(PARTITION).await;
    let lost_at = Instant::now();
    for s in &mut region_a {
        s.kill_9();
    }
    tokio::task::block_in_place(|| primary.stop_immediately());
    stop.cancel();
    for c in clients {
        c.await.unwrap();
    }
    let acks = std::mem::take(&mut *acks.lock().unwrap());

    // Region B: promote the standby, start a replica on it.
    let failover_started = Instant::now();
    let standby_data = standby.data();
    tokio::task::block_in_place(|| {
        pg.run_ok("pg_ctl", &["-D".as_ref(), standby_data.as_os_str(), "-w".as_ref(), "promote".as_ref()])
    });
    let (_b, url_b, _db) = replica(&standby.url(), "region-b-1").await;
    let failover_took = failover_started.elapsed();

    // What was acknowledged and is not there.
    let present = tenant_ids(&http, &url_b).await;
    for i in 0..4 {
        assert!(present.contains_key(&format!("before-{i}")), "before-{i}, replayed by the standby, is missing");
    }
    let lost: Vec<Ack> = acks.iter().filter(|a| !present.contains_key(&a.id)).cloned().collect();
    // A prefix: a client's acknowledged write is missing only when nothing it sent later
    // is there (its later writes began after the acknowledgement, so they committed
    // after it, further along the WAL).
    for a in &lost {
        let later = present.keys().find(|id| {
            id.strip_prefix(&format!("c{}-", a.client)).and_then(|n| n.parse::<usize>().ok()).is_some_and(|n| n > a.n)
        });
        assert!(later.is_none(), "{} is lost but {} that its client sent later is there", a.id, later.unwrap());
    }

    let mut latencies: Vec<Duration> = acks.iter().map(|a| a.latency).collect();
    latencies.sort();
    // The loss window: the lost writes acknowledged before the link was cut (the
    // replication lag), and those acknowledged while the primary outlived the link.
    let (in_flight, partitioned): (Vec<&Ack>, Vec<&Ack>) = lost.iter().partition(|a| a.at < cut_at);
    let span = |acks: &[&Ack], to: Instant| match acks.iter().map(|a| a.at).min() {
        Some(first) => format!(" (the first {} ms before)", to.saturating_duration_since(first).as_millis()),
        None => String::new(),
    };
    let window = format!(
        "{} acknowledged before the link was cut{}, {} during the {} ms the primary outlived it",
        in_flight.len(),
        span(&in_flight, cut_at),
        partitioned.len(),
        (lost_at - cut_at).as_millis()
    );
    eprintln!(
        "{mode:?} over a {} ms round trip: {} creates acknowledged in {load:.1?} through 2 replicas ({:.0}/s, \
         p50 {:.0?}, p99 {:.0?}); the standby {} bytes of WAL (replay lag {}) behind at the loss; \
         {} acknowledged writes lost: {window}; promotion and a replica serving on the new primary took {failover_took:.1?}",
        2 * link_delay().as_millis(),
        acks.len(),
        acks.len() as f64 / load.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        behind.map_or("?".to_owned(), |b| b.to_string()),
        lag.as_deref().unwrap_or("none"),
        lost.len(),
    );

    // Nothing the lost region was doing stays stuck: every tenant there (its
    // provisioning was under way on region A's workers) becomes active.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = tenant_ids(&http, &url_b).await;
        let pending: Vec<_> = now.iter().filter(|(_, s)| s.as_str() != "active").collect();
        if pending.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} tenants never became active after the failover: {pending:?}",
            pending.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The audit chain on the promoted database verifies from its first record, and an
    // export of it verifies offline (the runbook's check).
    let deadline = Instant::now() + Duration::from_secs(30);
    let verified = loop {
        let (status, v) = call(&http, reqwest::Method::GET, format!("{url_b}/v1/audit/verify"), None).await;
        assert_eq!(status, 200, "{v}");
        if v["pending"] == 0 {
            break v;
        }
        assert!(Instant::now() < deadline, "audit records never sealed: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(verified["ok"], true, "the audit chain on the promoted standby: {verified}");
    let export = root.path().join("audit.ndjson");
    let out = Command::new(env!("CARGO_BIN_EXE_tenancy"))
        .args(["--server", &url_b, "--token", ADMIN, "audit", "export"])
        .output()
        .unwrap();
    assert!(out.status.success(), "audit export: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&export, &out.stdout).unwrap();
    let (code, stdout, stderr) = run_tenancy(&["audit", "verify", "--complete", &export.display().to_string()]);
    assert_eq!(code, 0, "audit verify: {stdout}{stderr}");

    // The promoted database takes writes.
    let (status, body) = call(
        &http,
        reqwest::Method::POST,
        format!("{url_b}/v1/tenants"),
        Some(json!({"id": "after-failover", "name": "after", "plan": "basic", "region": "eu-west"})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    Outcome { lost }
}

fn run_tenancy(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tenancy")).args(args).output().expect("run tenancy");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
