//! PostgreSQL's group commit of effects written alone ([`Store::commit_effects`]).
//!
//! A write that is nothing but its effects (the audit entry of a secret read, above
//! all) costs on PostgreSQL one transaction and one WAL flush each, which bounds a
//! replica at what the disk flushes per second (about 1,000 a second on the benchmark
//! machine) whatever the CPU. So, as the SQLite writer and the consumes'
//! [`super::quota_batch`] do, concurrent ones are gathered: a runner takes every such
//! write queued since its last commit (up to [`MAX_BATCH`]), inserts all their effects
//! with the multi-row statements of [`apply_effects_batch`] in one transaction, and
//! answers each caller after the COMMIT. [`RUNNERS`] runners take turns at the queue,
//! so a batch gathers while the previous one commits. Should a batch fail (a duplicate
//! execution name, a lost connection), its writes are retried one transaction each, so
//! one write's failure is its own.
//!
//! [`Store::commit_effects`]: tenancy_store::Store::commit_effects

use std::sync::Arc;

use sqlx::{AnyPool, Connection};
use tenancy_domain::{Error, Result};
use tenancy_store::Effects;
use tokio::sync::{mpsc, oneshot, Mutex};

use super::db_err;
use super::effects::{apply_effects_batch, start_executions};

/// Most writes one transaction commits.
const MAX_BATCH: usize = 256;
/// Runners taking turns at the queue (each holds one pooled connection while it commits).
const RUNNERS: usize = 3;

struct Job {
    fx: Effects,
    done: oneshot::Sender<Result<()>>,
}

/// The queue of effects written alone and its runners.
pub(super) struct EffectsBatcher {
    tx: mpsc::UnboundedSender<Job>,
}

impl EffectsBatcher {
    pub(super) fn new(pool: AnyPool) -> EffectsBatcher {
        let (tx, rx) = mpsc::unbounded_channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..RUNNERS {
            let (rx, pool) = (rx.clone(), pool.clone());
            tokio::spawn(async move {
                loop {
                    let batch = {
                        let mut rx = rx.lock().await;
                        let Some(first) = rx.recv().await else { return };
                        let mut batch = vec![first];
                        while batch.len() < MAX_BATCH {
                            match rx.try_recv() {
                                Ok(job) => batch.push(job),
                                Err(_) => break,
                            }
                        }
                        batch
                    };
                    run_batch(&pool, batch).await;
                }
            });
        }
        EffectsBatcher { tx }
    }

    /// Commits `fx`, answered once its transaction (shared with others) committed.
    pub(super) async fn commit(&self, fx: &Effects) -> Result<()> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send(Job { fx: fx.clone(), done })
            .map_err(|_| Error::Unavailable("the store's effects writer has stopped".into()))?;
        answer.await.map_err(|_| Error::Unavailable("the store's effects writer has stopped".into()))?
    }
}

/// Commits `batch` in one transaction, or each job in its own when that fails.
async fn run_batch(pool: &AnyPool, batch: Vec<Job>) {
    let all: Vec<&Effects> = batch.iter().map(|j| &j.fx).collect();
    match commit(pool, &all).await {
        Ok(()) => batch.into_iter().for_each(|j| {
            let _ = j.done.send(Ok(()));
        }),
        Err(e) if batch.len() == 1 => batch.into_iter().for_each(|j| {
            let _ = j.done.send(Err(e.clone()));
        }),
        Err(_) => {
            for j in batch {
                let r = commit(pool, &[&j.fx]).await;
                let _ = j.done.send(r);
            }
        }
    }
}

async fn commit(pool: &AnyPool, batch: &[&Effects]) -> Result<()> {
    let mut conn = pool.acquire().await.map_err(db_err)?;
    let mut tx = conn.begin().await.map_err(db_err)?;
    for fx in batch {
        start_executions(&mut tx, fx).await?;
    }
    let owned: Vec<Effects> = batch.iter().map(|fx| (*fx).clone()).collect();
    apply_effects_batch(&mut tx, &owned).await?;
    tx.commit().await.map_err(db_err)
}
