//! The reconciler's loop: a pass whenever no replica made one for an interval.

use crate::App;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The background loop: a pass whenever none was made, on any replica, for
/// `interval` (see the module docs).
pub async fn run(app: Arc<App>, interval: Duration, shutdown: CancellationToken) {
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
