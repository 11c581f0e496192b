//! The sweeper of sign-ups: deletes every sign-up whose activation token has expired
//! (used or not: past its expiry a token works no more, and its hash is of no use).
//! Any replica may run it: the delete is one statement on the expiry.

use std::sync::Arc;
use std::time::Duration;

use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;
use tenancy_store::Store;
use tokio_util::sync::CancellationToken;

pub struct SignupSweeper {
    store: Arc<dyn Store>,
    interval: Duration,
}

impl SignupSweeper {
    pub fn new(store: Arc<dyn Store>, interval: Duration) -> Self {
        SignupSweeper { store, interval }
    }

    /// One sweep; returns the sign-ups purged.
    pub async fn run_once(&self) -> Result<u64> {
        self.store.signups().signup_purge_expired(Timestamp::now()).await
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.run_once().await {
                Ok(n) if n > 0 => tracing::info!(signups = n, "purged expired sign-up activation tokens"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "failed to sweep expired sign-ups"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.interval) => {}
            }
        }
    }
}
