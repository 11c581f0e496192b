//! The operator CLI and the server process, as a user runs them.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Backend, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands() {
    let s = TestServer::start(Backend::Sqlite).await;
    let run = |args: &'static [&'static str]| {
        let s = &s;
        async move {
            let url = s.url.clone();
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            tokio::task::spawn_blocking(move || {
                let out = Command::new(env!("CARGO_BIN_EXE_tenancy"))
                    .args(["--server", &url, "--token", support::ADMIN])
                    .args(&args)
                    .output()
                    .expect("run tenancy");
                (
                    out.status.code().unwrap_or(-1),
                    String::from_utf8_lossy(&out.stdout).into_owned(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            })
            .await
            .unwrap()
        }
    };
    let (code, out, err) = run(&[
        "plans",
        "put",
        "pro",
        "--name",
        "Pro",
        "--isolation",
        "silo",
        "--feature",
        "sso",
        "--quota",
        "seats=10",
        "--quota",
        "calls=500/month/soft",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pro") && out.contains("silo"), "{out}");
    let (code, out, err) = run(&[
        "tenants",
        "create",
        "--id",
        "acme",
        "--name",
        "Acme",
        "--plan",
        "pro",
        "--metadata",
        "{\"tier\":\"gold\"}",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ID") && out.contains("acme") && out.contains("provisioning"), "a table with a header: {out}");
    s.wait_status("acme", "active").await;

    let (code, out, _) = run(&["tenants", "list", "--output", "json"]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("--output json prints JSON");
    assert_eq!(v["items"][0]["metadata"]["tier"], "gold");
    let (code, out, _) = run(&["tenants", "suspend", "acme"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("suspended"));

    // Errors: a clear message on stderr, nothing on stdout, a non-zero exit code.
    let (code, out, err) = run(&["tenants", "suspend", "acme"]).await;
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert_eq!(err.trim(), "error: cannot suspend a tenant that is suspended (invalid-transition, HTTP 409)");
    // `tenants retry` reaches POST /v1/tenants/{id}/retry: only a failed tenant is retried.
    let (code, _, err) = run(&["tenants", "retry", "acme"]).await;
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "error: cannot retry provisioning a tenant that is suspended (invalid-transition, HTTP 409)"
    );
    let (code, _, err) = run(&["tenants", "get", "ghost"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("tenant \"ghost\" not found"), "{err}");
    let (code, _, err) = run(&["plans", "put", "x", "--name", "X", "--quota", "seats"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("NAME=LIMIT"), "{err}");

    let (code, out, _) =
        run(&["keys", "create", "--name", "ci", "--role", "tenant", "--tenant", "acme", "-o", "json"]).await;
    assert_eq!(code, 0);
    let key: Value = serde_json::from_str(&out).unwrap();
    assert!(key["key"].as_str().unwrap().starts_with("tny_"));
    let (code, out, _) = run(&["keys", "list"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(key["id"].as_str().unwrap()) && !out.contains(key["key"].as_str().unwrap()),
        "keys are never listed"
    );
    let (code, out, _) = run(&["events", "list", "--tenant", "acme"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("TenantSuspended"), "{out}");
    s.stop().await;

    let dead = TestServer::start(Backend::Sqlite).await;
    let url = dead.url.clone();
    dead.stop().await;
    let out = Command::new(env!("CARGO_BIN_EXE_tenancy")).args(["--server", &url, "tenants", "list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "unreachable server");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the server"));
}

/// `tenancy serve` on the embedded default: writes the admin key, answers, and exits 0
/// on SIGTERM after draining.
#[test]
fn serve_bootstraps_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenancy"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("TENANCY_DATA_DIR", dir.path())
        .env_remove("TENANCY_ADMIN_TOKEN")
        .env_remove("TENANCY_DATABASE_URL")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut addr = None;
    let mut logs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while addr.is_none() && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("log lines are JSON: {line}"));
        if v["message"] == "listening" {
            addr = v["addr"].as_str().map(str::to_owned);
        }
        logs.push(line);
    }
    let addr = addr.unwrap_or_else(|| panic!("no listening line in {logs:?}"));
    let token_path = dir.path().join("admin-token");
    let token = std::fs::read_to_string(&token_path).unwrap();
    assert!(token.starts_with("tny_"));
    assert!(logs.iter().all(|l| !l.contains(token.trim())), "the admin key was logged");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let client = reqwest::blocking_get(&format!("http://{addr}/readyz"), token.trim());
    assert_eq!(client, 200);

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

mod reqwest {
    /// A tiny blocking GET over a raw TCP socket (the async client needs a runtime).
    pub fn blocking_get(url: &str, token: &str) -> u16 {
        use std::io::{Read, Write};
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        let mut s = std::net::TcpStream::connect(host).unwrap();
        write!(s, "GET /{path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).unwrap();
        buf.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

/// A SQLite data directory serves one process: a second server on it refuses to start
/// with a message that says why (replicas share PostgreSQL instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_data_dir_serves_one_process() {
    let first = TestServer::start(Backend::Sqlite).await;
    let opts = tenancy::serve::ServeOptions::for_tests(first.dir.path().to_owned(), None, support::ADMIN);
    let err = tenancy::serve::start(opts).await.err().expect("a second server on the same data dir must not start");
    assert!(format!("{err:#}").contains("another process is using the database"), "{err:#}");
    first.stop().await;
}

both_backends!(serve_reads_every_config_key);

/// `tenancy serve --config FILE` with every key the README documents starts, and uses
/// them (data dir, master key file, blob store, listen address); its text logs, piped
/// rather than written to a terminal, carry no ANSI colour codes.
async fn serve_reads_every_config_key(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let (database_url, data_plane_url) = match support::database_url(backend).await {
        Some(url) => (url.clone(), format!("data_plane_url = {:?}\n", url)),
        None => (format!("sqlite://{}", root.join("control.db").display()), String::new()),
    };
    let config = root.join("tenancy.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\n\
             data_dir = {data:?}\n\
             database_url = {database_url:?}\n\
             {data_plane_url}\
             data_plane_prefix = \"cfg{n}\"\n\
             log_format = \"text\"\n\
             roles = [\"api\", \"worker\"]\n\
             outbound_allow = [\"127.0.0.0/8\"]\n\
             max_connections = 64\n\
             master_key_file = {key:?}\n\
             event_retention_days = 7\n\
             blob_url = \"file://{blobs}\"\n",
            data = root.join("data").display().to_string(),
            n = std::process::id(),
            key = root.join("keys").join("master.key").display().to_string(),
            blobs = root.join("exports").display(),
        ),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("keys")).unwrap();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tenancy"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("TENANCY_ADMIN_TOKEN", support::ADMIN)
            .env_remove("NO_COLOR")
            .env_remove("TENANCY_DATABASE_URL")
            .env_remove("TENANCY_DATA_DIR")
            .env_remove("TENANCY_LOG_FORMAT")
            .env_remove("TENANCY_MASTER_KEY")
            .env_remove("TENANCY_MASTER_KEY_FILE")
            .env_remove("RUST_LOG")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut logs = String::new();
        let addr = loop {
            assert!(Instant::now() < deadline, "no listening line: {logs}");
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                panic!("the server exited: {logs}");
            };
            logs.push_str(&line);
            logs.push('\n');
            if line.contains("listening") {
                let addr = line.split("addr=").nth(1).and_then(|r| r.split_whitespace().next());
                break addr.unwrap_or_else(|| panic!("no addr in {line:?}")).to_owned();
            }
        };
        let status = reqwest_blocking_get(&format!("http://{addr}/readyz"));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(status, 200);
        assert!(!logs.contains('\x1b'), "ANSI escapes in piped logs: {logs:?}");
        assert!(logs.contains(" INFO "), "text logs: {logs}");
        assert!(root.join("keys").join("master.key").exists(), "master_key_file is used");
        assert!(root.join("data").is_dir(), "data_dir is used");
        assert!(!root.join("data").join("master.key").exists());
    })
    .await
    .unwrap();
}

fn reqwest_blocking_get(url: &str) -> u16 {
    reqwest::blocking_get(url, support::ADMIN)
}

/// A setting that does not parse stops `tenancy serve` before it touches anything, with
/// an error naming where the value came from (it used to be ignored for the default):
/// the variable, the flag, or the config file's key.
#[test]
fn serve_refuses_a_bad_setting_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tenancy"));
        c.args(["serve", "--listen", "127.0.0.1:0"]).env("TENANCY_DATA_DIR", &data).env_remove("TENANCY_CONFIG");
        c
    };
    let run = |c: &mut Command| {
        let out = c.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };

    let (code, err) = run(serve().env("TENANCY_RECONCILE_INTERVAL_S", "abc"));
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("TENANCY_RECONCILE_INTERVAL_S") && err.contains("'abc'"), "{err}");

    let (code, err) = run(serve().arg("--workflow-in-flight=lots"));
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("--workflow-in-flight") && err.contains("'lots'"), "{err}");

    let file = dir.path().join("tenancy.toml");
    std::fs::write(&file, "workflow_lease_s = \"soon\"\n").unwrap();
    let (code, err) = run(serve().arg("--config").arg(&file));
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("workflow_lease_s") && err.contains("tenancy.toml"), "{err}");

    std::fs::write(&file, "reconcile_interval = 5\n").unwrap();
    let (code, err) = run(serve().arg("--config").arg(&file));
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("unknown field `reconcile_interval`"), "{err}");
    assert!(!data.exists(), "nothing was created before the configuration was read");
}
