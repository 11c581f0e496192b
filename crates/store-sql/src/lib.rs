//! The SQL backends of the store API (`tenancy-store`): SQLite (the embedded default) and
//! PostgreSQL. This crate is the only one of the control plane that depends on sqlx; the
//! store API it implements does not, so the app sees only the traits.
//!
//! Both run through sqlx's `Any` driver with the same SQL text: `$1` placeholders work
//! on both engines, every timestamp is a BIGINT of unix milliseconds and every JSON
//! value is TEXT. Where the engines differ (row locks, advisory locks, listen/notify,
//! one writer or many, placeholders) the code asks the [`Dialect`] for the capability
//! instead of testing the engine, and the migrations are one directory per engine.
//!
//! SQLite allows one writer at a time, so the SQLite store keeps a single-connection
//! writer pool (writes queue in-process instead of failing with `SQLITE_BUSY`) beside a
//! reader pool that WAL mode lets run concurrently. On PostgreSQL both are one pool.
//!
//! This file holds the store itself (opening, the connections, the SQLite file lock and
//! checkpoints) and the [`Store`] trait's glue. Each resource's SQL is a file of its own
//! of this crate: `plans`, `tenants`, `api_keys`, `idempotency`, `master_key`,
//! `migrations`, and the per-area traits (`events`, `audit`, `workflows`, `queues`,
//! `hooks`, `functions`, `drift`, `entitlements`, `signups`). Beside them: `dialect` (what each engine can do),
//! `effects` (writes a change's [`Effects`]), `writer` (the SQLite group-committing
//! writer), `cache` (the SQLite record caches), `rows` (row decoders) and `wakeup` (the
//! wake-ups of background loops).

mod api_keys;
mod audit;
mod cache;
mod connections;
mod dialect;
mod drift;
mod effects;
mod effects_batch;
mod entitlements;
mod events;
mod functions;
mod group_commit;
mod hooks;
mod idempotency;
mod master_key;
mod metrics;
mod migrations;
mod plans;
mod policies;
mod queues;
mod quota_batch;
mod quota_pruning;
mod quotas;
mod releases;
mod retention;
mod rollouts;
mod rows;
mod secrets;
mod signups;
mod tenants;
mod terms;
#[cfg(feature = "testing")]
pub mod testing;
mod wakeup;
mod workflows;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};
use tenancy_domain::apikey::ApiKey;
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::plan::Plan;
use tenancy_domain::tenant::{Tenant, TenantFilter};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};

use cache::{RecordCache, TenantCache};
use dialect::Dialect;
use tenancy_store::*;
use writer::Writer;

/// Options for [`SqlStore::connect`].
#[derive(Debug, Clone)]
pub struct SqlOptions {
    /// `sqlite://path/to/file.db` or `postgres://...`.
    pub url: String,
    /// Connections of the (reader) pool.
    pub max_connections: u32,
    /// SQLite only: the page cache of all the store's connections together, in KiB
    /// (see [`SqliteCache`]).
    pub sqlite_cache_kib: u64,
}

impl SqlOptions {
    pub fn new(url: impl Into<String>) -> Self {
        SqlOptions { url: url.into(), max_connections: 8, sqlite_cache_kib: DEFAULT_SQLITE_CACHE_KIB }
    }
}

/// The default bound on the SQLite page cache of all connections together: 32 MiB.
pub const DEFAULT_SQLITE_CACHE_KIB: u64 = 32 * 1024;

/// How a total page-cache bound is split between SQLite connections: three quarters
/// to the one writer, the rest shared equally by the readers.
///
/// The writer's cache is the one that pays: it is never invalidated (no other
/// connection writes), and it holds the index pages every insert walks. A reader's
/// cache is emptied at the start of each read transaction that finds the database
/// changed since its last one, which under a steady write load is nearly every one;
/// a large reader cache then only holds memory until the next reset. Each connection
/// gets at least 1 MiB. SQLite's `cache_size` is per connection, so without this split
/// an operator could not bound the total: before it, each of the nine connections
/// could grow to 64 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteCache {
    pub writer_kib: u64,
    pub reader_kib: u64,
}

impl SqliteCache {
    const MIN_KIB: u64 = 1024;

    pub fn split(total_kib: u64, readers: u32) -> SqliteCache {
        let writer_kib = (total_kib * 3 / 4).max(Self::MIN_KIB);
        let reader_kib = (total_kib.saturating_sub(writer_kib) / u64::from(readers.max(1))).max(Self::MIN_KIB);
        SqliteCache { writer_kib, reader_kib }
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
    /// With listen/notify ([`Dialect::listen_notify`]): the URL of the wake-up
    /// listeners' own connections.
    listen_url: Option<String>,
    /// PostgreSQL only: the group commit of the common consume ([`quota_batch`]).
    consumes: Option<Arc<quota_batch::ConsumeBatcher>>,
    /// PostgreSQL only: the group commit of effects written alone ([`effects_batch`]).
    effects: Option<Arc<effects_batch::EffectsBatcher>>,
}

/// A store error as the application sees it: what retrying may cure (the database is
/// unreachable, restarting, shutting down, dropped the connection, or refused a
/// transaction on a serialization failure or deadlock) is `Unavailable` (503, and
/// `Tenancy.unavailable` in workflows, which retry it), anything else `Internal`.
pub(crate) fn db_err(e: sqlx::Error) -> Error {
    if is_transient(&e) {
        Error::Unavailable(e.to_string())
    } else {
        Error::Internal(format!("database error: {e}"))
    }
}

/// SQLSTATEs worth a retry: class 08 (connection exception), 40001 (serialization
/// failure), 40P01 (deadlock), 57P01-57P03 (administrator or crash shutdown, cannot
/// connect now: a restarting server), 53300 (too many connections).
fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(d) => {
            let code = d.code().unwrap_or_default();
            code.starts_with("08")
                || matches!(code.as_ref(), "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300")
                || d.message().contains("database is locked")
        }
        _ => false,
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn json_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("serializing a record to JSON cannot fail")
}
impl SqlStore {
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
            let consumes = Arc::new(quota_batch::ConsumeBatcher::new(pool.clone()));
            let effects = Arc::new(effects_batch::EffectsBatcher::new(pool.clone()));
            SqlStore {
                dialect: Dialect::POSTGRES,
                writer: Writer::direct(pool.clone()),
                write_pool: pool.clone(),
                reader: pool,
                tenants: None,
                records: None,
                _lock: None,
                listen_url: Some(opts.url.clone()),
                consumes: Some(consumes),
                effects: Some(effects),
            }
        } else if opts.url.starts_with("sqlite:") {
            let lock = lock_sqlite(&opts.url)?;
            let url = if opts.url.contains('?') { opts.url.clone() } else { format!("{}?mode=rwc", opts.url) };
            // No liveness ping before each acquire (sqlx's default): a local file's
            // connection does not go stale, and on the write path the ping was a round
            // trip to the connection's thread per transaction.
            let readers = opts.max_connections.max(1);
            let cache = SqliteCache::split(opts.sqlite_cache_kib, readers);
            let writer = AnyPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .test_before_acquire(false)
                .after_connect(move |conn, _| sqlite_pragmas(conn, cache.writer_kib))
                .connect(&url)
                .await
                .map_err(db_err)?;
            let reader = AnyPoolOptions::new()
                .max_connections(readers)
                .acquire_timeout(Duration::from_secs(30))
                .test_before_acquire(false)
                .after_connect(move |conn, _| sqlite_pragmas(conn, cache.reader_kib))
                .connect(&url)
                .await
                .map_err(db_err)?;
            let tenants = Arc::new(TenantCache::default());
            let lock = Arc::new(lock);
            tokio::spawn(checkpoints(reader.clone(), Arc::downgrade(&lock)));
            SqlStore {
                dialect: Dialect::SQLITE,
                writer: Writer::batched(writer.clone(), Some(tenants.clone())),
                write_pool: writer,
                reader,
                tenants: Some(tenants),
                records: Some(Arc::default()),
                _lock: Some(lock),
                listen_url: None,
                consumes: None,
                effects: None,
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
/// transactions, the usual WAL trade-off), a busy timeout, foreign keys on, the
/// connection's share of the page cache ([`SqliteCache`]), and the writer's own WAL
/// checkpoints only as a backstop (see [`checkpoints`]).
fn sqlite_pragmas(
    conn: &mut sqlx::AnyConnection,
    cache_kib: u64,
) -> futures_core::future::BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move {
        conn.execute(
            format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; \
                 PRAGMA foreign_keys = ON; PRAGMA cache_size = -{cache_kib}; PRAGMA wal_autocheckpoint = 10000;"
            )
            .as_str(),
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
        self.dialect.backend()
    }

    fn terms_epoch(&self) -> TermsEpoch {
        TermsEpoch { value: terms::current(), exact: self.dialect.single_writer() }
    }

    fn workflows(&self) -> std::sync::Arc<dyn tenancy_store::WorkflowStore> {
        std::sync::Arc::new(self.clone())
    }

    fn queues(&self) -> Arc<dyn tenancy_store::QueueStore> {
        Arc::new(self.clone())
    }

    fn quotas(&self) -> Arc<dyn tenancy_store::QuotaStore> {
        Arc::new(self.clone())
    }

    fn hooks(&self) -> Arc<dyn tenancy_store::HookStore> {
        Arc::new(self.clone())
    }

    fn entitlements(&self) -> Arc<dyn tenancy_store::EntitlementStore> {
        Arc::new(self.clone())
    }

    fn functions(&self) -> Arc<dyn tenancy_store::FunctionStore> {
        Arc::new(self.clone())
    }

    fn releases(&self) -> Arc<dyn tenancy_store::ReleaseStore> {
        Arc::new(self.clone())
    }

    fn rollouts(&self) -> Arc<dyn tenancy_store::RolloutStore> {
        Arc::new(self.clone())
    }

    fn secrets(&self) -> Arc<dyn tenancy_store::SecretStore> {
        Arc::new(self.clone())
    }

    fn connections(&self) -> Arc<dyn tenancy_store::ConnectionStore> {
        Arc::new(self.clone())
    }

    fn policies(&self) -> Arc<dyn tenancy_store::PolicyStore> {
        Arc::new(self.clone())
    }

    fn signups(&self) -> Arc<dyn tenancy_store::SignupStore> {
        Arc::new(self.clone())
    }

    fn retention(&self) -> Arc<dyn tenancy_store::RetentionStore> {
        Arc::new(self.clone())
    }

    fn drift(&self) -> Arc<dyn tenancy_store::DriftStore> {
        Arc::new(self.clone())
    }

    async fn ready(&self) -> Result<()> {
        migrations::ready(self).await
    }

    async fn metrics_gauges(&self, now: Timestamp, stuck_before: Timestamp) -> Result<tenancy_store::StoreGauges> {
        metrics::gauges(self, now, stuck_before).await
    }

    async fn master_key_state(&self) -> Result<MasterKeyState> {
        master_key::state(self).await
    }

    async fn master_key_record(&self, fingerprint: &str) -> Result<String> {
        master_key::record(self, fingerprint).await
    }

    async fn plan_put(&self, plan: &Plan, if_version: Option<i64>, fx: &Effects) -> Result<Plan> {
        plans::put(self, plan, if_version, fx).await
    }

    async fn plan_get(&self, id: &str) -> Result<Plan> {
        plans::get(self, id).await
    }

    async fn plan_list(&self, page: &PageRequest) -> Result<Page<Plan>> {
        plans::list(self, page).await
    }

    async fn plan_delete(&self, id: &str, fx: &Effects) -> Result<()> {
        plans::delete(self, id, fx).await
    }

    async fn tenant_create(&self, t: &Tenant, fx: &Effects) -> Result<Tenant> {
        tenants::create(self, t, fx).await
    }

    async fn tenant_get(&self, id: &str) -> Result<Tenant> {
        tenants::get(self, id).await
    }

    async fn tenant_list(&self, filter: &TenantFilter, page: &PageRequest) -> Result<Page<Tenant>> {
        tenants::list(self, filter, page).await
    }

    async fn tenant_update(&self, t: &Tenant, expected_version: i64, fx: &Effects) -> Result<Tenant> {
        tenants::update(self, t, expected_version, fx).await
    }

    async fn tenant_move_start(&self, t: &Tenant, expected_version: i64, plan: &str, fx: &Effects) -> Result<Tenant> {
        tenants::move_start(self, t, expected_version, plan, fx).await
    }

    async fn tenant_purge(&self, id: &str, expected_version: i64, fx: &Effects) -> Result<()> {
        tenants::purge(self, id, expected_version, fx).await
    }

    async fn api_key_create(&self, k: &ApiKey, fx: &Effects) -> Result<()> {
        api_keys::create(self, k, fx).await
    }

    async fn api_key_get(&self, id: &str) -> Result<ApiKey> {
        api_keys::get(self, id).await
    }

    async fn api_key_list(&self, tenant_id: Option<&str>, page: &PageRequest) -> Result<Page<ApiKey>> {
        api_keys::list(self, tenant_id, page).await
    }

    async fn api_key_rotate(
        &self,
        id: &str,
        hash: &str,
        previous_expires_at: Timestamp,
        fx: &Effects,
    ) -> Result<ApiKey> {
        api_keys::rotate(self, id, hash, previous_expires_at, fx).await
    }

    async fn api_key_touch(&self, id: &str, at: Timestamp) -> Result<()> {
        api_keys::touch(self, id, at).await
    }

    async fn api_key_delete(&self, id: &str, fx: &Effects) -> Result<()> {
        api_keys::delete(self, id, fx).await
    }

    async fn idempotency_begin(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        lease_ms: i64,
    ) -> Result<IdempotencyState> {
        idempotency::begin(self, scope, key, request_hash, lease_ms).await
    }

    async fn idempotency_finish(&self, scope: &str, key: &str, status: u16, response: &str) -> Result<()> {
        idempotency::finish(self, scope, key, status, response).await
    }

    async fn idempotency_abandon(&self, scope: &str, key: &str) -> Result<()> {
        idempotency::abandon(self, scope, key).await
    }

    async fn idempotency_prune(&self, before: Timestamp) -> Result<u64> {
        idempotency::prune(self, before).await
    }

    async fn commit_effects(&self, fx: &Effects) -> Result<()> {
        if let Some(batcher) = &self.effects {
            return batcher.commit(fx).await;
        }
        // Nothing to undo: the write is the effects alone, so no savepoint (on SQLite two
        // round trips to the connection's thread per write, most of a batch's time when
        // every secret read commits its audit entry).
        self.writer.write_atomic(fx, |_| Box::pin(async { Ok(()) })).await
    }

    async fn event_list(&self, filter: &EventFilter, page: &PageRequest) -> Result<Page<StoredEvent>> {
        events::list(self, filter, page).await
    }

    async fn audit_list(&self, filter: &AuditFilter, page: &PageRequest) -> Result<Page<StoredAudit>> {
        audit::list(self, filter, page).await
    }
}

#[cfg(test)]
mod transient_errors {
    use sqlx::Connection;
    use tenancy_domain::Error;

    use super::db_err;

    async fn error_of(conn: &mut sqlx::PgConnection, sql: &str) -> Error {
        db_err(sqlx::query(sql).execute(conn).await.expect_err("the statement fails"))
    }

    /// What a restarting PostgreSQL or a concurrent transaction does to a statement is
    /// `Unavailable` (503, retried by clients and workflows), not `Internal` (500): the
    /// chaos test (crates/cli/tests/chaos.rs) saw 500s on a `pg_ctl restart -m fast`.
    #[tokio::test]
    async fn postgres_shutdowns_serialization_failures_and_deadlocks_are_unavailable() {
        let url = crate::testing::fresh_postgres_url().await;
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        for code in ["40001", "40P01", "08006", "57P03"] {
            let sql = format!("DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '{code}'; END $$");
            let e = error_of(&mut conn, &sql).await;
            assert!(matches!(e, Error::Unavailable(_)), "{code}: {e:?}");
        }
        // A mistake stays a 500.
        let e = error_of(&mut conn, "SELECT * FROM no_such_table").await;
        assert!(matches!(e, Error::Internal(_)), "{e:?}");
        // The server ends the session (what `pg_ctl stop -m fast` does to every one).
        let e = error_of(&mut conn, "SELECT pg_terminate_backend(pg_backend_pid())").await;
        assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
    }
}

#[cfg(test)]
mod sqlite_cache {
    use super::{SqlOptions, SqlStore, SqliteCache};

    #[test]
    fn the_total_is_split_three_quarters_to_the_writer() {
        assert_eq!(SqliteCache::split(32 * 1024, 8), SqliteCache { writer_kib: 24 * 1024, reader_kib: 1024 });
        assert_eq!(SqliteCache::split(64 * 1024, 8), SqliteCache { writer_kib: 48 * 1024, reader_kib: 2048 });
        // A tiny bound still leaves each connection 1 MiB; zero readers is one.
        assert_eq!(SqliteCache::split(1, 0), SqliteCache { writer_kib: 1024, reader_kib: 1024 });
    }

    async fn cache_size(pool: &sqlx::AnyPool) -> i64 {
        let (n,): (i64,) = sqlx::query_as("PRAGMA cache_size").fetch_one(pool).await.unwrap();
        n
    }

    /// The bound an operator sets reaches every connection: before it, each of the
    /// nine could hold 64 MiB whatever the operator wanted.
    #[tokio::test]
    async fn every_connection_gets_its_share_of_the_total() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("tenancy.db").display());
        let opts = SqlOptions { sqlite_cache_kib: 20 * 1024, max_connections: 4, ..SqlOptions::new(&url) };
        let store = SqlStore::connect(&opts).await.unwrap();
        assert_eq!(cache_size(&store.write_pool).await, -15 * 1024, "the writer's KiB");
        assert_eq!(cache_size(&store.reader).await, -1280, "each reader's KiB");
    }
}
