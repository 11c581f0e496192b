//! The secret store end to end (docs/secrets.md): stages on put, reads by stage and
//! version, metadata without values, deletion with a recovery window, restore and the
//! sweeper's purge, who may read what, the binding of a ciphertext to its row, no
//! plaintext on disk, and the refusal to start without the key.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::process::{try_spawn, Spawn};
use support::{Backend, TestServer};

both_backends!(
    a_put_moves_the_stages,
    metadata_never_carries_values,
    delete_restore_and_purge_after_the_window,
    who_may_read_what,
    a_ciphertext_moved_to_another_row_does_not_open,
    values_are_bounded_and_bodies_checked,
    the_cli_puts_reads_lists_deletes_and_restores,
);

async fn server(backend: Backend) -> TestServer {
    let s = TestServer::start_configured(support::database_url(backend).await, |o| {
        o.secret_sweep_interval = Duration::from_millis(100);
    })
    .await;
    s.put_plan("basic", "pool").await;
    for t in ["acme", "globex"] {
        s.create_tenant(t, "basic").await;
        s.wait_status(t, "active").await;
    }
    s
}

async fn put(s: &TestServer, path: &str, value: &str) -> support::Res {
    s.call(Method::PUT, path, Some(json!({"value": value}))).await
}

async fn a_put_moves_the_stages(backend: Backend) {
    let s = server(backend).await;
    let p = "/v1/tenants/acme/secrets/db-password";
    let res = put(&s, p, "one").await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["current_version"], 1);
    assert_eq!(put(&s, p, "two").await.status, StatusCode::OK);
    let res = put(&s, p, "three").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let versions = &res.body["versions"];
    assert_eq!(versions[0]["version"], 3);
    assert_eq!(versions[0]["stages"], json!(["current"]));
    assert_eq!(versions[1]["stages"], json!(["previous"]));
    assert_eq!(versions[2]["stages"], json!([]), "the old previous lost its label");

    let res = s.get(p).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!((res.body["value"].as_str(), res.body["version"].as_i64()), (Some("three"), Some(3)));
    assert_eq!(res.body["stages"], json!(["current"]));
    assert_eq!(res.header("cache-control"), Some("no-store"));
    let res = s.get(&format!("{p}?stage=previous")).await;
    assert_eq!((res.body["value"].as_str(), res.body["version"].as_i64()), (Some("two"), Some(2)));
    let res = s.get(&format!("{p}?version=1")).await;
    assert_eq!((res.body["value"].as_str(), res.body["stages"].clone()), (Some("one"), json!([])));
    assert_eq!(s.get(&format!("{p}?stage=pending")).await.status, StatusCode::NOT_FOUND, "no rotation yet");
    assert_eq!(s.get(&format!("{p}?stage=previous&version=3")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.get(&format!("{p}?version=9")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.get(&format!("{p}?stage=next")).await.code(), "invalid-query");
    assert_eq!(s.get("/v1/tenants/acme/secrets/nothing").await.status, StatusCode::NOT_FOUND);

    // Generated values, and a platform secret of the same name is another secret.
    let res = s
        .call(Method::PUT, p, Some(json!({"generate": {"type": "random_string", "length": 40, "charset": "ab"}})))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let v = s.get(p).await.body["value"].as_str().unwrap().to_owned();
    assert!(v.len() == 40 && v.chars().all(|c| c == 'a' || c == 'b'), "{v}");
    let res = s.call(Method::PUT, "/v1/secrets/db-password", Some(json!({"generate": {"type": "hmac_key"}}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["tenant_id"], Value::Null);
    let key = s.get("/v1/secrets/db-password").await.body["value"].as_str().unwrap().to_owned();
    assert_eq!(key.len(), 44, "32 bytes in base64: {key}");
    let res =
        s.call(Method::PUT, "/v1/secrets/blob", Some(json!({"generate": {"type": "random_bytes", "length": 3}}))).await;
    assert_eq!(res.status, StatusCode::CREATED);
    assert_eq!(s.get("/v1/secrets/blob").await.body["value"].as_str().unwrap().len(), 4);

    // Reads are audited, without the value.
    let audit = s.get("/v1/audit?action=secret.read&limit=1000").await;
    let items = audit.body["items"].as_array().unwrap();
    assert!(items.len() >= 4, "{}", audit.body);
    assert!(!audit.body.to_string().contains("three"), "{}", audit.body);
    assert!(items.iter().any(|i| i["target"] == "tenant/acme/secret/db-password" && i["tenant_id"] == "acme"));
}

async fn metadata_never_carries_values(backend: Backend) {
    let s = server(backend).await;
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        put(&s, &format!("/v1/tenants/acme/secrets/{name}"), &format!("distinctive-value-{i}")).await;
        put(&s, &format!("/v1/tenants/acme/secrets/{name}"), &format!("distinctive-value-{i}-2")).await;
    }
    put(&s, "/v1/tenants/globex/secrets/g", "distinctive-value-g").await;
    let first = s.get("/v1/tenants/acme/secrets?limit=2").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let names: Vec<&str> =
        first.body["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(first.body["items"][0]["versions"].as_array().unwrap().len(), 2);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let next = s.get(&format!("/v1/tenants/acme/secrets?limit=2&cursor={cursor}")).await;
    assert_eq!(next.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(next.body["next_cursor"], Value::Null);
    let all = format!("{}{}", first.body, next.body);
    assert!(!all.contains("distinctive-value"), "{all}");
    assert!(!all.contains("\"g\""), "only acme's secrets: {all}");
    // Nor do the events or the audit log.
    let records = format!("{}{}", s.get("/v1/audit?limit=1000").await.body, s.get("/v1/events?limit=1000").await.body);
    assert!(!records.contains("distinctive-value"), "{records}");
}

async fn delete_restore_and_purge_after_the_window(backend: Backend) {
    let s = server(backend).await;
    let p = "/v1/tenants/acme/secrets/api-token";
    put(&s, p, "tok").await;
    assert_eq!(s.call(Method::DELETE, &format!("{p}?recovery_days=0"), None).await.code(), "invalid-secret");
    assert_eq!(s.call(Method::DELETE, &format!("{p}?recovery_days=31"), None).await.code(), "invalid-secret");
    assert_eq!(s.get(p).await.status, StatusCode::OK, "a refused delete changed nothing");
    let res = s.call(Method::DELETE, p, None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let purge_at = tenancy_domain::time::Timestamp::parse_rfc3339(res.body["purge_at"].as_str().unwrap()).unwrap();
    let days = (purge_at.millis() - tenancy_domain::time::Timestamp::now().millis()) as f64 / 86_400_000.0;
    assert!((6.9..=7.0).contains(&days), "the default window is 7 days: {days}");
    let res = s.get(p).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "secret-deleted"), "{}", res.body);
    assert_eq!(put(&s, p, "again").await.code(), "secret-deleted");
    assert_eq!(s.call(Method::DELETE, p, None).await.code(), "secret-deleted");
    let listed = s.get("/v1/tenants/acme/secrets").await;
    assert!(listed.body["items"][0]["deleted_at"].is_string(), "{}", listed.body);

    let res = s.call(Method::POST, &format!("{p}/restore"), None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(s.get(p).await.body["value"], "tok");
    assert_eq!(s.call(Method::POST, &format!("{p}/restore"), None).await.code(), "secret-not-deleted");

    // The sweeper purges once the window has passed (moved into the past here).
    assert_eq!(s.call(Method::DELETE, &format!("{p}?recovery_days=1"), None).await.status, StatusCode::OK);
    put(&s, "/v1/tenants/acme/secrets/kept", "k").await;
    assert_eq!(s.call(Method::DELETE, "/v1/tenants/acme/secrets/kept", None).await.status, StatusCode::OK);
    let db = s.raw_db().await;
    sqlx::query("UPDATE secrets SET purge_at = 1 WHERE name = 'api-token'").execute(&db).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.get(p).await.status != StatusCode::NOT_FOUND {
        assert!(Instant::now() < deadline, "never purged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secret_versions WHERE name = 'api-token'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(left, 0, "its versions went with it");
    assert_eq!(s.get("/v1/tenants/acme/secrets/kept").await.code(), "secret-deleted", "still in its window");
    let audit = s.get("/v1/audit?action=secret.purge").await;
    assert_eq!(audit.body["items"].as_array().unwrap().len(), 1, "{}", audit.body);
    // The name is free again; force deletes at once.
    assert_eq!(put(&s, p, "new").await.status, StatusCode::CREATED);
    assert_eq!(s.call(Method::DELETE, &format!("{p}?force=true"), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(s.get(p).await.status, StatusCode::NOT_FOUND);
}

async fn who_may_read_what(backend: Backend) {
    let s = server(backend).await;
    put(&s, "/v1/tenants/acme/secrets/k", "acme-value").await;
    put(&s, "/v1/tenants/globex/secrets/k", "globex-value").await;
    put(&s, "/v1/secrets/platform", "platform-value").await;
    let viewer = s.key("viewer", None).await;
    let service = s.key("service", None).await;
    let acme = s.key("tenant", Some("acme")).await;
    let as_ = |t: &str, m: Method, p: &str, b: Option<Value>| {
        let (t, p) = (t.to_owned(), p.to_owned());
        let s = &s;
        async move { s.call_with(Some(&t), m, &p, b, &[]).await }
    };
    // Viewer: metadata, never values.
    assert_eq!(as_(&viewer, Method::GET, "/v1/tenants/acme/secrets", None).await.status, StatusCode::OK);
    assert_eq!(as_(&viewer, Method::GET, "/v1/tenants/acme/secrets/k", None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(as_(&viewer, Method::GET, "/v1/secrets", None).await.status, StatusCode::OK);
    assert_eq!(as_(&viewer, Method::GET, "/v1/secrets/platform", None).await.status, StatusCode::FORBIDDEN);
    // Service: tenants' values, no writes, no platform values.
    assert_eq!(as_(&service, Method::GET, "/v1/tenants/globex/secrets/k", None).await.body["value"], "globex-value");
    let body = Some(json!({"value": "x"}));
    assert_eq!(
        as_(&service, Method::PUT, "/v1/tenants/acme/secrets/k", body.clone()).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(as_(&service, Method::GET, "/v1/secrets/platform", None).await.status, StatusCode::FORBIDDEN);
    // A tenant key: its own tenant's secrets; the others' are 404, not 403.
    assert_eq!(as_(&acme, Method::GET, "/v1/tenants/acme/secrets/k", None).await.body["value"], "acme-value");
    assert_eq!(as_(&acme, Method::PUT, "/v1/tenants/acme/secrets/own", body.clone()).await.status, StatusCode::CREATED);
    for (m, p) in [
        (Method::GET, "/v1/tenants/globex/secrets/k"),
        (Method::GET, "/v1/tenants/globex/secrets"),
        (Method::PUT, "/v1/tenants/globex/secrets/k"),
        (Method::DELETE, "/v1/tenants/globex/secrets/k"),
        (Method::GET, "/v1/tenants/nobody/secrets/k"),
    ] {
        let res = as_(&acme, m.clone(), p, body.clone()).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{m} {p}: {}", res.body);
        assert!(!res.body.to_string().contains("globex-value"));
    }
    assert_eq!(as_(&acme, Method::GET, "/v1/secrets/platform", None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(s.get("/v1/tenants/globex/secrets/k").await.body["value"], "globex-value", "globex's is untouched");
    // A tenant that does not exist.
    assert_eq!(put(&s, "/v1/tenants/nobody/secrets/k", "v").await.status, StatusCode::NOT_FOUND);
}

async fn a_ciphertext_moved_to_another_row_does_not_open(backend: Backend) {
    let s = server(backend).await;
    put(&s, "/v1/tenants/acme/secrets/one", "first-value").await;
    put(&s, "/v1/tenants/globex/secrets/one", "second-value").await;
    put(&s, "/v1/tenants/acme/secrets/two", "third-value").await;
    let db = s.raw_db().await;
    let rows: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT tenant_id, name, ciphertext, wrapped_key FROM secret_versions ORDER BY tenant_id, name")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(rows.len(), 3);
    // acme/one gets globex/one's sealed value and key (another tenant), acme/two gets
    // acme/one's (another name).
    for (to, from) in [(0usize, 2usize), (1, 0)] {
        sqlx::query("UPDATE secret_versions SET ciphertext = $1, wrapped_key = $2 WHERE tenant_id = $3 AND name = $4")
            .bind(&rows[from].2)
            .bind(&rows[from].3)
            .bind(&rows[to].0)
            .bind(&rows[to].1)
            .execute(&db)
            .await
            .unwrap();
    }
    for p in ["/v1/tenants/acme/secrets/one", "/v1/tenants/acme/secrets/two"] {
        let res = s.get(p).await;
        assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR, "{p}: {}", res.body);
        assert_eq!(res.code(), "internal");
        let text = res.body.to_string();
        assert!(!text.contains("-value"), "{text}");
    }
    // The server is fine, and the untouched secret still reads.
    assert_eq!(s.get("/v1/tenants/globex/secrets/one").await.body["value"], "second-value");
}

async fn values_are_bounded_and_bodies_checked(backend: Backend) {
    let s = server(backend).await;
    let p = "/v1/tenants/acme/secrets/big";
    let res = put(&s, p, &"x".repeat(64 * 1024 + 1)).await;
    assert_eq!((res.status, res.code()), (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large"), "{}", res.body);
    assert_eq!(put(&s, p, &"x".repeat(64 * 1024)).await.status, StatusCode::CREATED);
    let bad = [
        json!({}),
        json!({"value": "a", "generate": {"type": "hmac_key"}}),
        json!({"generate": {"type": "random_string", "length": 0}}),
    ];
    for b in bad {
        let res = s.call(Method::PUT, "/v1/tenants/acme/secrets/x", Some(b.clone())).await;
        assert_eq!(res.code(), "invalid-secret", "{b}: {}", res.body);
    }
    assert_eq!(put(&s, "/v1/tenants/acme/secrets/a%20b", "v").await.code(), "invalid-secret");
    let res = s.call(Method::PUT, "/v1/tenants/acme/secrets/x", Some(json!({"valeu": "a"}))).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(s.get("/v1/tenants/acme/secrets/x").await.status, StatusCode::NOT_FOUND, "nothing was written");
}

async fn the_cli_puts_reads_lists_deletes_and_restores(backend: Backend) {
    let s = server(backend).await;
    let file = s.dir.path().join("value.txt");
    std::fs::write(&file, "cli-value-1\n").unwrap();
    let put = |args: &[&str]| support::run_cli(&s.url, args);
    let (code, out, err) = put(&["secrets", "put", "db", "--tenant", "acme", "--value-file", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("cli-value"), "put prints metadata only: {out}");
    std::fs::write(&file, "cli-value-2").unwrap();
    put(&["secrets", "put", "db", "--tenant", "acme", "--value-file", file.to_str().unwrap()]);
    let (code, out, err) = put(&["secrets", "get", "db", "--tenant", "acme"]);
    assert_eq!((code, out.as_str()), (0, "cli-value-2\n"), "{err}");
    let (_, out, _) = put(&["secrets", "get", "db", "--tenant", "acme", "--stage", "previous"]);
    assert_eq!(out, "cli-value-1\n", "one trailing newline of the file is dropped");
    let (_, out, _) = put(&["-o", "json", "secrets", "get", "db", "--tenant", "acme", "--version", "1"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["value"].as_str(), v["stages"].clone()), (Some("cli-value-1"), json!(["previous"])));
    let (code, _, err) = put(&["secrets", "put", "token", "--generate", "random-string", "--length", "12"]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = put(&["secrets", "get", "token"]);
    assert_eq!(out.trim().len(), 12, "a platform secret: {out}");
    let (_, out, _) = put(&["-o", "json", "secrets", "list", "--tenant", "acme"]);
    assert!(out.contains("\"db\"") && !out.contains("cli-value"), "{out}");
    let (code, out, _) =
        put(&["-o", "json", "secrets", "delete", "db", "--tenant", "acme", "--recovery-days", "2", "--yes"]);
    assert_eq!(code, 0);
    assert!(out.contains("purge_at"), "{out}");
    let (code, _, err) = put(&["secrets", "get", "db", "--tenant", "acme"]);
    assert!(code != 0 && err.contains("scheduled for deletion"), "{err}");
    assert_eq!(put(&["secrets", "restore", "db", "--tenant", "acme"]).0, 0);
    assert_eq!(put(&["secrets", "get", "db", "--tenant", "acme"]).1, "cli-value-2\n");
    let (code, _, err) = put(&["secrets", "delete", "db", "--tenant", "acme", "--force", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(s.get("/v1/tenants/acme/secrets/db").await.status, StatusCode::NOT_FOUND);
}

/// Every file under `dir`, recursively.
fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_in_the_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (mut server, url) = try_spawn(&dir, Spawn::default()).expect("starts");
    let s = TestServer::attach(url);
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    s.wait_status("acme", "active").await;
    const VALUE: &str = "Zq8-distinctive-plaintext-7Kp";
    for (i, p) in ["/v1/tenants/acme/secrets/db", "/v1/secrets/crm", "/v1/tenants/acme/secrets/db"].iter().enumerate() {
        let res = s.call(Method::PUT, p, Some(json!({"value": format!("{VALUE}{i}")}))).await;
        assert!(res.status.is_success(), "{}", res.body);
    }
    assert_eq!(s.get("/v1/tenants/acme/secrets/db").await.body["value"], format!("{VALUE}2"));
    // Rotations too: every generated version's value, read back through the API.
    let rotated = "/v1/tenants/acme/secrets/rotated";
    let body = json!({"generate": {"type": "random_string", "length": 40}});
    assert!(s.call(Method::PUT, rotated, Some(body)).await.status.is_success());
    let mut values = vec![s.get(rotated).await.body["value"].as_str().unwrap().to_owned()];
    for _ in 0..2 {
        let res = s.call(Method::POST, &format!("{rotated}/rotate"), None).await;
        assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
        s.wait_execution(res.body["execution_id"].as_str().unwrap(), "SUCCEEDED").await;
        values.push(s.get(rotated).await.body["value"].as_str().unwrap().to_owned());
    }
    assert_eq!(values.iter().collect::<std::collections::HashSet<_>>().len(), 3, "{values:?}");
    let mut found = Vec::new();
    files(&dir, &mut found);
    let names: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
    assert!(names.iter().any(|n| n.ends_with("tenancy.db-wal")), "{names:?}");
    for f in &found {
        let bytes = std::fs::read(f).unwrap();
        for v in std::iter::once(VALUE).chain(values.iter().map(String::as_str)) {
            let hit = bytes.windows(v.len()).any(|w| w == v.as_bytes());
            assert!(!hit, "the plaintext {v:?} is in {}", f.display());
        }
    }
    server.kill_9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_to_start_when_the_key_of_sealed_data_is_gone() {
    // A database whose fingerprint record is gone (as before migration 0009) but that
    // holds sealed values of any kind: a new key must not be generated.
    for what in ["function", "secret"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let (mut server, url) = try_spawn(&dir, Spawn::default()).expect("starts");
        let s = TestServer::attach(url);
        let res = match what {
            "function" => s.call(Method::PUT, "/v1/functions/f", Some(json!({"url": "http://127.0.0.1:9/f"}))).await,
            _ => s.call(Method::PUT, "/v1/secrets/s", Some(json!({"value": "v"}))).await,
        };
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
        server.kill_9();
        sqlx::any::install_default_drivers();
        let db = sqlx::AnyPool::connect(&format!("sqlite://{}", dir.join("tenancy.db").display())).await.unwrap();
        sqlx::query("DELETE FROM master_key").execute(&db).await.unwrap();
        db.close().await;
        std::fs::remove_file(dir.join("master.key")).unwrap();
        match try_spawn(&dir, Spawn::default()) {
            Ok(_) => panic!("{what}: the server started with a new key"),
            Err((code, stderr)) => {
                assert_ne!(code, 0);
                assert!(stderr.contains("master.key") && stderr.contains("refusing to start"), "{what}: {stderr}");
            }
        }
        assert!(!dir.join("master.key").exists(), "{what}: no new key was generated");
    }
}

/// Runs `tenancy master-key rotate` on `dir` with `env`: exit code, stdout, stderr.
fn rotate(dir: &std::path::Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenancy"))
        .args(["master-key", "rotate"])
        .env("TENANCY_DATA_DIR", dir)
        .env_remove("TENANCY_DATABASE_URL")
        .env_remove("TENANCY_MASTER_KEY")
        .env_remove("TENANCY_MASTER_KEY_FILE")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn sealed_columns(dir: &std::path::Path) -> Vec<(String, String, String)> {
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&format!("sqlite://{}", dir.join("tenancy.db").display())).await.unwrap();
    let rows = sqlx::query_as("SELECT name, ciphertext, kek_id FROM secret_versions ORDER BY tenant_id, name, version")
        .fetch_all(&db)
        .await
        .unwrap();
    db.close().await;
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_key_rotate_rewraps_without_touching_ciphertexts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (mut server, url) = try_spawn(&dir, Spawn::default()).expect("starts");
    let s = TestServer::attach(url);
    s.put_plan("basic", "pool").await;
    s.create_tenant("acme", "basic").await;
    s.wait_status("acme", "active").await;
    for (p, v) in
        [("/v1/tenants/acme/secrets/db", "one"), ("/v1/tenants/acme/secrets/db", "two"), ("/v1/secrets/crm", "three")]
    {
        assert!(s.call(Method::PUT, p, Some(json!({"value": v}))).await.status.is_success());
    }
    // A value sealed directly with the master key too (a function's signing secret).
    let res = s.call(Method::PUT, "/v1/functions/f", Some(json!({"url": "http://127.0.0.1:9/f"}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    server.kill_9();
    let old_key = std::fs::read_to_string(dir.join("master.key")).unwrap();
    let before = sealed_columns(&dir).await;

    let (code, stdout, stderr) = rotate(&dir, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty(), "a key file's rotation prints no key: {stdout}");
    assert!(stderr.contains("re-wrapped 3 data keys") && stderr.contains("re-sealed 1 values"), "{stderr}");
    let new_key = std::fs::read_to_string(dir.join("master.key")).unwrap();
    assert_ne!(new_key, old_key);
    assert!(!dir.join("master.key.new").exists());
    let after = sealed_columns(&dir).await;
    assert_eq!(after.len(), before.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!((&b.0, &b.1), (&a.0, &a.1), "the ciphertexts are untouched");
        assert_ne!(b.2, a.2, "the data key is under the new KEK");
    }

    // The old key is refused now; the new one alone reads everything.
    match try_spawn(&dir, Spawn { env: vec![("TENANCY_MASTER_KEY", old_key.trim().to_owned())], ..Spawn::default() }) {
        Ok(_) => panic!("the old key started"),
        Err((_, stderr)) => assert!(stderr.contains("is not the key of this database"), "{stderr}"),
    }
    let (_server, url) = try_spawn(&dir, Spawn::default()).expect("the new key starts");
    let s = TestServer::attach(url);
    assert_eq!(s.get("/v1/tenants/acme/secrets/db").await.body["value"], "two");
    assert_eq!(s.get("/v1/tenants/acme/secrets/db?version=1").await.body["value"], "one");
    assert_eq!(s.get("/v1/secrets/crm").await.body["value"], "three");
    assert!(s.call(Method::PUT, "/v1/secrets/crm", Some(json!({"value": "four"}))).await.status.is_success());
    assert_eq!(s.get("/v1/secrets/crm").await.body["value"], "four");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_key_rotate_with_an_environment_key_prints_the_new_one() {
    const KEY: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let env = |k: &str| Spawn { env: vec![("TENANCY_MASTER_KEY", k.to_owned())], ..Spawn::default() };
    let (mut server, url) = try_spawn(&dir, env(KEY)).expect("starts");
    let s = TestServer::attach(url);
    assert!(s.call(Method::PUT, "/v1/secrets/crm", Some(json!({"value": "v"}))).await.status.is_success());
    server.kill_9();
    let (code, stdout, stderr) = rotate(&dir, &[("TENANCY_MASTER_KEY", KEY)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("TENANCY_MASTER_KEY") && !stderr.contains(stdout.trim()), "{stderr}");
    let new_key = stdout.trim().to_owned();
    assert_eq!(new_key.len(), 44, "{stdout}");
    assert!(!dir.join("master.key").exists(), "no key file is written");
    let (mut server, url) = try_spawn(&dir, env(&new_key)).expect("the new key starts");
    assert_eq!(TestServer::attach(url).get("/v1/secrets/crm").await.body["value"], "v");
    server.kill_9();
    // Rotating with the old key again is refused and changes nothing.
    let (code, _, stderr) = rotate(&dir, &[("TENANCY_MASTER_KEY", KEY)]);
    assert_ne!(code, 0);
    assert!(stderr.contains("is not the key of this database"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_key_rotate_on_postgres_reseals_database_passwords() {
    const KEY: &str = "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=";
    let db = support::database_url(Backend::Postgres).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let env = |key: &str| vec![("TENANCY_DATABASE_URL", db.clone()), ("TENANCY_MASTER_KEY", key.to_owned())];
    let (mut server, url) =
        try_spawn(&tmp.path().join("a"), Spawn { env: env(KEY), ..Spawn::default() }).expect("starts");
    let s = TestServer::attach(url);
    s.put_plan("vault", "silo").await;
    s.create_tenant("acme", "vault").await;
    s.wait_status("acme", "active").await;
    let creds = s.get("/v1/tenants/acme/database-credentials").await;
    assert_eq!(creds.status, StatusCode::OK, "{}", creds.body);
    assert!(s
        .call(Method::PUT, "/v1/tenants/acme/secrets/api", Some(json!({"value": "pg-value"})))
        .await
        .status
        .is_success());
    server.kill_9();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenancy"))
        .args(["master-key", "rotate"])
        .env("TENANCY_DATA_DIR", tmp.path().join("a"))
        .envs(env(KEY))
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    // The silo tenant's credentials are a secret (`tenancy.database`) beside `api`.
    assert!(stderr.contains("re-wrapped 2 data keys"), "{stderr}");
    let new_key = stdout.trim().to_owned();

    // A replica with the new key (another data directory) reads everything.
    let (_server, url) =
        try_spawn(&tmp.path().join("b"), Spawn { env: env(&new_key), ..Spawn::default() }).expect("the new key starts");
    let s = TestServer::attach(url);
    let again = s.get("/v1/tenants/acme/database-credentials").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert!(creds.body["password"].as_str().is_some_and(|p| p.len() >= 16), "{}", creds.body);
    assert_eq!(again.body["password"], creds.body["password"], "the same password, re-sealed");
    assert_eq!(s.get("/v1/tenants/acme/secrets/api").await.body["value"], "pg-value");
    match try_spawn(&tmp.path().join("c"), Spawn { env: env(KEY), ..Spawn::default() }) {
        Ok(_) => panic!("the old key started"),
        Err((_, stderr)) => assert!(stderr.contains("is not the key of this database"), "{stderr}"),
    }
}

/// Kills a child process when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_in_debug_logs() {
    const VALUE: &str = "Lg4-distinctive-logged-value-9Wd";
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("server.log");
    let _child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_tenancy"))
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .env("TENANCY_DATA_DIR", tmp.path().join("data"))
            .env("TENANCY_ADMIN_TOKEN", support::ADMIN)
            .env("RUST_LOG", "debug")
            .env_remove("TENANCY_DATABASE_URL")
            .env_remove("TENANCY_MASTER_KEY")
            .env_remove("TENANCY_MASTER_KEY_FILE")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let found =
            text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find(|v| v["message"] == "listening");
        if let Some(v) = found {
            break v["addr"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "never listened: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let s = TestServer::attach(format!("http://{addr}"));
    for (i, p) in ["/v1/secrets/a", "/v1/secrets/a", "/v1/secrets/b"].iter().enumerate() {
        let res = s.call(Method::PUT, p, Some(json!({"value": format!("{VALUE}{i}")}))).await;
        assert!(res.status.is_success(), "{}", res.body);
    }
    assert_eq!(s.get("/v1/secrets/a?stage=previous").await.body["value"], format!("{VALUE}0"));
    // Refused writes too: a value with an unknown member beside it, one too large.
    s.call(Method::PUT, "/v1/secrets/c", Some(json!({"value": VALUE, "extra": 1}))).await;
    s.call(Method::PUT, "/v1/secrets/c", Some(json!({"value": format!("{VALUE}{}", "x".repeat(70_000))}))).await;
    // The debug log has the requests, never the values.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(!text.contains(VALUE), "a value in the log");
        if text.contains("INSERT INTO secret_versions") && text.contains("\"status\":413") {
            break;
        }
        assert!(Instant::now() < deadline, "the requests are not in the debug log: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
