//! The write path: every change and its effects, in one transaction, with group commit
//! on SQLite.
//!
//! SQLite takes one writer at a time, and a transaction there costs a handful of round
//! trips to sqlx's worker thread whatever it writes. So on SQLite the writes of
//! concurrent callers are queued to one writer task that commits them in batches: each
//! write runs inside its own SAVEPOINT (a failing write leaves no trace and does not
//! disturb the others), the effects of all successful writes are inserted with
//! multi-row statements, and one COMMIT makes the whole batch durable. A caller's
//! result is released only after that commit. On PostgreSQL, which has no single-writer
//! constraint, every write is its own transaction (a batch of one).

use std::any::Any as StdAny;
use std::sync::Arc;

use futures_core::future::BoxFuture;
use sqlx::{AnyConnection, AnyPool, Connection};
use tenancy_domain::{Error, Result};
use tokio::sync::{mpsc, oneshot};

use super::cache::TenantCache;
use super::db_err;
use super::effects::{apply_effects_batch, complete_job, effects_need_savepoint, start_executions};
use crate::store::Effects;

type BoxAny = Box<dyn StdAny + Send>;
type WriteFn = Box<dyn for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<BoxAny>> + Send>;

pub(super) struct Pending {
    f: WriteFn,
    fx: Effects,
    /// Whether a failure of `f` may leave writes to undo (see [`Writer::write_atomic`]).
    savepoint: bool,
    done: oneshot::Sender<Result<BoxAny>>,
}

pub static STATS_BUSY_US: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static STATS_BATCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static STATS_WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static T_BEGIN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static T_WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static T_EFFECTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static T_COMMIT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
fn tadd(a: &std::sync::atomic::AtomicU64, t: std::time::Instant) {
    a.fetch_add(t.elapsed().as_micros() as u64, std::sync::atomic::Ordering::Relaxed);
}
pub fn tstats() -> [u64; 4] {
    use std::sync::atomic::Ordering::Relaxed;
    [T_BEGIN.load(Relaxed), T_WRITES.load(Relaxed), T_EFFECTS.load(Relaxed), T_COMMIT.load(Relaxed)]
}
pub fn stats() -> (u64, u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    (STATS_BUSY_US.load(Relaxed), STATS_BATCHES.load(Relaxed), STATS_WRITES.load(Relaxed))
}

/// Most writes committed by one transaction.
const MAX_BATCH: usize = 256;

#[derive(Clone)]
pub(super) enum Writer {
    /// One transaction per write (PostgreSQL).
    Direct(AnyPool),
    /// Writes queued to a group-committing writer task (SQLite).
    Batched(mpsc::UnboundedSender<Pending>),
}

impl Writer {
    pub(super) fn direct(pool: AnyPool) -> Self {
        Writer::Direct(pool)
    }

    /// The group-committing writer; after each commit it refreshes `tenants` with the
    /// committed writes' [`Effects::tenants`].
    pub(super) fn batched(pool: AnyPool, tenants: Option<Arc<TenantCache>>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                let n = batch.len();
                let t0 = std::time::Instant::now();
                run_batch(&pool, batch, true, tenants.as_deref()).await;
                STATS_BUSY_US.fetch_add(t0.elapsed().as_micros() as u64, std::sync::atomic::Ordering::Relaxed);
                STATS_BATCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                STATS_WRITES.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            }
        });
        Writer::Batched(tx)
    }

    /// Runs `f` and then writes `fx`, committing both or neither. `f` sees the
    /// transaction's connection; when it fails, whatever it wrote is rolled back.
    pub(super) async fn write<T, F>(&self, fx: &Effects, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.submit(fx, f, true).await
    }

    /// [`Writer::write`] for an `f` that writes at most once, in its last statement, so
    /// that its failure leaves nothing to undo: it skips the savepoint (two round trips)
    /// unless `fx` completes a job, whose deletion precedes `f`, or starts an execution
    /// with a chosen name, inserted after `f` (see [`effects_need_savepoint`]).
    pub(super) async fn write_atomic<T, F>(&self, fx: &Effects, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.submit(fx, f, effects_need_savepoint(fx)).await
    }

    async fn submit<T, F>(&self, fx: &Effects, f: F, savepoint: bool) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        let f: WriteFn = Box::new(move |c| Box::pin(async move { f(c).await.map(|v| Box::new(v) as BoxAny) }));
        let (done, result) = oneshot::channel();
        let pending = Pending { f, fx: fx.clone(), savepoint, done };
        match self {
            Writer::Direct(pool) => run_batch(pool, vec![pending], false, None).await,
            Writer::Batched(queue) => {
                queue.send(pending).map_err(|_| Error::Unavailable("the store's writer has stopped".into()))?
            }
        }
        let value = result.await.map_err(|_| Error::Unavailable("the store's writer has stopped".into()))??;
        Ok(*value.downcast::<T>().expect("a write returns the type it was given"))
    }
}

pub(super) async fn exec(conn: &mut AnyConnection, sql: &str) -> Result<()> {
    sqlx::query(sql).execute(conn).await.map(|_| ()).map_err(db_err)
}

/// Runs a batch in one transaction; `sqlite` selects `?` placeholders for the effects.
async fn run_batch(pool: &AnyPool, batch: Vec<Pending>, sqlite: bool, tenants: Option<&TenantCache>) {
    let fail_all = |batch: Vec<oneshot::Sender<Result<BoxAny>>>, e: Error| {
        for done in batch {
            let _ = done.send(Err(e.clone()));
        }
    };
    let t0 = std::time::Instant::now();
    let mut conn = match pool.acquire().await {
        Ok(c) => c,
        Err(e) => return fail_all(batch.into_iter().map(|p| p.done).collect(), db_err(e)),
    };
    let mut tx = match conn.begin().await {
        Ok(tx) => tx,
        Err(e) => return fail_all(batch.into_iter().map(|p| p.done).collect(), db_err(e)),
    };
    tadd(&T_BEGIN, t0);
    let t0 = std::time::Instant::now();
    let single = batch.len() == 1;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut effects = Vec::with_capacity(batch.len());
    for p in batch {
        // A batch of one needs no savepoint: its failure rolls the transaction back.
        let savepoint = p.savepoint && !single;
        if savepoint {
            if let Err(e) = exec(&mut tx, "SAVEPOINT w").await {
                outcomes.push((p.done, Err(e)));
                continue;
            }
        }
        let result = async {
            if let Some(job) = &p.fx.complete_job {
                complete_job(&mut tx, job).await?;
            }
            let v = (p.f)(&mut tx).await?;
            start_executions(&mut tx, &p.fx).await?;
            Ok(v)
        }
        .await;
        let result = match result {
            Ok(v) if !savepoint => Ok(v),
            Ok(v) => exec(&mut tx, "RELEASE w").await.map(|_| v),
            Err(e) if !savepoint => Err(e),
            Err(e) => match exec(&mut tx, "ROLLBACK TO w").await.and(exec(&mut tx, "RELEASE w").await) {
                Ok(()) => Err(e),
                Err(rollback) => Err(Error::internal(format!("failed to roll back a write ({e}): {rollback}"))),
            },
        };
        if result.is_ok() {
            effects.push(p.fx);
        }
        outcomes.push((p.done, result));
    }
    tadd(&T_WRITES, t0);
    let committed = if effects.is_empty() {
        tx.rollback().await.map_err(db_err)
    } else {
        let t0 = std::time::Instant::now();
        let r = apply_effects_batch(&mut tx, &effects, sqlite).await;
        tadd(&T_EFFECTS, t0);
        let t0 = std::time::Instant::now();
        match r {
            Ok(()) => { let r = tx.commit().await.map_err(db_err); tadd(&T_COMMIT, t0); r },
            Err(e) => Err(e),
        }
    };
    match committed {
        Ok(()) => {
            if let Some(cache) = tenants {
                effects.iter().flat_map(|fx| &fx.tenants).for_each(|w| cache.offer(&w.tenant));
            }
            for (done, r) in outcomes {
                let _ = done.send(r);
            }
        }
        Err(e) => fail_all(outcomes.into_iter().map(|(d, _)| d).collect(), e),
    }
}
