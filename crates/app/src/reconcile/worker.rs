//! The reconciler's loop: a pass whenever no replica made one for an interval.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::App;

/// The background loop of reconciliation, started by `tenancy serve` on every replica:
/// `Reconciler::new(app, interval).run(shutdown)`.
pub struct Reconciler {
    app: Arc<App>,
    interval: Duration,
}

impl Reconciler {
    pub fn new(app: Arc<App>, interval: Duration) -> Self {
        Reconciler { app, interval }
    }

    /// A pass whenever none was made, on any replica, for the interval (see the
    /// module docs of `reconcile::ops`), until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let Reconciler { app, interval } = self;
        loop {
            let due_in = match app.reconciliation_due_in(interval).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the last reconciliation pass; making one");
                    Duration::ZERO
                }
            };
            let mut wait = due_in;
            if due_in.is_zero() {
                if let Err(e) = app.reconcile_once().await {
                    tracing::warn!(error = %e, "reconciliation pass failed");
                }
                wait = interval;
            }
            // Up to a tenth more, so that replicas started together do not pass together.
            let jitter = interval.mul_f64(rand::random::<f64>() / 10.0);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait + jitter) => {}
            }
        }
    }
}
