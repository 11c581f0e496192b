//! `tenancy backup` and `tenancy restore` (docs/backup.md): a backup taken while the
//! server takes writes holds every write acknowledged before it started; the restored
//! data directory runs a server whose audit chain verifies; a backup that does not
//! match its manifest, or a target that is not empty, is refused.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{TestServer, ADMIN};
use tenancy::serve::{start, ServeOptions};

const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// Runs the binary with `args`: exit code, stdout, stderr.
fn tenancy(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenancy"))
        .env_remove("TENANCY_DATA_DIR")
        .env_remove("TENANCY_DATABASE_URL")
        .env_remove("TENANCY_BLOB_URL")
        .args(args)
        .output()
        .expect("run tenancy");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn tenancy_async(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || tenancy(&args.iter().map(String::as_str).collect::<Vec<_>>())).await.unwrap()
}

/// Waits until every audit record is sealed and returns `/v1/audit/verify`.
async fn sealed_verification(s: &TestServer) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = s.get("/v1/audit/verify").await.body;
        if v["pending"] == 0 {
            return v;
        }
        assert!(Instant::now() < deadline, "audit records never sealed: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_every_acknowledged_write() {
    let s = TestServer::start_configured(None, |o| o.master_key = Some(KEY.to_owned().into())).await;
    s.put_plan("pool", "pool").await;
    s.put_plan("silo", "silo").await;
    // Silo tenants have their own database file: the backup must carry those too.
    for i in 0..2 {
        s.create_tenant(&format!("silo-{i}"), "silo").await;
        s.wait_status(&format!("silo-{i}"), "active").await;
    }
    let silo_file = s.dir.path().join("tenants/silo-0/data.db");
    assert!(silo_file.is_file(), "a silo tenant's database at {}", silo_file.display());

    // Writers: create tenants without pause, recording when each was acknowledged.
    let acked: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2 {
        let (acked, stop, url) = (acked.clone(), stop.clone(), s.url.clone());
        writers.push(tokio::spawn(async move {
            let http = tenancy_client::http_client();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = format!("load-{w}-{n}");
                n += 1;
                let res = http
                    .post(format!("{url}/v1/tenants"))
                    .bearer_auth(ADMIN)
                    .json(&json!({"id": id, "name": id, "plan": "pool"}))
                    .send()
                    .await
                    .expect("request sent");
                assert_eq!(res.status(), 202, "{}", res.text().await.unwrap_or_default());
                acked.lock().unwrap().push((Instant::now(), id));
            }
        }));
    }
    while acked.lock().unwrap().len() < 30 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let root = tempfile::tempdir().unwrap();
    let backup = root.path().join("backup");
    let started = Instant::now();
    let (code, out, err) = tenancy_async(vec![
        "backup".into(),
        "--to".into(),
        backup.display().to_string(),
        "--data-dir".into(),
        s.dir.path().display().to_string(),
    ])
    .await;
    assert_eq!(code, 0, "backup: {out}{err}");
    let during = acked.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let before: BTreeSet<String> =
        acked.lock().unwrap().iter().filter(|(t, _)| *t < started).map(|(_, id)| id.clone()).collect();
    let all = acked.lock().unwrap().len();
    assert!(before.len() >= 30 && all > before.len(), "writes went on around the backup: {} then {all}", before.len());
    let manifest: Value = serde_json::from_slice(&std::fs::read(backup.join("manifest.json")).unwrap()).unwrap();
    let files: Vec<&str> = manifest["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert!(files.contains(&"tenancy.db") && files.contains(&"tenants/silo-0/data.db"), "{files:?}");
    assert!(!files.contains(&"master.key"), "the key stays out unless asked for: {files:?}");
    assert!(manifest["files"][0]["sha256"].as_str().unwrap().len() == 64, "{manifest}");
    let (code, out, err) = tenancy(&["backup", "verify", &backup.display().to_string()]);
    assert_eq!(code, 0, "verify: {out}{err}");
    s.stop().await;

    // Restore into a fresh data directory and run a server on it.
    let data = root.path().join("restored");
    let (code, out, err) =
        tenancy(&["restore", "--from", &backup.display().to_string(), "--data-dir", &data.display().to_string()]);
    assert_eq!(code, 0, "restore: {out}{err}");
    assert!(out.contains("master key was not in the backup"), "{out}");
    let mut opts = ServeOptions::for_tests(data.clone(), None, ADMIN);
    opts.master_key = Some(KEY.to_owned().into());
    let server = start(opts).await.expect("a server starts on the restored data directory");
    let r = TestServer::attach(server.url());
    for id in &before {
        let res = r.get(&format!("/v1/tenants/{id}")).await;
        assert_eq!(res.status, 200, "{id} was acknowledged before the backup started: {}", res.body);
    }
    assert_eq!(r.get("/v1/tenants/silo-0").await.body["status"], "active");
    let mut restored = BTreeSet::new();
    let mut cursor = String::new();
    loop {
        let res = r.get(&format!("/v1/tenants?limit=1000{cursor}")).await;
        restored.extend(res.body["items"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()));
        match res.body["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    let written: BTreeSet<String> = acked.lock().unwrap().iter().map(|(_, id)| id.clone()).collect();
    for id in &restored {
        assert!(id.starts_with("silo-") || written.contains(id), "{id} restored but never acknowledged");
    }
    assert!(restored.len() >= before.len() + 2, "{} restored, {} acknowledged before", restored.len(), before.len());
    let v = sealed_verification(&r).await;
    assert_eq!(v["ok"], true, "the restored audit chain verifies: {v}");
    let head = manifest["audit_head"]["seq"].as_u64().unwrap_or(0);
    assert!(v["records"].as_u64().unwrap() >= head, "{v} vs the manifest's head {head}");
    // The restored server takes writes.
    r.create_tenant("after-restore", "pool").await;
    server.stop().await;
    eprintln!("backup under load: {} acknowledged before, {during} by its end, {all} in all", before.len());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_a_backup_that_does_not_verify_and_a_target_in_use() {
    let s = TestServer::start(support::Backend::Sqlite).await;
    s.put_plan("pool", "pool").await;
    s.create_tenant("acme", "pool").await;
    let root = tempfile::tempdir().unwrap();
    let good = root.path().join("good");
    let dir = |p: &Path| p.display().to_string();
    let (code, out, err) = tenancy(&["backup", "--to", &dir(&good), "--data-dir", &dir(s.dir.path())]);
    assert_eq!(code, 0, "{out}{err}");
    s.stop().await;

    // A backup into a directory that holds something is refused.
    let (code, _, err) = tenancy(&["backup", "--to", &dir(&good), "--data-dir", &dir(root.path())]);
    assert_ne!(code, 0);
    assert!(err.contains("no SQLite database") || err.contains("not empty"), "{err}");

    // One byte of the database changed.
    let tampered = root.path().join("tampered");
    copy_dir(&good, &tampered);
    let db = tampered.join("tenancy.db");
    let mut bytes = std::fs::read(&db).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&db, bytes).unwrap();
    let target = root.path().join("t1");
    let (code, _, err) = tenancy(&["restore", "--from", &dir(&tampered), "--data-dir", &dir(&target)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("does not verify") && err.contains("tenancy.db: SHA-256 differs"), "{err}");
    assert!(!target.join("tenancy.db").exists(), "nothing restored from a bad backup");
    let (code, _, err) = tenancy(&["backup", "verify", &dir(&tampered)]);
    assert_eq!(code, 1, "{err}");

    // A file the manifest does not list, and one it lists that is gone.
    let extra = root.path().join("extra");
    copy_dir(&good, &extra);
    std::fs::write(extra.join("planted.db"), b"x").unwrap();
    let (code, _, err) = tenancy(&["restore", "--from", &dir(&extra), "--data-dir", &dir(&root.path().join("t2"))]);
    assert_eq!(code, 1);
    assert!(err.contains("planted.db: not in the manifest"), "{err}");
    std::fs::remove_file(extra.join("planted.db")).unwrap();
    std::fs::remove_file(extra.join("tenancy.db")).unwrap();
    let (code, _, err) = tenancy(&["restore", "--from", &dir(&extra), "--data-dir", &dir(&root.path().join("t3"))]);
    assert_eq!(code, 1);
    assert!(err.contains("tenancy.db: missing"), "{err}");

    // A manifest whose audit head is not the database's: the files verify, the
    // restored database is checked against the head and the restore refused.
    let head = root.path().join("head");
    copy_dir(&good, &head);
    let mut m: Value = serde_json::from_slice(&std::fs::read(head.join("manifest.json")).unwrap()).unwrap();
    m["audit_head"] = json!({"seq": 999_999, "hash": "ab".repeat(32)});
    std::fs::write(head.join("manifest.json"), m.to_string()).unwrap();
    let (code, _, err) = tenancy(&["restore", "--from", &dir(&head), "--data-dir", &dir(&root.path().join("t4"))]);
    assert_eq!(code, 1);
    assert!(err.contains("audit head") && err.contains("999999"), "{err}");
    let left: Vec<_> = std::fs::read_dir(root.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(!root.path().join("t4").join("tenancy.db").exists(), "nothing left from a refused restore: {left:?}");
    assert!(!left.iter().any(|n| n.to_string_lossy().contains("restoring")), "no staging left: {left:?}");

    // A target that is not empty is refused.
    let busy = root.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("tenancy.db"), b"live").unwrap();
    let (code, _, err) = tenancy(&["restore", "--from", &dir(&good), "--data-dir", &dir(&busy)]);
    assert_eq!(code, 1);
    assert!(err.contains("is not empty"), "{err}");
    assert_eq!(std::fs::read(busy.join("tenancy.db")).unwrap(), b"live");

    // The good one restores.
    let (code, out, err) = tenancy(&["restore", "--from", &dir(&good), "--data-dir", &dir(&root.path().join("ok"))]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn a_postgres_server_is_pointed_to_its_own_tools() {
    let (code, _, err) = tenancy(&["backup", "--to", "/tmp/x", "--database-url", "postgres://u@h/db"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("pg_dump") && err.contains("docs/backup.md"), "{err}");
}
