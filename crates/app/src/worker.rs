//! The background worker: claims due jobs with a lease and runs them.
//!
//! Any number of workers, in one process or in N replicas on one PostgreSQL, may run
//! at once: a job is leased to one of them at a time (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL), its completion commits only while the lease is held, and a job whose
//! worker died is taken over when the lease expires.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode};
use tenancy_store::{Job, Store};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::lifecycle;

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Names this worker in leases; unique per process.
    pub owner: String,
    /// How long a claimed job stays leased.
    pub lease: Duration,
    /// How often to look for due work when nothing woke the worker.
    pub poll_interval: Duration,
    /// Jobs claimed at once.
    pub batch: u32,
}

impl WorkerOptions {
    pub fn new(owner: impl Into<String>) -> Self {
        WorkerOptions {
            owner: owner.into(),
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            batch: 64,
        }
    }
}

pub struct Worker {
    store: Arc<dyn Store>,
    opts: WorkerOptions,
    wake: Arc<Notify>,
}

/// Backoff before retrying a failed job: 200 ms doubling per attempt, at most 5 minutes.
fn retry_delay(attempts: i64) -> Duration {
    let exp = attempts.clamp(1, 12) as u32 - 1;
    Duration::from_millis(200u64 << exp).min(Duration::from_secs(300))
}

impl Worker {
    pub fn new(store: Arc<dyn Store>, opts: WorkerOptions, wake: Arc<Notify>) -> Self {
        Worker { store, opts, wake }
    }

    /// Runs until `shutdown` is cancelled; work in hand is finished first.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(owner = %self.opts.owner, "worker started");
        while !shutdown.is_cancelled() {
            let claimed = self.run_once().await;
            if claimed == 0 {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.opts.poll_interval) => {}
                }
            }
        }
        tracing::info!(owner = %self.opts.owner, "worker stopped");
    }

    /// Claims one batch of due jobs and runs them; returns how many were claimed.
    pub async fn run_once(&self) -> usize {
        let lease_ms = self.opts.lease.as_millis() as i64;
        let jobs = match self.store.job_claim(&self.opts.owner, lease_ms, self.opts.batch, Timestamp::now()).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(error = %e, "failed to claim jobs");
                tokio::time::sleep(self.opts.poll_interval).await;
                return 0;
            }
        };
        let n = jobs.len();
        join_all(jobs.iter().map(|job| self.run_job(job))).await;
        n
    }

    async fn run_job(&self, job: &Job) {
        let span = tracing::info_span!(
            "job",
            job_id = %job.id,
            kind = %job.kind,
            tenant_id = job.tenant_id.as_deref().unwrap_or("")
        );
        self.run_job_in_span(job).instrument(span).await
    }

    async fn run_job_in_span(&self, job: &Job) {
        let result = match job.kind.as_str() {
            lifecycle::PROVISION | lifecycle::CHANGE_PLAN | lifecycle::OFFBOARD => {
                lifecycle::run_job(&*self.store, job, &self.opts.owner).await
            }
            other => Err(Error::internal(format!("no handler for job kind {other:?}"))),
        };
        match result {
            Ok(()) => tracing::debug!("job done"),
            Err(Error::Conflict { code: ErrorCode::LeaseLost, .. }) => {
                tracing::info!("lease lost: another worker owns the job now");
            }
            Err(e) => {
                let delay = retry_delay(job.attempts);
                tracing::warn!(error = %e, attempts = job.attempts, retry_in_ms = delay.as_millis() as u64, "job failed");
                let run_at = Timestamp::now().plus_millis(delay.as_millis() as i64);
                if let Err(e) = self.store.job_retry(&job.id, &self.opts.owner, run_at, &e.to_string()).await {
                    tracing::warn!(error = %e, "failed to reschedule job; its lease will expire");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(retry_delay(1), Duration::from_millis(200));
        assert_eq!(retry_delay(2), Duration::from_millis(400));
        assert_eq!(retry_delay(100), Duration::from_secs(300));
    }
}
