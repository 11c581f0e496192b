//! The rotation scheduler: starts the rotations of secrets whose `next_rotation_at`
//! has come (their `rotation.every` or `rotation.cron`), each with the system as actor.
//!
//! It runs on every worker replica (`serve`) but works on one at a time: each round
//! first takes or renews the store's lease `secret-rotation` (a `job_leases` row with
//! an expiry, three rounds long), and a replica that does not hold it does nothing.
//! The lease is an economy, not the guarantee: a start is conditional on the secret's
//! `next_rotation_at` still being the due time it read and on no rotation running, in
//! the transaction that moves the schedule on and starts the execution, so even two
//! replicas that both believed they held the lease start a due rotation once.

use std::sync::Arc;
use std::time::Duration;

use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tokio_util::sync::CancellationToken;

use crate::{App, OpContext};

/// The lease's name in `job_leases`.
pub const LEASE: &str = "secret-rotation";
/// Due secrets started per round.
const BATCH: u32 = 100;

pub struct RotationScheduler {
    app: Arc<App>,
    interval: Duration,
    owner: String,
}

impl RotationScheduler {
    /// A scheduler looking every `interval`, holding the lease as `owner` (unique per
    /// process: the node id and a random suffix).
    pub fn new(app: Arc<App>, interval: Duration, owner: String) -> Self {
        RotationScheduler { app, interval, owner }
    }

    /// One round: the lease, then the due rotations. Returns the rotations started
    /// (`None` when another replica holds the lease).
    pub async fn run_once(&self) -> Result<Option<usize>> {
        let secrets = self.app.store().secrets();
        let now = Timestamp::now();
        let ttl = (self.interval * 3).max(Duration::from_secs(5));
        if !secrets.job_lease(LEASE, &self.owner, now, now.plus_millis(ttl.as_millis() as i64)).await? {
            return Ok(None);
        }
        let mut started = 0;
        for (scope, name, due) in secrets.secret_rotation_due(now, BATCH).await? {
            match self.app.start_rotation(&OpContext::system(), scope.as_deref(), &name, Some(due)).await {
                Ok(r) => {
                    started += 1;
                    tracing::info!(secret = %name, tenant = ?scope, execution = %r.execution_id, "scheduled rotation started");
                }
                // Started by another replica, or by a request, in between.
                Err(Error::Conflict { code: ErrorCode::RotationInProgress, .. }) => {}
                Err(e) => {
                    tracing::warn!(secret = %name, tenant = ?scope, error = %e, "scheduled rotation did not start")
                }
            }
        }
        Ok(Some(started))
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.run_once().await {
                tracing::warn!(error = %e, "rotation scheduler round failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }
}
