//! The queue and runners of PostgreSQL's group commits ([`super::quota_batch`],
//! [`super::effects_batch`]).
//!
//! On PostgreSQL each commit is one WAL flush, so a replica doing one small write per
//! request is bound by what the disk flushes per second, whatever the CPU. A group
//! commit gathers concurrent writes instead: callers queue a job, and one of `runners`
//! tasks takes every job queued since its last batch (up to `max_batch`) and hands them
//! to the batch function, which commits them together and answers each job. The
//! runners take turns at the queue, so a batch gathers while the previous one commits.
//! What a batch does, and how a failed batch falls back, is its user's.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, Mutex};

/// The queue of one kind of job, drained by its runners.
pub(super) struct GroupCommit<J> {
    tx: mpsc::UnboundedSender<J>,
}

impl<J: Send + 'static> GroupCommit<J> {
    /// Spawns `runners` tasks, each running `batch` on up to `max_batch` queued jobs at a
    /// time; they stop when the queue is dropped.
    pub(super) fn spawn<F, Fut>(runners: usize, max_batch: usize, batch: F) -> GroupCommit<J>
    where
        F: Fn(Vec<J>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let (tx, rx) = mpsc::unbounded_channel::<J>();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..runners {
            let (rx, batch) = (rx.clone(), batch.clone());
            tokio::spawn(async move {
                loop {
                    let jobs = {
                        let mut rx = rx.lock().await;
                        let Some(first) = rx.recv().await else { return };
                        let mut jobs = vec![first];
                        while jobs.len() < max_batch {
                            match rx.try_recv() {
                                Ok(job) => jobs.push(job),
                                Err(_) => break,
                            }
                        }
                        jobs
                    };
                    batch(jobs).await;
                }
            });
        }
        GroupCommit { tx }
    }

    /// Queues `job`; gives it back when the runners have stopped (the runtime is
    /// shutting down).
    pub(super) fn submit(&self, job: J) -> Result<(), J> {
        self.tx.send(job).map_err(|mpsc::error::SendError(job)| job)
    }
}
