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
//! one write's failure is its own. The queue and its runners are [`GroupCommit`]'s.
//!
//! [`Store::commit_effects`]: tenancy_store::Store::commit_effects

use sqlx::{AnyPool, Connection};
use tenancy_domain::{Error, Result};
use tenancy_store::Effects;
use tokio::sync::oneshot;

use super::db_err;
use super::effects::{apply_effects_batch, start_executions};
use super::group_commit::GroupCommit;

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
    queue: GroupCommit<Job>,
}

impl EffectsBatcher {
    pub(super) fn new(pool: AnyPool) -> EffectsBatcher {
        let queue = GroupCommit::spawn(RUNNERS, MAX_BATCH, move |batch| {
            let pool = pool.clone();
            async move { run_batch(&pool, batch).await }
        });
        EffectsBatcher { queue }
    }

    /// Commits `fx`, answered once its transaction (shared with others) committed.
    pub(super) async fn commit(&self, fx: &Effects) -> Result<()> {
        let stopped = || Error::Unavailable("the store's effects writer has stopped".into());
        let (done, answer) = oneshot::channel();
        self.queue.submit(Job { fx: fx.clone(), done }).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
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
    apply_effects_batch(&mut tx, batch).await?;
    tx.commit().await.map_err(db_err)
}
