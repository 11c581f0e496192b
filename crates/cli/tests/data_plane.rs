//! Tenants' databases end to end: SQLite files on the embedded default and the
//! PostgreSQL data plane, moves between pool and silo plans with their exports in the
//! blob store, the credentials endpoint, the password kept out of every record, and the
//! reconciler's extra databases.

mod support;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, Executor};
use support::{Backend, TestServer};
use tenancy_app::engine::{failure, TaskCall, TaskHandler, TaskResult};

/// Polls an execution until it stopped; returns it (within 120 s: moves drop databases,
/// which wait for checkpoints of the busy shared test server, see `wait_status`).
async fn wait_execution(s: &TestServer, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let res = s.get(&format!("/v1/executions/{id}")).await;
        if res.body["status"] != "RUNNING" {
            return res.body;
        }
        assert!(Instant::now() < deadline, "execution {id} never finished: {}", res.body);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Changes the plan and waits for the workflow; returns its execution id.
async fn change_plan(s: &TestServer, tenant: &str, plan: &str, want: &str) -> String {
    let res = s.call(Method::POST, &format!("/v1/tenants/{tenant}/plan"), Some(json!({"plan": plan}))).await;
    assert!(res.status.is_success(), "{}", res.body);
    let id = res.body["execution_id"].as_str().unwrap().to_owned();
    let exe = wait_execution(s, &id).await;
    assert_eq!(exe["status"], want, "{exe}");
    id
}

async fn database_resource(s: &TestServer, tenant: &str) -> Value {
    let res = s.get(&format!("/v1/tenants/{tenant}/resources")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res.body["items"].as_array().unwrap().iter().find(|r| r["kind"] == "database").cloned().unwrap_or(Value::Null)
}

fn export_path(s: &TestServer, tenant: &str, name: &str) -> std::path::PathBuf {
    s.dir.path().join("blobs").join("tenants").join(tenant).join("exports").join(name)
}

/// Fails every call: injected into a step to see the compensation.
struct Fail;

#[async_trait]
impl TaskHandler for Fail {
    async fn call(&self, _call: TaskCall<'_>) -> TaskResult {
        Err(failure("Test.Injected", "injected failure"))
    }
}

/// On the embedded default a pool tenant has no database; moving it to a silo plan
/// creates its SQLite file, moving it back exports the file to the blob store and
/// deletes it. A failing plan change removes the new database and keeps the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_silo_pool_moves_on_the_embedded_default() {
    let s = TestServer::start(Backend::Sqlite).await;
    s.put_plan("shared", "pool").await;
    s.put_plan("dedicated", "silo").await;
    s.put_plan("dedicated-plus", "silo").await;
    s.create_tenant("acme", "shared").await;
    s.wait_status("acme", "active").await;
    let file = s.dir.path().join("tenants").join("acme").join("data.db");
    assert!(!file.exists(), "pool tenants have no database of their own");
    assert_eq!(database_resource(&s, "acme").await["detail"]["isolation"], "pool");

    change_plan(&s, "acme", "dedicated", "SUCCEEDED").await;
    assert!(file.exists(), "moved to silo: {} missing", file.display());
    let db = database_resource(&s, "acme").await;
    assert_eq!((db["detail"]["isolation"].as_str(), db["observed"]["exists"].as_bool()), (Some("silo"), Some(true)));
    let url = format!("sqlite://{}", file.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    // 12 MiB of attachments as well: past the 10 MiB of one `put`, the export is a
    // multipart upload.
    conn.execute(
        "CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('keep me'); \
         CREATE TABLE attachments (data BLOB); INSERT INTO attachments VALUES (randomblob(12582912))",
    )
    .await
    .unwrap();
    conn.close().await.unwrap();

    // Silo to silo: nothing moves.
    change_plan(&s, "acme", "dedicated-plus", "SUCCEEDED").await;
    assert!(file.exists());

    // A failure after the new database exists: it goes, the old one stays.
    let app = s.server.as_ref().unwrap().app.clone();
    let apply = app.engine().handlers().get("tenancy:tenant.apply_plan").unwrap();
    app.engine().handlers().register("tenancy:tenant.apply_plan", Fail);
    change_plan(&s, "acme", "shared", "FAILED").await;
    let t = s.get("/v1/tenants/acme").await.body;
    assert_eq!((t["plan"].as_str(), t["status"].as_str()), (Some("dedicated-plus"), Some("active")), "{t}");
    assert!(file.exists(), "the old database is kept");
    assert_eq!(database_resource(&s, "acme").await["detail"]["isolation"], "silo");
    app.engine().handlers().register_arc("tenancy:tenant.apply_plan", apply);

    // Back to the pool: the file is exported, then deleted.
    let exe = change_plan(&s, "acme", "shared", "SUCCEEDED").await;
    assert!(!file.exists(), "moved to pool: the silo database is deleted");
    assert_eq!(database_resource(&s, "acme").await["detail"]["isolation"], "pool");
    let export = export_path(&s, "acme", &format!("{exe}-silo.db"));
    assert!(export.exists(), "{} missing", export.display());
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", export.display())).await.unwrap();
    let body: String = sqlx::query_scalar("SELECT body FROM notes").fetch_one(&mut conn).await.unwrap();
    assert_eq!(body, "keep me", "the data is in the export");
    let big: i64 = sqlx::query_scalar("SELECT length(data) FROM attachments").fetch_one(&mut conn).await.unwrap();
    assert_eq!(big, 12582912, "so is the large part");
    let size = std::fs::metadata(&export).unwrap().len();
    assert!(size > 12582912, "the whole file was uploaded: {size} bytes");
    let audit = s.get("/v1/audit?limit=1000").await.body.to_string();
    assert!(audit.contains("tenant.export_database"), "the export is audited");
    // No login on the embedded default.
    let creds = s.get("/v1/tenants/acme/database-credentials").await;
    assert_eq!((creds.status, creds.code()), (StatusCode::CONFLICT, "no-database-credentials"), "{}", creds.body);
    s.stop().await;
}

/// A silo tenant on the embedded default has a database (a SQLite file) but no login:
/// `database-credentials` says so and why, as a problem, instead of a bare 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_silo_tenant_credentials_say_why_there_are_none() {
    let s = TestServer::start(Backend::Sqlite).await;
    s.put_plan("dedicated", "silo").await;
    s.create_tenant("acme", "dedicated").await;
    s.wait_status("acme", "active").await;
    assert!(s.dir.path().join("tenants").join("acme").join("data.db").exists());
    let creds = s.get("/v1/tenants/acme/database-credentials").await;
    assert_eq!((creds.status, creds.code()), (StatusCode::CONFLICT, "no-database-credentials"), "{}", creds.body);
    assert_eq!(creds.header("content-type"), Some("application/problem+json"));
    let detail = creds.body["detail"].as_str().unwrap();
    assert!(detail.contains("SQLite") && detail.contains("--data-plane-url"), "{detail}");
    assert!(!detail.contains(&s.dir.path().display().to_string()), "no server paths in a problem: {detail}");
    // An unknown tenant is still 404.
    assert_eq!(s.get("/v1/tenants/ghost/database-credentials").await.status, StatusCode::NOT_FOUND);
    s.stop().await;
}

/// Every text an API caller can read about the tenant: the record, its resources,
/// events, audit log and workflow histories.
async fn everything_visible(s: &TestServer, tenant: &str) -> String {
    let mut all = vec![
        s.get(&format!("/v1/tenants/{tenant}")).await.body,
        s.get(&format!("/v1/tenants/{tenant}/resources")).await.body,
        s.get(&format!("/v1/events?tenant_id={tenant}&limit=1000")).await.body,
        s.get("/v1/audit?limit=1000").await.body,
    ];
    let exes = s.get(&format!("/v1/executions?tenant_id={tenant}&limit=100")).await.body;
    for e in exes["items"].as_array().unwrap() {
        let id = e["id"].as_str().unwrap();
        all.push(s.get(&format!("/v1/executions/{id}")).await.body);
        all.push(s.get(&format!("/v1/executions/{id}/history?limit=1000")).await.body);
    }
    Value::Array(all).to_string()
}

async fn admin_conn(s: &TestServer) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(s.database_url.as_deref().unwrap()).await.unwrap()
}

async fn exists(conn: &mut sqlx::PgConnection, sql: &str, name: &str) -> bool {
    let found: Option<i32> = sqlx::query_scalar(sql).bind(name).fetch_optional(conn).await.unwrap();
    found.is_some()
}

/// On PostgreSQL (the data plane defaults to the control plane's server) a silo tenant
/// gets a database its service connects to with the credentials; a move to a pool plan
/// exports it and leaves a schema in the pool database; offboarding removes it all.
/// The password shows only in the credentials response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_silo_tenant_gets_a_real_database() {
    let s = TestServer::start(Backend::Postgres).await;
    s.put_plan("vault", "silo").await;
    s.put_plan("shared", "pool").await;
    s.create_tenant("bank-1", "vault").await;
    s.wait_status("bank-1", "active").await;

    let db = database_resource(&s, "bank-1").await;
    let d = &db["detail"];
    assert_eq!((d["engine"].as_str(), d["isolation"].as_str()), (Some("postgres"), Some("silo")), "{db}");
    assert_eq!(db["observed"]["exists"], true, "{db}");
    let silo_db = d["database"].as_str().unwrap().to_owned();
    assert!(silo_db.ends_with("_t_bank_1"), "{silo_db}");

    let own = s.key("tenant", Some("bank-1")).await;
    let res = s.call_with(Some(&own), Method::GET, "/v1/tenants/bank-1/database-credentials", None, &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.header("cache-control"), Some("no-store"));
    let creds = res.body;
    let password = creds["password"].as_str().unwrap().to_owned();
    assert!(password.len() >= 32, "{creds}");
    assert_eq!((creds["database"].as_str(), creds["user"].as_str()), (Some(&*silo_db), d["user"].as_str()));
    let mut conn = sqlx::PgConnection::connect(creds["url"].as_str().unwrap()).await.unwrap();
    let user: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(&mut conn).await.unwrap();
    assert_eq!(Some(user.as_str()), d["user"].as_str());
    conn.execute("CREATE TABLE ledger (id int, memo text); INSERT INTO ledger VALUES (1, 'opening balance')")
        .await
        .unwrap();
    conn.close().await.unwrap();
    assert!(everything_visible(&s, "bank-1").await.contains("tenant.database_credentials.read"), "audited read");

    // To the pool: the silo database is exported and dropped, a schema takes its place.
    let exe = change_plan(&s, "bank-1", "shared", "SUCCEEDED").await;
    let mut admin = admin_conn(&s).await;
    assert!(!exists(&mut admin, "SELECT 1 FROM pg_database WHERE datname = $1", &silo_db).await, "dropped");
    assert!(!exists(&mut admin, "SELECT 1 FROM pg_roles WHERE rolname = $1", &silo_db).await, "role dropped");
    let export = std::fs::read_to_string(export_path(&s, "bank-1", &format!("{exe}-silo.ndjson"))).unwrap();
    assert!(export.contains(r#"{"table":"public.ledger","row":{"id":1,"memo":"opening balance"}}"#), "{export}");
    let db = database_resource(&s, "bank-1").await;
    assert_eq!((db["detail"]["isolation"].as_str(), db["observed"]["exists"].as_bool()), (Some("pool"), Some(true)));
    let pool = s.get("/v1/tenants/bank-1/database-credentials").await.body;
    assert_eq!(pool["schema"], "t_bank_1", "{pool}");
    assert_ne!(pool["password"], creds["password"], "a new login for the new database");
    let mut conn = sqlx::PgConnection::connect(pool["url"].as_str().unwrap()).await.unwrap();
    conn.execute("CREATE TABLE ledger (id int)").await.unwrap();
    let schema: String =
        sqlx::query_scalar("SELECT table_schema::text FROM information_schema.tables WHERE table_name = 'ledger'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(schema, "t_bank_1", "the role's search_path is its schema");
    conn.close().await.unwrap();
    let pool_db = pool["database"].as_str().unwrap().to_owned();
    let pool_user = pool["user"].as_str().unwrap().to_owned();

    // Offboarding exports the schema and removes it and its role.
    let res = s.call(Method::DELETE, "/v1/tenants/bank-1", None).await;
    assert!(res.status.is_success(), "{}", res.body);
    let exe = res.body["execution_id"].as_str().unwrap().to_owned();
    assert_eq!(wait_execution(&s, &exe).await["status"], "SUCCEEDED");
    let offboard = s.dir.path().join("blobs").join(tenancy_app::tenants::offboarding::export_prefix("bank-1", &exe));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(offboard.join("manifest.json")).expect("offboarding exports first"))
            .unwrap();
    let file = manifest["database"]["file"].as_str().expect("the export holds the schema");
    let dump = std::fs::read_to_string(offboard.join(file)).unwrap();
    assert!(dump.lines().next().unwrap().contains(r#""isolation":"pool""#), "{dump}");
    assert!(!exists(&mut admin, "SELECT 1 FROM pg_roles WHERE rolname = $1", &pool_user).await, "role dropped");
    let mut pool_conn =
        sqlx::PgConnection::connect(&pool["url"].as_str().unwrap().replace(&pool_user, "postgres")).await.unwrap();
    assert!(!exists(&mut pool_conn, "SELECT 1 FROM pg_namespace WHERE nspname = $1", "t_bank_1").await);
    let creds_after = s.get("/v1/tenants/bank-1/database-credentials").await;
    assert_eq!(creds_after.status, StatusCode::NOT_FOUND, "{}", creds_after.body);

    let visible = everything_visible(&s, "bank-1").await;
    for secret in [password.as_str(), pool["password"].as_str().unwrap()] {
        assert!(!visible.contains(secret), "a password leaked into an API response");
    }
    pool_conn.close().await.unwrap();
    // The test cluster is shared: leave no pool database behind.
    admin.execute(format!("DROP DATABASE IF EXISTS \"{pool_db}\" WITH (FORCE)").as_str()).await.unwrap();
    s.stop().await;
}

/// Holds a task until released, then runs the real handler.
struct Gate {
    release: std::sync::Arc<tokio::sync::Notify>,
    inner: std::sync::Arc<dyn TaskHandler>,
}

#[async_trait]
impl TaskHandler for Gate {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        self.release.notified().await;
        self.inner.call(call).await
    }
}

async fn reconcile(s: &TestServer) -> Value {
    let res = s.call(Method::POST, "/v1/reconciliation", None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res.body
}

/// The extra databases of a report: `(key, tenant_id, reason)`, by key.
fn extras(report: &Value) -> Vec<(String, Option<String>, String)> {
    let mut found: Vec<_> = report["drift"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["problem"] == "extra" && d["resource"] == "database")
        .map(|d| {
            assert_eq!(d["repaired"].as_bool(), Some(false), "{d}");
            let owner = d["tenant_id"].as_str().map(str::to_owned);
            (d["key"].as_str().unwrap().to_owned(), owner, d["reason"].as_str().unwrap().to_owned())
        })
        .collect();
    found.sort();
    found
}

async fn drift_detected(s: &TestServer) -> Vec<Value> {
    let res = s.get("/v1/events?detail_type=TenantDriftDetected&limit=1000").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res.body["items"].as_array().unwrap().iter().map(|e| e["detail"].clone()).collect()
}

/// Extra databases on the embedded default: a SQLite file no tenant owns, one left by an
/// offboarded tenant and a silo file of a pool tenant are reported, evented once (with
/// an audit entry) and left in place; the old database of a move in flight is not extra.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciler_reports_extra_databases_and_leaves_them() {
    let s = TestServer::start(Backend::Sqlite).await;
    s.put_plan("shared", "pool").await;
    s.put_plan("vault", "silo").await;
    for t in ["acme", "mover", "gone"] {
        s.create_tenant(t, "vault").await;
    }
    for t in ["acme", "mover", "gone"] {
        s.wait_status(t, "active").await;
    }
    let res = s.call(Method::DELETE, "/v1/tenants/gone", None).await;
    assert!(res.status.is_success(), "{}", res.body);
    s.wait_status("gone", "offboarded").await;
    let file = |t: &str| s.dir.path().join("tenants").join(t).join("data.db");
    assert!(!file("gone").exists(), "offboarding deleted it");
    assert_eq!(reconcile(&s).await["drift"], json!([]), "nothing extra yet");

    // A move in flight: the new plan is applied before the old database is deleted (the
    // tenant stays `updating` until it is).
    let app = s.server.as_ref().unwrap().app.clone();
    let finish = app.engine().handlers().get("tenancy:database.finish_move").unwrap();
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let gate = Gate { release: release.clone(), inner: finish.clone() };
    app.engine().handlers().register("tenancy:database.finish_move", gate);
    let res = s.call(Method::POST, "/v1/tenants/mover/plan", Some(json!({"plan": "shared"}))).await;
    assert!(res.status.is_success(), "{}", res.body);
    let exe = res.body["execution_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = s.get("/v1/tenants/mover").await.body;
        if t["plan"] == "shared" && t["status"] == "updating" {
            break;
        }
        assert!(Instant::now() < deadline, "the plan was never applied: {t}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(file("mover").exists(), "the old database waits for FinishMove");
    assert_eq!(reconcile(&s).await["drift"], json!([]), "a running move's old database is not extra");
    release.notify_one();
    assert_eq!(wait_execution(&s, &exe).await["status"], "SUCCEEDED");
    app.engine().handlers().register_arc("tenancy:database.finish_move", finish);
    assert!(!file("mover").exists());

    // Strays: no tenant, an offboarded tenant's leftover, a silo file of a pool tenant.
    for t in ["ghost", "gone", "mover"] {
        std::fs::create_dir_all(file(t).parent().unwrap()).unwrap();
        std::fs::write(file(t), b"someone's data").unwrap();
    }
    let want = vec![
        ("ghost".to_owned(), None, "no tenant".to_owned()),
        ("gone".to_owned(), Some("gone".to_owned()), "tenant offboarded".to_owned()),
        ("mover".to_owned(), Some("mover".to_owned()), "plan is pool".to_owned()),
    ];
    let report = reconcile(&s).await;
    assert_eq!(extras(&report), want, "{report}");
    assert_eq!(report["drift"].as_array().unwrap().len(), 3, "nothing else: {report}");
    let ghost = report["drift"].as_array().unwrap().iter().find(|d| d["key"] == "ghost").unwrap().clone();
    assert_eq!(ghost["location"].as_str(), Some(file("ghost").display().to_string().as_str()));
    assert_eq!(ghost["isolation"], "silo");
    for t in ["ghost", "gone", "mover"] {
        assert_eq!(std::fs::read(file(t)).unwrap(), b"someone's data", "{t}: never deleted");
    }
    let events = drift_detected(&s).await;
    assert_eq!(events.len(), 3, "{events:?}");
    let ghost_event = events.iter().find(|e| e["key"] == "ghost").unwrap();
    assert_eq!((ghost_event["id"].clone(), ghost_event["problem"].clone()), (Value::Null, json!("extra")));
    assert_eq!(ghost_event["location"], ghost["location"]);
    assert!(s.event_types("gone").await.contains(&"TenantDriftDetected".to_owned()), "the tenant's own event");
    let audit = s.get("/v1/audit?limit=1000").await.body;
    let audited = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "tenant.reconcile" && a["detail"]["problem"] == "extra")
        .count();
    assert_eq!(audited, 3, "{audit}");

    // Still there: reported every pass, evented once.
    let again = reconcile(&s).await;
    assert_eq!(extras(&again), want);
    assert_eq!(drift_detected(&s).await.len(), 3, "no second event");
    assert_eq!(extras(&s.get("/v1/reconciliation").await.body), want);

    // Gone, then back: evented again.
    std::fs::remove_dir_all(file("ghost").parent().unwrap()).unwrap();
    assert_eq!(extras(&reconcile(&s).await).len(), 2);
    std::fs::create_dir_all(file("ghost").parent().unwrap()).unwrap();
    std::fs::write(file("ghost"), b"").unwrap();
    assert_eq!(extras(&reconcile(&s).await), want);
    assert_eq!(drift_detected(&s).await.len(), 4);
    s.stop().await;
}

/// On PostgreSQL a database with the data plane's silo prefix that no tenant owns is
/// reported (and kept); the tenants' own databases are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reconciler_reports_a_stray_database() {
    let s = TestServer::start_replica(support::database_url(Backend::Postgres).await).await;
    s.put_plan("vault", "silo").await;
    s.create_tenant("acme", "vault").await;
    s.wait_status("acme", "active").await;
    let acme_db = database_resource(&s, "acme").await["detail"]["database"].as_str().unwrap().to_owned();
    let prefix = acme_db.strip_suffix("_t_acme").unwrap().to_owned();
    let ghost = format!("{prefix}_t_ghost");
    let mut admin = admin_conn(&s).await;
    admin.execute(format!("CREATE DATABASE \"{ghost}\"").as_str()).await.unwrap();

    let report = reconcile(&s).await;
    assert_eq!(extras(&report), vec![(ghost.clone(), None, "no tenant".to_owned())], "{report}");
    assert_eq!(report["drift"].as_array().unwrap().len(), 1, "{report}");
    assert!(report["drift"][0]["location"].as_str().unwrap().ends_with(&format!("/{ghost}")), "{report}");
    assert!(exists(&mut admin, "SELECT 1 FROM pg_database WHERE datname = $1", &ghost).await, "kept");
    assert_eq!(drift_detected(&s).await.len(), 1);
    assert_eq!(extras(&reconcile(&s).await).len(), 1);
    assert_eq!(drift_detected(&s).await.len(), 1, "evented once");
    // Logins left without their database or schema (a partial delete): extra roles,
    // evented once and kept; acme's own login, which has its database, is not.
    let (lone_silo, lone_pool) = (format!("{prefix}_t_lonely"), format!("{prefix}_p_lonely"));
    for role in [&lone_silo, &lone_pool] {
        admin.execute(format!("CREATE ROLE \"{role}\" LOGIN").as_str()).await.unwrap();
    }
    let report = reconcile(&s).await;
    let mut roles: Vec<(String, String, String)> = report["drift"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["resource"] == "role")
        .map(|d| {
            let text = |k: &str| d[k].as_str().unwrap_or_default().to_owned();
            (text("key"), text("isolation"), text("reason"))
        })
        .collect();
    roles.sort();
    let want = vec![
        (lone_pool.clone(), "pool".to_owned(), "no tenant".to_owned()),
        (lone_silo.clone(), "silo".to_owned(), "no tenant".to_owned()),
    ];
    assert_eq!(roles, want, "{report}");
    assert_eq!(extras(&report).len(), 1, "and the stray database: {report}");
    let events = drift_detected(&s).await;
    assert_eq!(events.iter().filter(|e| e["resource"] == "role").count(), 2, "{events:?}");
    reconcile(&s).await;
    assert_eq!(drift_detected(&s).await.len(), 3, "evented once");
    assert!(exists(&mut admin, "SELECT 1 FROM pg_roles WHERE rolname = $1", &lone_silo).await, "kept");

    // Another replica's pass (or a restarted process's) does not event it again.
    let replica = TestServer::start_replica(s.database_url.clone()).await;
    let theirs = reconcile(&replica).await;
    assert_eq!(extras(&theirs).len(), 1);
    assert_eq!(drift_detected(&s).await.len(), 3, "evented once across replicas");
    // Either replica serves the last pass, whichever made it.
    let last = s.get("/v1/reconciliation").await.body;
    assert_eq!((&last["node"], &last["finished_at"]), (&theirs["node"], &theirs["finished_at"]));
    assert_ne!(theirs["node"], report["node"], "made by the other replica");
    replica.stop().await;
    s.stop().await;
    // The test cluster is shared: leave nothing behind.
    for db in [&ghost, &acme_db] {
        admin.execute(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)").as_str()).await.unwrap();
    }
    for role in [&acme_db, &lone_silo, &lone_pool] {
        admin.execute(format!("DROP ROLE IF EXISTS \"{role}\"").as_str()).await.unwrap();
    }
}
