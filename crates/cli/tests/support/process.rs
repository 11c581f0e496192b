//! A `tenancy serve` child process on a data directory, for kill -9 tests.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Kills the server process when dropped (also when the test panics).
pub struct Server(Child);

impl Server {
    pub fn kill_9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// Starts `tenancy serve` on `dir` (SQLite, 2 s workflow leases) and waits until it
/// listens; returns the process and its base URL.
pub fn spawn_server(dir: &std::path::Path) -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenancy"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("TENANCY_DATA_DIR", dir)
        .env("TENANCY_ADMIN_TOKEN", super::ADMIN)
        .env("TENANCY_WORKFLOW_LEASE_S", "2")
        .env_remove("TENANCY_DATABASE_URL")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        assert!(Instant::now() < deadline, "the server did not start");
        let Some(Ok(line)) = lines.next() else { panic!("the server exited") };
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if v["message"] == "listening" {
            break v["addr"].as_str().unwrap().to_owned();
        }
    };
    // Keep draining the logs so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Server(child), format!("http://{addr}"))
}
