//! `provision`: tenants provisioned end to end through `tenancy serve`.
//!
//! A local hook receiver (axum, in this process) is registered as a `sync` hook of the
//! `provision` event; `tenants` tenants are created over HTTP by `clients` concurrent
//! clients, every other one on a `silo` plan. Each tenant runs the whole provisioning
//! workflow: namespace, database (a real SQLite file for silo tenants on the embedded
//! default), defaults, the hook call with its idempotency key, activation with
//! `TenantProvisioned` committed. The clock stops when the last tenant is active.
//!
//! Before printing, the run checks what it claims: every tenant active, one hook call
//! key per tenant, one `TenantProvisioned` per tenant, one database file per silo
//! tenant. The hello-world figure of the same invocation is printed next to it as the
//! machine's reference (the machines are shared and noisy); the target is 1,000
//! tenants/s on the embedded default.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures::FutureExt;
use serde_json::{json, Value};
use sqlx::Connection;
use tenancy::serve::{start, ServeOptions};
use tenancy_client::Client;
use tenancy_domain::hook::{HookEvent, HookMode, HookSpec};
use tenancy_domain::plan::{Isolation, PlanSpec};

use crate::http_load;
use crate::tenants::{fresh_database, hello_load, TOKEN};

/// The target on the embedded default.
const TARGET_PER_S: f64 = 1_000.0;

#[derive(Debug, Clone, Args)]
pub struct ProvisionArgs {
    /// `postgres://...` server to create a fresh benchmark database on (default: SQLite).
    #[arg(long)]
    pub database_url: Option<String>,
    #[arg(long, default_value_t = 10_000)]
    pub tenants: usize,
    /// Concurrent API clients creating tenants.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Every how many tenants one is on the silo plan (2: half of them; 0: none).
    #[arg(long, default_value_t = 2)]
    pub silo_every: usize,
}

/// Idempotency keys the hook receiver saw, and how many calls it answered.
#[derive(Default)]
struct Seen {
    keys: HashSet<String>,
    calls: usize,
}

async fn hook_receiver(seen: Arc<Mutex<Seen>>) -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, _body: axum::Json<Value>| {
            let seen = seen.clone();
            async move {
                let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let mut s = seen.lock().expect("lock");
                s.calls += 1;
                s.keys.insert(key);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

async fn count(conn: &mut sqlx::AnyConnection, sql: &str) -> anyhow::Result<i64> {
    let row: (i64,) = sqlx::query_as(sql).fetch_one(conn).await?;
    Ok(row.0)
}

pub async fn run(args: ProvisionArgs) -> anyhow::Result<()> {
    let baseline = hello_load(5, args.clients).await?;

    let dir = tempfile::tempdir()?;
    let (database_url, backend) = fresh_database(args.database_url.as_deref(), dir.path()).await?;
    let mut opts = ServeOptions::for_tests(dir.path().to_owned(), Some(database_url.clone()), TOKEN);
    opts.rate_limits = crate::UNREACHED_RATE_LIMITS;
    opts.node_id = Some("bench".into());
    opts.workflow = tenancy::config::workflow_from_env()?;
    let server = start(opts).await?;
    let base = server.url();
    let http = http_load::client(args.clients);

    let seen = Arc::new(Mutex::new(Seen::default()));
    let hook_url = hook_receiver(seen.clone()).await?;
    let client = Client::with_http(http.clone(), &base, Some(TOKEN.to_owned()));
    let hook = HookSpec {
        url: Some(hook_url),
        queue: None,
        events: vec![HookEvent::Provision],
        mode: Some(HookMode::Sync),
        timeout_s: None,
        max_attempts: None,
        rotate_secret: false,
        connection: None,
    };
    client.hook_put("bench-crm", &hook).await.context("PUT /v1/hooks/bench-crm")?;
    for (id, name, isolation) in [("pooled", "Pooled", Isolation::Pool), ("dedicated", "Dedicated", Isolation::Silo)] {
        let spec = PlanSpec {
            name: name.to_owned(),
            isolation,
            features: vec![],
            quotas: Default::default(),
            workflows: Default::default(),
            config: Default::default(),
            rate_limit: None,
            regions: vec![],
            max_tenants: None,
            self_service: false,
        };
        client.plan_put(id, &spec).await.with_context(|| format!("PUT /v1/plans/{id}"))?;
    }

    eprintln!(
        "provision: {} tenants (1 in {} silo), {} clients, {backend}",
        args.tenants, args.silo_every, args.clients
    );
    let url = format!("{base}/v1/tenants");
    let silo_every = args.silo_every;
    let started = Instant::now();
    // The measured loop keeps a raw reqwest client: it checks the status only, where the
    // typed client would read and decode every answer (work that is not the server's).
    let created = {
        let http = http.clone();
        http_load::run(args.tenants, args.clients, move |i| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let plan = if silo_every > 0 && i.is_multiple_of(silo_every) { "dedicated" } else { "pooled" };
                let body = json!({"id": format!("t{i:07}"), "name": format!("Tenant {i}"), "plan": plan});
                http.post(&url).bearer_auth(TOKEN).json(&body).send().await.is_ok_and(|r| r.status().as_u16() == 202)
            }
            .boxed()
        })
        .await
    };
    anyhow::ensure!(created.errors == 0, "{} creates failed", created.errors);
    let accepted = started.elapsed();
    // One connection for the polls: a connection per poll (a thread and a schema load
    // on SQLite) took CPU from the server being measured.
    sqlx::any::install_default_drivers();
    let conn = &mut sqlx::AnyConnection::connect(&database_url).await?;
    loop {
        let active = count(conn, "SELECT COUNT(*) FROM tenants WHERE status = 'active'").await?;
        if active as usize == args.tenants {
            break;
        }
        let failed =
            count(conn, "SELECT COUNT(*) FROM (SELECT 1 FROM tenants WHERE status = 'failed' LIMIT 1) AS failed")
                .await?;
        anyhow::ensure!(failed == 0, "a provisioning failed");
        anyhow::ensure!(started.elapsed() < Duration::from_secs(900), "provisioning did not finish: {active} active");
        // Every 50 ms: the clock stops at most that late (0.5% of a 10 s run, against
        // us), and the counts, which scan an index of up to `tenants` entries, take
        // little CPU from the server being measured.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();

    // What the figure claims, checked.
    let provisioned =
        count(conn, "SELECT COUNT(*) FROM events WHERE detail_type = 'TenantProvisioned'").await? as usize;
    anyhow::ensure!(provisioned == args.tenants, "{provisioned} TenantProvisioned events for {} tenants", args.tenants);
    let (keys, calls) = {
        let s = seen.lock().expect("lock");
        (s.keys.len(), s.calls)
    };
    anyhow::ensure!(keys == args.tenants, "the hook saw {keys} idempotency keys for {} tenants", args.tenants);
    let silo = if silo_every == 0 { 0 } else { args.tenants.div_ceil(silo_every) };
    if backend == "sqlite" {
        let files = std::fs::read_dir(dir.path().join("tenants"))
            .into_iter()
            .flatten()
            .filter(|e| e.as_ref().is_ok_and(|e| e.path().join("data.db").is_file()))
            .count();
        anyhow::ensure!(files == silo, "{files} silo database files for {silo} silo tenants");
    }
    server.stop().await;

    if tenancy::config::env_flag("BENCH_KEEP_DATA") {
        eprintln!("data kept in {}", dir.keep().display());
    }
    let per_s = args.tenants as f64 / elapsed.as_secs_f64();
    println!(
        "created {} tenants in {:.2} s (create p50 {:.2} ms, p99 {:.2} ms); all active after {:.2} s",
        created.requests,
        accepted.as_secs_f64(),
        created.percentile(50.0).as_secs_f64() * 1000.0,
        created.percentile(99.0).as_secs_f64() * 1000.0,
        elapsed.as_secs_f64()
    );
    println!("checked: {provisioned} TenantProvisioned, {keys} hook keys ({calls} calls), {silo} silo databases");
    println!(
        "provision: {per_s:.0} tenants/s ({backend}, {} clients); target {TARGET_PER_S:.0}/s, ratio {:.2}; \
         baseline hello-world {:.0} req/s",
        args.clients,
        per_s / TARGET_PER_S,
        baseline.rate()
    );
    Ok(())
}
