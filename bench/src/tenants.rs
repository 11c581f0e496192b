//! Foundation scenarios: the HTTP baseline, tenant creation, filtered listing and
//! single-tenant reads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures::FutureExt;
use serde_json::json;
use sqlx::Connection;
use tenancy::serve::{start, RunningServer, ServeOptions};
use tenancy_client::Client;
use tenancy_domain::apikey::{NewApiKey, Role};
use tenancy_domain::plan::{Isolation, PlanSpec, QuotaSpec};

use crate::http_load::{self, LoadResult};

pub const TOKEN: &str = "bench-admin-token";

#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// `postgres://...` server to create a fresh benchmark database on (default: SQLite).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Seconds per measured run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
}

#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    #[arg(long)]
    pub database_url: Option<String>,
    #[arg(long, default_value_t = 10_000)]
    pub tenants: usize,
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    #[arg(long)]
    pub database_url: Option<String>,
    /// Tenants loaded before measuring.
    #[arg(long, default_value_t = 1_000_000)]
    pub tenants: usize,
    /// Page requests measured.
    #[arg(long, default_value_t = 2_000)]
    pub requests: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
}

/// A hello-world axum server: the ceiling any HTTP figure is compared with.
async fn hello_server() -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/quota",
        axum::routing::get(|| async { axum::Json(json!({"allowed": true, "used": 1, "limit": 100})) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/quota", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

pub async fn hello_load(seconds: u64, clients: usize) -> anyhow::Result<LoadResult> {
    let url = hello_server().await?;
    let http = http_load::client(clients);
    Ok(http_load::run_for(Duration::from_secs(seconds), clients, move |_| {
        let (http, url) = (http.clone(), url.clone());
        async move { http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) }.boxed()
    })
    .await)
}

/// A running Tenancy server on a fresh database, and its database URL.
pub(crate) struct Bench {
    pub(crate) server: RunningServer,
    pub(crate) database_url: String,
    pub(crate) backend: &'static str,
    _dir: tempfile::TempDir,
}

pub async fn fresh_database(server_url: Option<&str>, dir: &std::path::Path) -> anyhow::Result<(String, &'static str)> {
    match server_url {
        None => Ok((format!("sqlite://{}", dir.join("tenancy.db").display()), "sqlite")),
        Some(url) => {
            let name = format!("tenancy_bench_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(url).await.context("connect to PostgreSQL")?;
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await?;
            let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(url);
            Ok((format!("{base}/{name}"), "postgres"))
        }
    }
}

pub(crate) async fn start_tenancy(server_url: Option<&str>) -> anyhow::Result<Bench> {
    let dir = tempfile::tempdir()?;
    let (database_url, backend) = fresh_database(server_url, dir.path()).await?;
    let mut opts = ServeOptions::for_tests(dir.path().to_owned(), Some(database_url.clone()), TOKEN);
    opts.rate_limits = crate::UNREACHED_RATE_LIMITS;
    opts.node_id = Some("bench".into());
    opts.workflow = tenancy::config::workflow_from_env()?;
    opts.worker = !tenancy::config::env_flag("BENCH_NO_WORKER");
    let server = start(opts).await?;
    Ok(Bench { server, database_url, backend, _dir: dir })
}

pub(crate) async fn put_plans(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let client = Client::with_http(http.clone(), base, Some(TOKEN.to_owned()));
    for (id, isolation) in [
        ("free", Isolation::Pool),
        ("pro", Isolation::Pool),
        ("business", Isolation::Pool),
        ("enterprise", Isolation::Silo),
    ] {
        let spec = PlanSpec {
            name: id.to_owned(),
            isolation,
            features: vec!["sso".to_owned()],
            quotas: [("seats".to_owned(), QuotaSpec::Limit(10))].into(),
            workflows: Default::default(),
            config: Default::default(),
            rate_limit: None,
            regions: vec![],
            max_tenants: None,
            self_service: false,
        };
        client.plan_put(id, &spec).await.context("put plan")?;
    }
    Ok(())
}

async fn count_status(database_url: &str, status: &str) -> anyhow::Result<i64> {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(database_url).await?;
    let row: (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM tenants WHERE status = $1").bind(status).fetch_one(&mut conn).await?;
    Ok(row.0)
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub async fn http_baseline(args: LoadArgs) -> anyhow::Result<()> {
    let r = hello_load(args.seconds, args.clients).await?;
    println!(
        "hello-world: {} requests, {} errors, p50 {:.2} ms, p99 {:.2} ms",
        r.requests,
        r.errors,
        ms(r.percentile(50.0)),
        ms(r.percentile(99.0))
    );
    println!("http-baseline: {:.0} req/s ({} clients)", r.rate(), args.clients);
    Ok(())
}

pub async fn tenant_create(args: CreateArgs) -> anyhow::Result<()> {
    let baseline = hello_load(5, args.clients).await?;
    let b = start_tenancy(args.database_url.as_deref()).await?;
    let base = b.server.url();
    let http = http_load::client(args.clients);
    put_plans(&http, &base).await?;
    let plans = ["free", "pro", "business", "enterprise"];
    let url = format!("{base}/v1/tenants");
    let start_all = Instant::now();
    // The measured loop keeps a raw reqwest client: it checks the status only, where the
    // typed client would read and decode every answer (work that is not the server's).
    let created = {
        let http = http.clone();
        http_load::run(args.tenants, args.clients, move |i| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let body = json!({"id": format!("t{i:07}"), "name": format!("Tenant {i}"), "plan": plans[i % 4]});
                http.post(&url).bearer_auth(TOKEN).json(&body).send().await.is_ok_and(|r| r.status().as_u16() == 202)
            }
            .boxed()
        })
        .await
    };
    // Provisioning finishes in the background; wait for the last tenant to be active.
    while !tenancy::config::env_flag("BENCH_NO_WORKER") {
        let active = count_status(&b.database_url, "active").await?;
        if active as usize >= args.tenants - created.errors {
            break;
        }
        anyhow::ensure!(start_all.elapsed() < Duration::from_secs(600), "provisioning did not finish: {active} active");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let provisioned = start_all.elapsed();
    println!(
        "created {} tenants ({} errors) in {:.2} s: p50 {:.2} ms, p99 {:.2} ms; all active after {:.2} s ({:.0} provisioned/s)",
        created.requests,
        created.errors,
        created.elapsed.as_secs_f64(),
        ms(created.percentile(50.0)),
        ms(created.percentile(99.0)),
        provisioned.as_secs_f64(),
        args.tenants as f64 / provisioned.as_secs_f64()
    );
    anyhow::ensure!(created.errors == 0, "{} creates failed", created.errors);
    println!(
        "tenant-create: {:.0} tenants/s ({}, {} clients); baseline hello-world {:.0} req/s; ratio {:.3}",
        created.rate(),
        b.backend,
        args.clients,
        baseline.rate(),
        created.rate() / baseline.rate()
    );
    b.server.stop().await;
    Ok(())
}

/// Loads `n` tenants with multi-row inserts straight into the database (the API would
/// take minutes for a million): plans round-robin, 80% active, regions round-robin.
pub(crate) async fn bulk_load(database_url: &str, n: usize) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(database_url).await?;
    let plans = ["free", "pro", "business", "enterprise"];
    let regions = ["eu-west", "us-east", "us-west", "ap-south"];
    let statuses =
        ["active", "active", "active", "active", "active", "active", "active", "active", "suspended", "failed"];
    const ROWS: usize = 500;
    let now = tenancy_domain::time::Timestamp::now().millis();
    let mut tx = conn.begin().await?;
    for chunk_start in (0..n).step_by(ROWS) {
        let end = (chunk_start + ROWS).min(n);
        let mut sql = String::from(
            "INSERT INTO tenants (id, name, plan_id, region, status, metadata, version, created_at, updated_at) VALUES ",
        );
        for i in chunk_start..end {
            if i > chunk_start {
                sql.push(',');
            }
            // Spread plans and statuses so neither correlates with id order.
            let h = (i.wrapping_mul(2_654_435_761)) >> 7;
            sql.push_str(&format!(
                "('t{i:07}', 'Tenant {i}', '{}', '{}', '{}', '{{}}', 1, {now}, {now})",
                plans[h % 4],
                regions[(h / 4) % 4],
                statuses[(h / 16) % 10]
            ));
        }
        sqlx::query(&sql).execute(&mut *tx).await?;
        if end.is_multiple_of(100_000) {
            tx.commit().await?;
            tx = conn.begin().await?;
            eprintln!("loaded {end} tenants");
        }
    }
    tx.commit().await?;
    if database_url.starts_with("postgres") {
        sqlx::query("ANALYZE tenants").execute(&mut conn).await?;
    } else {
        sqlx::query("ANALYZE").execute(&mut conn).await?;
    }
    Ok(())
}

pub async fn tenant_list(args: ListArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (database_url, backend) = fresh_database(args.database_url.as_deref(), dir.path()).await?;
    // Open once through the store so migrations run, then load.
    let store = tenancy_store_sql::SqlStore::connect(&tenancy_store_sql::SqlOptions::new(&database_url)).await?;
    drop(store);
    let t = Instant::now();
    let mut opts = ServeOptions::for_tests(dir.path().to_owned(), Some(database_url.clone()), TOKEN);
    opts.rate_limits = crate::UNREACHED_RATE_LIMITS;
    opts.worker = false;
    {
        let server = start(opts.clone()).await?;
        put_plans(&http_load::client(1), &server.url()).await?;
        server.stop().await;
    }
    bulk_load(&database_url, args.tenants).await?;
    eprintln!("loaded {} tenants in {:.1} s", args.tenants, t.elapsed().as_secs_f64());
    let server = start(opts).await?;
    let base = server.url();
    let http = http_load::client(args.clients);
    let n = args.tenants;
    let pages = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let run = {
        let pages = pages.clone();
        move |http: reqwest::Client, base: String| {
            let pages = pages.clone();
            move |i: usize| {
                let (http, base, pages) = (http.clone(), base.clone(), pages.clone());
                async move {
                    // A filtered page from a pseudo-random place in the id space. The
                    // measured loop keeps a raw reqwest client (no typed decoding of the
                    // page beyond counting its items).
                    let from = (i.wrapping_mul(7_919) * 131) % n;
                    let url = format!("{base}/v1/tenants?plan=pro&status=active&limit=100&cursor=t{from:07}");
                    match http.get(&url).bearer_auth(TOKEN).send().await {
                        Ok(r) if r.status().is_success() => {
                            let v: serde_json::Value = r.json().await.unwrap_or_default();
                            pages.fetch_add(
                                v["items"].as_array().map_or(0, |a| a.len()),
                                std::sync::atomic::Ordering::Relaxed,
                            );
                            true
                        }
                        _ => false,
                    }
                }
                .boxed()
            }
        }
    };
    // Warm up, then measure.
    http_load::run(200, args.clients, run(http.clone(), base.clone())).await;
    pages.store(0, std::sync::atomic::Ordering::Relaxed);
    let r = http_load::run(args.requests, args.clients, run(http.clone(), base.clone())).await;
    let items = pages.load(std::sync::atomic::Ordering::Relaxed);
    anyhow::ensure!(r.errors == 0, "{} page requests failed", r.errors);
    server.stop().await;
    let hello_url = hello_server().await?;
    let hello = http_load::run(args.requests, args.clients, move |_| {
        let (http, url) = (http.clone(), hello_url.clone());
        async move { http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) }.boxed()
    })
    .await;
    println!(
        "{} pages of plan=pro&status=active ({:.1} items/page avg) over {} tenants, {} clients: p50 {:.2} ms, p99 {:.2} ms, {:.0} pages/s",
        r.requests,
        items as f64 / r.requests as f64,
        args.tenants,
        args.clients,
        ms(r.percentile(50.0)),
        ms(r.percentile(99.0)),
        r.rate()
    );
    println!(
        "tenant-list: {:.2} ms p99 ({backend}); baseline hello-world p99 {:.2} ms; ratio {:.1}",
        ms(r.percentile(99.0)),
        ms(hello.percentile(99.0)),
        ms(r.percentile(99.0)) / ms(hello.percentile(99.0)).max(0.001)
    );
    Ok(())
}

pub async fn tenant_get(args: LoadArgs) -> anyhow::Result<()> {
    let b = start_tenancy(args.database_url.as_deref()).await?;
    let base = b.server.url();
    let http = http_load::client(args.clients);
    put_plans(&http, &base).await?;
    bulk_load(&b.database_url, 1_000).await?;
    // A data-plane caller: a service key (verified once, then cached).
    let client = Client::with_http(http.clone(), &base, Some(TOKEN.to_owned()));
    let new_key = NewApiKey {
        name: "bench".into(),
        role: Role::Service,
        tenant_id: None,
        expires_at: None,
        rate_limit: None,
        labels: vec![],
        region: None,
    };
    let key = client.key_create(&new_key).await.context("key created")?.key;
    let baseline = hello_load(args.seconds, args.clients).await?;
    let r = {
        let (http, base) = (http.clone(), base.clone());
        http_load::run_for(Duration::from_secs(args.seconds), args.clients, move |i| {
            let (http, base, key) = (http.clone(), base.clone(), key.clone());
            async move {
                // Raw reqwest in the measured loop: the status is the figure, the body unread.
                let url = format!("{base}/v1/tenants/t{:07}", (i * 7) % 1000);
                http.get(&url).bearer_auth(&key).send().await.is_ok_and(|r| r.status().is_success())
            }
            .boxed()
        })
        .await
    };
    anyhow::ensure!(r.errors == 0, "{} reads failed", r.errors);
    http_load::report("tenant-get", "GET /v1/tenants/{id}", "", &r, &baseline, b.backend);
    b.server.stop().await;
    Ok(())
}
