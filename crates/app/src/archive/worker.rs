//! The leased archiver: one pass every `--archive-interval-s` on whichever replica holds
//! the `archive` lease (a `job_leases` row, as the pruner's). A pass writes the sealed
//! audit records after the archive cursor, then the events not archived yet, in
//! batches of [`DEFAULT_BATCH`] rows, one Parquet file and one manifest per day in a
//! batch; only then does it move the cursor (compare-and-set) or mark the events
//! archived. A pass cut short by a crash is written again under the same names, so the
//! archive never holds a row twice in two audit files.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::PutPayload;
use sha2::{Digest, Sha256};
use tenancy_adapters::blob::BlobStore;
use tenancy_audit::AuditRecord;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};
use tenancy_store::{Store, StoredEvent};
use tokio_util::sync::CancellationToken;

use super::columns::{audit_to_parquet, events_to_parquet};
use super::{data_path, day, manifest_path, ArchiveKind, Manifest};

/// The lease's name in `job_leases`.
pub const LEASE: &str = "archive";
/// Rows read (and at most written to one file) per batch.
pub const DEFAULT_BATCH: u32 = 10_000;
/// How often a pass runs by default (`--archive-interval-s`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct ArchiverOptions {
    pub interval: Duration,
    pub batch: u32,
    /// Who holds the lease: unique per process.
    pub owner: String,
}

impl ArchiverOptions {
    pub fn new(owner: String) -> Self {
        ArchiverOptions { interval: DEFAULT_INTERVAL, batch: DEFAULT_BATCH, owner }
    }
}

/// What one pass wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveReport {
    pub audit_records: u64,
    pub events: u64,
    pub files: u64,
}

pub struct Archiver {
    store: Arc<dyn Store>,
    blobs: BlobStore,
    opts: ArchiverOptions,
}

impl Archiver {
    pub fn new(store: Arc<dyn Store>, blobs: BlobStore, opts: ArchiverOptions) -> Self {
        Archiver { store, blobs, opts }
    }

    async fn lease(&self, now: Timestamp) -> Result<bool> {
        let ttl = (self.opts.interval * 3).max(Duration::from_secs(60));
        self.store.secrets().job_lease(LEASE, &self.opts.owner, now, now.plus_millis(ttl.as_millis() as i64)).await
    }

    async fn put(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        self.blobs
            .store
            .put(&Path::from(path), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| Error::Unavailable(format!("failed to write {path} to the blob store: {e}")))
    }

    /// Writes one file and its manifest (the manifest last: a file without one is an
    /// unfinished write, which the pass retried overwrites).
    async fn write(
        &self,
        kind: ArchiveKind,
        date: &str,
        seqs: (i64, i64),
        rows: u64,
        bytes: Vec<u8>,
        last_hash: Option<String>,
    ) -> Result<()> {
        let file = data_path(kind, date, seqs.0);
        let manifest = Manifest {
            file: file.clone(),
            kind,
            date: date.to_owned(),
            rows,
            bytes: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
            first_seq: seqs.0,
            last_seq: seqs.1,
            last_hash,
            created_at: Timestamp::now(),
        };
        self.put(&file, bytes).await?;
        let text = serde_json::to_vec_pretty(&manifest).map_err(Error::internal)?;
        self.put(&manifest_path(kind, date, seqs.0), text).await
    }

    /// One batch of sealed audit records after the cursor: (records, files) written.
    async fn audit_batch(&self) -> Result<(u64, u64)> {
        let cursor = self.store.audit_archive_cursor().await?;
        let records = self.store.audit_sealed(cursor, self.opts.batch.max(1)).await?;
        let Some(last) = records.last().map(|r| r.seq) else { return Ok((0, 0)) };
        let mut days: BTreeMap<String, Vec<AuditRecord>> = BTreeMap::new();
        for r in records {
            days.entry(day(r.entry.time)).or_default().push(r);
        }
        let mut n = 0;
        for (date, records) in &days {
            let bytes = audit_to_parquet(records)?;
            let (first, last) = (&records[0], &records[records.len() - 1]);
            self.write(
                ArchiveKind::Audit,
                date,
                (first.seq, last.seq),
                records.len() as u64,
                bytes,
                Some(last.hash.clone()),
            )
            .await?;
            n += records.len() as u64;
        }
        if !self.store.audit_archive_advance(cursor, last).await? {
            // Another archiver moved it meanwhile: it wrote the same files.
            return Ok((0, 0));
        }
        Ok((n, days.len() as u64))
    }

    async fn events_batch(&self) -> Result<(u64, u64)> {
        let events = self.store.events_unarchived(self.opts.batch.max(1)).await?;
        if events.is_empty() {
            return Ok((0, 0));
        }
        let mut days: BTreeMap<String, Vec<StoredEvent>> = BTreeMap::new();
        for e in events {
            days.entry(day(e.event.time)).or_default().push(e);
        }
        let mut seqs = Vec::new();
        for (date, events) in &days {
            let bytes = events_to_parquet(events)?;
            let (first, last) = (events[0].seq, events[events.len() - 1].seq);
            self.write(ArchiveKind::Events, date, (first, last), events.len() as u64, bytes, None).await?;
            seqs.extend(events.iter().map(|e| e.seq));
        }
        self.store.events_mark_archived(&seqs).await?;
        Ok((seqs.len() as u64, days.len() as u64))
    }

    /// One pass as of `now`: every sealed audit record and every event not archived
    /// yet. `None` when another replica holds the lease.
    pub async fn run_once(&self, now: Timestamp) -> Result<Option<ArchiveReport>> {
        if !self.lease(now).await? {
            return Ok(None);
        }
        let mut r = ArchiveReport::default();
        loop {
            let (n, files) = self.audit_batch().await?;
            if n == 0 {
                break;
            }
            r.audit_records += n;
            r.files += files;
        }
        loop {
            let (n, files) = self.events_batch().await?;
            if n == 0 {
                break;
            }
            r.events += n;
            r.files += files;
        }
        Ok(Some(r))
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.run_once(Timestamp::now()).await {
                Ok(Some(r)) if r.audit_records + r.events > 0 => {
                    tracing::info!(audit_records = r.audit_records, events = r.events, "archived to the blob store")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "archive pass failed"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.opts.interval) => {}
            }
        }
    }
}
