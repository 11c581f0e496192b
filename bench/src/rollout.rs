//! `rollout`: tenants upgraded per second by a rollout, and the time from a wave's
//! first failure to the rollout's halt.
//!
//! `tenancy serve` runs in process with a local hook receiver (axum) as the `sync`
//! hook of `upgrade_apply`. `tenants` tenants are created on release 1.0.0 (not timed).
//! Then:
//!
//! 1. **Throughput.** A rollout to 2.0.0 in waves of 1%, 10% and the rest, at most
//!    `max_concurrency` upgrades at once. The clock runs from `POST /v1/rollouts` to
//!    the rollout's `completed` (polled in the database every 10 ms, so the figure is
//!    not the cost of `GET`ting a 10,000-tenant record). Checked: every tenant on 2.0.0,
//!    one `TenantUpgradeStarted` per tenant, one apply call per tenant.
//! 2. **Halt.** A rollout to 3.0.0 with the same waves and 5% tolerated, where the hook
//!    fails the apply of every tenth tenant: from the receiver's first failing answer to
//!    the rollout's `halted`, and the wave it halted in (the first wave with failures,
//!    the `1%` one, is "within one wave": no tenant of a later wave was called).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures::FutureExt;
use serde_json::{json, Value};
use sqlx::Connection;
use tenancy::serve::{start, ServeOptions};
use tenancy_client::{Client, RolloutRequest, RolloutStrategy};
use tenancy_domain::hook::{HookEvent, HookMode, HookSpec};
use tenancy_domain::plan::{Isolation, PlanSpec};
use tenancy_domain::release::ReleaseSpec;

use crate::http_load;
use crate::tenants::{fresh_database, hello_load, TOKEN};

/// The target on the embedded default.
const TARGET_PER_S: f64 = 1_000.0;

#[derive(Debug, Clone, Args)]
pub struct RolloutArgs {
    /// `postgres://...` server to create a fresh benchmark database on (default: SQLite).
    #[arg(long)]
    pub database_url: Option<String>,
    #[arg(long, default_value_t = 10_000)]
    pub tenants: usize,
    /// The rollout's `max_concurrency`.
    #[arg(long, default_value_t = 500)]
    pub max_concurrency: u64,
}

/// What the receiver saw: apply calls, to the failing release the first failure's time
/// and the calls after it.
#[derive(Default)]
struct Seen {
    applies: AtomicUsize,
    first_failure: Mutex<Option<Instant>>,
    after_failure: AtomicUsize,
    /// The highest tenant number called for 3.0.0.
    highest: AtomicUsize,
}

async fn hook_receiver(seen: Arc<Seen>) -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<Value>| {
            let seen = seen.clone();
            async move {
                seen.applies.fetch_add(1, Ordering::Relaxed);
                let to = body["upgrade"]["release"].as_str().unwrap_or("");
                let n: usize = body["tenant"]["id"].as_str().and_then(|t| t[1..].parse().ok()).unwrap_or(0);
                if to == "3.0.0" {
                    seen.highest.fetch_max(n, Ordering::Relaxed);
                    let mut first = seen.first_failure.lock().expect("lock");
                    if first.is_some() {
                        seen.after_failure.fetch_add(1, Ordering::Relaxed);
                    }
                    if n % 10 == 7 {
                        first.get_or_insert_with(Instant::now);
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                }
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

/// Polls the rollout's status in the database every 10 ms until it is one of `want`.
async fn wait_status(conn: &mut sqlx::AnyConnection, id: &str, want: &[&str]) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let (status,): (String,) =
            sqlx::query_as("SELECT status FROM rollouts WHERE id = $1").bind(id).fetch_one(&mut *conn).await?;
        if want.contains(&status.as_str()) {
            return Ok(status);
        }
        anyhow::ensure!(Instant::now() < deadline, "rollout {id} still {status}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn strategy(max_concurrency: u64, tolerated: Option<f64>) -> RolloutStrategy {
    RolloutStrategy {
        waves: vec![json!("1%"), json!("10%")],
        max_concurrency: Some(max_concurrency),
        tolerated_failure_percent: tolerated,
        ..Default::default()
    }
}

pub async fn run(args: RolloutArgs) -> anyhow::Result<()> {
    let baseline = hello_load(5, 64).await?;

    let dir = tempfile::tempdir()?;
    let (database_url, backend) = fresh_database(args.database_url.as_deref(), dir.path()).await?;
    let mut opts = ServeOptions::for_tests(dir.path().to_owned(), Some(database_url.clone()), TOKEN);
    opts.rate_limits = crate::UNREACHED_RATE_LIMITS;
    opts.node_id = Some("bench".into());
    opts.workflow = tenancy::config::workflow_from_env()?;
    let server = start(opts).await?;
    let base = server.url();
    let http = http_load::client(64);
    let client = Client::with_http(http.clone(), &base, Some(TOKEN.to_owned()));

    let seen = Arc::new(Seen::default());
    let hook = HookSpec {
        url: Some(hook_receiver(seen.clone()).await?),
        queue: None,
        events: vec![HookEvent::UpgradeApply],
        mode: Some(HookMode::Sync),
        timeout_s: None,
        max_attempts: Some(1),
        rotate_secret: false,
        connection: None,
    };
    client.hook_put("bench-product", &hook).await.context("PUT /v1/hooks/bench-product")?;
    let spec = PlanSpec {
        name: "Pooled".into(),
        isolation: Isolation::Pool,
        features: vec![],
        quotas: Default::default(),
        workflows: Default::default(),
        config: Default::default(),
        rate_limit: None,
        regions: vec![],
        max_tenants: None,
        self_service: false,
    };
    client.plan_put("pooled", &spec).await.context("PUT /v1/plans/pooled")?;
    for (v, default) in [("1.0.0", true), ("2.0.0", false), ("3.0.0", false)] {
        let spec = ReleaseSpec { default, ..Default::default() };
        client.release_put(v, &spec).await.with_context(|| format!("PUT /v1/releases/{v}"))?;
    }

    eprintln!("rollout: creating {} tenants ({backend})", args.tenants);
    let url = format!("{base}/v1/tenants");
    let created = {
        let http = http.clone();
        http_load::run(args.tenants, 64, move |i| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let body = json!({"id": format!("t{i:07}"), "name": format!("Tenant {i}"), "plan": "pooled"});
                http.post(&url).bearer_auth(TOKEN).json(&body).send().await.is_ok_and(|r| r.status().as_u16() == 202)
            }
            .boxed()
        })
        .await
    };
    anyhow::ensure!(created.errors == 0, "{} creates failed", created.errors);
    sqlx::any::install_default_drivers();
    let conn = &mut sqlx::AnyConnection::connect(&database_url).await?;
    while (count(conn, "SELECT COUNT(*) FROM tenants WHERE status = 'active'").await? as usize) < args.tenants {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 1. Throughput.
    eprintln!(
        "rollout: {} tenants to 2.0.0, waves 1% / 10% / rest, max_concurrency {}",
        args.tenants, args.max_concurrency
    );
    let req = RolloutRequest {
        release: Some("2.0.0".into()),
        plan: None,
        selector: Default::default(),
        strategy: strategy(args.max_concurrency, None),
    };
    let started = Instant::now();
    let r = client.rollout_start(&req).await.context("POST /v1/rollouts")?;
    anyhow::ensure!(
        r.tenants == args.tenants && r.waves == 3,
        "the rollout took {} tenants in {} waves",
        r.tenants,
        r.waves
    );
    let status = wait_status(conn, &r.id, &["completed", "halted", "aborted"]).await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(status == "completed", "the rollout ended {status}");
    let upgraded = count(conn, "SELECT COUNT(*) FROM tenants WHERE \"release\" = '2.0.0'").await? as usize;
    anyhow::ensure!(upgraded == args.tenants, "{upgraded} tenants on 2.0.0 of {}", args.tenants);
    let starts = count(conn, "SELECT COUNT(*) FROM events WHERE detail_type = 'TenantUpgradeStarted'").await? as usize;
    anyhow::ensure!(starts == args.tenants, "{starts} upgrades started for {} tenants", args.tenants);
    let applies = seen.applies.load(Ordering::Relaxed);
    anyhow::ensure!(applies == args.tenants, "{applies} apply calls for {} tenants", args.tenants);
    let per_s = args.tenants as f64 / elapsed.as_secs_f64();

    // 2. Halt.
    let req = RolloutRequest {
        release: Some("3.0.0".into()),
        plan: None,
        selector: Default::default(),
        strategy: strategy(args.max_concurrency, Some(5.0)),
    };
    let r = client.rollout_start(&req).await.context("POST /v1/rollouts (3.0.0)")?;
    let status = wait_status(conn, &r.id, &["completed", "halted", "aborted"]).await?;
    let halted_at = Instant::now();
    anyhow::ensure!(status == "halted", "the failing rollout ended {status}");
    let first = seen.first_failure.lock().expect("lock").context("no apply failed")?;
    let to_halt = halted_at.duration_since(first);
    let got = client.rollout_get(&r.id).await?;
    let wave = got.waves.get(got.current_wave).map(|w| w.name.clone()).unwrap_or_default();
    let first_wave_size = got.waves.first().map_or(0, |w| w.tenants.len());
    let highest = seen.highest.load(Ordering::Relaxed);
    let within_one_wave = got.current_wave == 0 && highest < first_wave_size;
    let failed = got.failed.len();
    server.stop().await;

    println!(
        "upgraded {} tenants in {:.2} s ({} apply calls, {starts} upgrades started); halt: {failed} failed in {wave} \
         ({first_wave_size} tenants), halted {:.0} ms after the first failure, {} apply calls after it, highest \
         tenant called t{highest:07}",
        args.tenants,
        elapsed.as_secs_f64(),
        applies,
        to_halt.as_secs_f64() * 1000.0,
        seen.after_failure.load(Ordering::Relaxed),
    );
    println!(
        "rollout: {per_s:.0} tenants/s ({backend}, max_concurrency {}); target {TARGET_PER_S:.0}/s, ratio {:.2}; \
         halted within one wave: {within_one_wave}; baseline hello-world {:.0} req/s (tenants/s per hello-world \
         req/s {:.4})",
        args.max_concurrency,
        per_s / TARGET_PER_S,
        baseline.rate(),
        per_s / baseline.rate()
    );
    Ok(())
}
