//! Shared by the `events_*` and `audit_*` tests: a server on port 0 with a fresh
//! database, an HTTP client, a local webhook receiver and polling with a deadline.

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use tenancy::serve::{start, RunningServer, ServeOptions};

pub const ADMIN: &str = "test-admin-token-events";

pub enum Db {
    Sqlite,
    Postgres,
}

pub struct TestServer {
    pub server: RunningServer,
    pub http: reqwest::Client,
    pub base: String,
    /// The database URL (SQLite file in `_dir` or a fresh PostgreSQL database).
    pub db_url: String,
    pub dir: tempfile::TempDir,
}

pub async fn server(db: Db, tweak: impl FnOnce(&mut ServeOptions)) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let db_url = match db {
        Db::Sqlite => None,
        Db::Postgres => Some(tenancy_store_sql::testing::fresh_postgres_url().await),
    };
    let mut opts = ServeOptions::for_tests(dir.path().to_path_buf(), db_url.clone(), ADMIN);
    tweak(&mut opts);
    let server = start(opts).await.expect("server starts");
    let db_url = db_url.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("tenancy.db").display()));
    TestServer { base: server.url(), server, http: tenancy_client::http_client(), db_url, dir }
}

impl TestServer {
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(ADMIN, method, path, body).await
    }

    pub async fn call_as(&self, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let (status, res) = self.call(reqwest::Method::POST, path, Some(body)).await;
        assert!((200..300).contains(&status), "POST {path}: {status} {res}");
        res
    }

    /// A raw connection to the server's database, for tampering.
    pub async fn raw_db(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::any::AnyPoolOptions::new().max_connections(1).connect(&self.db_url).await.expect("connect")
    }
}

/// Polls `f` until it returns `Some`, failing after 30 seconds.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    }
}

/// A webhook receiver: `/{name}` answers 200, unless `fail_next(name, n)` asked it to
/// answer 500 to the next `n` requests (`usize::MAX`: until told otherwise). Names
/// starting with `slow` take 5 seconds to answer.
#[derive(Clone, Default)]
pub struct Receiver {
    inner: Arc<Mutex<ReceiverState>>,
    pub addr: Option<SocketAddr>,
}

#[derive(Default)]
struct ReceiverState {
    received: Vec<Received>,
    failures: HashMap<String, usize>,
}

async fn receive(
    State(r): State<Receiver>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    if name.starts_with("slow") {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
    let mut s = r.inner.lock().unwrap();
    s.received.push(Received { path: name.clone(), headers, body: body.to_vec() });
    match s.failures.get_mut(&name) {
        Some(n) if *n > 0 => {
            *n = n.saturating_sub(1);
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::OK,
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let mut r = Receiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        r.addr = Some(listener.local_addr().unwrap());
        let app = axum::Router::new().route("/{name}", axum::routing::post(receive)).with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr.unwrap())
    }

    pub fn fail_next(&self, name: &str, n: usize) {
        self.inner.lock().unwrap().failures.insert(name.to_owned(), n);
    }

    pub fn received(&self, name: &str) -> Vec<Received> {
        self.inner.lock().unwrap().received.iter().filter(|r| r.path == name).cloned().collect()
    }
}
