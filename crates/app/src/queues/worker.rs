//! The queue sweeper: messages past their retention and expired deduplication ids.

use std::sync::Arc;
use std::time::Duration;
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;
use tenancy_store::Store;
use tokio_util::sync::CancellationToken;

/// Deletes messages past their queue's retention and expired dedup ids.
pub struct QueueSweeper {
    store: Arc<dyn Store>,
    interval: Duration,
}

impl QueueSweeper {
    pub fn new(store: Arc<dyn Store>, interval: Duration) -> Self {
        QueueSweeper { store, interval }
    }

    /// One sweep; returns the messages deleted.
    pub async fn run_once(&self) -> Result<u64> {
        let mut total = 0;
        loop {
            let n = self.store.queues().queue_prune(Timestamp::now(), 5_000).await?;
            total += n;
            if n < 5_000 {
                return Ok(total);
            }
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.run_once().await {
                Ok(n) if n > 0 => tracing::info!(messages = n, "deleted queue messages past retention"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "failed to sweep queues"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }
}
