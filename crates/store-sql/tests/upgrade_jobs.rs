//! Migration 0016 drops the legacy `jobs` table, and refuses to while an old database
//! still holds pending jobs (they would be lost, their tenants stuck in a transitional
//! status): the store does not open, saying to drain them with the previous version.

use sqlx::{AnyConnection, Connection, Row};
use tenancy_store_sql::{SqlOptions, SqlStore};

/// The engine's migration files up to 0015, in order: a database as the version before
/// 0016 left it.
fn migrations_before_0016(engine: &str) -> Vec<(i64, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(engine);
    let mut files: Vec<(i64, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_owned();
            let version: i64 = name.split('_').next()?.parse().ok()?;
            (version < 16).then(|| (version, std::fs::read_to_string(&p).unwrap()))
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), 15, "migrations 0001..=0015 of {engine}");
    files
}

/// Creates the schema of version 0015 at `url` and enqueues one pending job.
async fn old_database_with_a_job(url: &str, engine: &str) -> AnyConnection {
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    for (version, sql) in migrations_before_0016(engine) {
        sqlx::raw_sql(&sql).execute(&mut conn).await.unwrap_or_else(|e| panic!("migration {version}: {e}"));
        sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, 'old', 0)")
            .bind(version)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    sqlx::query(
        "INSERT INTO jobs (id, kind, tenant_id, payload, attempts, run_at, created_at) \
         VALUES ('exe_old', 'tenant.provision', 'acme', '{}', 0, 0, 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn
}

async fn jobs_table_exists(conn: &mut AnyConnection) -> bool {
    sqlx::query("SELECT COUNT(*) FROM jobs").fetch_one(&mut *conn).await.is_ok()
}

async fn max_version(conn: &mut AnyConnection) -> i64 {
    sqlx::query("SELECT MAX(version) FROM schema_migrations").fetch_one(&mut *conn).await.unwrap().get(0)
}

async fn pending_jobs_refuse_the_upgrade(url: &str, engine: &str) {
    let mut conn = old_database_with_a_job(url, engine).await;
    let opts = SqlOptions::new(url);
    let err = SqlStore::connect(&opts).await.err().expect("the upgrade must refuse a database with pending jobs");
    let msg = err.to_string();
    assert!(msg.contains("migration 0016 refused"), "{msg}");
    assert!(msg.contains("run the previous version of tenancy"), "{msg}");
    // Nothing changed: the job is still there for the previous version to finish.
    assert!(jobs_table_exists(&mut conn).await);
    let jobs: i64 = sqlx::query("SELECT COUNT(*) FROM jobs").fetch_one(&mut conn).await.unwrap().get(0);
    assert_eq!(jobs, 1);
    assert_eq!(max_version(&mut conn).await, 15);

    // Drained (as the previous version's worker does): the upgrade goes through and
    // the table is gone.
    sqlx::query("DELETE FROM jobs").execute(&mut conn).await.unwrap();
    let store = SqlStore::connect(&opts).await.expect("a drained database upgrades");
    drop(store);
    assert!(!jobs_table_exists(&mut conn).await, "migration 0016 drops the jobs table");
    assert!(max_version(&mut conn).await >= 16);
}

#[tokio::test]
async fn sqlite_pending_jobs_refuse_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("tenancy.db").display());
    pending_jobs_refuse_the_upgrade(&url, "sqlite").await;
}

#[tokio::test]
async fn postgres_pending_jobs_refuse_the_upgrade() {
    let url = tenancy_store_sql::testing::fresh_postgres_url().await;
    pending_jobs_refuse_the_upgrade(&url, "postgres").await;
}
