//! Start-up checks of the real binary: the master key must be the one the database's
//! secrets are sealed with (SQLite: a deleted or replaced `master.key`; PostgreSQL:
//! replicas with different keys), the admin token must be long enough, and whatever
//! the umask, the data directory is 0700 and every file in it 0600.

mod support;

use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::process::{try_spawn, Spawn};
use support::{Backend, TestServer};

const KEY_A: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const KEY_B: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

/// A subscription: its signing secret is stored sealed with the master key.
async fn seal_a_secret(url: &str) {
    let s = TestServer::attach(url.to_owned());
    let res = s
        .call(
            Method::POST,
            "/v1/subscriptions",
            Some(json!({"name": "hook", "pattern": {"source": ["tenancy"]}, "target": {"type": "webhook", "url": "http://127.0.0.1:9/x"}})),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
}

fn refused(dir: &Path, how: Spawn<'_>) -> String {
    match try_spawn(dir, how) {
        Ok(_) => panic!("the server started"),
        Err((code, stderr)) => {
            assert_ne!(code, 0, "a refusal exits non-zero: {stderr}");
            stderr
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refuses_a_deleted_or_replaced_master_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let key_file = dir.join("master.key");
    let (mut first, url) = try_spawn(&dir, Spawn::default()).expect("a new database starts");
    seal_a_secret(&url).await;
    first.kill_9();
    let original = std::fs::read_to_string(&key_file).unwrap();

    // Deleted: never silently replaced.
    std::fs::remove_file(&key_file).unwrap();
    let err = refused(&dir, Spawn::default());
    assert!(err.contains("master.key") && err.contains("is missing") && err.contains("refusing to start"), "{err}");
    assert!(!key_file.exists(), "no new key was generated");

    // Replaced by another key, or another key given in the environment.
    std::fs::write(&key_file, format!("{KEY_B}\n")).unwrap();
    let err = refused(&dir, Spawn::default());
    assert!(err.contains("master.key") && err.contains("is not the key of this database"), "{err}");
    std::fs::write(&key_file, &original).unwrap();
    let err = refused(&dir, Spawn { env: vec![("TENANCY_MASTER_KEY", KEY_B.into())], ..Spawn::default() });
    assert!(err.contains("TENANCY_MASTER_KEY") && err.contains("is not the key of this database"), "{err}");

    // The right key starts.
    let (_server, url) = try_spawn(&dir, Spawn::default()).expect("the original key starts");
    let s = TestServer::attach(url);
    assert_eq!(s.get("/v1/subscriptions").await.body["items"].as_array().unwrap().len(), 1);
    assert!(s.get("/readyz").await.status.is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_must_share_the_master_key() {
    let db = support::database_url(Backend::Postgres).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let env = |key: Option<&str>| {
        let mut env = vec![("TENANCY_DATABASE_URL", db.clone())];
        env.extend(key.map(|k| ("TENANCY_MASTER_KEY", k.to_owned())));
        env
    };
    let (_a, url) = try_spawn(&tmp.path().join("a"), Spawn { env: env(Some(KEY_A)), ..Spawn::default() })
        .expect("the first replica starts");
    seal_a_secret(&url).await;

    // A replica with its own key, or with none (it would generate one), refuses.
    let err = refused(&tmp.path().join("b"), Spawn { env: env(Some(KEY_B)), ..Spawn::default() });
    assert!(err.contains("TENANCY_MASTER_KEY") && err.contains("is not the key of this database"), "{err}");
    let err = refused(&tmp.path().join("c"), Spawn { env: env(None), ..Spawn::default() });
    assert!(err.contains("master.key") && err.contains("is missing"), "{err}");
    assert!(!tmp.path().join("c/master.key").exists(), "no key of its own");

    // The same key, from a key file, joins the cluster.
    let key_file = tmp.path().join("shared.key");
    std::fs::write(&key_file, KEY_A).unwrap();
    let how = Spawn { env: env(None), args: vec!["--master-key-file", key_file.to_str().unwrap()], ..Spawn::default() };
    let (_d, url) = try_spawn(&tmp.path().join("d"), how).expect("a replica with the shared key starts");
    let s = TestServer::attach(url);
    assert_eq!(s.get("/v1/subscriptions").await.body["items"].as_array().unwrap().len(), 1);
}

#[test]
fn a_short_admin_token_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let err = refused(tmp.path(), Spawn { env: vec![("TENANCY_ADMIN_TOKEN", "admin".into())], ..Spawn::default() });
    assert!(err.contains("TENANCY_ADMIN_TOKEN is too short") && err.contains("32"), "{err}");
    assert!(!tmp.path().join("tenancy.db").exists(), "refused before opening anything");
}

/// Every file under `dir` and their modes (directories included).
fn modes(dir: &Path, out: &mut Vec<(String, u32, bool)>) {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        let mode = meta.permissions().mode() & 0o777;
        out.push((entry.path().display().to_string(), mode, meta.is_dir()));
        if meta.is_dir() {
            modes(&entry.path(), out);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (_server, url) = try_spawn(&dir, Spawn { umask: Some("000"), ..Spawn::default() }).expect("starts");
    let s = TestServer::attach(url);
    // A silo tenant (its own SQLite file), offboarded (an export in the blob store),
    // and an audit export.
    s.put_plan("vault", "silo").await;
    s.create_tenant("acme", "vault").await;
    s.wait_status("acme", "active").await;
    let res = s.call(Method::DELETE, "/v1/tenants/acme", None).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.body);
    s.wait_status("acme", "offboarded").await;

    let mut found = Vec::new();
    modes(&dir, &mut found);
    let names: Vec<&str> = found.iter().map(|(p, _, _)| p.rsplit('/').next().unwrap()).collect();
    for want in ["tenancy.db", "tenancy.db-wal", "master.key", "tenants", "blobs"] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    assert!(names.iter().any(|n| n.ends_with(".ndjson")), "an export: {names:?}");
    assert!(names.contains(&"database.sqlite"), "the silo database's export: {names:?}");
    let dir_mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "the data directory");
    let open: Vec<String> = found
        .iter()
        .filter(|(_, mode, is_dir)| if *is_dir { *mode != 0o700 } else { *mode & 0o077 != 0 })
        .map(|(p, mode, _)| format!("{p} {mode:o}"))
        .collect();
    assert!(open.is_empty(), "open to group or others: {open:?}");
}
