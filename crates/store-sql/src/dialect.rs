//! What each SQL engine can do, and how it spells it: the one place that knows which
//! engine is which.
//!
//! The rest of the SQL backend asks the [`Dialect`] for a capability ("take this
//! advisory lock", "notify this channel at commit", "skip locked rows", "is there one
//! writer?") and never tests the engine itself. An engine is a table of its
//! capabilities ([`Dialect::SQLITE`], [`Dialect::POSTGRES`]): what it lacks is `None`
//! or an empty fragment, and the operations built on it are no-ops there (because the
//! engine does not need them: SQLite serves one process through one writer connection,
//! which already serializes what the locks and notifications coordinate between
//! PostgreSQL replicas). A third engine is a third table, its migrations directory and
//! its opening in `SqlStore::connect`.

use sqlx::{Any, AnyConnection, Executor};

use super::migrations;
use tenancy_store::Backend;

/// The capabilities of one SQL engine. `Copy`; held by the store and derived from a
/// connection ([`Dialect::of`]) where only the connection is at hand.
#[derive(Debug, Clone, Copy)]
pub(super) struct Dialect {
    backend: Backend,
    /// Its migrations, in version order (`migrations/<engine>/`).
    migrations: &'static [(i64, &'static str, &'static str)],
    /// Row locks appended to a `SELECT` (with a leading space), or `""` where a
    /// transaction needs none.
    for_share: &'static str,
    for_update: &'static str,
    /// A row lock that skips the rows other transactions hold: concurrent claimers
    /// take disjoint rows. `""` with a single writer, whose claims take turns.
    skip_locked: &'static str,
    /// One writer connection serves the database (SQLite: one process, one write
    /// connection). Work that would take it for a transaction of its own joins the
    /// writer's group commit or looks for work on a reader first, and singletons (the
    /// outbox dispatcher, the audit sealer) need no lock.
    single_writer: bool,
    /// Statements with many values use anonymous `?` placeholders, bound in order and
    /// each used once: SQLite resolves `$N` names with a linear search per parameter,
    /// quadratic in a statement of thousands of them. (`$N` works on every engine.)
    anonymous_placeholders: bool,
    /// Many rows are updated by one `WITH v(..) AS (VALUES (?, ..), ..) UPDATE .. FROM v
    /// .. RETURNING` whose untyped VALUES the engine accepts, rather than one `UPDATE`
    /// each: worth it where every statement is a round trip to the one writer's thread.
    update_from_values: bool,
    /// Transaction-scoped advisory locks: on an integer key (`$1`), and on a text key
    /// hashed by the server.
    advisory_xact_lock: Option<&'static str>,
    advisory_xact_lock_text: Option<&'static str>,
    /// Session advisory lock and unlock on an integer key (`$1`), around migrations.
    advisory_lock: Option<(&'static str, &'static str)>,
    /// Notifies channel `$1` with payload `$2` when the transaction commits: the
    /// listeners of other processes wake up (LISTEN/NOTIFY).
    notify: Option<&'static str>,
    /// The bytes a table (`$1`) takes with its indexes, one BIGINT. SQLite's comes from
    /// the `dbstat` virtual table, which a build may lack (the storage report then says
    /// `null`, not a guess).
    table_bytes: &'static str,
}

impl Dialect {
    pub(super) const SQLITE: Dialect = Dialect {
        backend: Backend::Sqlite,
        migrations: migrations::SQLITE,
        for_share: "",
        for_update: "",
        skip_locked: "",
        single_writer: true,
        anonymous_placeholders: true,
        update_from_values: true,
        advisory_xact_lock: None,
        advisory_xact_lock_text: None,
        advisory_lock: None,
        notify: None,
        table_bytes: "SELECT CAST(COALESCE(SUM(pgsize), 0) AS BIGINT) FROM dbstat \
                      WHERE name = $1 OR name IN (SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = $1)",
    };

    pub(super) const POSTGRES: Dialect = Dialect {
        backend: Backend::Postgres,
        migrations: migrations::POSTGRES,
        for_share: " FOR SHARE",
        for_update: " FOR UPDATE",
        skip_locked: " FOR UPDATE SKIP LOCKED",
        single_writer: false,
        anonymous_placeholders: false,
        update_from_values: false,
        advisory_xact_lock: Some("SELECT pg_advisory_xact_lock($1)"),
        advisory_xact_lock_text: Some("SELECT pg_advisory_xact_lock(hashtext($1))"),
        advisory_lock: Some(("SELECT pg_advisory_lock($1)", "SELECT pg_advisory_unlock($1)")),
        notify: Some("SELECT pg_notify($1, $2)"),
        table_bytes: "SELECT CAST(pg_total_relation_size(CAST($1 AS TEXT)::regclass) AS BIGINT)",
    };

    /// The dialect of a connection's engine.
    pub(super) fn of(conn: &AnyConnection) -> Dialect {
        if conn.backend_name().eq_ignore_ascii_case("sqlite") {
            Dialect::SQLITE
        } else {
            Dialect::POSTGRES
        }
    }

    pub(super) fn backend(self) -> Backend {
        self.backend
    }

    pub(super) fn migrations(self) -> &'static [(i64, &'static str, &'static str)] {
        self.migrations
    }

    /// See the field: a table's bytes with its indexes.
    pub(super) fn table_bytes(self) -> &'static str {
        self.table_bytes
    }

    /// Row lock taken by a reader that must keep a row alive until commit.
    pub(super) fn for_share(self) -> &'static str {
        self.for_share
    }

    /// Row lock taken by a reader that will write the row.
    pub(super) fn for_update(self) -> &'static str {
        self.for_update
    }

    /// Row lock of a claim: rows another claimer holds are skipped, not waited for.
    pub(super) fn skip_locked(self) -> &'static str {
        self.skip_locked
    }

    /// See the field: one writer connection serves the database.
    pub(super) fn single_writer(self) -> bool {
        self.single_writer
    }

    /// See the field: many rows updated by one `UPDATE .. FROM (VALUES ..)`, whose
    /// VALUES use `?` placeholders.
    pub(super) fn update_from_values(self) -> bool {
        self.update_from_values
    }

    /// Whether other processes can be woken at commit ([`Dialect::notify`]) and listen
    /// for it on a connection of their own.
    pub(super) fn listen_notify(self) -> bool {
        self.notify.is_some()
    }

    /// Placeholder number `i` (from 1) of a statement built with
    /// [`Dialect::placeholders`]: `$i`, or `?` with anonymous placeholders.
    pub(super) fn placeholder(self, i: usize) -> String {
        if self.anonymous_placeholders {
            "?".to_owned()
        } else {
            format!("${i}")
        }
    }

    /// Placeholders `from..from + n`, comma separated.
    pub(super) fn placeholders(self, from: usize, n: usize) -> String {
        (from..from + n).map(|i| self.placeholder(i)).collect::<Vec<_>>().join(", ")
    }

    /// Placeholders `$from..$(from + n - 1)`, comma separated, on any engine: for a
    /// statement that also names its other parameters by number.
    pub(super) fn numbered_placeholders(from: usize, n: usize) -> String {
        (from..from + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
    }

    /// Takes the advisory lock `key` until the transaction of `conn` ends: one holder
    /// across replicas. Nothing where the engine has no advisory locks (one writer
    /// serializes the transactions already).
    pub(super) async fn advisory_xact_lock<'c, E>(self, conn: E, key: i64) -> Result<(), sqlx::Error>
    where
        E: Executor<'c, Database = Any>,
    {
        if let Some(sql) = self.advisory_xact_lock {
            sqlx::query(sql).bind(key).execute(conn).await?;
        }
        Ok(())
    }

    /// [`Dialect::advisory_xact_lock`] on a text key, which the server hashes.
    pub(super) async fn advisory_xact_lock_text<'c, E>(self, conn: E, key: &str) -> Result<(), sqlx::Error>
    where
        E: Executor<'c, Database = Any>,
    {
        if let Some(sql) = self.advisory_xact_lock_text {
            sqlx::query(sql).bind(key).execute(conn).await?;
        }
        Ok(())
    }

    /// Takes the advisory lock `key` for the session of `conn`, until
    /// [`Dialect::advisory_unlock`]. Nothing where the engine has no advisory locks.
    pub(super) async fn advisory_lock<'c, E>(self, conn: E, key: i64) -> Result<(), sqlx::Error>
    where
        E: Executor<'c, Database = Any>,
    {
        if let Some((lock, _)) = self.advisory_lock {
            sqlx::query(lock).bind(key).execute(conn).await?;
        }
        Ok(())
    }

    /// Releases a session's advisory lock `key` ([`Dialect::advisory_lock`]).
    pub(super) async fn advisory_unlock<'c, E>(self, conn: E, key: i64) -> Result<(), sqlx::Error>
    where
        E: Executor<'c, Database = Any>,
    {
        if let Some((_, unlock)) = self.advisory_lock {
            sqlx::query(unlock).bind(key).execute(conn).await?;
        }
        Ok(())
    }

    /// Notifies `channel` with `payload` when the transaction of `conn` commits (at
    /// once outside a transaction): other processes' listeners wake up. Nothing where
    /// the engine has no listen/notify (one process serves the database; its
    /// in-process signals suffice).
    pub(super) async fn notify<'c, E>(self, conn: E, channel: &str, payload: &str) -> Result<(), sqlx::Error>
    where
        E: Executor<'c, Database = Any>,
    {
        if let Some(sql) = self.notify {
            sqlx::query(sql).bind(channel).bind(payload).execute(conn).await?;
        }
        Ok(())
    }
}
