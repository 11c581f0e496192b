//! PostgreSQL's group commit of the common consume ([`super::quotas`]'s `Fast`).
//!
//! Each common consume on PostgreSQL is one upsert, committed when answered: one WAL
//! flush per consume, which bounds a replica at what the disk flushes per second
//! whatever the CPU (about 1,000 a second on the benchmark machine). So concurrent
//! consumes are gathered, as the SQLite writer gathers writes: a runner takes every
//! consume queued since its last statement (up to [`MAX_BATCH`]) and grants them with
//! one multi-row statement of the same upsert, one commit for all of them; each caller
//! is answered after it ([`GroupCommit`] holds the queue and its runners).
//!
//! Exactness is the single statement's: each row's guard is evaluated against the
//! row's latest committed usage under its row lock, so batches of several replicas
//! never grant past a hard limit together. One statement may not update a row twice,
//! so consumes of the same (tenant, quota, period) in one batch go in successive
//! statements ("rounds"). Rows are inserted in key order, so two replicas' batches lock
//! in the same order; should a statement fail anyway (a deadlock, a lost connection),
//! its consumes are retried one by one. What the guard holds back (a refusal, an event
//! to write) goes, as for one consume, to the full transaction.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sqlx::{AnyPool, Row};
use tenancy_domain::Result;
use tokio::sync::oneshot;

use super::db_err;
use super::group_commit::GroupCommit;
use super::quotas::Fast;

/// Most consumes one statement grants.
const MAX_BATCH: usize = 128;
/// Runners taking turns at the queue (each holds one pooled connection while its
/// statement runs).
const RUNNERS: usize = 3;

struct Job {
    fast: Arc<Fast>,
    done: oneshot::Sender<Result<Option<u64>>>,
}

/// The queue of common consumes and its runners.
pub(super) struct ConsumeBatcher {
    queue: GroupCommit<Job>,
    pool: AnyPool,
}

impl ConsumeBatcher {
    pub(super) fn new(pool: AnyPool) -> ConsumeBatcher {
        let runner_pool = pool.clone();
        let queue = GroupCommit::spawn(RUNNERS, MAX_BATCH, move |jobs| {
            let pool = runner_pool.clone();
            async move { run_batch(&pool, jobs).await }
        });
        ConsumeBatcher { queue, pool }
    }

    /// The usage after the grant, or `None` when the full transaction must decide;
    /// answered once the grant is committed.
    pub(super) async fn consume(&self, fast: Arc<Fast>) -> Result<Option<u64>> {
        let (done, answer) = oneshot::channel();
        if let Err(job) = self.queue.submit(Job { fast, done }) {
            return job.fast.run(&self.pool).await;
        }
        match answer.await {
            Ok(result) => result,
            // The runtime is shutting down: its runner is gone.
            Err(_) => Err(tenancy_domain::Error::Unavailable("the quota ledger is shutting down".into())),
        }
    }
}

async fn run_batch(pool: &AnyPool, jobs: Vec<Job>) {
    for round in rounds(jobs, |j| &j.fast) {
        run_round(pool, round).await;
    }
}

/// Splits `items` into rounds in which each (tenant, quota, period) appears once: the
/// first consume of each key, then the second, and so on.
fn rounds<T>(mut items: Vec<T>, fast: impl Fn(&T) -> &Fast) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    while !items.is_empty() {
        let mut seen = HashSet::new();
        let (round, rest): (Vec<T>, Vec<T>) = items.into_iter().partition(|i| {
            let f = fast(i);
            seen.insert((f.tenant.clone(), f.quota.clone(), f.start))
        });
        out.push(round);
        items = rest;
    }
    out
}

async fn run_round(pool: &AnyPool, mut round: Vec<Job>) {
    if round.len() == 1 {
        let job = round.pop().expect("one job");
        let result = job.fast.run(pool).await;
        let _ = job.done.send(result);
        return;
    }
    let fasts: Vec<&Fast> = round.iter().map(|j| &*j.fast).collect();
    match grant_round(pool, &fasts).await {
        Ok(used) => {
            for (job, used) in round.into_iter().zip(used) {
                let _ = job.done.send(Ok(used));
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, consumes = round.len(), "a batch of consumes failed; each is retried alone");
            for job in round {
                let result = job.fast.run(pool).await;
                let _ = job.done.send(result);
            }
        }
    }
}

/// Grants `round` (consumes of distinct keys) with one multi-row statement, rows
/// inserted in key order; each consume's usage after its grant, or `None` where its
/// guard held back. The parameters' types are spelled out: PostgreSQL infers a
/// `VALUES` list's types from them.
async fn grant_round<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    e: E,
    round: &[&Fast],
) -> Result<Vec<Option<u64>>> {
    let types = ["text", "text", "bigint", "bigint", "bigint", "bigint", "bigint", "bigint"];
    let values: Vec<String> = (0..round.len())
        .map(|i| {
            let params: Vec<String> =
                types.iter().enumerate().map(|(k, t)| format!("${}::{t}", i * 8 + k + 1)).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    let sql = format!(
        "WITH v (tenant_id, quota, period_start, amount, first_ok, lim, thr, soft) AS (VALUES {}) \
         INSERT INTO quota_usage AS u (tenant_id, quota, period_start, used, refused) \
         SELECT tenant_id, quota, period_start, amount, 0 FROM v WHERE first_ok = 1 \
         ORDER BY tenant_id, quota, period_start \
         ON CONFLICT (tenant_id, quota, period_start) DO UPDATE SET used = u.used + excluded.used \
         WHERE EXISTS (SELECT 1 FROM v WHERE v.tenant_id = excluded.tenant_id AND v.quota = excluded.quota \
         AND v.period_start = excluded.period_start \
         AND (u.used + v.amount <= v.lim OR (v.soft = 1 AND u.used > v.lim)) \
         AND NOT (u.used < v.thr AND u.used + v.amount >= v.thr)) \
         RETURNING tenant_id, quota, period_start, used",
        values.join(", ")
    );
    let mut q = sqlx::query(&sql);
    for f in round {
        q = q
            .bind(f.tenant.clone())
            .bind(f.quota.clone())
            .bind(f.start)
            .bind(f.amount)
            .bind(f.first_ok)
            .bind(f.limit)
            .bind(f.threshold)
            .bind(f.soft);
    }
    let rows = q.fetch_all(e).await.map_err(db_err)?;
    let mut granted = HashMap::with_capacity(rows.len());
    for r in rows {
        let key = (r.try_get::<String, _>(0).map_err(db_err)?, r.try_get::<String, _>(1).map_err(db_err)?);
        granted
            .insert((key.0, key.1, r.try_get::<i64, _>(2).map_err(db_err)?), r.try_get::<i64, _>(3).map_err(db_err)?);
    }
    Ok(round.iter().map(|f| granted.get(&(f.tenant.clone(), f.quota.clone(), f.start)).map(|u| *u as u64)).collect())
}
