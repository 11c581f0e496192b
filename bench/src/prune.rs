//! `prune`: the p99 of `GET /v1/tenants/{id}` while the leased pruner deletes 1,000,000
//! history rows (10,000 finished executions of 100 events each, stopped 100 days ago),
//! against the same load without a prune in the same run (docs/storage.md, "Retention").
//! The bar: the p99 rises by at most 20%.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures::FutureExt;
use sqlx::Connection;
use tenancy_app::retention::pruner::{Pruner, PrunerOptions};
use tenancy_client::Client;
use tenancy_domain::apikey::{NewApiKey, Role};
use tenancy_domain::time::Timestamp;

use crate::http_load::{self, LoadResult};
use crate::tenants::{bulk_load, put_plans, start_tenancy, TOKEN};

#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    /// `postgres://...` server to create a fresh benchmark database on (default: SQLite).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Seconds per measured run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Finished executions to prune, of `history` events each.
    #[arg(long, default_value_t = 10_000)]
    pub executions: usize,
    #[arg(long, default_value_t = 100)]
    pub history: usize,
}

/// Inserts the finished executions and their history, stopped 100 days ago.
async fn load_history(database_url: &str, executions: usize, history: usize) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(database_url).await?;
    let old = Timestamp::now().millis() - 100 * 86_400_000;
    const ROWS: usize = 500;
    let mut tx = conn.begin().await?;
    for start in (0..executions).step_by(ROWS) {
        let mut sql = String::from(
            "INSERT INTO executions (id, name, state_machine, version, status, input, started_at, stopped_at, updated_at) VALUES ",
        );
        for i in start..(start + ROWS).min(executions) {
            if i > start {
                sql.push(',');
            }
            sql.push_str(&format!("('exe_old{i:07}', 'old{i}', 'batch', 1, 'SUCCEEDED', '{{}}', {old}, {old}, {old})"));
        }
        sqlx::query(&sql).execute(&mut *tx).await?;
    }
    let total = executions * history;
    for start in (0..total).step_by(ROWS) {
        let mut sql =
            String::from("INSERT INTO execution_history (execution_id, event_id, type, state, details, time) VALUES ");
        for k in start..(start + ROWS).min(total) {
            if k > start {
                sql.push(',');
            }
            let (i, e) = (k / history, k % history + 1);
            sql.push_str(&format!(
                "('exe_old{i:07}', {e}, 'TaskStateEntered', 'S', '{{\"input\":{{\"n\":{k}}}}}', {old})"
            ));
        }
        sqlx::query(&sql).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    // The server's own pruner took the lease at start: the measured pass takes it over.
    sqlx::query("DELETE FROM job_leases WHERE name = 'prune'").execute(&mut conn).await?;
    Ok(())
}

pub async fn run(args: PruneArgs) -> anyhow::Result<()> {
    let b = start_tenancy(args.database_url.as_deref()).await?;
    let base = b.server.url();
    let http = http_load::client(args.clients);
    put_plans(&http, &base).await?;
    bulk_load(&b.database_url, 1_000).await?;
    let t = Instant::now();
    load_history(&b.database_url, args.executions, args.history).await.context("history loaded")?;
    let rows = args.executions * args.history;
    println!("loaded {} executions, {rows} history rows in {:.1} s", args.executions, t.elapsed().as_secs_f64());
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
    let load = |seconds: u64| {
        let (http, base, key) = (http.clone(), base.clone(), key.clone());
        http_load::run_for(Duration::from_secs(seconds), args.clients, move |i| {
            let (http, base, key) = (http.clone(), base.clone(), key.clone());
            async move {
                let url = format!("{base}/v1/tenants/t{:07}", (i * 7) % 1000);
                http.get(&url).bearer_auth(&key).send().await.is_ok_and(|r| r.status().is_success())
            }
            .boxed()
        })
    };
    // Warm up, then the load alone, then the same load during the prune.
    load(2).await;
    let quiet: LoadResult = load(args.seconds).await;
    let store = b.server.app.store().clone();
    let pruner = Pruner::new(store, PrunerOptions::new("bench/prune".into()));
    let started = Instant::now();
    let pass = tokio::spawn(async move {
        let r = pruner.run_once(Timestamp::now()).await;
        (r, started.elapsed())
    });
    let busy: LoadResult = load(args.seconds).await;
    let during = started.elapsed();
    let (report, took) = pass.await?;
    let report = report?.context("the prune lease")?;
    anyhow::ensure!(quiet.errors == 0 && busy.errors == 0, "{} + {} reads failed", quiet.errors, busy.errors);
    anyhow::ensure!(report.history as usize == rows, "pruned {} history rows of {rows}", report.history);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (p99_quiet, p99_busy) = (quiet.percentile(99.0), busy.percentile(99.0));
    println!(
        "GET /v1/tenants/{{id}}: without a prune {} requests, p50 {:.2} ms, p99 {:.2} ms; during the prune {} \
         requests, p50 {:.2} ms, p99 {:.2} ms; the pass deleted {} executions and {} history rows in {:.1} s \
         (the load ran {:.1} s of it)",
        quiet.requests,
        ms(quiet.percentile(50.0)),
        ms(p99_quiet),
        busy.requests,
        ms(busy.percentile(50.0)),
        ms(p99_busy),
        report.executions,
        report.history,
        took.as_secs_f64(),
        during.as_secs_f64().min(took.as_secs_f64()),
    );
    println!(
        "prune: p99 {:.2} ms during a prune of {rows} history rows ({}, {} clients); baseline without a prune p99 \
         {:.2} ms; ratio {:.3} (bar: 1.2)",
        ms(p99_busy),
        b.backend,
        args.clients,
        ms(p99_quiet),
        p99_busy.as_secs_f64() / p99_quiet.as_secs_f64().max(1e-9)
    );
    b.server.stop().await;
    Ok(())
}
