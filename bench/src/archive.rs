//! `archive`: sealed audit records archived per second on SQLite (docs/audit.md,
//! "Archives"): `--records` audit entries committed and sealed, then one archiver pass
//! to a local blob directory (read from the store, Parquet, SHA-256, manifests, the
//! cursor). The baseline, in the same run over the same records: reading them from the
//! store as the NDJSON export does, without writing anything. The bar: 10,000
//! records/s.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use serde_json::json;
use tenancy_adapters::blob::BlobStore;
use tenancy_app::archive::worker::{Archiver, ArchiverOptions};
use tenancy_audit::{AuditEntry, AuditRecord};
use tenancy_domain::time::Timestamp;
use tenancy_store::{Effects, Store};
use tenancy_store_sql::{SqlOptions, SqlStore};

#[derive(Debug, Clone, Args)]
pub struct ArchiveArgs {
    /// Audit records to archive.
    #[arg(long, default_value_t = 200_000)]
    pub records: usize,
    /// Rows the archiver reads at a time (`--page 10000`: a whole batch at once, as it
    /// did before 2026-12-07).
    #[arg(long, default_value_t = tenancy_app::archive::worker::DEFAULT_PAGE)]
    pub page: u32,
}

/// `VmRSS` and `VmHWM` (the peak since the last reset) of this process, in KiB (0s
/// where `/proc` cannot tell).
fn memory() -> (u64, u64) {
    let [rss, hwm] = crate::soak::status_kib("self", ["VmRSS:", "VmHWM:"]).unwrap_or_default();
    (rss, hwm)
}

fn entry(i: usize) -> AuditEntry {
    AuditEntry {
        id: format!("aud_bench{i:09}"),
        time: Timestamp::now(),
        actor_key_id: Some("key_bench".into()),
        actor_role: "admin".into(),
        action: "tenant.change_plan".into(),
        target: format!("tenant/t{:05}", i % 10_000),
        tenant_id: Some(format!("t{:05}", i % 10_000)),
        request_id: Some(format!("req_{i}")),
        source_ip: Some("10.0.0.1".into()),
        outcome: "success".into(),
        detail: json!({"from": "active", "request": {"plan": "pro"}, "region": "eu-west-1", "execution_id": format!("exe_{i}")}),
    }
}

pub async fn run(args: ArchiveArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display());
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect(&SqlOptions::new(&url)).await.context("open the store")?);
    let n = args.records;
    for start in (0..n).step_by(1_000) {
        let mut fx = Effects::none();
        for i in start..(start + 1_000).min(n) {
            fx = fx.with_audit(entry(i));
        }
        store.commit_effects(&fx).await?;
    }
    let seal = |e: &AuditEntry, seq: i64, prev: &str| AuditRecord::seal(e.clone(), seq, prev).hash;
    while store.audit_seal(10_000, &seal).await? > 0 {}
    anyhow::ensure!(store.audit_counts().await?.0 as usize == n, "sealed");

    // Baseline: the same records read as the export reads them.
    let t = Instant::now();
    let mut after = 0;
    let mut read = 0usize;
    loop {
        let page = store.audit_sealed(after, 1_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            read += serde_json::to_string(r)?.len().min(1);
        }
    }
    let baseline = t.elapsed();
    anyhow::ensure!(read == n, "read {read} of {n}");

    let blobs = BlobStore::local(&dir.path().join("blobs"))?;
    let opts = ArchiverOptions { page: args.page, ..ArchiverOptions::new("bench/archive".into()) };
    let archiver = Archiver::new(store.clone(), blobs, opts);
    // The peak RSS from here on: writing 5 to clear_refs resets VmHWM (Linux).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let (before, _) = memory();
    let t = Instant::now();
    let report = archiver.run_once(Timestamp::now()).await?.context("the archive lease")?;
    let took = t.elapsed();
    let (_, peak) = memory();
    anyhow::ensure!(report.audit_records as usize == n, "archived {} of {n}", report.audit_records);
    let rate = n as f64 / took.as_secs_f64();
    let base_rate = n as f64 / baseline.as_secs_f64();
    println!(
        "archived {n} audit records in {:.2} s ({} files); the export's read of them took {:.2} s",
        took.as_secs_f64(),
        report.files,
        baseline.as_secs_f64()
    );
    println!(
        "archive: {rate:.0} audit records/s archived on SQLite (bar: 10000); baseline NDJSON export read \
         {base_rate:.0} records/s; ratio {:.3}",
        rate / base_rate
    );
    if reset {
        println!(
            "archive memory: RSS {:.1} MiB before the pass, peak {:.1} MiB during it (+{:.1} MiB; {} rows read at a time)",
            before as f64 / 1024.0,
            peak as f64 / 1024.0,
            peak.saturating_sub(before) as f64 / 1024.0,
            args.page
        );
    }
    Ok(())
}
