//! The sealer: chains pending audit entries into sealed records, checkpoints them.

use crate::audit::ops::{record_entry, seal_hash, PAGE};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenancy_audit::MerkleFrontier;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};
use tenancy_store::{AuditCheckpoint, Store};
use tokio_util::sync::CancellationToken;

// The sealer.

#[derive(Debug, Clone)]
pub struct SealerOptions {
    pub batch: u32,
    pub poll_interval: Duration,
    /// A checkpoint after this many new records...
    pub checkpoint_every: i64,
    /// ...or after this long with any new record.
    pub checkpoint_interval: Duration,
}

impl Default for SealerOptions {
    fn default() -> Self {
        SealerOptions {
            batch: 1000,
            poll_interval: Duration::from_secs(1),
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(600),
        }
    }
}

pub struct Sealer {
    store: Arc<dyn Store>,
    opts: SealerOptions,
    /// The Merkle tree over every sealed record this sealer has read: a checkpoint
    /// reads only the records sealed since, not the whole log (which made checkpoints
    /// quadratic in the log's length). Built from `seq` 1 once per process.
    frontier: std::sync::Mutex<MerkleFrontier>,
}

/// How long the sealer lets new audit records gather after a wake-up.
const SEAL_GATHER: Duration = Duration::from_millis(100);

impl Sealer {
    pub fn new(store: Arc<dyn Store>, opts: SealerOptions) -> Self {
        Sealer { store, opts, frontier: Default::default() }
    }

    /// Seals everything pending; returns how many were sealed.
    pub async fn seal_pending(&self) -> Result<u64> {
        let mut total = 0;
        loop {
            let n = self.store.audit_seal(self.opts.batch, &seal_hash).await?;
            total += n;
            if n < self.opts.batch as u64 {
                return Ok(total);
            }
        }
    }

    /// Records a checkpoint over every sealed record when due (or `force`d and there
    /// is anything new); returns it.
    pub async fn checkpoint(&self, force: bool, last: &mut Instant) -> Result<Option<AuditCheckpoint>> {
        let frontier = self.catch_up().await?;
        let latest = self.store.audit_checkpoint_latest().await?.map_or(0, |c| c.tree_size);
        let new = frontier.size() as i64 - latest;
        let due = new >= self.opts.checkpoint_every || last.elapsed() >= self.opts.checkpoint_interval || force;
        if new <= 0 || !due {
            return Ok(None);
        }
        let cp = AuditCheckpoint {
            tree_size: frontier.size() as i64,
            root: hex::encode(frontier.root()),
            time: Timestamp::now(),
        };
        self.store.audit_checkpoint_put(&cp).await?;
        *last = Instant::now();
        tracing::debug!(tree_size = cp.tree_size, root = %cp.root, "audit checkpoint");
        Ok(Some(cp))
    }

    /// Extends the frontier with the records sealed since it was last extended.
    async fn catch_up(&self) -> Result<MerkleFrontier> {
        let mut frontier = self.frontier.lock().expect("the frontier's lock").clone();
        loop {
            let page = self.store.audit_hashes(frontier.size() as i64, PAGE).await?;
            for (seq, hash) in &page {
                // Leaf `i` is record `seq = i + 1`: a gap would shift every later leaf.
                if *seq != frontier.size() as i64 + 1 {
                    return Err(Error::internal(format!(
                        "audit record seq {seq} follows seq {}: the sealed log has a gap",
                        frontier.size()
                    )));
                }
                frontier.push(&record_entry(hash)?);
            }
            if page.len() < PAGE as usize {
                break;
            }
        }
        *self.frontier.lock().expect("the frontier's lock") = frontier.clone();
        Ok(frontier)
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let mut wake = self.store.subscribe_wakeups();
        let mut last_checkpoint = Instant::now();
        loop {
            if let Err(e) = self.seal_pending().await {
                tracing::warn!(error = %e, "failed to seal audit entries");
            }
            if let Err(e) = self.checkpoint(false, &mut last_checkpoint).await {
                tracing::warn!(error = %e, "failed to checkpoint the audit log");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                // Sealing has no latency to keep: let commits gather, and seal them in
                // one transaction instead of one per commit.
                _ = wake.changed() => tokio::time::sleep(SEAL_GATHER).await,
                _ = tokio::time::sleep(self.opts.poll_interval) => {}
            }
        }
    }
}
