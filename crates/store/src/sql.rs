//! The SQL backends: SQLite (the embedded default) and PostgreSQL.
//!
//! Both run through sqlx's `Any` driver with the same SQL text: `$1` placeholders work
//! on both engines, every timestamp is a BIGINT of unix milliseconds and every JSON
//! value is TEXT. Where the engines differ (row locks, DDL) the [`Dialect`] says so, and
//! the migrations are one directory per engine.
//!
//! SQLite allows one writer at a time, so the SQLite store keeps a single-connection
//! writer pool (writes queue in-process instead of failing with `SQLITE_BUSY`) beside a
//! reader pool that WAL mode lets run concurrently. On PostgreSQL both are one pool.

mod audit;
mod cache;
mod drift;
mod effects;
mod events;
mod functions;
mod hooks;
mod queues;
mod rows;
#[cfg(feature = "testing")]
pub mod testing;
mod wakeup;
mod workflows;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor, Row};
use tenancy_domain::apikey::ApiKey;
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::plan::Plan;
use tenancy_domain::tenant::{Tenant, TenantFilter, TenantStatus};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};

use crate::store::*;
use cache::{RecordCache, TenantCache};
use writer::Writer;

/// The migrations of each engine, discovered from `migrations/<engine>/` by `build.rs`.
mod migrations {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}

/// An arbitrary constant: the PostgreSQL advisory lock that serializes migrations when
/// several replicas start at once.
const MIGRATION_LOCK: i64 = 0x7e_4a_4e_c7;

/// SQL fragments that differ between engines.
#[derive(Debug, Clone, Copy)]
struct Dialect {
    backend: Backend,
}

impl Dialect {
    /// Row lock taken by a reader that must keep a row alive until commit.
    fn for_share(self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR SHARE",
            Backend::Sqlite => "",
        }
    }
    fn for_update(self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }
    fn skip_locked(self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        }
    }
}

/// Options for [`SqlStore::connect`].
#[derive(Debug, Clone)]
pub struct SqlOptions {
    /// `sqlite://path/to/file.db` or `postgres://...`.
    pub url: String,
    /// Connections of the (reader) pool.
    pub max_connections: u32,
}

impl SqlOptions {
    pub fn new(url: impl Into<String>) -> Self {
        SqlOptions { url: url.into(), max_connections: 8 }
    }
}

/// The SQL store.
#[derive(Clone)]
pub struct SqlStore {
    dialect: Dialect,
    /// The connection(s) writes use: migrations and idempotency records go here
    /// directly, everything else through `writer`.
    write_pool: AnyPool,
    writer: Writer,
    reader: AnyPool,
    /// SQLite only: this process is the database's one writer (see [`cache`]).
    tenants: Option<Arc<TenantCache>>,
    /// SQLite only: plans and hooks (see [`cache`]).
    records: Option<Arc<RecordCache>>,
    /// SQLite only: the lock that makes this process the database's one user.
    _lock: Option<Arc<std::fs::File>>,
    /// The PostgreSQL URL, for the wake-up listener's own connection.
    pg_url: Option<String>,
}

pub(crate) fn db_err(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => Error::Unavailable(e.to_string()),
        sqlx::Error::Database(d) if d.message().contains("database is locked") => Error::Unavailable(e.to_string()),
        _ => Error::Internal(format!("database error: {e}")),
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Binds a tenant's columns in table order (id, name, plan_id, region, status, metadata,
/// version, created_at, updated_at): 9 values.
fn bind_tenant<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    t: &'q Tenant,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    q.bind(&t.id)
        .bind(&t.name)
        .bind(&t.plan)
        .bind(&t.region)
        .bind(t.status.as_str())
        .bind(json_text(&t.metadata))
        .bind(t.version)
        .bind(t.created_at.millis())
        .bind(t.updated_at.millis())
        .bind(t.lifecycle_execution_id.as_deref())
}

/// Forgets a tenant in the cache when dropped (see `tenant_purge`).
struct ForgetOnDrop(Option<Arc<TenantCache>>, String);

impl Drop for ForgetOnDrop {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.forget(&self.1);
        }
    }
}

/// Tenants that hold plan `id` (all but the offboarded tombstones).
async fn tenants_on_plan(c: &mut sqlx::AnyConnection, id: &str) -> Result<i64> {
    Ok(sqlx::query("SELECT COUNT(*) FROM tenants WHERE plan_id = $1 AND status <> $2")
        .bind(id)
        .bind(TenantStatus::Offboarded.as_str())
        .fetch_one(&mut *c)
        .await
        .map_err(db_err)?
        .get(0))
}

fn json_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("serializing a record to JSON cannot fail")
}

impl SqlStore {
    /// For a write of one tenant ([`writer::Writer::write_atomic_then`]): stages it in
    /// the tenant cache, if there is one, for the writer to publish after its COMMIT.
    fn cache_tenant(&self) -> impl FnOnce(&Tenant) + Send + 'static {
        let cache = self.tenants.clone();
        move |stored| cache.iter().for_each(|c| c.stage(stored))
    }

    /// Connects, configures the engine and applies pending migrations.
    pub async fn connect(opts: &SqlOptions) -> Result<SqlStore> {
        sqlx::any::install_default_drivers();
        let store = if opts.url.starts_with("postgres:") || opts.url.starts_with("postgresql:") {
            let pool = AnyPoolOptions::new()
                .max_connections(opts.max_connections.max(2))
                .acquire_timeout(Duration::from_secs(10))
                .connect(&opts.url)
                .await
                .map_err(db_err)?;
            SqlStore {
                dialect: Dialect { backend: Backend::Postgres },
                writer: Writer::direct(pool.clone()),
                write_pool: pool.clone(),
                reader: pool,
                tenants: None,
                records: None,
                _lock: None,
                pg_url: Some(opts.url.clone()),
            }
        } else if opts.url.starts_with("sqlite:") {
            let lock = lock_sqlite(&opts.url)?;
            let url = if opts.url.contains('?') { opts.url.clone() } else { format!("{}?mode=rwc", opts.url) };
            // No liveness ping before each acquire (sqlx's default): a local file's
            // connection does not go stale, and on the write path the ping was a round
            // trip to the connection's thread per transaction.
            let writer = AnyPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .test_before_acquire(false)
                .after_connect(sqlite_pragmas)
                .connect(&url)
                .await
                .map_err(db_err)?;
            let reader = AnyPoolOptions::new()
                .max_connections(opts.max_connections.max(1))
                .acquire_timeout(Duration::from_secs(30))
                .test_before_acquire(false)
                .after_connect(sqlite_pragmas)
                .connect(&url)
                .await
                .map_err(db_err)?;
            let tenants = Arc::new(TenantCache::default());
            let lock = Arc::new(lock);
            tokio::spawn(checkpoints(reader.clone(), Arc::downgrade(&lock)));
            SqlStore {
                dialect: Dialect { backend: Backend::Sqlite },
                writer: Writer::batched(writer.clone(), Some(tenants.clone())),
                write_pool: writer,
                reader,
                tenants: Some(tenants),
                records: Some(Arc::default()),
                _lock: Some(lock),
                pg_url: None,
            }
        } else {
            return Err(Error::invalid(format!(
                "unsupported database URL {:?}: use sqlite://... or postgres://...",
                redact_url(&opts.url)
            )));
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Reads the one row `sql` (a query with a single `$1` key) selects from the
    /// reader pool, or `NotFound` naming `kind` and `key`.
    pub(crate) async fn read_one(&self, sql: &str, key: &str, kind: &'static str) -> Result<sqlx::any::AnyRow> {
        sqlx::query(sql)
            .bind(key)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found(kind, key))
    }

    fn migrations(&self) -> &'static [(i64, &'static str, &'static str)] {
        match self.dialect.backend {
            Backend::Sqlite => migrations::SQLITE,
            Backend::Postgres => migrations::POSTGRES,
        }
    }

    async fn migrate(&self) -> Result<()> {
        let mut conn = self.write_pool.acquire().await.map_err(db_err)?;
        if self.dialect.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *conn)
                .await
                .map_err(db_err)?;
        }
        let result = async {
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations \
                 (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
            )
            .await
            .map_err(db_err)?;
            let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
                .fetch_all(&mut *conn)
                .await
                .map_err(db_err)?
                .iter()
                .map(|r| r.get::<i64, _>(0))
                .collect();
            for (version, name, sql) in self.migrations() {
                if applied.contains(version) {
                    continue;
                }
                tracing::info!(version, name, backend = self.dialect.backend.as_str(), "applying migration");
                let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(db_err)?;
                sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(db_err)?;
                sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                    .bind(*version)
                    .bind(*name)
                    .bind(Timestamp::now().millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                tx.commit().await.map_err(db_err)?;
            }
            Ok::<_, Error>(())
        }
        .await;
        if self.dialect.backend == Backend::Postgres {
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)").bind(MIGRATION_LOCK).execute(&mut *conn).await;
        }
        result
    }
}

/// Takes an exclusive lock on `<database>.lock`: a SQLite database serves one process
/// (replicas share PostgreSQL instead), which is what lets the store cache tenants.
fn lock_sqlite(url: &str) -> Result<std::fs::File> {
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path == ":memory:" {
        return Err(Error::invalid("the SQLite store needs a database file"));
    }
    let lock_path = format!("{path}.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::Unavailable(format!("cannot open {lock_path}: {e}")))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Unavailable(format!(
            "another process is using the database {path}: a SQLite data directory serves one tenancy process \
             (run replicas on PostgreSQL)"
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::Unavailable(format!("cannot lock {lock_path}: {e}"))),
    }
}

/// Per-connection SQLite settings: WAL so readers never block the writer, NORMAL
/// synchronous (durable across process crashes; an OS crash may lose the last
/// transactions, the usual WAL trade-off), a busy timeout, foreign keys on, and the
/// writer's own WAL checkpoints only as a backstop (see [`checkpoints`]).
fn sqlite_pragmas(
    conn: &mut sqlx::AnyConnection,
    _meta: sqlx::pool::PoolConnectionMetadata,
) -> futures_core::future::BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move {
        conn.execute(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; \
             PRAGMA foreign_keys = ON; PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 10000;",
        )
        .await?;
        Ok(())
    })
}

/// How often [`checkpoints`] copies the WAL into the database.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// Checkpoints the WAL from a reader connection until `alive` is gone (the store
/// dropped). SQLite otherwise checkpoints inside the COMMIT that fills the WAL past
/// `wal_autocheckpoint` pages: on the one writer, with an fsync, stalling every write
/// queued behind it. A PASSIVE checkpoint never blocks the writer; the writer's own
/// autocheckpoint stays as a backstop at 10,000 pages (about 40 MB).
async fn checkpoints(reader: AnyPool, alive: std::sync::Weak<std::fs::File>) {
    while alive.strong_count() > 0 {
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&reader).await {
            tracing::debug!(error = %e, "WAL checkpoint failed");
        }
        tokio::time::sleep(CHECKPOINT_INTERVAL).await;
    }
}

/// A database URL with its password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:****{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Appends `AND <clause>` with the next placeholder number to a query being built.
struct Where {
    sql: String,
    binds: Vec<String>,
}

impl Where {
    fn new(base: &str) -> Self {
        Where { sql: format!("{base} WHERE 1=1"), binds: Vec::new() }
    }
    fn eq(&mut self, column: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.binds.push(v.to_owned());
            self.sql.push_str(&format!(" AND {column} = ${}", self.binds.len()));
        }
    }
    fn gt(&mut self, column: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.binds.push(v.to_owned());
            self.sql.push_str(&format!(" AND {column} > ${}", self.binds.len()));
        }
    }
    fn raw(&mut self, clause: &str) {
        self.sql.push_str(" AND ");
        self.sql.push_str(clause);
    }
    fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        let mut q = sqlx::query(&self.sql);
        for b in &self.binds {
            q = q.bind(b.as_str());
        }
        q
    }
}

fn parse_cursor_i64(cursor: Option<&str>) -> Result<Option<i64>> {
    cursor.map(|c| c.parse::<i64>().map_err(|_| Error::invalid(format!("invalid cursor {c:?}")))).transpose()
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        self.dialect.backend
    }

    fn workflows(&self) -> std::sync::Arc<dyn crate::workflow::WorkflowStore> {
        std::sync::Arc::new(self.clone())
    }

    fn queues(&self) -> Arc<dyn crate::queues::QueueStore> {
        Arc::new(self.clone())
    }

    fn hooks(&self) -> Arc<dyn crate::hooks::HookStore> {
        Arc::new(self.clone())
    }

    fn functions(&self) -> Arc<dyn crate::functions::FunctionStore> {
        Arc::new(self.clone())
    }

    fn drift(&self) -> Arc<dyn crate::drift::DriftStore> {
        Arc::new(self.clone())
    }

    async fn ready(&self) -> Result<()> {
        let row = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&self.reader)
            .await
            .map_err(db_err)?;
        let applied: i64 = row.get(0);
        let latest = self.migrations().last().map(|m| m.0).unwrap_or(0);
        if applied < latest {
            return Err(Error::Unavailable(format!("migrations pending: at {applied}, latest {latest}")));
        }
        Ok(())
    }

    async fn master_key_state(&self) -> Result<MasterKeyState> {
        let fingerprint: Option<(String,)> = sqlx::query_as("SELECT fingerprint FROM master_key WHERE id = 1")
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        let sealed: Option<(i64,)> = sqlx::query_as(
            "SELECT 1 FROM subscriptions WHERE secret IS NOT NULL OR previous_secret IS NOT NULL \
             UNION ALL SELECT 1 FROM tenant_secrets LIMIT 1",
        )
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?;
        Ok(MasterKeyState { fingerprint: fingerprint.map(|f| f.0), sealed_values: sealed.is_some() })
    }

    async fn master_key_record(&self, fingerprint: &str) -> Result<String> {
        let fingerprint = fingerprint.to_owned();
        self.writer
            .write_atomic(&Effects::none(), move |c| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO master_key (id, fingerprint, created_at) VALUES (1, $1, $2) \
                         ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(&fingerprint)
                    .bind(Timestamp::now().millis())
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                    let row: (String,) = sqlx::query_as("SELECT fingerprint FROM master_key WHERE id = 1")
                        .fetch_one(&mut *c)
                        .await
                        .map_err(db_err)?;
                    Ok(row.0)
                })
            })
            .await
    }

    async fn plan_put(&self, plan: &Plan, if_version: Option<i64>, fx: &Effects) -> Result<Plan> {
        let (plan, dialect) = (plan.clone(), self.dialect);
        let stored = self
            .writer
            .write(fx, move |c| {
                Box::pin(async move {
                    let sql = format!(
                        "SELECT version, created_at, isolation FROM plans WHERE id = $1{}",
                        dialect.for_update()
                    );
                    let current = sqlx::query(&sql).bind(&plan.id).fetch_optional(&mut *c).await.map_err(db_err)?;
                    let mut stored = plan.clone();
                    let mut isolation = None;
                    let found = match current {
                        None => 0,
                        Some(row) => {
                            stored.created_at = Timestamp(row.get(1));
                            isolation = Some(row.get::<String, _>(2));
                            row.get::<i64, _>(0)
                        }
                    };
                    if let Some(expected) = if_version {
                        if expected != found {
                            return Err(Error::PreconditionFailed {
                                kind: "plan",
                                id: plan.id.clone(),
                                expected,
                                found,
                            });
                        }
                    }
                    // A tenant's data is laid out by its plan's isolation (a database of
                    // its own or a schema in the shared one): changing it under tenants
                    // would leave them on the wrong layout. The row lock above keeps a
                    // tenant from joining the plan meanwhile (its insert reads the plan
                    // row FOR SHARE on PostgreSQL; SQLite has one writer).
                    if let Some(from) = isolation.filter(|i| i != stored.isolation.as_str()) {
                        let in_use = tenants_on_plan(c, &plan.id).await?;
                        // A tenant moving plans holds its old plan until the move ends,
                        // and may be moving to this one: wait for the moves to finish.
                        let moving: i64 = sqlx::query("SELECT COUNT(*) FROM tenants WHERE status = $1")
                            .bind(TenantStatus::Updating.as_str())
                            .fetch_one(&mut *c)
                            .await
                            .map_err(db_err)?
                            .get(0);
                        if in_use == 0 && moving > 0 {
                            return Err(Error::Conflict {
                                code: ErrorCode::PlanInUse,
                                message: format!(
                                    "{moving} tenant(s) are changing plans: plan {:?}'s isolation can change once \
                                     the plan changes finish (it may be their target); retry then",
                                    plan.id
                                ),
                            });
                        }
                        if in_use > 0 {
                            return Err(Error::Conflict {
                                code: ErrorCode::PlanInUse,
                                message: format!(
                                    "plan {:?} is used by {in_use} tenant(s): its isolation cannot change from {from} \
                                     to {}; create a new plan and move the tenants to it \
                                     (POST /v1/tenants/{{id}}/plan)",
                                    plan.id,
                                    stored.isolation.as_str()
                                ),
                            });
                        }
                    }
                    stored.version = found + 1;
                    let sql = if found == 0 {
                        "INSERT INTO plans (id, name, isolation, features, quotas, version, created_at, updated_at, \
                         workflows) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                    } else {
                        "UPDATE plans SET name = $2, isolation = $3, features = $4, quotas = $5, version = $6, \
                         created_at = $7, updated_at = $8, workflows = $9 WHERE id = $1"
                    };
                    let res = sqlx::query(sql)
                        .bind(&stored.id)
                        .bind(&stored.name)
                        .bind(stored.isolation.as_str())
                        .bind(json_text(&stored.features))
                        .bind(json_text(&stored.quotas))
                        .bind(stored.version)
                        .bind(stored.created_at.millis())
                        .bind(stored.updated_at.millis())
                        .bind((!stored.workflows.is_empty()).then(|| json_text(&stored.workflows)))
                        .execute(&mut *c)
                        .await;
                    match res {
                        // Another writer created it since the read: a stale version (the
                        // app re-reads and retries when no version was demanded).
                        Err(e) if is_unique_violation(&e) => Err(Error::PreconditionFailed {
                            kind: "plan",
                            id: plan.id.clone(),
                            expected: if_version.unwrap_or(0),
                            found: 1,
                        }),
                        Err(e) => Err(db_err(e)),
                        Ok(_) => Ok(stored),
                    }
                })
            })
            .await;
        if let Some(c) = &self.records {
            c.plans.clear();
        }
        stored
    }

    async fn plan_get(&self, id: &str) -> Result<Plan> {
        let generation = match self.records.as_ref().map(|c| c.plans.get(id)) {
            Some(Ok(plan)) => return Ok(plan),
            Some(Err(generation)) => Some(generation),
            None => None,
        };
        let row = self.read_one("SELECT * FROM plans WHERE id = $1", id, "plan").await?;
        let plan = rows::plan(&row)?;
        if let (Some(c), Some(generation)) = (&self.records, generation) {
            c.plans.fill(generation, id, &plan);
        }
        Ok(plan)
    }

    async fn plan_list(&self, page: &PageRequest) -> Result<Page<Plan>> {
        let mut w = Where::new("SELECT * FROM plans");
        w.gt("id", page.after.as_deref());
        w.sql.push_str(&format!(" ORDER BY id LIMIT {}", page.limit + 1));
        let rows = w.query().fetch_all(&self.reader).await.map_err(db_err)?;
        let plans = rows.iter().map(rows::plan).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(plans, page.limit, |p| p.id.clone()))
    }

    async fn plan_delete(&self, id: &str, fx: &Effects) -> Result<()> {
        let (id, dialect) = (id.to_owned(), self.dialect);
        let deleted = self
            .writer
            .write(fx, move |c| {
                Box::pin(async move {
                    let sql = format!("SELECT id FROM plans WHERE id = $1{}", dialect.for_update());
                    if sqlx::query(&sql).bind(&id).fetch_optional(&mut *c).await.map_err(db_err)?.is_none() {
                        return Err(Error::not_found("plan", id));
                    }
                    let in_use = tenants_on_plan(c, &id).await?;
                    if in_use > 0 {
                        return Err(Error::Conflict {
                            code: ErrorCode::PlanInUse,
                            message: format!("plan {id:?} is used by {in_use} tenant(s)"),
                        });
                    }
                    sqlx::query("DELETE FROM plans WHERE id = $1").bind(&id).execute(&mut *c).await.map_err(db_err)?;
                    Ok(())
                })
            })
            .await;
        if let Some(c) = &self.records {
            c.plans.clear();
        }
        deleted
    }

    /// On SQLite the writer puts the new tenant in the cache as it commits.
    async fn tenant_create(&self, t: &Tenant, fx: &Effects) -> Result<Tenant> {
        if self.writer.merges_tenant_insert(fx) {
            // SQLite: one multi-row INSERT for the batch, the plan check part of it
            // (one writer, so no plan delete can come in between).
            self.writer.insert_tenant(t, fx).await?;
            Ok(t.clone())
        } else {
            let t = t.clone();
            let lock = self.dialect.for_share();
            self.writer
                .write_atomic_then(
                    fx,
                    move |c| {
                        Box::pin(async move {
                            // On PostgreSQL the plan row stays share-locked until commit, so a
                            // concurrent plan delete either sees this tenant or comes first.
                            let sql = format!("SELECT id FROM plans WHERE id = $1{lock}");
                            if sqlx::query(&sql).bind(&t.plan).fetch_optional(&mut *c).await.map_err(db_err)?.is_none()
                            {
                                return Err(writer::unknown_plan(&t.plan));
                            }
                            let sql = "INSERT INTO tenants (id, name, plan_id, region, status, metadata, version, \
                                   created_at, updated_at, lifecycle_execution_id) \
                                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
                            let res = bind_tenant(sqlx::query(sql), &t).execute(&mut *c).await;
                            match res {
                                Err(e) if is_unique_violation(&e) => {
                                    Err(Error::AlreadyExists { kind: "tenant", id: t.id })
                                }
                                Err(e) => Err(db_err(e)),
                                Ok(_) => Ok(t),
                            }
                        })
                    },
                    self.cache_tenant(),
                )
                .await
        }
    }

    async fn tenant_get(&self, id: &str) -> Result<Tenant> {
        if let Some(t) = self.tenants.as_ref().and_then(|c| c.get(id)) {
            return Ok(t);
        }
        let purges = self.tenants.as_ref().map(|c| c.purges());
        let row = self.read_one("SELECT * FROM tenants WHERE id = $1", id, "tenant").await?;
        let t = rows::tenant(&row)?;
        if let (Some(c), Some(purges)) = (&self.tenants, purges) {
            c.offer_read(&t, purges);
        }
        Ok(t)
    }

    async fn tenant_list(&self, filter: &TenantFilter, page: &PageRequest) -> Result<Page<Tenant>> {
        let mut w = Where::new("SELECT * FROM tenants");
        w.eq("plan_id", filter.plan.as_deref());
        w.eq("status", filter.status.map(TenantStatus::as_str));
        w.eq("region", filter.region.as_deref());
        w.gt("id", page.after.as_deref());
        w.sql.push_str(&format!(" ORDER BY id LIMIT {}", page.limit + 1));
        let rows = w.query().fetch_all(&self.reader).await.map_err(db_err)?;
        let tenants = rows.iter().map(rows::tenant).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(tenants, page.limit, |t| t.id.clone()))
    }

    async fn tenant_update(&self, t: &Tenant, expected_version: i64, fx: &Effects) -> Result<Tenant> {
        let mut stored = t.clone();
        stored.version = expected_version + 1;
        let write = TenantWrite { tenant: stored, expected_version };
        self.writer
            .write_atomic_then(
                fx,
                move |c| {
                    Box::pin(async move {
                        effects::update_tenant(c, &write).await?;
                        effects::revoke_offboarded_keys(c, std::iter::once(&write.tenant)).await?;
                        Ok(write.tenant)
                    })
                },
                self.cache_tenant(),
            )
            .await
    }

    async fn tenant_purge(&self, id: &str, expected_version: i64, fx: &Effects) -> Result<()> {
        let id = id.to_owned();
        let cache = self.tenants.clone();
        let gone = id.clone();
        // Forgotten before the COMMIT (whoever sees it must not read the tombstone from
        // memory) and after it (a read that ran in between may have offered it again).
        let _forget_after = ForgetOnDrop(self.tenants.clone(), id.clone());
        self.writer
            .write_atomic_then(
                fx,
                move |c| {
                    Box::pin(async move {
                        let deleted = sqlx::query("DELETE FROM tenants WHERE id = $1 AND version = $2 AND status = $3")
                            .bind(&id)
                            .bind(expected_version)
                            .bind(TenantStatus::Offboarded.as_str())
                            .execute(&mut *c)
                            .await
                            .map_err(db_err)?;
                        if deleted.rows_affected() == 0 {
                            let row = sqlx::query("SELECT version, status FROM tenants WHERE id = $1")
                                .bind(&id)
                                .fetch_optional(&mut *c)
                                .await
                                .map_err(db_err)?;
                            let Some(row) = row else { return Err(Error::not_found("tenant", &id)) };
                            let (found, status): (i64, String) = (row.get(0), row.get(1));
                            if found != expected_version {
                                return Err(Error::PreconditionFailed {
                                    kind: "tenant",
                                    id,
                                    expected: expected_version,
                                    found,
                                });
                            }
                            return Err(Error::Conflict {
                                code: ErrorCode::InvalidTransition,
                                message: format!("tenant {id:?} is {status}: only an offboarded tenant can be purged"),
                            });
                        }
                        for table in ["tenant_resources", "tenant_secrets"] {
                            sqlx::query(&format!("DELETE FROM {table} WHERE tenant_id = $1"))
                                .bind(&id)
                                .execute(&mut *c)
                                .await
                                .map_err(db_err)?;
                        }
                        // The old tenant's executions stay (an operator finds them by id, and
                        // events and audit name them) but no longer belong to the id: a new
                        // tenant given it must not read them with its tenant key.
                        sqlx::query("UPDATE executions SET tenant_id = NULL WHERE tenant_id = $1")
                            .bind(&id)
                            .execute(&mut *c)
                            .await
                            .map_err(db_err)?;
                        Ok(())
                    })
                },
                move |_| cache.iter().for_each(|c| c.forget(&gone)),
            )
            .await
    }

    async fn api_key_create(&self, k: &ApiKey, fx: &Effects) -> Result<()> {
        let (k, dialect) = (k.clone(), self.dialect);
        self.writer
            .write(fx, move |c| {
                Box::pin(async move {
                    if let Some(tenant) = &k.tenant_id {
                        // In the transaction (and locked on PostgreSQL): a key created
                        // while its tenant's offboarding completes is revoked with the rest.
                        let sql = format!("SELECT status FROM tenants WHERE id = $1{}", dialect.for_share());
                        let row = sqlx::query(&sql).bind(tenant).fetch_optional(&mut *c).await.map_err(db_err)?;
                        let status: Option<String> = row.map(|r| r.get(0));
                        if status.as_deref().is_none_or(|s| s == TenantStatus::Offboarded.as_str()) {
                            return Err(Error::InvalidRequest {
                                code: ErrorCode::UnknownTenant,
                                message: format!("tenant {tenant:?} does not exist or is offboarded"),
                            });
                        }
                    }
                    let res = sqlx::query(
                        "INSERT INTO api_keys (id, name, role, tenant_id, hash, created_at, expires_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(&k.id)
                    .bind(&k.name)
                    .bind(k.role.as_str())
                    .bind(k.tenant_id.as_deref())
                    .bind(&k.hash)
                    .bind(k.created_at.millis())
                    .bind(k.expires_at.map(Timestamp::millis))
                    .execute(&mut *c)
                    .await;
                    match res {
                        Err(e) if is_unique_violation(&e) => Err(Error::AlreadyExists { kind: "api key", id: k.id }),
                        Err(e) => Err(db_err(e)),
                        Ok(_) => Ok(()),
                    }
                })
            })
            .await
    }

    async fn api_key_get(&self, id: &str) -> Result<ApiKey> {
        let row = self.read_one("SELECT * FROM api_keys WHERE id = $1", id, "api key").await?;
        rows::api_key(&row)
    }

    async fn api_key_list(&self, page: &PageRequest) -> Result<Page<ApiKey>> {
        let mut w = Where::new("SELECT * FROM api_keys");
        w.gt("id", page.after.as_deref());
        w.sql.push_str(&format!(" ORDER BY id LIMIT {}", page.limit + 1));
        let rows = w.query().fetch_all(&self.reader).await.map_err(db_err)?;
        let keys = rows.iter().map(rows::api_key).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(keys, page.limit, |k| k.id.clone()))
    }

    async fn api_key_delete(&self, id: &str, fx: &Effects) -> Result<()> {
        let id = id.to_owned();
        self.writer
            .write(fx, move |c| {
                Box::pin(async move {
                    let res = sqlx::query("DELETE FROM api_keys WHERE id = $1")
                        .bind(&id)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    if res.rows_affected() == 0 {
                        return Err(Error::not_found("api key", id));
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn idempotency_begin(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        lease_ms: i64,
    ) -> Result<IdempotencyState> {
        let now = Timestamp::now().millis();
        let res = sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, request_hash, created_at, lease_expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(scope)
        .bind(key)
        .bind(request_hash)
        .bind(now)
        .bind(now + lease_ms)
        .execute(&self.write_pool)
        .await;
        match res {
            Ok(_) => Ok(IdempotencyState::Started),
            Err(e) if is_unique_violation(&e) => {
                let row = sqlx::query(
                    "SELECT request_hash, status, response, lease_expires_at FROM idempotency_keys \
                     WHERE scope = $1 AND key = $2",
                )
                .bind(scope)
                .bind(key)
                .fetch_one(&self.write_pool)
                .await
                .map_err(db_err)?;
                let first_hash: String = row.get(0);
                let status: Option<i64> = row.get(1);
                let response: Option<String> = row.get(2);
                let lease: Option<i64> = row.get(3);
                if let (Some(status), Some(response)) = (status, response) {
                    return Ok(IdempotencyState::Completed {
                        request_hash: first_hash,
                        status: status as u16,
                        response,
                    });
                }
                // In progress: the same request takes over a key whose lease ran out
                // (its request died with its process); one taker wins the update.
                if first_hash == request_hash && lease.is_none_or(|l| l < now) {
                    let taken = sqlx::query(
                        "UPDATE idempotency_keys SET lease_expires_at = $3, created_at = $4 \
                         WHERE scope = $1 AND key = $2 AND status IS NULL \
                         AND (lease_expires_at IS NULL OR lease_expires_at < $4)",
                    )
                    .bind(scope)
                    .bind(key)
                    .bind(now + lease_ms)
                    .bind(now)
                    .execute(&self.write_pool)
                    .await
                    .map_err(db_err)?;
                    if taken.rows_affected() == 1 {
                        return Ok(IdempotencyState::Started);
                    }
                }
                Ok(IdempotencyState::InProgress { request_hash: first_hash })
            }
            Err(e) => Err(db_err(e)),
        }
    }

    async fn idempotency_finish(&self, scope: &str, key: &str, status: u16, response: &str) -> Result<()> {
        sqlx::query(
            "UPDATE idempotency_keys SET status = $3, response = $4, lease_expires_at = NULL \
             WHERE scope = $1 AND key = $2 AND status IS NULL",
        )
        .bind(scope)
        .bind(key)
        .bind(status as i64)
        .bind(response)
        .execute(&self.write_pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn idempotency_abandon(&self, scope: &str, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status IS NULL")
            .bind(scope)
            .bind(key)
            .execute(&self.write_pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn idempotency_prune(&self, before: Timestamp) -> Result<u64> {
        let res = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before.millis())
            .execute(&self.write_pool)
            .await
            .map_err(db_err)?;
        Ok(res.rows_affected())
    }

    async fn commit_effects(&self, fx: &Effects) -> Result<()> {
        self.writer.write(fx, |_| Box::pin(async { Ok(()) })).await
    }

    async fn event_list(&self, filter: &EventFilter, page: &PageRequest) -> Result<Page<StoredEvent>> {
        let mut w = Where::new("SELECT * FROM events");
        w.eq("detail_type", filter.detail_type.as_deref());
        w.eq("tenant_id", filter.tenant_id.as_deref());
        if let Some(after) = filter.after {
            w.raw(&format!("time >= {}", after.millis()));
        }
        if let Some(seq) = parse_cursor_i64(page.after.as_deref())? {
            w.raw(&format!("seq > {seq}"));
        }
        w.sql.push_str(&format!(" ORDER BY seq LIMIT {}", page.limit + 1));
        let rows = w.query().fetch_all(&self.reader).await.map_err(db_err)?;
        let events = rows.iter().map(rows::event).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(events, page.limit, |e| e.seq.to_string()))
    }

    async fn audit_list(&self, filter: &AuditFilter, page: &PageRequest) -> Result<Page<StoredAudit>> {
        let mut w = Where::new("SELECT * FROM audit_log");
        w.eq("tenant_id", filter.tenant_id.as_deref());
        w.eq("actor_key_id", filter.actor.as_deref());
        w.eq("action", filter.action.as_deref());
        if let Some(after) = filter.after {
            w.raw(&format!("time >= {}", after.millis()));
        }
        if let Some(pos) = parse_cursor_i64(page.after.as_deref())? {
            w.raw(&format!("pos > {pos}"));
        }
        w.sql.push_str(&format!(" ORDER BY pos LIMIT {}", page.limit + 1));
        let rows = w.query().fetch_all(&self.reader).await.map_err(db_err)?;
        let entries = rows.iter().map(rows::audit).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(entries, page.limit, |a| a.pos.to_string()))
    }
}
