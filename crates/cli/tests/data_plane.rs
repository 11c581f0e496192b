//! Tenants' databases end to end: SQLite files on the embedded default and the
//! PostgreSQL data plane, moves between pool and silo plans with their exports in the
//! blob store, the credentials endpoint, and the password kept out of every record.

mod support;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, Executor};
use support::{Backend, TestServer};
use tenancy_app::engine::handlers::{failure, TaskCall, TaskHandler, TaskResult};

/// Polls an execution until it stopped; returns it.
async fn wait_execution(s: &TestServer, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
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
    conn.execute("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('keep me')").await.unwrap();
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
    let audit = s.get("/v1/audit?limit=1000").await.body.to_string();
    assert!(audit.contains("tenant.export_database"), "the export is audited");
    // No login on the embedded default.
    let creds = s.get("/v1/tenants/acme/database-credentials").await;
    assert_eq!(creds.status, StatusCode::NOT_FOUND, "{}", creds.body);
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
    let offboard = s.dir.path().join("blobs").join(tenancy_app::offboarding::export_prefix("bank-1", &exe));
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
