//! Data-plane databases of tenants: the port [`DatabaseProvisioner`] and its adapters.
//!
//! * [`SqliteFiles`], the embedded default, keeps each **silo** tenant's database in a
//!   SQLite file `<root>/<tenant id>/data.db` (`root` is `<data dir>/tenants`). Pool
//!   tenants get no database of their own on the embedded default: they keep only their
//!   resource record (the product's shared tables are the pool).
//! * [`postgres::PostgresDataPlane`] creates a database and a login role per silo
//!   tenant, and a schema with a login role per pool tenant in one shared database.
//!
//! Every operation takes the tenant's [`Isolation`], so a tenant moving between a pool
//! and a silo plan can have both resources for a while (the plan-change workflow creates
//! the new one, exports the old one and then deletes it).
//!
//! For the reconciler, a provisioner also lists the databases that exist under its
//! naming scheme ([`DatabaseProvisioner::database_list`]) by a stable key, and says which
//! key a tenant's database has ([`DatabaseProvisioner::database_key`]): a listed key no
//! tenant needs is an *extra* database (reported, never deleted automatically).

pub mod postgres;

use std::path::PathBuf;

use async_trait::async_trait;
use serde_json::{json, Value};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tenancy_domain::plan::Isolation;
use tenancy_domain::{Error, Result};

/// What a tenant's database looks like to its provisioner.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ObservedDatabase {
    pub exists: bool,
    pub size_bytes: u64,
    /// Where it lives (a path or URL without credentials).
    pub location: String,
}

/// A database that exists, as [`DatabaseProvisioner::database_list`] sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListedDatabase {
    /// Its stable key, the one [`DatabaseProvisioner::database_key`] gives its tenant.
    pub key: String,
    /// Where it lives (a path or URL without credentials), as in [`ObservedDatabase`].
    pub location: String,
}

/// How a tenant's service reaches its database's login: no password (the caller keeps
/// that), nothing the provisioner had to ask the server for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoginTarget {
    pub host: String,
    pub port: u16,
    pub database: String,
    /// The tenant's schema, for a pool tenant.
    pub schema: Option<String>,
    /// The tenant's login role.
    pub user: String,
    /// The alternate login of the alternating-users rotation (see
    /// [`DatabaseProvisioner::login_set_password`]).
    pub alternate: String,
}

/// Creates, observes, exports and deletes a tenant's database for one isolation model.
/// Object safe; every operation is idempotent (create finds an existing one, delete a
/// missing one).
///
/// Secrets: a provisioner whose databases have a login ([`uses_credentials`]) is handed
/// the password by the caller, which generates it once and keeps it sealed; the
/// provisioner never returns it (the `detail` of `database_create` is shown to API
/// callers) and must not log it.
///
/// [`uses_credentials`]: DatabaseProvisioner::uses_credentials
#[async_trait]
pub trait DatabaseProvisioner: Send + Sync + 'static {
    /// Whether tenants of this isolation get a database from this provisioner (the
    /// embedded default: silo only). The other operations are no-ops for the others.
    fn provisions(&self, isolation: Isolation) -> bool;
    /// Whether its databases have a login whose password the caller must supply.
    fn uses_credentials(&self) -> bool {
        false
    }
    /// The file name extension of [`database_export`](DatabaseProvisioner::database_export)'s
    /// files (`db` for a SQLite file, `ndjson` for the PostgreSQL export format).
    fn export_extension(&self) -> &'static str;
    /// Creates the database unless it exists (and sets its login's password to
    /// `password`, when it has one); returns its detail (no secrets).
    async fn database_create(&self, tenant_id: &str, isolation: Isolation, password: Option<&str>) -> Result<Value>;
    async fn database_observe(&self, tenant_id: &str, isolation: Isolation) -> Result<ObservedDatabase>;
    async fn database_delete(&self, tenant_id: &str, isolation: Isolation) -> Result<()>;
    /// Writes a consistent copy of the tenant's data to the file `dest` (which must not
    /// exist), for offboarding exports and moves between isolation models. `false` when
    /// the tenant has no database.
    async fn database_export(&self, tenant_id: &str, isolation: Isolation, dest: &std::path::Path) -> Result<bool>;
    /// The key under which [`database_list`](DatabaseProvisioner::database_list) lists the
    /// tenant's database of this isolation (whether it exists or not). No IO.
    fn database_key(&self, tenant_id: &str, isolation: Isolation) -> Result<String>;
    /// Every database of this isolation that exists and follows this provisioner's
    /// naming scheme, whether a tenant needs it or not (a SQLite file another tenant's
    /// record no longer names, a database created by hand with the prefix). Empty for an
    /// isolation it does not provision. In no particular order.
    async fn database_list(&self, isolation: Isolation) -> Result<Vec<ListedDatabase>>;
    /// The name of the login of the tenant's database of this isolation, for a
    /// provisioner whose databases have one ([`uses_credentials`]). No IO.
    ///
    /// [`uses_credentials`]: DatabaseProvisioner::uses_credentials
    fn login_key(&self, _tenant_id: &str, _isolation: Isolation) -> Result<Option<String>> {
        Ok(None)
    }
    /// Whether the login of the tenant's database of this isolation exists (`true` for
    /// a provisioner without logins): the reconciler reports a missing one.
    async fn login_exists(&self, _tenant_id: &str, _isolation: Isolation) -> Result<bool> {
        Ok(true)
    }
    /// Where the tenant's login of this isolation connects (no IO), for a provisioner
    /// whose databases have logins ([`uses_credentials`]); `None` for the others.
    ///
    /// [`uses_credentials`]: DatabaseProvisioner::uses_credentials
    fn login_target(&self, _tenant_id: &str, _isolation: Isolation) -> Result<Option<LoginTarget>> {
        Ok(None)
    }
    /// Sets the password of `user`, which must be the tenant's login or its alternate
    /// ([`LoginTarget::alternate`], created on first use with the login's privileges),
    /// for credential rotation. Idempotent. Refused by a provisioner without logins.
    async fn login_set_password(
        &self,
        _tenant_id: &str,
        _isolation: Isolation,
        _user: &str,
        _password: &str,
    ) -> Result<()> {
        Err(Error::invalid("this data plane's databases have no logins"))
    }
    /// Logs in to the tenant's database as `user` with `password` and runs `SELECT 1`:
    /// `Unavailable` naming the user (never the password) when the server refuses.
    async fn login_test(&self, _tenant_id: &str, _isolation: Isolation, _user: &str, _password: &str) -> Result<()> {
        Err(Error::invalid("this data plane's databases have no logins"))
    }
    /// Logins of this isolation that follow this provisioner's naming scheme but have
    /// no database (or schema) of their own: what a failed or partial delete leaves
    /// behind. Keyed by [`login_key`](DatabaseProvisioner::login_key). In no
    /// particular order; empty for a provisioner without logins.
    async fn lone_logins(&self, _isolation: Isolation) -> Result<Vec<ListedDatabase>> {
        Ok(vec![])
    }
}

/// The embedded default: one SQLite file per silo tenant.
pub struct SqliteFiles {
    root: PathBuf,
}

impl SqliteFiles {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SqliteFiles { root: root.into() }
    }

    fn dir(&self, tenant_id: &str) -> Result<PathBuf> {
        // Tenant ids are DNS-label-like, so they are safe directory names; check anyway.
        tenancy_domain::ids::validate_slug("tenant", tenant_id)?;
        Ok(self.root.join(tenant_id))
    }
}

fn io(what: &str, path: &std::path::Path, e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("failed to {what} {}: {e}", path.display()))
}

/// Creates `<dir>/data.db` unless it exists. The file is built under a temporary name
/// and renamed into place complete, so a `data.db` is always whole and a repeated step
/// finds it done. Built without a rollback journal (nothing to roll back in a file
/// nobody else sees; a journal cost a create, a write, an fsync and an unlink per
/// tenant) and synced once, at its commit. Should a crash of the machine lose the fresh
/// file, the reconciler recreates it.
fn build_silo_file(dir: &std::path::Path, tenant_id: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
    let path = dir.join("data.db");
    if std::fs::exists(&path).map_err(|e| io("inspect", &path, e))? {
        return Ok(path);
    }
    let building = dir.join("data.db.building");
    match std::fs::remove_file(&building) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("clean up", &building, e)),
    }
    let init = |conn: &mut rusqlite::Connection| -> rusqlite::Result<()> {
        conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = FULL;")?;
        let tx = conn.transaction()?;
        tx.execute("CREATE TABLE tenancy_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)", [])?;
        tx.execute("INSERT INTO tenancy_meta (key, value) VALUES ('tenant_id', ?1)", [tenant_id])?;
        tx.commit()
    };
    let mut conn = rusqlite::Connection::open(&building).map_err(|e| io("create", &building, e))?;
    init(&mut conn).map_err(|e| io("initialize", &building, e))?;
    conn.close().map_err(|(_, e)| io("close", &building, e))?;
    std::fs::rename(&building, &path).map_err(|e| io("create", &path, e))?;
    Ok(path)
}

/// A silo tenant's database record detail.
fn detail(path: &std::path::Path) -> Value {
    json!({"engine": "sqlite", "isolation": "silo", "path": path.display().to_string()})
}

fn no_pool_database() -> Error {
    Error::invalid("the embedded data plane keeps no database for pool tenants")
}

#[async_trait]
impl DatabaseProvisioner for SqliteFiles {
    fn provisions(&self, isolation: Isolation) -> bool {
        isolation == Isolation::Silo
    }

    fn export_extension(&self) -> &'static str {
        "db"
    }

    async fn database_create(&self, tenant_id: &str, isolation: Isolation, _password: Option<&str>) -> Result<Value> {
        if isolation != Isolation::Silo {
            return Err(no_pool_database());
        }
        let dir = self.dir(tenant_id)?;
        // One blocking task does the whole job, with rusqlite rather than sqlx: sqlx runs
        // every SQLite connection on a thread of its own, and a connection per file (or a
        // round trip to a pool of them, plus one per file operation) was about a third of
        // the CPU of half-silo provisioning (bench `provision`).
        let tenant = tenant_id.to_owned();
        let path = tokio::task::spawn_blocking(move || build_silo_file(&dir, &tenant))
            .await
            .map_err(|e| Error::internal(format!("creating a tenant database panicked: {e}")))??;
        Ok(detail(&path))
    }

    async fn database_observe(&self, tenant_id: &str, isolation: Isolation) -> Result<ObservedDatabase> {
        if isolation != Isolation::Silo {
            return Ok(ObservedDatabase { exists: false, size_bytes: 0, location: String::new() });
        }
        let path = self.dir(tenant_id)?.join("data.db");
        let location = path.display().to_string();
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(ObservedDatabase { exists: true, size_bytes: m.len(), location }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(ObservedDatabase { exists: false, size_bytes: 0, location })
            }
            Err(e) => Err(io("inspect", &path, e)),
        }
    }

    async fn database_delete(&self, tenant_id: &str, isolation: Isolation) -> Result<()> {
        if isolation != Isolation::Silo {
            return Ok(());
        }
        let dir = self.dir(tenant_id)?;
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("delete", &dir, e)),
        }
    }

    async fn database_export(&self, tenant_id: &str, isolation: Isolation, dest: &std::path::Path) -> Result<bool> {
        if isolation != Isolation::Silo {
            return Ok(false);
        }
        let path = self.dir(tenant_id)?.join("data.db");
        if !tokio::fs::try_exists(&path).await.map_err(|e| io("inspect", &path, e))? {
            return Ok(false);
        }
        let mut conn = SqliteConnectOptions::new().filename(&path).connect().await.map_err(|e| io("open", &path, e))?;
        // VACUUM INTO writes a consistent, compacted snapshot while writers go on.
        sqlx::query("VACUUM INTO $1")
            .bind(dest.display().to_string())
            .execute(&mut conn)
            .await
            .map_err(|e| io("export", &path, e))?;
        conn.close().await.map_err(|e| io("close", &path, e))?;
        Ok(true)
    }

    fn database_key(&self, tenant_id: &str, isolation: Isolation) -> Result<String> {
        if isolation != Isolation::Silo {
            return Err(no_pool_database());
        }
        self.dir(tenant_id)?;
        Ok(tenant_id.to_owned())
    }

    /// The directories under the root that hold a `data.db`, by directory name (a
    /// tenant's directory is its id). Other files and directories are not ours.
    async fn database_list(&self, isolation: Isolation) -> Result<Vec<ListedDatabase>> {
        if isolation != Isolation::Silo {
            return Ok(vec![]);
        }
        let mut entries = match tokio::fs::read_dir(&self.root).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(io("list", &self.root, e)),
        };
        let mut found = vec![];
        while let Some(entry) = entries.next_entry().await.map_err(|e| io("list", &self.root, e))? {
            let path = entry.path().join("data.db");
            match tokio::fs::metadata(&path).await {
                Ok(m) if m.is_file() => found.push(ListedDatabase {
                    key: entry.file_name().to_string_lossy().into_owned(),
                    location: path.display().to_string(),
                }),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {}
                Err(e) => return Err(io("inspect", &path, e)),
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SILO: Isolation = Isolation::Silo;

    #[tokio::test]
    async fn create_observe_delete_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let p = SqliteFiles::new(dir.path().join("tenants"));
        assert!(!p.database_observe("acme", SILO).await.unwrap().exists);
        let first = p.database_create("acme", SILO, None).await.unwrap();
        assert_eq!(p.database_create("acme", SILO, None).await.unwrap(), first);
        let seen = p.database_observe("acme", SILO).await.unwrap();
        assert!(seen.exists && seen.size_bytes > 0);
        assert!(seen.location.ends_with("tenants/acme/data.db"));
        let copy = dir.path().join("export.db");
        assert!(p.database_export("acme", SILO, &copy).await.unwrap());
        let mut conn = SqliteConnectOptions::new().filename(&copy).connect().await.unwrap();
        let owner: String = sqlx::query_scalar("SELECT value FROM tenancy_meta WHERE key = 'tenant_id'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(owner, "acme");
        p.database_delete("acme", SILO).await.unwrap();
        p.database_delete("acme", SILO).await.unwrap();
        assert!(!p.database_export("acme", SILO, &dir.path().join("gone.db")).await.unwrap());
        assert!(!p.database_observe("acme", SILO).await.unwrap().exists);
        assert!(p.database_create("../etc", SILO, None).await.is_err());
        // Pool tenants keep only their record on the embedded default.
        assert!(!p.provisions(Isolation::Pool));
        assert!(p.database_create("acme", Isolation::Pool, None).await.is_err());
        assert!(!p.database_observe("acme", Isolation::Pool).await.unwrap().exists);
        p.database_delete("acme", Isolation::Pool).await.unwrap();
    }

    #[tokio::test]
    async fn lists_the_directories_holding_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let p = SqliteFiles::new(dir.path().join("tenants"));
        assert!(p.database_list(SILO).await.unwrap().is_empty(), "no root yet");
        p.database_create("acme", SILO, None).await.unwrap();
        p.database_create("beta", SILO, None).await.unwrap();
        // Not databases: an empty directory, a stray file.
        std::fs::create_dir_all(dir.path().join("tenants/empty")).unwrap();
        std::fs::write(dir.path().join("tenants/notes.txt"), "x").unwrap();
        let mut keys: Vec<_> = p.database_list(SILO).await.unwrap().into_iter().map(|d| d.key).collect();
        keys.sort();
        assert_eq!(keys, ["acme", "beta"]);
        assert_eq!(p.database_key("acme", SILO).unwrap(), "acme");
        let listed = p.database_list(SILO).await.unwrap();
        let acme = listed.iter().find(|d| d.key == "acme").unwrap();
        assert_eq!(acme.location, p.database_observe("acme", SILO).await.unwrap().location);
        p.database_delete("beta", SILO).await.unwrap();
        assert_eq!(p.database_list(SILO).await.unwrap().len(), 1);
        assert!(p.database_list(Isolation::Pool).await.unwrap().is_empty());
        assert!(p.database_key("acme", Isolation::Pool).is_err());
        assert!(p.database_key("../etc", SILO).is_err());
    }
}
