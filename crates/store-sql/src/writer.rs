//! The write path: every change and its effects, in one transaction, with group commit
//! on SQLite.
//!
//! SQLite takes one writer at a time, and a transaction there costs a handful of round
//! trips to sqlx's worker thread whatever it writes. So on SQLite the writes of
//! concurrent callers are queued to one writer task that commits them in batches: each
//! write runs inside its own SAVEPOINT (a failing write leaves no trace and does not
//! disturb the others), the effects of all successful writes are inserted with
//! multi-row statements, and one COMMIT makes the whole batch durable. A caller's
//! result is released only after that commit. The store's caches take what the batch
//! wrote just before the COMMIT, so nobody who sees the commit reads an older copy. On PostgreSQL, which has no single-writer
//! constraint, every write is its own transaction (a batch of one).

use std::any::Any as StdAny;
use std::sync::Arc;

use futures_core::future::BoxFuture;
use sqlx::{AnyConnection, AnyPool, Connection, Row};
use tenancy_domain::tenant::Tenant;
use tenancy_domain::{Error, ErrorCode, Result};
use tokio::sync::{mpsc, oneshot};

use super::cache::TenantCache;
use super::db_err;
use super::effects::{apply_effects_batch, effects_need_savepoint, start_executions};
use tenancy_store::Effects;

type BoxAny = Box<dyn StdAny + Send>;
type WriteFn = Box<dyn for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<BoxAny>> + Send>;
/// Runs in the writer for a successful write just before its batch commits (see
/// [`Writer::write_then`]).
type AfterFn = Box<dyn FnOnce(&BoxAny) + Send>;

/// What a queued write does.
enum Op {
    /// Runs a closure on the transaction's connection.
    Run(WriteFn),
    /// Inserts a tenant whose plan must exist. The tenant inserts of one batch are one
    /// multi-row statement: tenant creation is the busiest API write, and a statement
    /// per tenant was most of the writer's time in the `provision` benchmark.
    InsertTenant(Box<Tenant>),
}

pub(super) struct Pending {
    op: Op,
    fx: Effects,
    /// Whether a failure of `f` may leave writes to undo (see [`Writer::write_atomic`]).
    savepoint: bool,
    after: Option<AfterFn>,
    done: oneshot::Sender<Result<BoxAny>>,
}

/// Most writes committed by one transaction.
const MAX_BATCH: usize = 256;

/// Longest the writer keeps SQLite's one write connection from others who need it
/// (e.g. lease extensions) while writes keep coming.
const HOLD: std::time::Duration = std::time::Duration::from_millis(50);

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
                let mut conn = match pool.acquire().await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = first.done.send(Err(db_err(e)));
                        continue;
                    }
                };
                // The connection is kept while writes keep coming, up to HOLD: taking
                // it from the pool for every transaction waited for sqlx to hand it
                // back (a task of its own), a ninth of the writer's time under load.
                let held = std::time::Instant::now();
                let mut next = Some(first);
                while let Some(first) = next.take() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(p) => batch.push(p),
                            Err(_) => break,
                        }
                    }
                    run_batch(&mut conn, batch, tenants.as_deref()).await;
                    if held.elapsed() < HOLD {
                        next = rx.try_recv().ok();
                    }
                }
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
        self.submit(fx, f, true, None::<fn(&T)>).await
    }

    /// [`Writer::write`] for an `f` that writes at most once, in its last statement, so
    /// that its failure leaves nothing to undo: it skips the savepoint (two round trips)
    /// unless `fx` starts an execution with a chosen name, inserted after `f` (see
    /// [`effects_need_savepoint`]).
    pub(super) async fn write_atomic<T, F>(&self, fx: &Effects, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.submit(fx, f, effects_need_savepoint(fx), None::<fn(&T)>).await
    }

    /// [`Writer::write`], and `after` with its result just before the batch commits:
    /// for the tenant cache, which stages the tenants written then and publishes them
    /// when the COMMIT is over (see the `cache` module).
    pub(super) async fn write_then<T, F, A>(&self, fx: &Effects, f: F, after: A) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        self.submit(fx, f, true, Some(after)).await
    }

    /// [`Writer::write_atomic`] with [`Writer::write_then`]'s `after`.
    pub(super) async fn write_atomic_then<T, F, A>(&self, fx: &Effects, f: F, after: A) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        self.submit(fx, f, effects_need_savepoint(fx), Some(after)).await
    }

    async fn submit<T, F, A>(&self, fx: &Effects, f: F, savepoint: bool, after: Option<A>) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        let f: WriteFn = Box::new(move |c| Box::pin(async move { f(c).await.map(|v| Box::new(v) as BoxAny) }));
        let after = after.map(|a| -> AfterFn {
            Box::new(move |v: &BoxAny| a(v.downcast_ref::<T>().expect("a write returns the type it was given")))
        });
        // The write's latency as its caller sees it: waiting for its batch, the
        // statements, the commit.
        let start = std::time::Instant::now();
        let res = self.queue(Op::Run(f), fx, savepoint, after).await;
        metrics::histogram!("tenancy_store_query_duration_seconds", "op" => "write")
            .record(start.elapsed().as_secs_f64());
        res
    }

    /// Whether [`Writer::insert_tenant`] takes a tenant created with `fx`: on SQLite,
    /// unless `fx` needs a savepoint.
    pub(super) fn merges_tenant_insert(&self, fx: &Effects) -> bool {
        matches!(self, Writer::Batched(_)) && !effects_need_savepoint(fx)
    }

    /// Inserts `t` (failing with `AlreadyExists`, or `unknown-plan` when its plan does
    /// not exist) and writes `fx`, merged with the other tenant inserts of its batch.
    /// Only where [`Writer::merges_tenant_insert`] says so.
    pub(super) async fn insert_tenant(&self, t: &Tenant, fx: &Effects) -> Result<()> {
        debug_assert!(self.merges_tenant_insert(fx));
        self.queue(Op::InsertTenant(Box::new(t.clone())), fx, false, None).await
    }

    async fn queue<T: 'static>(&self, op: Op, fx: &Effects, savepoint: bool, after: Option<AfterFn>) -> Result<T> {
        let (done, result) = oneshot::channel();
        let pending = Pending { op, fx: fx.clone(), savepoint, after, done };
        match self {
            Writer::Direct(pool) => match pool.acquire().await {
                Ok(mut conn) => run_batch(&mut conn, vec![pending], None).await,
                Err(e) => return Err(db_err(e)),
            },
            Writer::Batched(queue) => {
                queue.send(pending).map_err(|_| Error::Unavailable("the store's writer has stopped".into()))?
            }
        }
        let value = result.await.map_err(|_| Error::Unavailable("the store's writer has stopped".into()))??;
        Ok(*value.downcast::<T>().expect("a write returns the type it was given"))
    }
}

/// Inserts tenants whose plans exist and have no `max_tenants` with one `INSERT ...
/// SELECT ... ON CONFLICT DO NOTHING RETURNING` per 100; then tells the others apart:
/// an id taken (by an earlier tenant or one earlier in `tenants`) is `AlreadyExists`,
/// an unknown plan `unknown-plan`, and a tenant of a capped plan is inserted alone,
/// after counting the tenants on its plan (one writer: the count of each sees the
/// inserts before it, those of this batch included), or refused as `plan-unavailable`.
async fn insert_tenants(conn: &mut AnyConnection, tenants: &[&Tenant]) -> Result<Vec<Result<()>>> {
    let mut inserted = std::collections::HashSet::new();
    for chunk in tenants.chunks(100) {
        let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "WITH v(v_id, v_name, v_plan, v_region, v_status, v_metadata, v_version, v_created, v_updated, \
             v_lifecycle, v_release, v_pinned) AS (VALUES {values}) \
             INSERT INTO tenants (id, name, plan_id, region, status, metadata, version, created_at, updated_at, \
             lifecycle_execution_id, release, pinned) \
             SELECT * FROM v WHERE EXISTS (SELECT 1 FROM plans WHERE id = v_plan AND max_tenants IS NULL) \
             ON CONFLICT (id) DO NOTHING RETURNING id"
        );
        let mut q = sqlx::query(&sql);
        for t in chunk {
            q = super::tenants::bind_tenant(q, t);
        }
        for row in q.fetch_all(&mut *conn).await.map_err(db_err)? {
            inserted.insert(row.try_get::<String, _>(0).map_err(db_err)?);
        }
    }
    let mut results = Vec::with_capacity(tenants.len());
    for t in tenants {
        // Each id is inserted once: a second tenant with the same id finds it taken.
        if inserted.remove(&t.id) {
            results.push(Ok(()));
            continue;
        }
        let exists = sqlx::query("SELECT 1 FROM tenants WHERE id = ?")
            .bind(&t.id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?
            .is_some();
        if exists {
            results.push(Err(Error::AlreadyExists { kind: "tenant", id: t.id.clone() }));
            continue;
        }
        let cap = sqlx::query("SELECT max_tenants FROM plans WHERE id = ?")
            .bind(&t.plan)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?
            .map(|row| row.try_get::<Option<i64>, _>(0))
            .transpose()
            .map_err(db_err)?;
        let result = match cap {
            None => Err(unknown_plan(&t.plan)),
            Some(cap) => {
                // A capped plan (or one that lost its cap since the statement above).
                let full = match cap {
                    Some(max) if super::plans::plan_load(conn, &t.plan).await? >= max => {
                        Some(super::plans::plan_full(&t.plan, max))
                    }
                    _ => None,
                };
                match full {
                    Some(e) => Err(e),
                    None => {
                        let sql = "INSERT INTO tenants (id, name, plan_id, region, status, metadata, version, \
                                   created_at, updated_at, lifecycle_execution_id, release, pinned) \
                                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
                        // One statement, atomic by itself: its failure is this tenant's.
                        super::tenants::bind_tenant(sqlx::query(sql), t)
                            .execute(&mut *conn)
                            .await
                            .map(|_| ())
                            .map_err(db_err)
                    }
                }
            }
        };
        results.push(result);
    }
    Ok(results)
}

/// The error of a tenant created with a plan that does not exist.
pub(super) fn unknown_plan(plan: &str) -> Error {
    Error::InvalidRequest { code: ErrorCode::UnknownPlan, message: format!("plan {plan:?} does not exist") }
}

pub(super) async fn exec(conn: &mut AnyConnection, sql: &str) -> Result<()> {
    sqlx::query(sql).execute(conn).await.map(|_| ()).map_err(db_err)
}

/// Runs a batch in one transaction.
async fn run_batch(conn: &mut AnyConnection, batch: Vec<Pending>, tenants: Option<&TenantCache>) {
    let fail_all = |batch: Vec<oneshot::Sender<Result<BoxAny>>>, e: Error| {
        for done in batch {
            let _ = done.send(Err(e.clone()));
        }
    };
    // Whether a write of this batch moved the terms epoch: it moves again once the
    // COMMIT is over and the tenant cache shows it (see the `terms` module).
    let terms_epoch = super::terms::current();
    let mut tx = match conn.begin().await {
        Ok(tx) => tx,
        Err(e) => return fail_all(batch.into_iter().map(|p| p.done).collect(), db_err(e)),
    };
    let single = batch.len() == 1;
    // Per write: whom to answer, the result, and what to run after the commit.
    let mut outcomes: Vec<(_, _, Option<AfterFn>)> = Vec::with_capacity(batch.len());
    // Tenants inserted by the batch, for the cache.
    let mut created = Vec::new();
    let mut effects = Vec::with_capacity(batch.len());
    let (inserts, batch): (Vec<Pending>, Vec<Pending>) =
        batch.into_iter().partition(|p| matches!(p.op, Op::InsertTenant(_)));
    if !inserts.is_empty() {
        let tenants: Vec<&Tenant> =
            inserts.iter().filter_map(|p| if let Op::InsertTenant(t) = &p.op { Some(&**t) } else { None }).collect();
        // In a savepoint: when it fails after its merged statement wrote rows, those
        // rows go too, since every insert of the batch is then answered with the error
        // (without it, other writes of the batch would commit them, eventless).
        let results = match exec(&mut tx, "SAVEPOINT inserts").await {
            Err(e) => vec![Err(e); inserts.len()],
            Ok(()) => match insert_tenants(&mut tx, &tenants).await {
                Ok(results) => match exec(&mut tx, "RELEASE inserts").await {
                    Ok(()) => results,
                    Err(e) => vec![Err(e); inserts.len()],
                },
                Err(e) => {
                    let undone = exec(&mut tx, "ROLLBACK TO inserts").await.and(exec(&mut tx, "RELEASE inserts").await);
                    let e = match undone {
                        Ok(()) => e,
                        Err(u) => Error::internal(format!("failed to roll back tenant inserts ({e}): {u}")),
                    };
                    vec![Err(e); inserts.len()]
                }
            },
        };
        for (p, result) in inserts.into_iter().zip(results) {
            if result.is_ok() {
                effects.push(p.fx);
                if let Op::InsertTenant(t) = p.op {
                    created.push(*t);
                }
            }
            outcomes.push((p.done, result.map(|()| Box::new(()) as BoxAny), None));
        }
    }
    for p in batch {
        let Op::Run(f) = p.op else { unreachable!("tenant inserts were taken out") };
        // A batch of one needs no savepoint: its failure rolls the transaction back.
        let savepoint = p.savepoint && !single;
        if savepoint {
            if let Err(e) = exec(&mut tx, "SAVEPOINT w").await {
                outcomes.push((p.done, Err(e), None));
                continue;
            }
        }
        let result = async {
            let v = f(&mut tx).await?;
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
        outcomes.push((p.done, result, p.after));
    }
    let committed = if effects.is_empty() {
        tx.rollback().await.map_err(db_err)
    } else {
        match apply_effects_batch(&mut tx, &effects).await {
            Ok(()) => {
                // The batch's tenants are staged before the COMMIT and published after
                // it (see the `cache` module): readers go to the database meanwhile, so
                // memory is never ahead of the database nor behind it.
                if let Some(cache) = tenants {
                    effects.iter().flat_map(|fx| &fx.tenants).for_each(|w| cache.stage(&w.tenant));
                    created.iter().for_each(|t| cache.stage(t));
                }
                for (_, r, after) in outcomes.iter_mut() {
                    if let (Some(after), Ok(v)) = (after.take(), &*r) {
                        after(v);
                    }
                }
                let committed = tx.commit().await.map_err(db_err);
                match (&committed, tenants) {
                    (Ok(()), Some(cache)) => cache.publish(),
                    (Err(_), Some(cache)) => cache.discard(),
                    (_, None) => {}
                }
                committed
            }
            Err(e) => Err(e),
        }
    };
    if super::terms::current() != terms_epoch {
        super::terms::moved();
    }
    match committed {
        Ok(()) => {
            for (done, r, _) in outcomes {
                let _ = done.send(r);
            }
        }
        Err(e) => fail_all(outcomes.into_iter().map(|(d, _, _)| d).collect(), e),
    }
}
