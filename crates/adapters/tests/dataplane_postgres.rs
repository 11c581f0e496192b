//! The PostgreSQL data plane on the test server: create, observe, export and delete a
//! silo database and a pool schema, each twice, and the isolation between tenants.

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Executor};
use std::str::FromStr;
use tenancy_adapters::dataplane::postgres::PostgresDataPlane;
use tenancy_adapters::dataplane::DatabaseProvisioner;
use tenancy_domain::plan::Isolation::{Pool, Silo};
use tenancy_store_sql::testing::postgres_server_url;

/// A connection as the tenant's role (the test server trusts local connections, so
/// this shows the role and its privileges, not the password).
async fn connect_as(detail: &serde_json::Value) -> Result<PgConnection, sqlx::Error> {
    let opts = PgConnectOptions::from_str(&postgres_server_url())
        .unwrap()
        .username(detail["user"].as_str().unwrap())
        .password("unused-with-trust")
        .database(detail["database"].as_str().unwrap());
    opts.connect().await
}

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

async fn admin() -> PgConnection {
    PgConnection::connect(&postgres_server_url()).await.unwrap()
}

#[tokio::test]
async fn silo_database_create_observe_export_delete_are_idempotent() {
    let prefix = format!("tt{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let p = PostgresDataPlane::new(&postgres_server_url(), &prefix).unwrap();
    let dir = tempfile::tempdir().unwrap();
    assert!(!p.database_observe("acme-1", Silo).await.unwrap().exists);
    assert!(!p.database_export("acme-1", Silo, &dir.path().join("none.ndjson")).await.unwrap());

    let detail = p.database_create("acme-1", Silo, Some("s3cretPassw0rd")).await.unwrap();
    assert_eq!(p.database_create("acme-1", Silo, Some("s3cretPassw0rd")).await.unwrap(), detail, "repeatable");
    assert_eq!(detail["database"], format!("{prefix}_t_acme_1"));
    assert_eq!((detail["engine"].as_str(), detail["isolation"].as_str()), (Some("postgres"), Some("silo")));
    assert!(!detail.to_string().contains("s3cretPassw0rd"));
    let seen = p.database_observe("acme-1", Silo).await.unwrap();
    assert!(seen.exists && seen.size_bytes > 0, "{seen:?}");
    assert!(seen.location.ends_with(&format!("/{prefix}_t_acme_1")), "{seen:?}");

    // The server keeps a SCRAM verifier, never the password.
    let stored: String = sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
        .bind(detail["user"].as_str().unwrap())
        .fetch_one(&mut admin().await)
        .await
        .unwrap();
    assert!(stored.starts_with("SCRAM-SHA-256$4096:"), "{stored}");

    // The tenant's role owns its database and writes to it.
    let mut conn = connect_as(&detail).await.unwrap();
    conn.execute(
        "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'hello'), (2, 'it''s')",
    )
    .await
    .unwrap();
    conn.close().await.unwrap();
    // Another tenant's role may not connect to it.
    let other = p.database_create("other", Silo, Some("0therPassword")).await.unwrap();
    let mut intruder = detail.clone();
    intruder["user"] = other["user"].clone();
    let Err(denied) = connect_as(&intruder).await else { panic!("no CONNECT for other roles") };
    let denied = denied.to_string();
    assert!(denied.contains("permission denied"), "{denied}");

    let export = dir.path().join("acme.ndjson");
    assert!(p.database_export("acme-1", Silo, &export).await.unwrap());
    let l = lines(&export);
    assert_eq!(l[0]["format"], "tenancy-export/1");
    assert_eq!(l[0]["tenant_id"], "acme-1");
    assert_eq!(l[1]["table"], "public.notes");
    assert_eq!(l[1]["columns"][1], serde_json::json!({"name": "body", "type": "text"}));
    assert_eq!(l[2], serde_json::json!({"table": "public.notes", "row": {"id": 1, "body": "hello"}}));
    assert_eq!(l[3]["row"]["body"], "it's");
    assert_eq!(l[4], serde_json::json!({"end": true, "tables": 1, "rows": 2}));
    assert!(p.database_export("acme-1", Silo, &export).await.is_err(), "an export never overwrites");

    p.database_delete("acme-1", Silo).await.unwrap();
    p.database_delete("acme-1", Silo).await.unwrap();
    assert!(!p.database_observe("acme-1", Silo).await.unwrap().exists);
    let role: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_roles WHERE rolname = $1")
        .bind(detail["user"].as_str().unwrap())
        .fetch_optional(&mut admin().await)
        .await
        .unwrap();
    assert_eq!(role, None, "the role is dropped with the database");
    p.database_delete("other", Silo).await.unwrap();
}

#[tokio::test]
async fn pool_schemas_are_per_tenant_in_one_database() {
    let prefix = format!("tt{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let p = PostgresDataPlane::new(&postgres_server_url(), &prefix).unwrap();
    let dir = tempfile::tempdir().unwrap();
    assert!(!p.database_observe("acme", Pool).await.unwrap().exists, "no pool database yet");

    let a = p.database_create("acme", Pool, Some("passwordA1")).await.unwrap();
    assert_eq!(p.database_create("acme", Pool, Some("passwordA1")).await.unwrap(), a);
    let b = p.database_create("bolt", Pool, Some("passwordB1")).await.unwrap();
    assert_eq!(a["database"], b["database"], "one shared database");
    assert_eq!((a["schema"].as_str(), a["database"].as_str()), (Some("t_acme"), Some(&*format!("{prefix}_pool"))));

    // The role's search_path is its schema: unqualified tables land there.
    let mut ca = connect_as(&a).await.unwrap();
    ca.execute("CREATE TABLE notes (id int, body text); INSERT INTO notes VALUES (7, 'pooled')").await.unwrap();
    let mut cb = connect_as(&b).await.unwrap();
    let err = cb.execute("SELECT * FROM t_acme.notes").await.unwrap_err().to_string();
    assert!(err.contains("permission denied"), "{err}");
    assert!(cb.execute("CREATE TABLE public.x (i int)").await.is_err(), "no writes to public");
    cb.close().await.unwrap();
    ca.close().await.unwrap();

    let seen = p.database_observe("acme", Pool).await.unwrap();
    assert!(seen.exists && seen.size_bytes > 0, "{seen:?}");
    let export = dir.path().join("acme.ndjson");
    assert!(p.database_export("acme", Pool, &export).await.unwrap());
    let l = lines(&export);
    assert_eq!(l[0]["schema"], "t_acme");
    assert_eq!(l.len(), 4, "header, table, one row, end: only this tenant's schema: {l:?}");
    assert_eq!(l[2], serde_json::json!({"table": "t_acme.notes", "row": {"id": 7, "body": "pooled"}}));

    // The pool database's ACL does not grow with its tenants: they connect as members
    // of one role (a grant each made every grant rewrite all of them).
    let mut admin = admin().await;
    let grantees: Vec<String> = sqlx::query_scalar(
        "SELECT COALESCE(r.rolname::text, 'PUBLIC') FROM pg_database d, aclexplode(d.datacl) a \
         LEFT JOIN pg_roles r ON r.oid = a.grantee WHERE d.datname = $1 AND a.grantee <> d.datdba \
         GROUP BY 1 ORDER BY 1",
    )
    .bind(format!("{prefix}_pool"))
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(grantees, [format!("{prefix}_pool_members")]);

    // A role from before the members' role, with a grant of its own, is dropped whole.
    let own_grant = format!("GRANT CONNECT ON DATABASE \"{prefix}_pool\" TO \"{}\"", a["user"].as_str().unwrap());
    admin.execute(own_grant.as_str()).await.unwrap();
    p.database_delete("acme", Pool).await.unwrap();
    p.database_delete("acme", Pool).await.unwrap();
    assert!(!p.database_observe("acme", Pool).await.unwrap().exists);
    assert!(connect_as(&a).await.is_err(), "the role is gone");
    assert!(p.database_observe("bolt", Pool).await.unwrap().exists, "the other tenant stays");
    p.database_delete("bolt", Pool).await.unwrap();
    admin.execute(format!("DROP DATABASE IF EXISTS \"{prefix}_pool\" WITH (FORCE)").as_str()).await.unwrap();
    admin.execute(format!("DROP ROLE \"{prefix}_pool_members\"").as_str()).await.unwrap();
}

/// The pool database dropped behind the data plane's back: the next create sets it up
/// again rather than failing for ever on what it set up once.
#[tokio::test]
async fn a_pool_dropped_by_hand_is_set_up_again() {
    let prefix = format!("tt{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let p = PostgresDataPlane::new(&postgres_server_url(), &prefix).unwrap();
    p.database_create("acme", Pool, Some("passwordA1")).await.unwrap();
    let mut admin = admin().await;
    admin.execute(format!("DROP DATABASE \"{prefix}_pool\" WITH (FORCE)").as_str()).await.unwrap();
    let first = p.database_create("bolt", Pool, Some("passwordB1")).await;
    let b = match first {
        Ok(b) => b,
        Err(_) => p.database_create("bolt", Pool, Some("passwordB1")).await.unwrap(),
    };
    assert!(p.database_observe("bolt", Pool).await.unwrap().exists);
    let mut cb = connect_as(&b).await.unwrap();
    cb.execute("CREATE TABLE notes (id int)").await.unwrap();
    cb.close().await.unwrap();
    for t in ["acme", "bolt"] {
        p.database_delete(t, Pool).await.unwrap();
    }
    admin.execute(format!("DROP DATABASE IF EXISTS \"{prefix}_pool\" WITH (FORCE)").as_str()).await.unwrap();
    admin.execute(format!("DROP ROLE \"{prefix}_pool_members\"").as_str()).await.unwrap();
}

/// The reconciler's view: databases and pool schemas of this prefix only, by the key
/// `database_key` gives their tenant; a database created by hand with the prefix too.
#[tokio::test]
async fn lists_the_databases_and_schemas_of_its_prefix() {
    let prefix = format!("tt{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let other = format!("{prefix}x");
    let p = PostgresDataPlane::new(&postgres_server_url(), &prefix).unwrap();
    let q = PostgresDataPlane::new(&postgres_server_url(), &other).unwrap();
    assert!(p.database_list(Silo).await.unwrap().is_empty());
    assert!(p.database_list(Pool).await.unwrap().is_empty(), "no pool database yet");
    p.database_create("acme", Silo, Some("pw-pw-pw-pw")).await.unwrap();
    p.database_create("bolt", Pool, Some("pw-pw-pw-pw")).await.unwrap();
    q.database_create("acme", Silo, Some("pw-pw-pw-pw")).await.unwrap();
    let mut admin = admin().await;
    admin.execute(format!("CREATE DATABASE \"{prefix}_t_ghost\"").as_str()).await.unwrap();

    let silo = p.database_list(Silo).await.unwrap();
    let keys: Vec<&str> = silo.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(keys, [p.database_key("acme", Silo).unwrap(), format!("{prefix}_t_ghost")], "not {other}'s");
    assert_eq!(silo[0].location, p.database_observe("acme", Silo).await.unwrap().location);
    let pool = p.database_list(Pool).await.unwrap();
    assert_eq!(pool.iter().map(|d| d.key.as_str()).collect::<Vec<_>>(), ["t_bolt"]);
    assert_eq!(p.database_key("bolt", Pool).unwrap(), "t_bolt");
    assert_eq!(pool[0].location, p.database_observe("bolt", Pool).await.unwrap().location);
    assert!(q.database_list(Pool).await.unwrap().is_empty());

    p.database_delete("acme", Silo).await.unwrap();
    p.database_delete("bolt", Pool).await.unwrap();
    q.database_delete("acme", Silo).await.unwrap();
    for db in [format!("{prefix}_t_ghost"), format!("{prefix}_pool")] {
        admin.execute(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)").as_str()).await.unwrap();
    }
    admin.execute(format!("DROP ROLE \"{prefix}_pool_members\"").as_str()).await.unwrap();
}

/// A creation cancelled at any point (its step timed out, its task was aborted) leaves
/// the data plane's advisory lock with no session: another replica on the same prefix
/// (a second data plane here) still creates its tenant. A session that went back to the
/// pool still holding the lock kept every other replica waiting for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_creation_does_not_keep_the_lock() {
    let prefix = format!("tt{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let url = postgres_server_url();
    let first = PostgresDataPlane::new(&url, &prefix).unwrap();
    let other = PostgresDataPlane::new(&url, &prefix).unwrap();
    let mut cancelled = 0;
    for i in 0..30u64 {
        let tenant = format!("c{i}");
        let create = first.database_create(&tenant, Silo, Some("s3cretPassw0rd"));
        if tokio::time::timeout(std::time::Duration::from_millis(2 + 4 * i), create).await.is_err() {
            cancelled += 1;
        }
        let other_tenant = format!("o{i}");
        let other_create = other.database_create(&other_tenant, Pool, Some("s3cretPassw0rd"));
        let done = tokio::time::timeout(std::time::Duration::from_secs(20), other_create).await;
        assert!(done.is_ok(), "after {cancelled} cancelled creations, another replica waited for the lock");
        done.unwrap().unwrap();
    }
    assert!(cancelled > 0, "no creation was cancelled: the test proves nothing");
    for i in 0..30u64 {
        first.database_delete(&format!("c{i}"), Silo).await.unwrap();
        first.database_delete(&format!("o{i}"), Pool).await.unwrap();
    }
    drop((first, other));
    let mut admin = admin().await;
    let drop_pool = format!("DROP DATABASE IF EXISTS {prefix}_pool WITH (FORCE)");
    for sql in [drop_pool, format!("DROP ROLE IF EXISTS {prefix}_pool_members")] {
        admin.execute(sql.as_str()).await.unwrap();
    }
}
