//! Issue 14's check path: `quota-check` (consume over HTTP, beside the hello-world
//! handler in the same run) and `terms-check` (`App::tenant_terms` with a feature
//! lookup and a quota admission decision, in process).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::FutureExt;
use serde_json::json;
use sqlx::Connection;
use tenancy_client::Client;
use tenancy_domain::apikey::{NewApiKey, Role};
use tenancy_domain::plan::{Isolation, PlanSpec, Quota, QuotaSpec};

use crate::http_load;
use crate::tenants::{hello_load, start_tenancy, Bench, LoadArgs, TOKEN};

/// Tenants consumed from.
const TENANTS: usize = 1_000;
/// The hard limit of the `calls` quota: far above what a run consumes, so nothing is
/// refused and no threshold event is written (the figure is the common case).
const LIMIT: u64 = 1_000_000_000_000;

fn tenant_id(i: usize) -> String {
    format!("q{i:05}")
}

/// A server with plan `metered` (a hard quota `calls`, a feature `sso`) and
/// [`TENANTS`] active tenants on it, inserted straight into the database.
async fn setup(database_url: Option<&str>) -> anyhow::Result<Bench> {
    let b = start_tenancy(database_url).await?;
    let client = Client::with_http(http_load::client(1), &b.server.url(), Some(TOKEN.to_owned()));
    let spec = PlanSpec {
        name: "Metered".to_owned(),
        isolation: Isolation::Pool,
        features: vec!["sso".to_owned()],
        quotas: [("calls".to_owned(), QuotaSpec::Full(Quota { limit: LIMIT, period: None, soft: false }))].into(),
        workflows: Default::default(),
        config: Default::default(),
        regions: vec![],
        max_tenants: None,
        self_service: false,
        rate_limit: None,
    };
    client.plan_put("metered", &spec).await.context("put plan")?;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&b.database_url).await?;
    let now = tenancy_domain::time::Timestamp::now().millis();
    let values: Vec<String> = (0..TENANTS)
        .map(|i| format!("('{}', 'Tenant {i}', 'metered', 'eu-west', 'active', '{{}}', 1, {now}, {now})", tenant_id(i)))
        .collect();
    let sql = format!(
        "INSERT INTO tenants (id, name, plan_id, region, status, metadata, version, created_at, updated_at) VALUES {}",
        values.join(",")
    );
    sqlx::query(&sql).execute(&mut conn).await?;
    Ok(b)
}

/// What the ledger holds in all: the sum of every tenant's usage.
async fn ledger_total(database_url: &str) -> anyhow::Result<i64> {
    let mut conn = sqlx::AnyConnection::connect(database_url).await?;
    let row: (i64,) =
        sqlx::query_as("SELECT CAST(COALESCE(SUM(used), 0) AS BIGINT) FROM quota_usage").fetch_one(&mut conn).await?;
    Ok(row.0)
}

pub async fn quota_check(args: LoadArgs) -> anyhow::Result<()> {
    let b = setup(args.database_url.as_deref()).await?;
    let base = b.server.url();
    let http = http_load::client(args.clients);
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
    let granted = Arc::new(AtomicUsize::new(0));
    let consume = {
        let (http, base, granted) = (http.clone(), base.clone(), granted.clone());
        move |i: usize| {
            let (http, base, key, granted) = (http.clone(), base.clone(), key.clone(), granted.clone());
            async move {
                // Raw reqwest in the measured loop: the status is the figure, the body unread.
                let url = format!("{base}/v1/tenants/{}/quotas/calls/consume", tenant_id((i * 7) % TENANTS));
                let ok = http
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"amount": 1}))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    granted.fetch_add(1, Ordering::Relaxed);
                }
                ok
            }
            .boxed()
        }
    };
    // Warm up (every tenant's terms and usage row), then the baseline and the scenario.
    let warm = http_load::run(4 * TENANTS, args.clients, consume.clone()).await;
    anyhow::ensure!(warm.errors == 0, "{} warm-up consumes failed", warm.errors);
    let baseline = hello_load(args.seconds, args.clients).await?;
    let r = http_load::run_for(Duration::from_secs(args.seconds), args.clients, consume).await;
    anyhow::ensure!(r.errors == 0, "{} consumes failed", r.errors);
    // Exactness: the ledger counted every grant, and nothing else.
    let total = ledger_total(&b.database_url).await?;
    let grants = granted.load(Ordering::Relaxed);
    anyhow::ensure!(total as usize == grants, "the ledger holds {total}, {grants} grants were answered");
    let what = format!("POST /v1/tenants/{{id}}/quotas/calls/consume over {TENANTS} tenants");
    let note = format!("; ledger total {total} = grants {grants}");
    http_load::report("quota-check", &what, &note, &r, &baseline, b.backend);
    b.server.stop().await;
    Ok(())
}

#[derive(Debug, Clone, clap::Args)]
pub struct TermsArgs {
    /// `postgres://...` server to create a fresh benchmark database on (default: SQLite).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Seconds measured.
    #[arg(long, default_value_t = 3)]
    pub seconds: u64,
}

/// One check: the tenant's terms, a feature, and whether one more unit of `calls` fits
/// `used` (the caller's own count).
async fn check(app: &tenancy_app::App, id: &str, used: &mut u64) -> anyhow::Result<bool> {
    let terms = app.tenant_terms(id).await?;
    let sso = terms.entitlements.features.get("sso").copied().unwrap_or(false);
    let q = terms.entitlements.quotas.get("calls").context("the plan has calls")?;
    let admitted = sso && *used < q.limit;
    if admitted {
        *used += 1;
    }
    Ok(admitted)
}

pub async fn terms_check(args: TermsArgs) -> anyhow::Result<()> {
    let b = setup(args.database_url.as_deref()).await?;
    let app = b.server.app.clone();
    let ids: Vec<String> = (0..TENANTS).map(tenant_id).collect();
    let mut used = vec![0u64; TENANTS];
    // Baseline: the same decision over a plain map of the terms (a lookup in memory).
    let mut plain = std::collections::HashMap::new();
    for id in &ids {
        plain.insert(id.clone(), app.tenant_terms(id).await?);
    }
    let run = |seconds: u64| Duration::from_secs(seconds);
    let (mut base_n, start) = (0usize, Instant::now());
    while start.elapsed() < run(args.seconds) {
        for _ in 0..1024 {
            let i = base_n % TENANTS;
            let t = &plain[&ids[i]];
            let sso = t.entitlements.features.get("sso").copied().unwrap_or(false);
            let q = t.entitlements.quotas.get("calls").context("calls")?;
            if sso && used[i] < q.limit {
                used[i] += 1;
            }
            base_n += 1;
        }
    }
    let base_rate = base_n as f64 / start.elapsed().as_secs_f64();
    let (mut n, mut admitted, start) = (0usize, 0usize, Instant::now());
    while start.elapsed() < run(args.seconds) {
        for _ in 0..1024 {
            let i = n % TENANTS;
            if check(&app, &ids[i], &mut used[i]).await? {
                admitted += 1;
            }
            n += 1;
        }
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    anyhow::ensure!(admitted == n, "{} checks refused", n - admitted);
    println!(
        "terms-check: {rate:.0} checks/s ({}, one task: App::tenant_terms, a feature, a quota decision); \
         baseline plain HashMap lookup {base_rate:.0} checks/s; ratio {:.3}",
        b.backend,
        rate / base_rate
    );
    b.server.stop().await;
    Ok(())
}
