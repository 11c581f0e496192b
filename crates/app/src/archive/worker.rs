//! The leased archiver: one pass every `--archive-interval-s` on whichever replica holds
//! the `archive` lease (a `job_leases` row, as the pruner's). A pass writes the sealed
//! audit records after the archive cursor, then the events not archived yet, in
//! batches of [`DEFAULT_BATCH`] rows read [`DEFAULT_PAGE`] at a time, one Parquet file
//! and one manifest per run of one day's rows in a batch (one per day, unless rows of
//! two days interleave around midnight); only then does it move the cursor
//! (compare-and-set) or mark the events archived. A pass cut short by a crash is
//! written again under the same names, so the archive never holds a row twice in two
//! audit files.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use object_store::path::Path;
use object_store::PutPayload;
use sha2::{Digest, Sha256};
use tenancy_adapters::blob::BlobStore;
use tenancy_audit::AuditRecord;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};
use tenancy_store::{Store, StoredEvent};
use tokio_util::sync::CancellationToken;

use super::columns::{audit_batch, events_batch, writer};
use super::{data_path, day, manifest_path, ArchiveKind, Manifest};

/// The lease's name in `job_leases`.
pub const LEASE: &str = "archive";
/// Rows at most in one file, and in one batch (the cursor moves once per batch).
pub const DEFAULT_BATCH: u32 = 10_000;
/// Rows read from the store at a time. A pass holds one page of rows (each as the
/// driver's row, the record with its JSON parsed, the Arrow columns) and the file being
/// written (its encoded columns), never a whole batch of rows.
pub const DEFAULT_PAGE: u32 = 1_000;
/// How often a pass runs by default (`--archive-interval-s`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct ArchiverOptions {
    pub interval: Duration,
    pub batch: u32,
    pub page: u32,
    /// Who holds the lease: unique per process.
    pub owner: String,
}

impl ArchiverOptions {
    pub fn new(owner: String) -> Self {
        ArchiverOptions { interval: DEFAULT_INTERVAL, batch: DEFAULT_BATCH, page: DEFAULT_PAGE, owner }
    }
}

/// What one pass wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveReport {
    pub audit_records: u64,
    pub events: u64,
    pub files: u64,
}

/// The file a batch is writing: a run of one day's rows, a page at a time.
struct OpenFile {
    kind: ArchiveKind,
    date: String,
    first_seq: i64,
    last_seq: i64,
    rows: u64,
    /// Audit files: the hash of the record with `last_seq`.
    last_hash: Option<String>,
    writer: parquet::arrow::ArrowWriter<Vec<u8>>,
}

/// What a file needs of a row: its `seq`, its time (the day) and, for audit records,
/// its hash.
type Row<'a> = (i64, Timestamp, Option<&'a str>);

fn audit_row(r: &AuditRecord) -> Row<'_> {
    (r.seq, r.entry.time, Some(r.hash.as_str()))
}

fn event_row(e: &StoredEvent) -> Row<'_> {
    (e.seq, e.event.time, None)
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
    async fn write(&self, file: OpenFile) -> Result<()> {
        let OpenFile { kind, date, first_seq, last_seq, rows, last_hash, writer } = file;
        let bytes = writer.into_inner().map_err(Error::internal)?;
        let path = data_path(kind, &date, first_seq);
        let manifest = Manifest {
            file: path.clone(),
            kind,
            date: date.clone(),
            rows,
            bytes: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
            first_seq,
            last_seq,
            last_hash,
            created_at: Timestamp::now(),
        };
        self.put(&path, bytes).await?;
        let text = serde_json::to_vec_pretty(&manifest).map_err(Error::internal)?;
        self.put(&manifest_path(kind, &date, first_seq), text).await
    }

    /// Writes the batch's last file, if it has one: the files written (0 or 1).
    async fn finish(&self, open: Option<OpenFile>) -> Result<u64> {
        match open {
            Some(file) => self.write(file).await.map(|()| 1),
            None => Ok(0),
        }
    }

    /// Appends a page of rows (in `seq` order) to the files of a batch: a run of rows of
    /// one day goes to the open file when it is of that day, else to a new one (the open
    /// one is written first). Returns the files written.
    async fn append<R>(
        &self,
        kind: ArchiveKind,
        open: &mut Option<OpenFile>,
        page: &[R],
        row: fn(&R) -> Row<'_>,
        batch: fn(&[R]) -> Result<RecordBatch>,
    ) -> Result<u64> {
        /// Days since the epoch (UTC): the partition key, compared without formatting.
        fn day_number(t: Timestamp) -> i64 {
            t.millis().div_euclid(86_400_000)
        }
        let mut written = 0;
        for run in page.chunk_by(|a, b| day_number(row(a).1) == day_number(row(b).1)) {
            let (first_seq, time, _) = row(&run[0]);
            let (last_seq, _, last_hash) = row(&run[run.len() - 1]);
            let date = day(time);
            if let Some(file) = open.take_if(|f| f.date != date) {
                self.write(file).await?;
                written += 1;
            }
            let file = match open {
                Some(f) => f,
                None => open.insert(OpenFile {
                    kind,
                    writer: writer(Vec::new(), kind.schema(), self.opts.batch as usize)?,
                    date,
                    first_seq,
                    last_seq,
                    rows: 0,
                    last_hash: None,
                }),
            };
            file.writer.write(&batch(run)?).map_err(Error::internal)?;
            file.last_seq = last_seq;
            file.rows += run.len() as u64;
            file.last_hash = last_hash.map(str::to_owned);
        }
        Ok(written)
    }

    /// One batch of sealed audit records after the cursor: (records, files) written.
    async fn audit_batch(&self) -> Result<(u64, u64)> {
        let cursor = self.store.audit_archive_cursor().await?;
        let (mut after, mut n, mut files) = (cursor, 0u64, 0u64);
        let mut open = None;
        let batch = u64::from(self.opts.batch.max(1));
        while n < batch {
            let want = self.opts.page.clamp(1, (batch - n) as u32);
            let page = self.store.audit_sealed(after, want).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            n += page.len() as u64;
            files += self.append(ArchiveKind::Audit, &mut open, &page, audit_row, audit_batch).await?;
            if page.len() < want as usize {
                break;
            }
        }
        files += self.finish(open).await?;
        if n == 0 || !self.store.audit_archive_advance(cursor, after).await? {
            // Nothing to do, or another archiver moved it meanwhile: it wrote the same files.
            return Ok((0, 0));
        }
        Ok((n, files))
    }

    /// One batch of events not archived yet: (events, files) written.
    async fn events_batch(&self) -> Result<(u64, u64)> {
        let (mut after, mut files) = (0, 0u64);
        let mut seqs = Vec::new();
        let mut open = None;
        let batch = self.opts.batch.max(1) as usize;
        while seqs.len() < batch {
            let want = self.opts.page.clamp(1, (batch - seqs.len()) as u32);
            let page = self.store.events_unarchived(after, want).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            seqs.extend(page.iter().map(|e| e.seq));
            files += self.append(ArchiveKind::Events, &mut open, &page, event_row, events_batch).await?;
            if page.len() < want as usize {
                break;
            }
        }
        files += self.finish(open).await?;
        self.store.events_mark_archived(&seqs).await?;
        Ok((seqs.len() as u64, files))
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
