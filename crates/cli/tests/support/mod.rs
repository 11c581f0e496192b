//! Test support: real servers on port 0 with fresh databases, and an HTTP client.
#![allow(dead_code)]

pub mod process;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tenancy::serve::{start, RunningServer, ServeOptions};

pub const ADMIN: &str = "test-admin-token-of-32-characters";

/// Runs the `tenancy` binary as an operator (admin token) against `url`: its exit
/// code, stdout and stderr.
pub fn run_cli(url: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenancy"))
        .args(["--server", url, "--token", ADMIN])
        .args(args)
        .output()
        .expect("run tenancy");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates a `sqlite` and a `postgres` test for each named `async fn(Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::support::Backend::Sqlite).await }
            )*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::support::Backend::Postgres).await }
            )*
        }
    };
}

/// Prints the in-process servers' warnings and errors to the test's output (shown when
/// it fails): a test that times out waiting for a state then says why. `RUST_LOG`
/// overrides the level.
fn show_server_warnings() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

pub struct TestServer {
    pub server: Option<RunningServer>,
    pub url: String,
    pub database_url: Option<String>,
    http: reqwest::Client,
    pub dir: tempfile::TempDir,
}

/// A response: status, headers and JSON body (`Null` when empty).
pub struct Res {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Res {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

pub async fn database_url(backend: Backend) -> Option<String> {
    match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(tenancy_store_sql::testing::fresh_postgres_url().await),
    }
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        let url = database_url(backend).await;
        TestServer::start_with(url).await
    }

    pub async fn start_with(database_url: Option<String>) -> TestServer {
        TestServer::start_configured(database_url, |_| {}).await
    }

    /// A replica of a cluster on `database_url`: replicas share the master key that
    /// seals stored secrets (webhook secrets, database passwords).
    pub async fn start_replica(database_url: Option<String>) -> TestServer {
        let key = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
        TestServer::start_configured(database_url, |o| o.master_key = Some(key.to_owned().into())).await
    }

    pub async fn start_configured(
        database_url: Option<String>,
        configure: impl FnOnce(&mut ServeOptions),
    ) -> TestServer {
        show_server_warnings();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut opts = ServeOptions::for_tests(dir.path().to_owned(), database_url.clone(), ADMIN);
        configure(&mut opts);
        let server = start(opts).await.expect("server starts");
        TestServer { url: server.url(), server: Some(server), database_url, http: tenancy_client::http_client(), dir }
    }

    pub async fn call_with(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Res {
        let mut req = self.request(token, method, path, headers);
        if let Some(b) = body {
            req = req.json(&b);
        }
        read_res(req.send().await.expect("request sent")).await
    }

    /// A request to `path` with `token` as bearer and `headers`.
    fn request(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Res {
        self.call_with(Some(ADMIN), method, path, body, &[]).await
    }

    pub async fn get(&self, path: &str) -> Res {
        self.call(Method::GET, path, None).await
    }

    /// Sends `body` as it is, as JSON, with `token` and `headers`.
    pub async fn send_bytes(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Res {
        let req = self.request(token, method, path, headers).header("content-type", "application/json");
        read_res(req.body(body).send().await.expect("request sent")).await
    }

    /// Sends a request of `body_len` bytes with an `Idempotency-Key` over a fresh TCP
    /// connection and returns the status the server answers with, even when it answers
    /// before reading the body and drops the rest (as it does with a refused request).
    pub async fn status_of_large(&self, token: Option<&str>, method: &str, path: &str, body_len: usize) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.url.trim_start_matches("http://").to_owned();
        let stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        let (mut rd, mut wr) = stream.into_split();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Idempotency-Key: large-{}\r\nContent-Length: {body_len}\r\n",
            uuid::Uuid::new_v4().simple()
        );
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        head.push_str("\r\n");
        let writer = tokio::spawn(async move {
            wr.write_all(head.as_bytes()).await?;
            let chunk = vec![b' '; 64 * 1024];
            let mut left = body_len;
            while left > 0 {
                let n = left.min(chunk.len());
                wr.write_all(&chunk[..n]).await?;
                left -= n;
            }
            std::io::Result::Ok(wr)
        });
        let mut got = Vec::new();
        let read = async {
            let mut buf = [0u8; 1024];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), read).await.expect("an answer within 20 s");
        writer.abort();
        let text = String::from_utf8_lossy(&got);
        text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status line in {text:?}"))
    }

    /// A connection to the server's database.
    pub async fn raw_db(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        let url = match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.dir.path().join("tenancy.db").display()),
        };
        sqlx::any::AnyPoolOptions::new().max_connections(1).connect(&url).await.expect("connect")
    }

    /// Sends raw bytes with a content type (for malformed-input tests).
    pub async fn raw(&self, method: Method, path: &str, content_type: &str, body: &'static str) -> Res {
        let res = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(ADMIN)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request sent");
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.json().await.unwrap_or(Value::Null);
        Res { status, headers, body }
    }

    pub async fn put_plan(&self, id: &str, isolation: &str) {
        let res = self
            .call(
                Method::PUT,
                &format!("/v1/plans/{id}"),
                Some(json!({"name": id, "isolation": isolation, "features": ["sso"], "quotas": {"seats": 5}})),
            )
            .await;
        assert!(res.status.is_success(), "put plan: {} {}", res.status, res.body);
    }

    pub async fn create_tenant(&self, id: &str, plan: &str) -> Res {
        let res = self.call(Method::POST, "/v1/tenants", Some(json!({"id": id, "name": id, "plan": plan}))).await;
        assert_eq!(res.status, StatusCode::ACCEPTED, "create tenant: {}", res.body);
        res
    }

    /// Polls a tenant until it reaches `status`, failing after 120 s, or at once when it
    /// fails. The bound is generous on purpose: offboarding a silo tenant on PostgreSQL
    /// drops its database, which waits for a checkpoint of the whole shared test server,
    /// and with the suite's other tests creating and dropping databases beside it on two
    /// cores, that took over 30 s in a full run (the same test alone: under 1 s).
    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let res = self.get(&format!("/v1/tenants/{id}")).await;
            if res.body["status"] == status {
                return res.body;
            }
            let failed = res.body["status"] == "failed" && status != "failed";
            if failed || Instant::now() >= deadline {
                let events = self.get(&format!("/v1/events?tenant_id={id}&limit=1000")).await;
                panic!("tenant {id} never became {status}: {}\nits events: {}", res.body, events.body);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls an execution until its status is `status`, failing after 120 s (generous for
    /// the same reason as [`TestServer::wait_status`]).
    pub async fn wait_execution(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let res = self.get(&format!("/v1/executions/{id}")).await;
            if res.body["status"] == status {
                return res.body;
            }
            assert!(Instant::now() < deadline, "execution {id} never became {status}: {}", res.body);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Detail types of the archived events of a tenant, oldest first.
    pub async fn event_types(&self, tenant: &str) -> Vec<String> {
        let res = self.get(&format!("/v1/events?tenant_id={tenant}&limit=1000")).await;
        res.body["items"].as_array().unwrap().iter().map(|e| e["detail-type"].as_str().unwrap().to_owned()).collect()
    }

    /// Number of audit records (all of them).
    pub async fn audit_count(&self) -> usize {
        self.get("/v1/audit?limit=1000").await.body["items"].as_array().unwrap().len()
    }

    /// Creates an API key and returns its plaintext.
    pub async fn key(&self, role: &str, tenant: Option<&str>) -> String {
        let mut body = json!({"name": format!("{role} key"), "role": role});
        if let Some(t) = tenant {
            body["tenant_id"] = json!(t);
        }
        let res = self.call(Method::POST, "/v1/api-keys", Some(body)).await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
        res.body["key"].as_str().unwrap().to_owned()
    }

    /// A client for a server started elsewhere (e.g. restarted on the same database).
    pub fn attach(url: String) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        TestServer { url, server: None, database_url: None, http: tenancy_client::http_client(), dir }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
    }
}

/// Status, headers and body of `res` (JSON when it parses, else the text; null when empty).
async fn read_res(res: reqwest::Response) -> Res {
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.expect("body read");
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    Res { status, headers, body }
}
