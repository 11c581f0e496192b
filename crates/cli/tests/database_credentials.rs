//! Silo tenants' PostgreSQL credentials in the secret store (`tenancy.database`) and
//! their rotation on the data plane (`tenancy_app::secrets::postgres`), against a real
//! PostgreSQL that checks passwords.
//!
//! The shared test server trusts every local login, so a wrong password would pass
//! there: each test starts a PostgreSQL cluster of its own with SCRAM authentication
//! (initdb and pg_ctl of the installed PostgreSQL, as `scripts/postgres.sh` finds them)
//! as the data plane, with the control plane on SQLite or on the shared server.

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};
use support::{Backend, TestServer};
use tenancy_app::dataplane::credentials::SECRET_NAME;
use tenancy_app::secrets::postgres::{PostgresCredentials, PostgresRotation};
use tenancy_app::OpContext;
use tenancy_domain::secret::PostgresStrategy;

both_backends!(
    provisioned_credentials_are_a_reserved_tenant_secret,
    single_user_rotation_replaces_the_password,
    alternating_users_keep_a_valid_login_throughout,
    passwords_sealed_before_the_secret_store_move_into_it,
    the_rotate_api_takes_turns_between_the_logins,
);

/// A throwaway PostgreSQL cluster with SCRAM authentication, stopped when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    password: String,
    root: bool,
}

fn pg_bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|b| b.join("initdb").exists()).collect())
        .unwrap_or_default();
    found.sort();
    found.pop().expect("these tests need PostgreSQL's initdb and pg_ctl (apt-get install postgresql)")
}

impl Cluster {
    fn start() -> Cluster {
        let bin = pg_bin_dir();
        let dir = tempfile::tempdir().unwrap();
        let root = rustix::process::getuid().is_root();
        let password = uuid::Uuid::new_v4().simple().to_string();
        std::fs::write(dir.path().join("pw"), &password).unwrap();
        let cluster = Cluster { port: free_port(), dir, bin, password, root };
        if root {
            // initdb refuses to run as root: the cluster is the postgres user's.
            let chown =
                std::process::Command::new("chown").args(["-R", "postgres"]).arg(cluster.dir.path()).status().unwrap();
            assert!(chown.success());
        }
        let data = cluster.dir.path().join("data");
        cluster.run_ok(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=scram-sha-256".as_ref(),
                format!("--pwfile={}", cluster.dir.path().join("pw").display()).as_ref(),
                "-N".as_ref(),
            ],
        );
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100",
            cluster.port,
            cluster.dir.path().display()
        );
        cluster.run_ok(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                cluster.dir.path().join("log").as_os_str(),
                "-w".as_ref(),
                "-o".as_ref(),
                opts.as_ref(),
                "start".as_ref(),
            ],
        );
        cluster
    }

    fn run(&self, tool: &str, args: &[&std::ffi::OsStr]) -> std::process::Output {
        let exe = self.bin.join(tool);
        let mut cmd = if self.root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            std::process::Command::new(exe)
        };
        cmd.args(args).output().unwrap()
    }

    fn run_ok(&self, tool: &str, args: &[&std::ffi::OsStr]) {
        let out = self.run(tool, args);
        assert!(out.status.success(), "{tool}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn url(&self) -> String {
        format!("postgres://postgres:{}@127.0.0.1:{}/postgres", self.password, self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        self.run("pg_ctl", &["-D".as_ref(), data.as_os_str(), "-m".as_ref(), "immediate".as_ref(), "stop".as_ref()]);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A server (control plane on `backend`) whose data plane is `cluster`, with a silo
/// tenant `acme` provisioned.
async fn server(backend: Backend, cluster: &Cluster) -> TestServer {
    let url = cluster.url();
    let s = TestServer::start_configured(support::database_url(backend).await, |o| {
        o.data_plane_url = Some(url.into());
        o.data_plane_prefix = Some("tenancy".into());
    })
    .await;
    s.put_plan("vault", "silo").await;
    s.create_tenant("acme", "vault").await;
    s.wait_status("acme", "active").await;
    s
}

async fn login(host: &str, port: u16, db: &str, user: &str, password: &str) -> Result<(), sqlx::Error> {
    let opts = PgConnectOptions::new()
        .host(host)
        .port(port)
        .database(db)
        .username(user)
        .password(password)
        .disable_statement_logging();
    let mut conn = opts.connect().await?;
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await?;
    assert_eq!(one, 1);
    conn.close().await
}

async fn login_as(c: &PostgresCredentials) -> Result<(), sqlx::Error> {
    login(&c.host, c.port, &c.dbname, &c.username, &c.password).await
}

fn refused(res: Result<(), sqlx::Error>) -> bool {
    match res {
        Err(e) => e.to_string().contains("password authentication failed"),
        Ok(()) => false,
    }
}

async fn admin(cluster: &Cluster, db: &str) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(&cluster.url().replace("/postgres", &format!("/{db}"))).await.unwrap()
}

async fn role_exists(cluster: &Cluster, role: &str) -> bool {
    let mut conn = admin(cluster, "postgres").await;
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_roles WHERE rolname = $1")
        .bind(role)
        .fetch_optional(&mut conn)
        .await
        .unwrap();
    found.is_some()
}

fn app(s: &TestServer) -> Arc<tenancy_app::App> {
    s.server.as_ref().unwrap().app.clone()
}

async fn current(s: &TestServer) -> (i64, PostgresCredentials) {
    let app = app(s);
    app.data_plane().unwrap().credentials_current(&**app.store(), "acme").await.unwrap().expect("acme's credentials")
}

/// What `finish` does: the pending value becomes the current version.
async fn finish(s: &TestServer, expected: i64, pending: &PostgresCredentials) -> i64 {
    let app = app(s);
    let plane = app.data_plane().unwrap();
    plane.credentials_put(&**app.store(), &OpContext::system(), "acme", pending, Some(expected)).await.unwrap()
}

fn rotation(s: &TestServer) -> PostgresRotation {
    app(s).postgres_rotation().unwrap()
}

/// Every text an API caller can read about the tenant but its secrets: the record, its
/// resources, events, audit log and workflow histories.
async fn everything_visible(s: &TestServer) -> String {
    let mut all = vec![
        s.get("/v1/tenants/acme").await.body,
        s.get("/v1/tenants/acme/resources").await.body,
        s.get("/v1/events?tenant_id=acme&limit=1000").await.body,
        s.get("/v1/audit?limit=1000").await.body,
        s.get("/v1/tenants/acme/secrets").await.body,
    ];
    let exes = s.get("/v1/executions?tenant_id=acme&limit=100").await.body;
    for e in exes["items"].as_array().unwrap() {
        let id = e["id"].as_str().unwrap();
        all.push(s.get(&format!("/v1/executions/{id}")).await.body);
        all.push(s.get(&format!("/v1/executions/{id}/history?limit=1000")).await.body);
    }
    Value::Array(all).to_string()
}

/// Provisioning writes the credentials as the tenant secret `tenancy.database`:
/// `database-credentials` answers as before from its current version, the secret is
/// listed (metadata) and readable in Secrets Manager's RDS shape, the API cannot write
/// or delete it, the password shows nowhere else, and offboarding removes it.
async fn provisioned_credentials_are_a_reserved_tenant_secret(backend: Backend) {
    let cluster = Cluster::start();
    let s = server(backend, &cluster).await;

    let res = s.get("/v1/tenants/acme/database-credentials").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let creds = res.body;
    let mut keys: Vec<&str> = creds.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["database", "engine", "host", "isolation", "password", "port", "url", "user"], "{creds}");
    assert_eq!((creds["engine"].as_str(), creds["isolation"].as_str()), (Some("postgres"), Some("silo")));
    assert_eq!((creds["host"].as_str(), creds["port"].as_u64()), (Some("127.0.0.1"), Some(u64::from(cluster.port))));
    assert_eq!((creds["database"].as_str(), creds["user"].as_str()), (Some("tenancy_t_acme"), Some("tenancy_t_acme")));
    let password = creds["password"].as_str().unwrap().to_owned();
    assert!(password.len() == 32 && password.bytes().all(|b| b.is_ascii_alphanumeric()), "{password}");
    let mut conn = sqlx::PgConnection::connect(creds["url"].as_str().unwrap()).await.expect("the URL logs in");
    conn.execute("CREATE TABLE ledger (id int)").await.unwrap();
    conn.close().await.unwrap();
    assert!(refused(login("127.0.0.1", cluster.port, "tenancy_t_acme", "tenancy_t_acme", "wrong").await));

    // Listed with the tenant's secrets, metadata only.
    let list = s.get("/v1/tenants/acme/secrets").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let item = list.body["items"].as_array().unwrap().iter().find(|i| i["name"] == SECRET_NAME).cloned();
    let item = item.unwrap_or_else(|| panic!("tenancy.database is listed: {}", list.body));
    assert_eq!((item["current_version"].as_i64(), item["tenant_id"].as_str()), (Some(1), Some("acme")), "{item}");
    // Readable like any secret (a service key fetches its tenants' credentials).
    let service = s.key("service", None).await;
    let path = format!("/v1/tenants/acme/secrets/{SECRET_NAME}");
    let res = s.call_with(Some(&service), Method::GET, &path, None, &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let value: Value = serde_json::from_str(res.body["value"].as_str().unwrap()).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"engine": "postgres", "host": "127.0.0.1", "port": cluster.port, "dbname": "tenancy_t_acme",
                           "username": "tenancy_t_acme", "password": password})
    );

    // Reserved: no role writes, deletes or restores it (nor any other `tenancy.` name).
    let own = s.key("tenant", Some("acme")).await;
    let body = Some(serde_json::json!({"value": "mine"}));
    for (token, method, p, body) in [
        (None, Method::PUT, path.clone(), body.clone()),
        (Some(own.as_str()), Method::PUT, path.clone(), body.clone()),
        (None, Method::PUT, "/v1/tenants/acme/secrets/tenancy.other".to_owned(), body.clone()),
        (None, Method::PUT, "/v1/secrets/tenancy.database".to_owned(), body.clone()),
        (None, Method::DELETE, format!("{path}?force=true"), None),
        (Some(own.as_str()), Method::DELETE, path.clone(), None),
        (None, Method::POST, format!("{path}/restore"), None),
    ] {
        let res = match token {
            Some(t) => s.call_with(Some(t), method.clone(), &p, body, &[]).await,
            None => s.call(method.clone(), &p, body).await,
        };
        assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "forbidden"), "{method} {p}: {}", res.body);
        assert!(res.body["detail"].as_str().unwrap().contains("reserved"), "{}", res.body);
    }
    assert_eq!(current(&s).await.0, 1, "nothing was written");

    let visible = everything_visible(&s).await;
    assert!(visible.contains("secret.put") && visible.contains("tenant.database_credentials.read"), "audited");
    assert!(!visible.contains(&password), "the password leaked into a record, event, audit entry or history");

    // Offboarding drops the database, the login and the secret.
    let res = s.call(Method::DELETE, "/v1/tenants/acme", None).await;
    assert!(res.status.is_success(), "{}", res.body);
    s.wait_status("acme", "offboarded").await;
    assert!(!role_exists(&cluster, "tenancy_t_acme").await, "the login is dropped");
    assert_eq!(s.get(&path).await.status, StatusCode::NOT_FOUND, "the secret is gone");
    let list = s.get("/v1/tenants/acme/secrets").await.body;
    assert_eq!(list["items"], serde_json::json!([]), "{list}");
    let audit = s.get("/v1/audit?limit=1000").await.body.to_string();
    assert!(audit.contains("secret.delete") && !audit.contains(&password), "audited, without the value");
    s.stop().await;
}

/// single_user: the same login gets a new password; from `set` on the old password
/// is refused and the new one logs in; `finish` makes it what the API returns.
async fn single_user_rotation_replaces_the_password(backend: Backend) {
    let cluster = Cluster::start();
    let s = server(backend, &cluster).await;
    let rotation = rotation(&s);
    let (version, old) = current(&s).await;
    assert_eq!(version, 1);
    let pending = rotation.create("acme", PostgresStrategy::SingleUser, &old).await.unwrap();
    assert_eq!((&pending.username, &pending.dbname, pending.port), (&old.username, &old.dbname, old.port));
    assert_ne!(pending.password, old.password);
    assert!(pending.password.len() == 32 && pending.password.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert!(!format!("{pending:?}").contains(&pending.password), "Debug hides the password");
    login_as(&old).await.expect("the old password works until set");

    rotation.set("acme", PostgresStrategy::SingleUser, &pending).await.unwrap();
    assert!(refused(login_as(&old).await), "the old password is refused after set");
    login_as(&pending).await.expect("the new password logs in");
    rotation.test("acme", &pending).await.expect("test logs in with the pending value");
    let err = rotation.test("acme", &old).await.unwrap_err().to_string();
    assert!(err.contains("tenancy_t_acme") && !err.contains(&old.password), "{err}");
    // Idempotent: set again, same password.
    rotation.set("acme", PostgresStrategy::SingleUser, &pending).await.unwrap();
    login_as(&pending).await.unwrap();

    assert_eq!(finish(&s, version, &pending).await, 2);
    let creds = s.get("/v1/tenants/acme/database-credentials").await.body;
    assert_eq!(creds["password"].as_str(), Some(pending.password.as_str()), "the API reads the current version");
    let previous = s.get(&format!("/v1/tenants/acme/secrets/{SECRET_NAME}?stage=previous")).await.body;
    assert_eq!(previous["version"], 1, "{previous}");
    // A login the tenant does not own is refused before anything is touched.
    let mut foreign = pending.clone();
    foreign.username = "postgres".into();
    assert!(rotation.set("acme", PostgresStrategy::SingleUser, &foreign).await.is_err());
    login(&old.host, old.port, "postgres", "postgres", &cluster.password).await.expect("untouched");
    s.stop().await;
}

/// alternating_users: a client logging in over and over with the credentials it last
/// read never fails while the credentials rotate several times in a row; the logins
/// take turns, the previous version keeps working, a version two rotations old is
/// refused, both logins use the same tables, and offboarding drops both.
async fn alternating_users_keep_a_valid_login_throughout(backend: Backend) {
    let cluster = Cluster::start();
    let s = Arc::new(server(backend, &cluster).await);
    let rotation = rotation(&s);

    // The client: reads the credentials every 30 ms (the API, as a service would) and
    // logs in with what it last read, as fast as it can.
    let stop = Arc::new(AtomicBool::new(false));
    let (seen_tx, seen_rx) = tokio::sync::watch::channel(String::new());
    let (logins, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(std::sync::Mutex::new(Vec::<String>::new())));
    let used = Arc::new(std::sync::Mutex::new(std::collections::HashSet::<String>::new()));
    let client = {
        let (s, stop, logins, failures, used) =
            (s.clone(), stop.clone(), logins.clone(), failures.clone(), used.clone());
        tokio::spawn(async move {
            let mut last_read = Instant::now() - Duration::from_secs(1);
            let mut creds = Value::Null;
            while !stop.load(Ordering::Relaxed) {
                if last_read.elapsed() >= Duration::from_millis(30) {
                    let res = s.get("/v1/tenants/acme/database-credentials").await;
                    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
                    creds = res.body;
                    last_read = Instant::now();
                    seen_tx.send_replace(creds["password"].as_str().unwrap().to_owned());
                }
                let text = |k: &str| creds[k].as_str().unwrap().to_owned();
                let port = creds["port"].as_u64().unwrap() as u16;
                match login(&text("host"), port, &text("database"), &text("user"), &text("password")).await {
                    Ok(()) => {
                        used.lock().unwrap().insert(text("password"));
                        logins.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(e) => {
                        failures.lock().unwrap().push(format!("{} : {e}", text("user")));
                        0
                    }
                };
            }
        })
    };

    let mut history = vec![current(&s).await.1];
    for round in 0..4 {
        let (version, cur) = current(&s).await;
        let pending = rotation.create("acme", PostgresStrategy::AlternatingUsers, &cur).await.unwrap();
        assert_ne!(pending.username, cur.username, "round {round}: the other login");
        rotation.set("acme", PostgresStrategy::AlternatingUsers, &pending).await.unwrap();
        rotation.test("acme", &pending).await.unwrap();
        login_as(&cur).await.expect("the current login is untouched by set");
        assert_eq!(finish(&s, version, &pending).await, version + 1);
        history.push(pending.clone());
        // The grace window: the next rotation waits until the client has read this one.
        let mut seen = seen_rx.clone();
        tokio::time::timeout(Duration::from_secs(10), seen.wait_for(|p| *p == pending.password))
            .await
            .expect("the client reads the new version")
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    client.await.unwrap();
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "the client failed to log in: {failures:?}");
    // It logged in with every version, each in turn current while the next was made.
    let used = used.lock().unwrap().clone();
    for (version, creds) in history.iter().enumerate() {
        let n = logins.load(Ordering::Relaxed);
        assert!(used.contains(&creds.password), "the client logged in with version {} ({n} logins)", version + 1);
    }

    let users: Vec<&str> = history.iter().map(|c| c.username.as_str()).collect();
    assert_eq!(users, ["tenancy_t_acme", "tenancy_tc_acme", "tenancy_t_acme", "tenancy_tc_acme", "tenancy_t_acme"]);
    login_as(&history[4]).await.expect("current");
    login_as(&history[3]).await.expect("previous: valid through the grace window");
    for old in &history[..3] {
        assert!(refused(login_as(old).await), "{old:?}: two rotations old, refused");
    }

    // Both logins use the same objects: the alternate's sessions act as the role.
    let alt = &history[3];
    let mut conn = PgConnectOptions::new()
        .host(&alt.host)
        .port(alt.port)
        .database(&alt.dbname)
        .username(&alt.username)
        .password(&alt.password)
        .connect()
        .await
        .unwrap();
    conn.execute("CREATE TABLE made_by_alternate (id int)").await.unwrap();
    conn.close().await.unwrap();
    let main = &history[4];
    let mut conn = sqlx::PgConnection::connect(&main.url()).await.unwrap();
    conn.execute("INSERT INTO made_by_alternate VALUES (1); ALTER TABLE made_by_alternate ADD COLUMN memo text")
        .await
        .expect("the role owns what its alternate created");
    conn.close().await.unwrap();

    // The alternate is no stray login to the reconciler.
    let report = s.call(Method::POST, "/v1/reconciliation", None).await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.body);
    assert_eq!(report.body["drift"], serde_json::json!([]), "{}", report.body);

    let res = s.call(Method::DELETE, "/v1/tenants/acme", None).await;
    assert!(res.status.is_success(), "{}", res.body);
    s.wait_status("acme", "offboarded").await;
    for role in ["tenancy_t_acme", "tenancy_tc_acme"] {
        assert!(!role_exists(&cluster, role).await, "{role} dropped");
    }
    match Arc::try_unwrap(s) {
        Ok(s) => s.stop().await,
        Err(_) => panic!("the client still holds the server"),
    }
}

/// A silo password provisioned before the secret store (sealed with the master key in
/// `tenant_secrets`) is still served, and the start-up move makes it version 1 of
/// `tenancy.database` (the same password) and deletes the old row; moving again
/// changes nothing.
async fn passwords_sealed_before_the_secret_store_move_into_it(backend: Backend) {
    let cluster = Cluster::start();
    let s = server(backend, &cluster).await;
    let (_, creds) = current(&s).await;
    let app = app(&s);
    let store = app.store().clone();
    // The layout of earlier versions: no secret, the password sealed in tenant_secrets.
    let fx = tenancy_store::Effects::none();
    let now = tenancy_domain::time::Timestamp::now();
    store.secrets().secret_delete(Some("acme"), SECRET_NAME, now, None, &fx).await.unwrap();
    let key = tenancy_adapters::keys::SecretBox::read_file(&s.dir.path().join("master.key")).unwrap().unwrap();
    let sealed = key.seal("tenant/acme/database:silo", &creds.password);
    store.workflows().tenant_secret_put("acme", "database:silo", &sealed).await.unwrap();
    assert!(app.data_plane().unwrap().credentials_current(&*store, "acme").await.unwrap().is_none());

    let res = s.get("/v1/tenants/acme/database-credentials").await;
    assert_eq!(res.status, StatusCode::OK, "read from the old row until moved: {}", res.body);
    assert_eq!(res.body["password"].as_str(), Some(creds.password.as_str()));

    assert_eq!(app.adopt_database_credentials().await.unwrap(), 1);
    let (version, moved) = current(&s).await;
    assert_eq!((version, &moved), (1, &creds), "the same credentials, as version 1");
    assert_eq!(store.workflows().tenant_secret_get("acme", "database:silo").await.unwrap(), None, "old row gone");
    assert_eq!(app.adopt_database_credentials().await.unwrap(), 0, "idempotent");
    let res = s.get("/v1/tenants/acme/database-credentials").await.body;
    assert_eq!(res["password"].as_str(), Some(creds.password.as_str()));
    login_as(&moved).await.expect("the moved password logs in");
    let audit = s.get("/v1/audit?limit=1000").await.body.to_string();
    assert!(!audit.contains(&creds.password), "the move is audited without the value");
    s.stop().await;
}

/// `POST .../secrets/tenancy.database/rotate` runs the built-in rotation workflow with
/// the `postgres` target (alternating users by default): after each rotation the API
/// answers with the other login and a new password that logs in, the previous version
/// still logs in, a version two rotations old is refused, and no password shows in
/// anything an API caller reads (the executions' histories included).
async fn the_rotate_api_takes_turns_between_the_logins(backend: Backend) {
    let cluster = Cluster::start();
    let s = server(backend, &cluster).await;
    let (_, v1) = current(&s).await;
    let rotate = || async {
        let res = s.call(Method::POST, &format!("/v1/tenants/acme/secrets/{SECRET_NAME}/rotate"), None).await;
        assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
        let id = res.body["execution_id"].as_str().unwrap().to_owned();
        s.wait_execution(&id, "SUCCEEDED").await;
        let c = s.get("/v1/tenants/acme/database-credentials").await.body;
        let value = serde_json::json!({"engine": "postgres", "host": c["host"], "port": c["port"],
                                       "dbname": c["database"], "username": c["user"], "password": c["password"]});
        PostgresCredentials::from_secret_text(&value.to_string()).unwrap()
    };
    let v2 = rotate().await;
    assert_eq!(v2.username, "tenancy_tc_acme", "the alternate login takes over");
    assert_ne!(v2.password, v1.password);
    login_as(&v2).await.expect("the new login works");
    login_as(&v1).await.expect("the previous version stays valid");
    let v3 = rotate().await;
    assert_eq!(v3.username, v1.username, "back to the tenant's login");
    login_as(&v3).await.expect("the newest login works");
    login_as(&v2).await.expect("the previous version stays valid");
    assert!(refused(login_as(&v1).await), "a version two rotations old is refused");
    let visible = everything_visible(&s).await;
    assert!(visible.contains("SecretRotated"), "the rotations emitted their events");
    for p in [&v1.password, &v2.password, &v3.password] {
        assert!(!visible.contains(p.as_str()), "a password leaked into what the API shows");
    }
    s.stop().await;
}
