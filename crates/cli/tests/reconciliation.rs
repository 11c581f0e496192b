//! Reconciliation over HTTP: a deleted silo database is reported missing (with the
//! newest export to restore it from) and stays missing until an operator repairs it;
//! extras stay reported and cannot be "repaired"; kinds repaired automatically
//! (records by default, databases when configured) are recreated by the pass.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{Backend, TestServer};
use tenancy_app::reconcile::ops::DriftKind;

both_backends!(a_deleted_silo_database_stays_missing_until_repaired);

async fn reconcile(s: &TestServer) -> Value {
    let res = s.call(Method::POST, "/v1/reconciliation", None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res.body
}

/// The drift of a report about `tenant` (or about no tenant with `None`) and `resource`.
fn drift_of(report: &Value, tenant: Option<&str>, resource: &str) -> Vec<Value> {
    report["drift"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["tenant_id"].as_str() == tenant && d["resource"] == resource)
        .cloned()
        .collect()
}

async fn database_record(s: &TestServer, tenant: &str) -> Value {
    let res = s.get(&format!("/v1/tenants/{tenant}/resources")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res.body["items"].as_array().unwrap().iter().find(|r| r["kind"] == "database").cloned().unwrap_or(Value::Null)
}

async fn change_plan(s: &TestServer, tenant: &str, plan: &str) {
    let res = s.call(Method::POST, &format!("/v1/tenants/{tenant}/plan"), Some(json!({"plan": plan}))).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let t = s.get(&format!("/v1/tenants/{tenant}")).await.body;
        if t["status"] == "active" && t["plan"] == plan {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the plan change never finished: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Deletes a silo tenant's database behind Tenancy's back.
async fn drop_database(s: &TestServer, backend: Backend, tenant: &str) {
    match backend {
        Backend::Sqlite => std::fs::remove_file(s.dir.path().join("tenants").join(tenant).join("data.db")).unwrap(),
        Backend::Postgres => {
            let name = database_record(s, tenant).await["detail"]["database"].as_str().unwrap().to_owned();
            let db = s.raw_db().await;
            sqlx::query(&format!("DROP DATABASE \"{name}\" WITH (FORCE)")).execute(&db).await.unwrap();
        }
    }
}

/// Creates a database no tenant owns under the data plane's naming scheme.
async fn create_stray(s: &TestServer, backend: Backend, like: &str) {
    match backend {
        Backend::Sqlite => {
            let dir = s.dir.path().join("tenants").join("ghost");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("data.db"), b"").unwrap();
        }
        Backend::Postgres => {
            let name = database_record(s, like).await["detail"]["database"].as_str().unwrap().replace(like, "ghost");
            let db = s.raw_db().await;
            sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&db).await.unwrap();
        }
    }
}

async fn a_deleted_silo_database_stays_missing_until_repaired(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.put_plan("vault", "silo").await;
    s.put_plan("shared", "pool").await;
    for t in ["acme", "beta"] {
        s.create_tenant(t, "vault").await;
        s.wait_status(t, "active").await;
    }
    // acme moves to pool and back: the moves export its databases to the blob store.
    change_plan(&s, "acme", "shared").await;
    change_plan(&s, "acme", "vault").await;
    assert!(reconcile(&s).await["drift"].as_array().unwrap().is_empty(), "a clean start");

    for t in ["acme", "beta"] {
        drop_database(&s, backend, t).await;
    }
    let report = reconcile(&s).await;
    let acme = drift_of(&report, Some("acme"), "database");
    assert_eq!(acme.len(), 1, "{report}");
    let d = &acme[0];
    assert_eq!(
        (d["problem"].as_str(), d["repaired"].as_bool(), d["repairable"].as_bool()),
        (Some("missing"), Some(false), Some(true)),
        "{d}"
    );
    let restore = d["restore_from"].as_str().unwrap_or_else(|| panic!("no export named: {d}"));
    assert!(restore.contains("tenants/acme/exports/"), "{d}");
    assert!(d["restore_from_at"].is_string(), "{d}");
    let beta = drift_of(&report, Some("beta"), "database");
    assert_eq!((beta.len(), beta[0]["restore_from"].clone()), (1, Value::Null), "beta was never exported: {report}");
    let id = d["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("drift_"), "{id}");
    if backend == Backend::Sqlite {
        assert!(!s.dir.path().join("tenants/acme/data.db").exists(), "not recreated empty");
    }
    assert_eq!(database_record(&s, "acme").await["observed"]["exists"], false);

    // Later passes: still missing, same id, evented once.
    let again = reconcile(&s).await;
    let acme = drift_of(&again, Some("acme"), "database");
    assert_eq!(
        (acme.len(), acme[0]["id"].as_str(), acme[0]["repaired"].as_bool()),
        (1, Some(id.as_str()), Some(false))
    );
    assert_eq!(database_record(&s, "acme").await["observed"]["exists"], false);
    let detected = s.get("/v1/events?tenant_id=acme&detail_type=TenantDriftDetected").await.body;
    let detected = detected["items"].as_array().unwrap();
    assert_eq!(detected.len(), 1, "{detected:?}");
    assert_eq!(
        (detected[0]["detail"]["drift_id"].as_str(), detected[0]["detail"]["restore_from"].as_str()),
        (Some(id.as_str()), Some(restore))
    );

    // An operator repairs it: recreated (empty), evented and audited.
    let viewer = s.key("viewer", None).await;
    let res = s.call_with(Some(&viewer), Method::POST, &format!("/v1/reconciliation/{id}/repair"), None, &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    let operator = s.key("operator", None).await;
    let res = s.call_with(Some(&operator), Method::POST, &format!("/v1/reconciliation/{id}/repair"), None, &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(
        (res.body["id"].as_str(), res.body["repaired"].as_bool()),
        (Some(id.as_str()), Some(true)),
        "{}",
        res.body
    );
    assert_eq!(database_record(&s, "acme").await["observed"]["exists"], true);
    assert!(s.event_types("acme").await.contains(&"TenantDriftRepaired".to_owned()));
    let audit = s.get("/v1/audit?action=reconciliation.repair").await.body;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
    assert_eq!(audit["items"][0]["detail"]["drift_id"], json!(id), "{audit}");
    // Repaired already: 409; an id no pass reported: 404.
    let res = s.call(Method::POST, &format!("/v1/reconciliation/{id}/repair"), None).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "drift-gone"), "{}", res.body);
    let res = s.call(Method::POST, "/v1/reconciliation/drift_0000/repair", None).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);
    let after = reconcile(&s).await;
    assert!(drift_of(&after, Some("acme"), "database").is_empty(), "{after}");
    assert_eq!(drift_of(&after, Some("beta"), "database").len(), 1, "beta still waits: {after}");

    // An extra stays reported and cannot be repaired.
    create_stray(&s, backend, "acme").await;
    let report = reconcile(&s).await;
    let extra = drift_of(&report, None, "database");
    assert_eq!(extra.len(), 1, "{report}");
    assert_eq!((extra[0]["problem"].as_str(), extra[0]["repairable"].as_bool()), (Some("extra"), Some(false)));
    let extra_id = extra[0]["id"].as_str().unwrap();
    let res = s.call(Method::POST, &format!("/v1/reconciliation/{extra_id}/repair"), None).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "drift-not-repairable"), "{}", res.body);
    assert_eq!(drift_of(&reconcile(&s).await, None, "database").len(), 1, "still reported");

    // Records are repaired by default: a lost record is recorded again by the pass.
    let db = s.raw_db().await;
    sqlx::query("DELETE FROM tenant_resources WHERE tenant_id = 'acme' AND kind = 'defaults'")
        .execute(&db)
        .await
        .unwrap();
    let report = reconcile(&s).await;
    let record = drift_of(&report, Some("acme"), "record");
    assert_eq!(record.len(), 1, "{report}");
    assert_eq!(
        (record[0]["key"].as_str(), record[0]["repaired"].as_bool()),
        (Some("defaults"), Some(true)),
        "{report}"
    );
    let res = s.get("/v1/tenants/acme/resources").await.body;
    assert!(res["items"].as_array().unwrap().iter().any(|r| r["kind"] == "defaults"), "{res}");
    assert!(drift_of(&reconcile(&s).await, Some("acme"), "record").is_empty());
    s.stop().await;
}

/// With `--reconcile-repair database`, a missing silo database is recreated (empty)
/// by the pass itself, as before this was an operator's call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_are_recreated_by_the_pass_when_configured() {
    let s = TestServer::start_configured(None, |o| o.reconcile_repair = vec![DriftKind::Database]).await;
    s.put_plan("vault", "silo").await;
    s.create_tenant("acme", "vault").await;
    s.wait_status("acme", "active").await;
    let file = s.dir.path().join("tenants").join("acme").join("data.db");
    std::fs::remove_file(&file).unwrap();
    let report = reconcile(&s).await;
    let drift = drift_of(&report, Some("acme"), "database");
    assert_eq!(drift.len(), 1, "{report}");
    assert_eq!((drift[0]["problem"].as_str(), drift[0]["repaired"].as_bool()), (Some("missing"), Some(true)));
    assert!(file.exists(), "the database was recreated");
    assert!(s.event_types("acme").await.contains(&"TenantDriftRepaired".to_owned()));
    assert!(drift_of(&reconcile(&s).await, Some("acme"), "database").is_empty());
    s.stop().await;
}

/// On the PostgreSQL data plane: a pool tenant's dropped schema is reported missing
/// (alert-only by default) until repaired on request; a silo tenant's dropped login is
/// recreated by the pass (logins are repaired by default) and works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_schemas_and_logins_are_compared() {
    let s = TestServer::start(Backend::Postgres).await;
    s.put_plan("vault", "silo").await;
    s.put_plan("shared", "pool").await;
    s.create_tenant("pooly", "shared").await;
    s.create_tenant("gamma", "vault").await;
    s.wait_status("pooly", "active").await;
    s.wait_status("gamma", "active").await;
    assert!(reconcile(&s).await["drift"].as_array().unwrap().is_empty(), "a clean start");

    // The pool tenant's schema goes.
    let pool = database_record(&s, "pooly").await["detail"].clone();
    let base = s.database_url.clone().unwrap();
    let pool_url = format!("{}/{}", &base[..base.rfind('/').unwrap()], pool["database"].as_str().unwrap());
    let pool_db = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(&pool_url).await.unwrap();
    let drop = format!("DROP SCHEMA \"{}\" CASCADE", pool["schema"].as_str().unwrap());
    sqlx::query(&drop).execute(&pool_db).await.unwrap();
    pool_db.close().await;
    // The silo tenant's login goes (its database is handed to the admin first).
    let silo = database_record(&s, "gamma").await["detail"].clone();
    let (user, database) = (silo["user"].as_str().unwrap(), silo["database"].as_str().unwrap());
    let db = s.raw_db().await;
    for sql in [
        format!("REASSIGN OWNED BY \"{user}\" TO CURRENT_USER"),
        format!("DROP OWNED BY \"{user}\""),
        format!("DROP ROLE \"{user}\""),
    ] {
        sqlx::query(&sql).execute(&db).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let report = reconcile(&s).await;
    let schema = drift_of(&report, Some("pooly"), "schema");
    assert_eq!(schema.len(), 1, "{report}");
    assert_eq!(
        (schema[0]["problem"].as_str(), schema[0]["repaired"].as_bool()),
        (Some("missing"), Some(false)),
        "{report}"
    );
    let role = drift_of(&report, Some("gamma"), "role");
    assert_eq!(role.len(), 1, "{report}");
    assert_eq!((role[0]["key"].as_str(), role[0]["repaired"].as_bool()), (Some(user), Some(true)), "{report}");
    let exists: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM pg_roles WHERE rolname = $1").bind(user).fetch_optional(&db).await.unwrap();
    assert_eq!(exists, Some(1), "the login was recreated");
    let owner: String = sqlx::query_scalar("SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1")
        .bind(database)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(owner, user, "the login owns its database again");

    // Still missing on the next pass; repaired on request.
    let again = reconcile(&s).await;
    assert_eq!(drift_of(&again, Some("pooly"), "schema").len(), 1, "{again}");
    assert!(drift_of(&again, Some("gamma"), "role").is_empty(), "{again}");
    let id = schema[0]["id"].as_str().unwrap();
    let res = s.call(Method::POST, &format!("/v1/reconciliation/{id}/repair"), None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(database_record(&s, "pooly").await["observed"]["exists"], true);
    assert!(reconcile(&s).await["drift"].as_array().unwrap().is_empty());
    s.stop().await;
}
