//! The PostgreSQL data plane: a database per silo tenant, a schema per pool tenant.
//!
//! `tenancy serve --data-plane-url postgres://...` (or, on PostgreSQL without it, the
//! control-plane server itself) gives tenants real PostgreSQL databases. Names are
//! stable, derived from the tenant id (a validated slug, `-` becomes `_`) and a
//! per-installation prefix (`--data-plane-prefix`, default `tenancy`), so every step
//! can be repeated and finds what an earlier attempt created:
//!
//! | isolation | what | name |
//! | --- | --- | --- |
//! | silo | a database owned by a login role | database and role `<prefix>_t_<id>` |
//! | pool | a schema in the shared database `<prefix>_pool` (created if missing), owned by a login role whose `search_path` in that database is the schema | schema `t_<id>`, role `<prefix>_p_<id>` |
//! | pool | the group role every pool tenant's role is a member of, which alone holds `CONNECT, TEMPORARY` on the pool database | role `<prefix>_pool_members` (no login) |
//! | both | the alternate login of the alternating-users rotation, made on first use | role `<prefix>_tc_<id>` (silo), `<prefix>_pc_<id>` (pool) |
//!
//! A name longer than PostgreSQL's 63 bytes is cut and ends in 12 hex digits of its
//! SHA-256. `CONNECT` on the databases is revoked from `PUBLIC`, so one tenant's role
//! cannot connect to another silo tenant's database, and a pool tenant's role has no
//! privilege on the other schemas.
//!
//! Pool tenants at scale: a pool tenant's role gets `CONNECT` on the pool database as a
//! member of `<prefix>_pool_members` (a row of `pg_auth_members`), not by a grant of
//! its own. A grant per role went into the pool database's one ACL, which every grant
//! rewrites whole: provisioning the n-th tenant rewrote n entries, and every grant on
//! the pool database took its turn on that one catalog row. The pool database, the
//! group role and the pool's `public` schema are set up once per process (again after
//! a failure); then a pool tenant is one transaction on a pooled connection to the pool
//! database: its role, its membership, its schema and its `search_path` (one commit,
//! where it was eleven statements, six commits and a new connection). Roles created
//! before, with a grant of their own, keep it; deleting a tenant drops whichever it has
//! (`DROP OWNED BY` revokes its privileges on the database too).
//!
//! Listing (for the reconciler's extra databases): the databases whose name starts with
//! `<prefix>_t_`, and the schemas starting with `t_` in `<prefix>_pool`, keyed by that
//! name; and the lone logins: roles `<prefix>_t_*` without the database of their name,
//! roles `<prefix>_p_*` that own no schema in the pool database. Prefixes of
//! installations sharing a server must therefore not extend one another by `_t_...` or
//! `_p_...` (`tenancy` and `tenancy_t_x` would see each other's databases).
//!
//! Alternate logins: credential rotation with the alternating-users strategy
//! (`tenancy_app::secrets::postgres`) takes turns between the tenant's role and its
//! alternate. The alternate is a member of the role (so it holds every privilege of the
//! role, ownership included) and its sessions start as the role (`ALTER ROLE alt SET
//! role = '<role>'`), so tables either login creates belong to the role and both can use
//! them. Its name cannot be `<role>_clone`: tenant ids may contain `-`, which becomes
//! `_`, so `acme`'s clone would be tenant `acme-clone`'s role; `_tc_`/`_pc_` are no
//! tenant's. The reconciler does not report a lone alternate (it owns nothing); deleting
//! the tenant's database drops it with the role.
//!
//! Passwords: the caller supplies the role's password (it keeps it sealed, see
//! `tenancy_app::provisioning`); it is sent to the server only as a SCRAM-SHA-256
//! verifier computed here, so neither the server's statement log nor a slow-statement
//! warning can show it, and statement logging is off on these connections anyway.
//!
//! The user of the data-plane URL must be able to create databases and roles and read
//! the tenants' tables for exports: a superuser, or on a managed service its
//! administrative role.
//!
//! Exports are NDJSON (`tenancy-export/1`), written inside one `REPEATABLE READ READ
//! ONLY` transaction so the copy is consistent, without `pg_dump`:
//!
//! ```text
//! {"format":"tenancy-export/1","engine":"postgres","tenant_id":"acme","isolation":"silo","database":"tenancy_t_acme","schema":null,"exported_at":"..."}
//! {"table":"public.notes","columns":[{"name":"id","type":"integer"},{"name":"body","type":"text"}]}
//! {"table":"public.notes","row":{"id":1,"body":"hello"}}
//! {"end":true,"tables":1,"rows":1}
//! ```
//!
//! One header line, then per table (ordered by schema and name; partitions are read
//! through their parent) a line with its columns and types followed by one line per row
//! (`row_to_json`), and a last line with the counts: a file without it is truncated.
//! Only table data is exported (no indexes, constraints, sequences or functions).

use std::path::Path;
use std::str::FromStr;

use async_trait::async_trait;
use futures::TryStreamExt;
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, Row};
use tenancy_domain::plan::Isolation;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};
use tokio::io::AsyncWriteExt;

use super::{DatabaseProvisioner, ListedDatabase, LoginTarget, ObservedDatabase};

/// The default prefix of every name this data plane creates.
pub const DEFAULT_PREFIX: &str = "tenancy";
/// PostgreSQL's identifier limit (NAMEDATALEN - 1).
const MAX_IDENT: usize = 63;
/// The export format's name, in its header line.
pub const EXPORT_FORMAT: &str = "tenancy-export/1";

/// Tenants' databases on a PostgreSQL server.
pub struct PostgresDataPlane {
    admin: PgPool,
    /// Connections to the pool database (schemas are made and dropped there).
    pool: PgPool,
    /// Whether this process has set up the pool database and its members' role since
    /// start-up or the last failure of a pool tenant's creation.
    pool_ready: std::sync::atomic::AtomicBool,
    /// Serializes this process's DDL before the cluster-wide advisory lock (see
    /// [`PostgresDataPlane::serialized`]).
    ddl: tokio::sync::Mutex<()>,
    options: PgConnectOptions,
    prefix: String,
    host: String,
    port: u16,
}

/// How long a data-plane DDL statement (the advisory lock's wait included) may run.
const DDL_STATEMENT_TIMEOUT: &str = "60s";

/// The admin session holding the data plane's advisory lock (see
/// [`PostgresDataPlane::serialized`]). Dropped before it unlocked (the step holding it
/// was cancelled, say), it closes the connection instead of returning it to the pool:
/// the session ends and its lock with it. A pooled session still holding the lock, idle,
/// would make every later `serialized` that got the pool's other connection wait for it
/// for good, unseen by PostgreSQL's deadlock detector.
struct LockSession(Option<sqlx::pool::PoolConnection<sqlx::Postgres>>);

impl Drop for LockSession {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(conn.detach());
        }
    }
}

/// Where one tenant's data lives.
struct Target {
    database: String,
    /// `Some` for a pool tenant.
    schema: Option<String>,
    role: String,
    /// The alternate login of the alternating-users rotation (created on first use).
    alternate: String,
}

fn pg(what: &str) -> impl Fn(sqlx::Error) -> Error + '_ {
    move |e| match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
            Error::Unavailable(format!("failed to {what} on the data plane: {e}"))
        }
        e => Error::Internal(format!("failed to {what} on the data plane: {e}")),
    }
}

fn has_code(e: &sqlx::Error, codes: &[&str]) -> bool {
    e.as_database_error().and_then(|d| d.code()).is_some_and(|c| codes.contains(&c.as_ref()))
}

/// The advisory lock key of the data plane of `prefix` (one per installation).
fn advisory_key(prefix: &str) -> i64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("tenancy-data-plane:{prefix}").as_bytes());
    i64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// A quoted identifier.
fn q(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A quoted string literal (`standard_conforming_strings` is on since 9.1).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The URL with its password replaced, for messages. The same text as the store's
/// `tenancy_store_sql::redact_url`, kept here because adapters do not depend on the
/// store's SQL backend.
fn redact_url(url: &str) -> String {
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

/// `name`, or when longer than 63 bytes its first 50 and 12 hex digits of its SHA-256.
fn ident(name: String) -> String {
    if name.len() <= MAX_IDENT {
        return name;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{}_{hex}", &name[..50])
}

/// The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677, as
/// `pg_authid.rolpassword` holds it), with a fresh random salt. `ALTER ROLE ... PASSWORD
/// '<verifier>'` sets the password without the plaintext reaching the server.
pub fn scram_verifier(password: &str) -> String {
    use rand::RngCore;
    let mut salt = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    scram_verifier_with(password, &salt, 4096)
}

/// A password as PostgreSQL keeps it (its SCRAM-SHA-256 verifier), ready for `PASSWORD`.
struct Verifier(String);

/// One verifier computed at a time, process-wide (see [`Verifier::of`]).
static VERIFIER_TURN: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

impl Verifier {
    /// Computes it on the blocking pool: 4,096 rounds of PBKDF2 are milliseconds of CPU,
    /// which must neither stall an async worker nor be spent holding the DDL lock that
    /// every provisioning takes in turn ([`PostgresDataPlane::serialized`]). One at a
    /// time: a burst of provisionings (a failover's backlog) computing theirs all at
    /// once took every core from the store's transactions, whose connections then ran
    /// out (found by `crates/cli/tests/region_failover.rs`). One core does hundreds a
    /// second, more than the DDL lock lets through.
    async fn of(password: &str) -> Result<Verifier> {
        let password = password.to_owned();
        let _turn = VERIFIER_TURN.acquire().await.map_err(|e| Error::internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || Verifier(scram_verifier(&password)))
            .await
            .map_err(|e| Error::Unavailable(format!("failed to compute a password verifier: {e}")))
    }

    async fn of_optional(password: Option<&str>) -> Result<Option<Verifier>> {
        Ok(match password {
            Some(p) => Some(Verifier::of(p).await?),
            None => None,
        })
    }

    /// ` PASSWORD '<verifier>'`, or nothing.
    fn clause(v: Option<&Verifier>) -> String {
        v.map(|v| format!(" PASSWORD {}", literal(&v.0))).unwrap_or_default()
    }
}

/// The pool database's name under `prefix`.
fn pool_database(prefix: &str) -> String {
    ident(format!("{prefix}_pool"))
}

fn scram_verifier_with(password: &str, salt: &[u8], iterations: u32) -> String {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    let mac = |key: &[u8], parts: &[&[u8]]| {
        let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes()
    };
    // PBKDF2-HMAC-SHA-256, one block: Hi(password, salt, i). Passwords the app generates
    // are ASCII letters and digits, which SASLprep leaves as they are.
    let pw = password.as_bytes();
    let mut u = mac(pw, &[salt, &1u32.to_be_bytes()]);
    let mut salted = u;
    for _ in 1..iterations {
        u = mac(pw, &[&u]);
        salted.iter_mut().zip(u.iter()).for_each(|(s, x)| *s ^= x);
    }
    let stored_key = Sha256::digest(mac(&salted, &[b"Client Key"]));
    let server_key = mac(&salted, &[b"Server Key"]);
    format!("SCRAM-SHA-256${iterations}:{}${}:{}", B64.encode(salt), B64.encode(stored_key), B64.encode(server_key))
}

impl PostgresDataPlane {
    /// A data plane on the server of `url` (its user must be able to create roles and
    /// databases); names start with `prefix` (`[a-z][a-z0-9_]*`, at most 20 bytes).
    /// Connects lazily.
    pub fn new(url: &str, prefix: &str) -> Result<Self> {
        let ok = !prefix.is_empty()
            && prefix.len() <= 20
            && prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(Error::invalid(format!(
                "data-plane prefix {prefix:?} is invalid: use 1-20 lowercase letters, digits and '_', starting with a letter"
            )));
        }
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| Error::invalid(format!("invalid data-plane URL {}: {e}", redact_url(url))))?
            // Statements here carry password verifiers: never log them.
            .disable_statement_logging();
        // DDL sessions give up on a statement after a minute (the step fails with
        // `internal`, which the lifecycle workflows retry) rather than wait for good
        // behind something stuck in the server; the tenants' own sessions (exports) have
        // no such limit.
        let ddl_options = options.clone().options([("statement_timeout", DDL_STATEMENT_TIMEOUT)]);
        let admin = PgPoolOptions::new().max_connections(2).connect_lazy_with(ddl_options.clone());
        // Idle connections close soon: an operator dropping the pool database must not
        // find this process connected for long.
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .min_connections(0)
            .idle_timeout(std::time::Duration::from_secs(30))
            .connect_lazy_with(ddl_options.database(&pool_database(prefix)));
        let (host, port) = (options.get_host().to_owned(), options.get_port());
        Ok(PostgresDataPlane {
            admin,
            pool,
            pool_ready: std::sync::atomic::AtomicBool::new(false),
            ddl: tokio::sync::Mutex::new(()),
            options,
            prefix: prefix.to_owned(),
            host,
            port,
        })
    }

    /// The shared database of pool tenants.
    pub fn pool_database(&self) -> String {
        pool_database(&self.prefix)
    }

    /// The role whose members may connect to the pool database: every pool tenant's.
    pub fn pool_members_role(&self) -> String {
        ident(format!("{}_pool_members", self.prefix))
    }

    fn target(&self, tenant_id: &str, isolation: Isolation) -> Result<Target> {
        tenancy_domain::ids::validate_slug("tenant", tenant_id)?;
        let id = tenant_id.replace('-', "_");
        Ok(match isolation {
            Isolation::Silo => {
                let name = ident(format!("{}_t_{id}", self.prefix));
                Target {
                    database: name.clone(),
                    schema: None,
                    role: name,
                    alternate: ident(format!("{}_tc_{id}", self.prefix)),
                }
            }
            Isolation::Pool => Target {
                database: self.pool_database(),
                schema: Some(ident(format!("t_{id}"))),
                role: ident(format!("{}_p_{id}", self.prefix)),
                alternate: ident(format!("{}_pc_{id}", self.prefix)),
            },
        })
    }

    fn location(&self, t: &Target) -> String {
        self.location_of(&t.database, t.schema.as_deref())
    }

    fn location_of(&self, database: &str, schema: Option<&str>) -> String {
        let base = format!("postgres://{}:{}/{database}", self.host, self.port);
        match schema {
            Some(s) => format!("{base} (schema {s})"),
            None => base,
        }
    }

    /// The start of every silo database's name.
    fn silo_prefix(&self) -> String {
        format!("{}_t_", self.prefix)
    }

    async fn connect(&self, database: &str) -> Result<PgConnection> {
        PgConnection::connect_with(&self.options.clone().database(database)).await.map_err(pg("connect"))
    }

    async fn exists(&self, sql: &str, name: &str) -> Result<bool> {
        let found: Option<i32> =
            sqlx::query_scalar(sql).bind(name).fetch_optional(&self.admin).await.map_err(pg("read the catalog"))?;
        Ok(found.is_some())
    }

    async fn role_exists(&self, role: &str) -> Result<bool> {
        self.exists("SELECT 1 FROM pg_roles WHERE rolname = $1", role).await
    }

    async fn database_exists(&self, db: &str) -> Result<bool> {
        self.exists("SELECT 1 FROM pg_database WHERE datname = $1", db).await
    }

    /// Creates the login role, or sets its password when it exists.
    async fn ensure_role(&self, role: &str, password: Option<&Verifier>) -> Result<()> {
        let password = Verifier::clause(password);
        if !self.role_exists(role).await? {
            match self.admin.execute(format!("CREATE ROLE {} LOGIN{password}", q(role)).as_str()).await {
                Ok(_) => return Ok(()),
                // Created concurrently: set the password below.
                Err(e) if has_code(&e, &["42710", "23505"]) => {}
                Err(e) => return Err(pg("create a role")(e)),
            }
        }
        self.admin
            .execute(format!("ALTER ROLE {} WITH LOGIN{password}", q(role)).as_str())
            .await
            .map_err(pg("alter a role"))?;
        Ok(())
    }

    async fn ensure_database(&self, db: &str, owner: Option<&str>) -> Result<()> {
        let owner_clause = owner.map(|o| format!(" OWNER {}", q(o))).unwrap_or_default();
        let existed = self.database_exists(db).await?;
        if !existed {
            // CREATE DATABASE cannot run in a transaction: one simple-protocol statement.
            match self.admin.execute(format!("CREATE DATABASE {}{owner_clause}", q(db)).as_str()).await {
                Ok(_) => {}
                Err(e) if has_code(&e, &["42P04", "23505"]) => {}
                Err(e) => return Err(pg("create a database")(e)),
            }
        }
        if let (true, Some(o)) = (existed, owner) {
            self.admin
                .execute(format!("ALTER DATABASE {} OWNER TO {}", q(db), q(o)).as_str())
                .await
                .map_err(pg("alter a database"))?;
        }
        self.admin
            .execute(format!("REVOKE ALL ON DATABASE {} FROM PUBLIC", q(db)).as_str())
            .await
            .map_err(pg("revoke access to a database"))?;
        Ok(())
    }

    fn detail(&self, t: &Target, isolation: Isolation) -> Value {
        json!({
            "engine": "postgres",
            "isolation": isolation,
            "host": self.host,
            "port": self.port,
            "database": t.database,
            "schema": t.schema,
            "user": t.role,
        })
    }

    /// Tables to export: `(schema, name)`, the partitions' rows read through their parent.
    async fn tables(conn: &mut PgConnection, schema: Option<&str>) -> Result<Vec<(String, String, u32)>> {
        let rows = sqlx::query(
            "SELECT n.nspname, c.relname, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE (c.relkind = 'p' OR (c.relkind = 'r' AND NOT c.relispartition)) \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%' \
               AND ($1::text IS NULL OR n.nspname = $1) \
             ORDER BY 1, 2",
        )
        .bind(schema)
        .fetch_all(&mut *conn)
        .await
        .map_err(pg("list tables"))?;
        rows.iter()
            .map(|r| {
                let oid: sqlx::postgres::types::Oid = r.try_get(2).map_err(pg("list tables"))?;
                Ok((r.try_get(0).map_err(pg("list tables"))?, r.try_get(1).map_err(pg("list tables"))?, oid.0))
            })
            .collect()
    }

    async fn export_to(
        &self,
        conn: &mut PgConnection,
        tenant_id: &str,
        isolation: Isolation,
        t: &Target,
        out: &mut tokio::io::BufWriter<tokio::fs::File>,
    ) -> Result<()> {
        let write = |e: std::io::Error| Error::Unavailable(format!("failed to write the export: {e}"));
        let header = json!({"format": EXPORT_FORMAT, "engine": "postgres", "tenant_id": tenant_id,
            "isolation": isolation, "database": t.database, "schema": t.schema,
            "exported_at": Timestamp::now().to_rfc3339()});
        out.write_all(format!("{header}\n").as_bytes()).await.map_err(write)?;
        let tables = Self::tables(conn, t.schema.as_deref()).await?;
        let mut rows = 0u64;
        for (schema, name, oid) in &tables {
            let table = format!("{schema}.{name}");
            let columns: Vec<(String, String)> = sqlx::query_as(
                "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
                 WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            )
            .bind(sqlx::postgres::types::Oid(*oid))
            .fetch_all(&mut *conn)
            .await
            .map_err(pg("read columns"))?;
            let columns: Vec<Value> = columns.into_iter().map(|(n, t)| json!({"name": n, "type": t})).collect();
            out.write_all(format!("{}\n", json!({"table": table, "columns": columns})).as_bytes())
                .await
                .map_err(write)?;
            let prefix = format!("{{\"table\":{},\"row\":", json!(table));
            let sql = format!("SELECT row_to_json(t)::text FROM {}.{} t", q(schema), q(name));
            let mut stream = sqlx::query_scalar::<_, String>(&sql).fetch(&mut *conn);
            while let Some(row) = stream.try_next().await.map_err(pg("read rows"))? {
                out.write_all(prefix.as_bytes()).await.map_err(write)?;
                out.write_all(row.as_bytes()).await.map_err(write)?;
                out.write_all(b"}\n").await.map_err(write)?;
                rows += 1;
            }
        }
        let end = json!({"end": true, "tables": tables.len(), "rows": rows});
        out.write_all(format!("{end}\n").as_bytes()).await.map_err(write)?;
        out.flush().await.map_err(write)?;
        out.get_ref().sync_all().await.map_err(write)?;
        Ok(())
    }
}

#[async_trait]
impl DatabaseProvisioner for PostgresDataPlane {
    fn provisions(&self, _isolation: Isolation) -> bool {
        true
    }

    fn uses_credentials(&self) -> bool {
        true
    }

    fn export_extension(&self) -> &'static str {
        "ndjson"
    }

    async fn database_create(&self, tenant_id: &str, isolation: Isolation, password: Option<&str>) -> Result<Value> {
        let verifier = Verifier::of_optional(password).await?;
        self.serialized(self.create(tenant_id, isolation, verifier.as_ref())).await
    }

    async fn database_observe(&self, tenant_id: &str, isolation: Isolation) -> Result<ObservedDatabase> {
        self.observe(tenant_id, isolation).await
    }

    async fn database_delete(&self, tenant_id: &str, isolation: Isolation) -> Result<()> {
        self.serialized(self.delete(tenant_id, isolation)).await
    }

    async fn database_export(&self, tenant_id: &str, isolation: Isolation, dest: &Path) -> Result<bool> {
        self.export(tenant_id, isolation, dest).await
    }

    /// The database's name (silo) or the schema's (pool).
    fn database_key(&self, tenant_id: &str, isolation: Isolation) -> Result<String> {
        let t = self.target(tenant_id, isolation)?;
        Ok(t.schema.unwrap_or(t.database))
    }

    fn login_key(&self, tenant_id: &str, isolation: Isolation) -> Result<Option<String>> {
        Ok(Some(self.target(tenant_id, isolation)?.role))
    }

    fn login_target(&self, tenant_id: &str, isolation: Isolation) -> Result<Option<LoginTarget>> {
        let t = self.target(tenant_id, isolation)?;
        Ok(Some(LoginTarget {
            host: self.host.clone(),
            port: self.port,
            database: t.database,
            schema: t.schema,
            user: t.role,
            alternate: t.alternate,
        }))
    }

    async fn login_set_password(
        &self,
        tenant_id: &str,
        isolation: Isolation,
        user: &str,
        password: &str,
    ) -> Result<()> {
        let t = self.target(tenant_id, isolation)?;
        if user == t.role {
            let verifier = Verifier::of(password).await?;
            return self.serialized(self.set_password(&t.role, &verifier)).await;
        }
        if user == t.alternate {
            let verifier = Verifier::of(password).await?;
            return self.serialized(self.ensure_alternate(&t, &verifier)).await;
        }
        Err(Error::invalid(format!(
            "{user:?} is neither the login of tenant {tenant_id:?}'s database nor its alternate"
        )))
    }

    async fn login_test(&self, tenant_id: &str, isolation: Isolation, user: &str, password: &str) -> Result<()> {
        let t = self.target(tenant_id, isolation)?;
        if user != t.role && user != t.alternate {
            return Err(Error::invalid(format!(
                "{user:?} is neither the login of tenant {tenant_id:?}'s database nor its alternate"
            )));
        }
        let options = self.options.clone().database(&t.database).username(user).password(password);
        let refused =
            |e: sqlx::Error| Error::Unavailable(format!("failed to log in to database {} as {user}: {e}", t.database));
        let mut conn = PgConnection::connect_with(&options).await.map_err(refused)?;
        let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await.map_err(refused)?;
        let _ = conn.close().await;
        if one != 1 {
            return Err(Error::Unavailable(format!("SELECT 1 as {user} answered {one}")));
        }
        Ok(())
    }

    async fn login_exists(&self, tenant_id: &str, isolation: Isolation) -> Result<bool> {
        let role = self.target(tenant_id, isolation)?.role;
        let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_roles WHERE rolname = $1")
            .bind(&role)
            .fetch_optional(&self.admin)
            .await
            .map_err(pg("observe a login"))?;
        Ok(found.is_some())
    }

    async fn lone_logins(&self, isolation: Isolation) -> Result<Vec<ListedDatabase>> {
        let names = match isolation {
            // A silo role has the name of its database.
            Isolation::Silo => {
                let mut conn = self.admin.acquire().await.map_err(pg("connect"))?;
                let owned = "EXISTS (SELECT 1 FROM pg_database d WHERE d.datname = r.rolname)";
                self.roles_without(&mut conn, &self.silo_prefix(), owned).await?
            }
            // A pool role owns its schema in the pool database.
            Isolation::Pool => {
                let pool = self.pool_database();
                let prefix = format!("{}_p_", self.prefix);
                let owned = "EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspowner = r.oid)";
                if self.database_exists(&pool).await? {
                    let mut conn = self.connect(&pool).await?;
                    let names = self.roles_without(&mut conn, &prefix, owned).await;
                    let _ = conn.close().await;
                    names?
                } else {
                    let mut conn = self.admin.acquire().await.map_err(pg("connect"))?;
                    self.roles_without(&mut conn, &prefix, "false").await?
                }
            }
        };
        let location = format!("postgres://{}:{}", self.host, self.port);
        Ok(names.into_iter().map(|n| ListedDatabase { location: format!("{location} (role {n})"), key: n }).collect())
    }

    async fn database_list(&self, isolation: Isolation) -> Result<Vec<ListedDatabase>> {
        let names: Vec<String> = match isolation {
            Isolation::Silo => {
                // `left` rather than LIKE: `_` is a LIKE wildcard.
                let names: Vec<String> = sqlx::query_scalar(
                    "SELECT datname::text FROM pg_database WHERE left(datname::text, char_length($1)) = $1 ORDER BY 1",
                )
                .bind(self.silo_prefix())
                .fetch_all(&self.admin)
                .await
                .map_err(pg("list databases"))?;
                return Ok(names
                    .into_iter()
                    .map(|n| ListedDatabase { location: self.location_of(&n, None), key: n })
                    .collect());
            }
            Isolation::Pool => {
                let pool = self.pool_database();
                if !self.database_exists(&pool).await? {
                    return Ok(vec![]);
                }
                let mut conn = self.connect(&pool).await?;
                let names = sqlx::query_scalar(
                    "SELECT nspname::text FROM pg_namespace WHERE left(nspname::text, 2) = 't_' ORDER BY 1",
                )
                .fetch_all(&mut conn)
                .await
                .map_err(pg("list schemas"));
                let _ = conn.close().await;
                names?
            }
        };
        let pool = self.pool_database();
        Ok(names.into_iter().map(|n| ListedDatabase { location: self.location_of(&pool, Some(&n)), key: n }).collect())
    }
}

impl PostgresDataPlane {
    /// Login roles starting with `prefix` for which `has_own` (a condition on the role
    /// `r`) does not hold, read on `conn`.
    async fn roles_without(&self, conn: &mut PgConnection, prefix: &str, has_own: &str) -> Result<Vec<String>> {
        sqlx::query_scalar(&format!(
            "SELECT rolname::text FROM pg_roles r WHERE r.rolcanlogin \
             AND left(rolname::text, char_length($1)) = $1 AND NOT ({has_own}) ORDER BY 1"
        ))
        .bind(prefix)
        .fetch_all(conn)
        .await
        .map_err(pg("list roles"))
    }

    /// Sets an existing role's password (as a SCRAM verifier).
    async fn set_password(&self, role: &str, password: &Verifier) -> Result<()> {
        if !self.role_exists(role).await? {
            return Err(Error::not_found("database login", role));
        }
        let sql = format!("ALTER ROLE {} WITH LOGIN{}", q(role), Verifier::clause(Some(password)));
        self.admin.execute(sql.as_str()).await.map_err(pg("set a password"))?;
        Ok(())
    }

    /// Creates the tenant's alternate login unless it exists, with `password`: a member
    /// of the tenant's role (so it has every privilege the role has, ownership included)
    /// whose sessions start as that role (`ALTER ROLE ... SET role`), so whatever either
    /// login creates is owned by the tenant's role and usable by both. On the pool it
    /// also gets the role's `search_path` in the pool database.
    async fn ensure_alternate(&self, t: &Target, password: &Verifier) -> Result<()> {
        if !self.role_exists(&t.role).await? {
            return Err(Error::not_found("database login", t.role.as_str()));
        }
        let password = Verifier::clause(Some(password));
        let (alt, role) = (q(&t.alternate), q(&t.role));
        if !self.role_exists(&t.alternate).await? {
            let create = format!("CREATE ROLE {alt} LOGIN{password} IN ROLE {role}");
            match self.admin.execute(create.as_str()).await {
                Ok(_) => {}
                Err(e) if has_code(&e, &["42710", "23505"]) => {}
                Err(e) => return Err(pg("create a role")(e)),
            }
        }
        let mut statements = vec![
            format!("GRANT {role} TO {alt}"),
            format!("ALTER ROLE {alt} WITH LOGIN{password}"),
            format!("ALTER ROLE {alt} SET role = {}", literal(&t.role)),
        ];
        if let Some(schema) = &t.schema {
            statements.push(format!("ALTER ROLE {alt} IN DATABASE {} SET search_path = {}", q(&t.database), q(schema)));
        }
        for sql in statements {
            self.admin.execute(sql.as_str()).await.map_err(pg("set up the alternate login"))?;
        }
        Ok(())
    }

    /// Runs `ddl` holding a cluster-wide advisory lock of this data plane: PostgreSQL
    /// fails concurrent changes of one catalog row (GRANTs on the pool database, roles)
    /// with "tuple concurrently updated", so replicas provisioning at once take turns.
    /// The in-process mutex comes first, so that a waiter never holds one of the two
    /// pool connections the lock holder's statements need.
    async fn serialized<T>(&self, ddl: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let _turn = self.ddl.lock().await;
        // Guarded before the lock is asked for: a cancelled wait may still be granted.
        let mut session = LockSession(Some(self.admin.acquire().await.map_err(pg("connect"))?));
        let conn = session.0.as_mut().expect("the session is held until unlocked");
        let key = advisory_key(&self.prefix);
        sqlx::query("SELECT pg_advisory_lock($1)").bind(key).execute(&mut **conn).await.map_err(pg("lock"))?;
        let result = ddl.await;
        let conn = session.0.as_mut().expect("the session is held until unlocked");
        if sqlx::query("SELECT pg_advisory_unlock($1)").bind(key).execute(&mut **conn).await.is_ok() {
            // Unlocked: back to the pool. Otherwise the guard closes it.
            session.0.take();
        }
        result
    }

    async fn create(&self, tenant_id: &str, isolation: Isolation, password: Option<&Verifier>) -> Result<Value> {
        let t = self.target(tenant_id, isolation)?;
        match &t.schema {
            None => {
                self.ensure_role(&t.role, password).await?;
                self.ensure_database(&t.database, Some(&t.role)).await?;
            }
            Some(schema) => {
                let created = self.create_pool_tenant(&t, schema, password).await;
                if created.is_err() {
                    // Whatever went wrong may have been the pool itself (dropped by hand,
                    // say): the next attempt sets it up again.
                    self.pool_ready.store(false, std::sync::atomic::Ordering::Release);
                }
                created?;
            }
        }
        Ok(self.detail(&t, isolation))
    }

    /// Sets up, unless this process did already: the pool database (`CONNECT` revoked
    /// from `PUBLIC`), its members' role holding `CONNECT, TEMPORARY` on it, and its
    /// `public` schema closed to `PUBLIC`.
    async fn ensure_pool(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        if self.pool_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let (database, members) = (self.pool_database(), self.pool_members_role());
        self.ensure_database(&database, None).await?;
        if !self.role_exists(&members).await? {
            match self.admin.execute(format!("CREATE ROLE {} NOLOGIN", q(&members)).as_str()).await {
                Ok(_) => {}
                Err(e) if has_code(&e, &["42710", "23505"]) => {}
                Err(e) => return Err(pg("create the pool members' role")(e)),
            }
        }
        let grant = format!("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}", q(&database), q(&members));
        self.admin.execute(grant.as_str()).await.map_err(pg("grant access to the pool"))?;
        self.pool.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC").await.map_err(pg("lock the public schema"))?;
        self.pool_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// A pool tenant's role (a member of the pool's members), its schema and its
    /// `search_path` in the pool database: one transaction, repeatable.
    async fn create_pool_tenant(&self, t: &Target, schema: &str, password: Option<&Verifier>) -> Result<()> {
        self.ensure_pool().await?;
        let (role, members) = (q(&t.role), q(&self.pool_members_role()));
        let password = Verifier::clause(password);
        let login = if self.role_exists(&t.role).await? {
            format!("ALTER ROLE {role} WITH LOGIN{password}")
        } else {
            format!("CREATE ROLE {role} LOGIN{password}")
        };
        let statements = [
            login,
            format!("GRANT {members} TO {role}"),
            format!("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {role}", q(schema)),
            format!("ALTER SCHEMA {} OWNER TO {role}", q(schema)),
            format!("ALTER ROLE {role} IN DATABASE {} SET search_path = {}", q(&t.database), q(schema)),
        ];
        let mut tx = self.pool.begin().await.map_err(pg("connect to the pool"))?;
        for sql in statements {
            (&mut *tx).execute(sql.as_str()).await.map_err(pg("create a pool tenant's schema"))?;
        }
        tx.commit().await.map_err(pg("create a pool tenant's schema"))?;
        Ok(())
    }

    async fn observe(&self, tenant_id: &str, isolation: Isolation) -> Result<ObservedDatabase> {
        let t = self.target(tenant_id, isolation)?;
        let location = self.location(&t);
        let missing = || ObservedDatabase { exists: false, size_bytes: 0, location: location.clone() };
        let Some(schema) = &t.schema else {
            let size: Option<i64> =
                sqlx::query_scalar("SELECT pg_database_size(datname) FROM pg_database WHERE datname = $1")
                    .bind(&t.database)
                    .fetch_optional(&self.admin)
                    .await
                    .map_err(pg("observe a database"))?;
            return Ok(match size {
                Some(s) => ObservedDatabase { exists: true, size_bytes: s.max(0) as u64, location },
                None => missing(),
            });
        };
        if !self.database_exists(&t.database).await? {
            return Ok(missing());
        }
        let mut conn = self.connect(&t.database).await?;
        let (found, size): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = $1), \
                    COALESCE((SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c \
                              JOIN pg_namespace n ON n.oid = c.relnamespace \
                              WHERE n.nspname = $1 AND c.relkind IN ('r', 'm', 'p')), 0)::bigint",
        )
        .bind(schema)
        .fetch_one(&mut conn)
        .await
        .map_err(pg("observe a schema"))?;
        let _ = conn.close().await;
        Ok(if found > 0 {
            ObservedDatabase { exists: true, size_bytes: size.max(0) as u64, location }
        } else {
            missing()
        })
    }

    async fn delete(&self, tenant_id: &str, isolation: Isolation) -> Result<()> {
        let t = self.target(tenant_id, isolation)?;
        match &t.schema {
            None => {
                let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", q(&t.database));
                // DROP DATABASE waits for a checkpoint: seconds on a busy server.
                self.admin.execute(drop.as_str()).await.map_err(pg("drop a database"))?;
            }
            Some(schema) => {
                let role = self.role_exists(&t.role).await?;
                if self.database_exists(&t.database).await? {
                    let mut conn = self.connect(&t.database).await?;
                    let drop = format!("DROP SCHEMA IF EXISTS {} CASCADE", q(schema));
                    conn.execute(drop.as_str()).await.map_err(pg("drop a schema"))?;
                    if role {
                        // Whatever else the role owns or was granted in the pool.
                        let owned = format!("DROP OWNED BY {}", q(&t.role));
                        conn.execute(owned.as_str()).await.map_err(pg("drop a role's objects"))?;
                    }
                    if self.role_exists(&t.alternate).await? {
                        let owned = format!("DROP OWNED BY {}", q(&t.alternate));
                        conn.execute(owned.as_str()).await.map_err(pg("drop a role's objects"))?;
                    }
                    // `DROP OWNED BY` also revoked the role's own grant on the pool
                    // database (roles created before the members' role had one).
                    let _ = conn.close().await;
                }
            }
        }
        for role in [&t.alternate, &t.role] {
            let drop = format!("DROP ROLE IF EXISTS {}", q(role));
            self.admin.execute(drop.as_str()).await.map_err(pg("drop a role"))?;
        }
        Ok(())
    }

    async fn export(&self, tenant_id: &str, isolation: Isolation, dest: &Path) -> Result<bool> {
        let t = self.target(tenant_id, isolation)?;
        if !self.database_observe(tenant_id, isolation).await?.exists {
            return Ok(false);
        }
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .await
            .map_err(|e| Error::Unavailable(format!("failed to create {}: {e}", dest.display())))?;
        let mut out = tokio::io::BufWriter::new(file);
        let mut conn = self.connect(&t.database).await?;
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(pg("begin the export"))?;
        let res = self.export_to(&mut conn, tenant_id, isolation, &t, &mut out).await;
        let _ = conn.execute(if res.is_ok() { "COMMIT" } else { "ROLLBACK" }).await;
        let _ = conn.close().await;
        res.map(|()| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_verifier_matches_a_reference() {
        // Computed with Python's hashlib.pbkdf2_hmac and hmac (RFC 7677's construction).
        let salt: Vec<u8> = (0..16).collect();
        assert_eq!(
            scram_verifier_with("correct horse", &salt, 4096),
            "SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==$yERwYmHlx0VrpoYfOn54hMTjBUKWnmK42IDjnWgQWkk=:\
             RQZr9F8QCYmmp35tAVzp0VB/kDwY283N+s24jDDliG4="
        );
        assert_ne!(scram_verifier("x"), scram_verifier("x"), "a fresh salt each time");
    }

    #[tokio::test]
    async fn names_are_stable_quoted_and_bounded() {
        let p = PostgresDataPlane::new("postgres://u:p@localhost:5432/postgres", "tenancy").unwrap();
        let silo = p.target("acme-corp", Isolation::Silo).unwrap();
        assert_eq!((silo.database.as_str(), silo.role.as_str()), ("tenancy_t_acme_corp", "tenancy_t_acme_corp"));
        let pool = p.target("acme-corp", Isolation::Pool).unwrap();
        assert_eq!(
            (pool.database.as_str(), pool.schema.as_deref(), pool.role.as_str()),
            ("tenancy_pool", Some("t_acme_corp"), "tenancy_p_acme_corp")
        );
        // Alternates: no tenant's role, whatever its id (`acme-clone` is a tenant id).
        assert_eq!(
            (silo.alternate.as_str(), pool.alternate.as_str()),
            ("tenancy_tc_acme_corp", "tenancy_pc_acme_corp")
        );
        let other = p.target("acme-corp-clone", Isolation::Silo).unwrap();
        assert_ne!(other.role, silo.alternate);
        assert!(!silo.alternate.starts_with(&p.silo_prefix()), "not listed as a lone silo login");
        let long = "a".repeat(63);
        let t = p.target(&long, Isolation::Silo).unwrap();
        assert_eq!(t.database.len(), 63);
        assert_ne!(t.database, p.target(&"a".repeat(62), Isolation::Silo).unwrap().database);
        assert!(p.target("../x", Isolation::Silo).is_err());
        assert!(PostgresDataPlane::new("postgres://localhost/x", "Bad-Prefix").is_err());
        assert_eq!(q("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
