//! Benchmark programs for Tenancy.
//!
//! `cargo run --release -p tenancy-bench -- <scenario> [options]`. Each scenario runs
//! its baseline in the same invocation and ends with one line
//! `<scenario>: <figure> <unit>` followed by the baseline and the ratio, so figures are
//! compared on the same machine at the same moment (the machines are shared and noisy).

mod archive;
mod authz;
mod event_delivery;
mod flags;
mod http_load;
mod provision;
mod prune;
mod queue;
mod quotas;
mod rollout;
mod secrets;
mod soak;
mod tenants;
mod workflow_throughput;

/// Rate limits no load here reaches (every bucket 10^9 a second): the figures include
/// the bucket check on every request and never a 429 (the defaults would refuse a
/// service or admin key past 10,000 requests a second).
pub(crate) const UNREACHED_RATE_LIMITS: tenancy_http::RateLimits = {
    const L: tenancy_http::Limit = tenancy_http::Limit::new(1_000_000_000, 1_000_000_000);
    tenancy_http::RateLimits { admin: L, operator: L, viewer: L, service: L, tenant_key: L, tenant: L }
};

use clap::{Parser, Subcommand};

/// The allocator `tenancy serve` uses (crates/cli/src/main.rs), since the benchmarks
/// run the server in process.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "tenancy-bench")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// A hello-world axum handler under the same load generator: the HTTP ceiling.
    HttpBaseline(tenants::LoadArgs),
    /// Tenants created over HTTP by concurrent clients.
    TenantCreate(tenants::CreateArgs),
    /// p99 latency of a filtered 100-item page with many tenants loaded.
    TenantList(tenants::ListArgs),
    /// GET /v1/tenants/{id} throughput against the hello-world handler.
    TenantGet(tenants::LoadArgs),
    /// GET of a tenant's secret (the current version) by a service key, against the
    /// hello-world handler.
    SecretRead(tenants::LoadArgs),
    /// OFREP single-flag evaluation (POST /ofrep/v1/evaluate/flags/{key}) over 1,000
    /// tenants against the hello-world handler.
    FlagEval(tenants::LoadArgs),
    /// Events fanned out to webhook subscriptions on a local receiver.
    EventDelivery(event_delivery::EventDeliveryArgs),
    /// Executions of a 5-state machine through the durable engine.
    WorkflowThroughput(WorkflowArgs),
    /// Tenants provisioned end to end (half silo, a sync hook on a local receiver).
    Provision(provision::ProvisionArgs),
    /// Messages sent in batches, then received and deleted by 32 consumers.
    Queue(queue::QueueArgs),
    /// Quota consumes over HTTP across 1,000 tenants against the hello-world handler.
    QuotaCheck(tenants::LoadArgs),
    /// p99 of GET /v1/tenants/{id} while the leased pruner deletes 1,000,000 history
    /// rows, against the same load without a prune.
    Prune(prune::PruneArgs),
    /// Sealed audit records archived per second to the blob store as Parquet, against
    /// the export's read of the same records.
    Archive(archive::ArchiveArgs),
    /// GET /v1/tenants/{id} with operators' Cedar policies in force against without
    /// them, in one run.
    Authz(tenants::LoadArgs),
    /// `App::tenant_terms` with a feature lookup and a quota decision, in process.
    TermsCheck(quotas::TermsArgs),
    /// Tenants upgraded per second by a rollout (waves of 1%, 10%, the rest; a sync hook
    /// on a local receiver), and the time from a wave's first failure to the halt.
    Rollout(rollout::RolloutArgs),
    /// A fixed mixed load on the release server for 30 minutes, sampling its RSS, open
    /// descriptors, WAL size and p99 latency every 30 s; a verdict on their flatness.
    Soak(soak::SoakArgs),
}

#[derive(Debug, clap::Args)]
struct WorkflowArgs {
    /// `postgres://...` server to create a fresh benchmark database on (default: SQLite).
    #[arg(long)]
    database_url: Option<String>,
    #[arg(long, default_value_t = 10_000)]
    executions: usize,
    /// Executions in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `BENCH_LOG=<filter>` (e.g. `sqlx::query=debug`) logs to stderr, for profiling.
    if let Some(filter) = tenancy::config::env_var("BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    match Cli::parse().scenario {
        Scenario::HttpBaseline(args) => tenants::http_baseline(args).await,
        Scenario::TenantCreate(args) => tenants::tenant_create(args).await,
        Scenario::TenantList(args) => tenants::tenant_list(args).await,
        Scenario::TenantGet(args) => tenants::tenant_get(args).await,
        Scenario::SecretRead(args) => secrets::secret_read(args).await,
        Scenario::FlagEval(args) => flags::flag_eval(args).await,
        Scenario::EventDelivery(args) => event_delivery::run(args).await,
        Scenario::Queue(args) => queue::run(args).await,
        Scenario::QuotaCheck(args) => quotas::quota_check(args).await,
        Scenario::TermsCheck(args) => quotas::terms_check(args).await,
        Scenario::Authz(args) => authz::run(args).await,
        Scenario::Provision(args) => provision::run(args).await,
        Scenario::Rollout(args) => rollout::run(args).await,
        Scenario::Prune(args) => prune::run(args).await,
        Scenario::Soak(args) => soak::run(args).await,
        Scenario::Archive(args) => archive::run(args).await,
        Scenario::WorkflowThroughput(a) => workflow_throughput::run(a.database_url, a.executions, a.concurrency).await,
    }
}
