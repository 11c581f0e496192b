//! Fresh databases for tests: a SQLite file in a temporary directory, or a new database
//! on a PostgreSQL server.
//!
//! The PostgreSQL server is `TENANCY_TEST_DATABASE_URL` when set, else the one on
//! 127.0.0.1:5432 when it answers. When neither is available the tests fail with a
//! message naming `scripts/test`, which starts a throwaway cluster: the PostgreSQL half
//! of the suite is never skipped silently.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;

use super::{SqlOptions, SqlStore};

/// A fresh database and what keeps it alive (the temporary directory for SQLite).
pub struct TestDb {
    pub url: String,
    pub store: Arc<SqlStore>,
    _dir: Option<tempfile::TempDir>,
}

pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("create temp dir");
    let url = format!("sqlite://{}", dir.path().join("tenancy.db").display());
    let store = SqlStore::connect(&SqlOptions::new(&url)).await.expect("open sqlite store");
    TestDb { url, store: Arc::new(store), _dir: Some(dir) }
}

/// The URL of the PostgreSQL server tests create their databases on.
pub fn postgres_server_url() -> String {
    // A test hook (behind the `testing` feature): the store cannot reach tenancy's
    // config module, which reads every setting of the server.
    #[allow(clippy::disallowed_methods)]
    if let Ok(url) = std::env::var("TENANCY_TEST_DATABASE_URL") {
        return url;
    }
    let addr = "127.0.0.1:5432".parse().expect("valid address");
    if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
        return "postgres://postgres@127.0.0.1:5432/postgres".to_owned();
    }
    panic!(
        "no PostgreSQL for the tests: set TENANCY_TEST_DATABASE_URL or run `scripts/test`, \
         which starts a throwaway cluster when none is reachable"
    );
}

/// Creates an empty database on the test server and returns its URL.
pub async fn fresh_postgres_url() -> String {
    let server = postgres_server_url();
    let name = format!("tenancy_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&server)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL at {}: {e}", super::redact_url(&server)));
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create test database");
    let mut url = url::Url::parse(&server).expect("valid PostgreSQL URL");
    url.set_path(&name);
    url.to_string()
}

pub async fn postgres() -> TestDb {
    let url = fresh_postgres_url().await;
    let store = SqlStore::connect(&SqlOptions::new(&url)).await.expect("open postgres store");
    TestDb { url, store: Arc::new(store), _dir: None }
}
