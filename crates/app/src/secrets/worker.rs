//! The sweeper of deleted secrets: purges every secret whose recovery window has
//! ended (its versions and row), each with a `secret.purge` audit entry by the system.
//! Any replica may run it: a purge is conditional on the window (a restore or another
//! replica's purge in between makes it a no-op that writes nothing).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;
use tenancy_store::{Effects, Store};
use tokio_util::sync::CancellationToken;

use crate::OpContext;

/// Secrets looked at per round of a sweep.
const BATCH: u32 = 500;

pub struct SecretSweeper {
    store: Arc<dyn Store>,
    interval: Duration,
}

impl SecretSweeper {
    pub fn new(store: Arc<dyn Store>, interval: Duration) -> Self {
        SecretSweeper { store, interval }
    }

    /// One sweep; returns the secrets purged.
    pub async fn run_once(&self) -> Result<u64> {
        let secrets = self.store.secrets();
        let now = Timestamp::now();
        let mut total = 0;
        loop {
            let due = secrets.secret_purge_due(now, BATCH).await?;
            let mut purged = 0;
            for (tenant, name) in &due {
                let target = match tenant {
                    Some(t) => format!("tenant/{t}/secret/{name}"),
                    None => format!("secret/{name}"),
                };
                let audit = OpContext::system().audit("secret.purge", target, tenant.as_deref(), json!({}));
                if secrets.secret_purge(tenant.as_deref(), name, now, &Effects::none().with_audit(audit)).await? {
                    purged += 1;
                }
            }
            total += purged;
            if (due.len() as u32) < BATCH || purged == 0 {
                return Ok(total);
            }
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.run_once().await {
                Ok(n) if n > 0 => tracing::info!(secrets = n, "purged deleted secrets past their recovery window"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "failed to sweep deleted secrets"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }
}
