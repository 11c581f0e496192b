//! The schema migrations: one directory per engine, discovered by `build.rs`, applied
//! at start in order, one transaction each (on PostgreSQL under an advisory lock, so
//! replicas starting together apply each once).

use sqlx::{Executor, Row};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};

use super::{db_err, SqlStore};

// The migrations of each engine, discovered from `migrations/<engine>/` by `build.rs`.
include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// An arbitrary constant: the advisory lock that serializes migrations when several
/// replicas start at once.
const MIGRATION_LOCK: i64 = 0x7e_4a_4e_c7;

impl SqlStore {
    pub(super) fn migrations(&self) -> &'static [(i64, &'static str, &'static str)] {
        self.dialect.migrations()
    }

    pub(super) async fn migrate(&self) -> Result<()> {
        let mut conn = self.write_pool.acquire().await.map_err(db_err)?;
        self.dialect.advisory_lock(&mut *conn, MIGRATION_LOCK).await.map_err(db_err)?;
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
                tracing::info!(version, name, backend = self.dialect.backend().as_str(), "applying migration");
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
        let _ = self.dialect.advisory_unlock(&mut *conn, MIGRATION_LOCK).await;
        result
    }
}

/// Whether every migration this binary knows is applied ([`Store::ready`]).
///
/// [`Store::ready`]: tenancy_store::Store::ready
pub(super) async fn ready(store: &SqlStore) -> Result<()> {
    let row = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        .fetch_one(&store.reader)
        .await
        .map_err(db_err)?;
    let applied: i64 = row.get(0);
    let latest = store.migrations().last().map(|m| m.0).unwrap_or(0);
    if applied < latest {
        return Err(Error::Unavailable(format!("migrations pending: at {applied}, latest {latest}")));
    }
    Ok(())
}
