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

/// Starts `tenancy serve` on `dir` (SQLite, 2 s workflow leases, loopback allowed as an
/// outbound destination) and waits until it listens; returns the process and its base
/// URL.
pub fn spawn_server(dir: &std::path::Path) -> (Server, String) {
    try_spawn(dir, Spawn::default()).unwrap_or_else(|(code, stderr)| panic!("the server exited ({code}): {stderr}"))
}

/// How [`try_spawn`] starts the server.
#[derive(Default)]
pub struct Spawn<'a> {
    /// Extra environment (e.g. `TENANCY_DATABASE_URL`, `TENANCY_MASTER_KEY`).
    pub env: Vec<(&'a str, String)>,
    /// Extra `serve` arguments.
    pub args: Vec<&'a str>,
    /// Start it under this umask (through `sh -c 'umask ...; exec ...'`).
    pub umask: Option<&'a str>,
}

/// Starts `tenancy serve` on `dir` like [`spawn_server`], with `how`'s additions:
/// the listening server and its URL, or, when it exits first, its exit code and
/// everything it wrote to stderr.
pub fn try_spawn(dir: &std::path::Path, how: Spawn<'_>) -> Result<(Server, String), (i32, String)> {
    let bin = env!("CARGO_BIN_EXE_tenancy");
    let mut cmd = match how.umask {
        Some(mask) => {
            let mut c = Command::new("sh");
            c.arg("-c").arg(format!("umask {mask} && exec \"$0\" \"$@\"")).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        // Hooks and receivers of the tests run on loopback, which the outbound policy
        // refuses by default.
        .args(["--outbound-allow", "127.0.0.0/8,::1"])
        .args(&how.args)
        .env("TENANCY_DATA_DIR", dir)
        .env("TENANCY_ADMIN_TOKEN", super::ADMIN)
        .env("TENANCY_WORKFLOW_LEASE_S", "2")
        .env_remove("TENANCY_DATABASE_URL")
        .env_remove("TENANCY_MASTER_KEY")
        .env_remove("TENANCY_MASTER_KEY_FILE")
        .stderr(Stdio::piped());
    for (k, v) in &how.env {
        cmd.env(k, v);
    }
    // On PostgreSQL, a data-plane prefix of this test's own (as in-process test servers
    // get), not the default `tenancy` that every process test on the server would share.
    let prefix_given = how.env.iter().any(|(k, _)| *k == "TENANCY_DATA_PLANE_PREFIX");
    match how.env.iter().find(|(k, _)| *k == "TENANCY_DATABASE_URL") {
        Some((_, url)) if !prefix_given => {
            cmd.env("TENANCY_DATA_PLANE_PREFIX", tenancy::serve::test_prefix(url));
        }
        _ => {}
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    let addr = loop {
        assert!(Instant::now() < deadline, "the server neither started nor exited: {seen}");
        let Some(Ok(line)) = lines.next() else {
            let code = child.wait().unwrap().code().unwrap_or(-1);
            return Err((code, seen));
        };
        seen.push_str(&line);
        seen.push('\n');
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if v["message"] == "listening" {
            break v["addr"].as_str().unwrap().to_owned();
        }
    };
    // The server's warnings and errors go to the test's stderr, which the test runner
    // shows when the test fails (a 503 in a test is a line here saying why).
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if line.contains("\"level\":\"WARN\"") || line.contains("\"level\":\"ERROR\"") {
                eprintln!("server: {line}");
            }
        }
    });
    Ok((Server(child), format!("http://{addr}")))
}
