//! `tenancy state-machines` and `tenancy executions` against a real server.

mod support;

use serde_json::{json, Value};
use support::{run_cli as run, Backend, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_commands() {
    let s = TestServer::start(Backend::Sqlite).await;
    let url = s.url.clone();
    let file = s.dir.path().join("def.json");
    let def = json!({"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 3600, "Next": "Done"},
        "Done": {"Type": "Succeed"}}});
    std::fs::write(&file, def.to_string()).unwrap();
    let file = file.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        let mut results = Vec::new();
        results.push(run(&url, &["state-machines", "put", "hold", "--file", &file]));
        results.push(run(&url, &["state-machines", "list"]));
        results
            .push(run(&url, &["-o", "json", "executions", "start", "hold", "--input", "{\"a\": 1}", "--name", "one"]));
        let id = serde_json::from_str::<Value>(&results[2].1).map(|v| v["id"].as_str().unwrap_or("").to_owned());
        let id = id.unwrap_or_default();
        results.push(run(&url, &["executions", "list", "--state-machine", "hold"]));
        results.push(run(&url, &["executions", "history", &id]));
        results.push(run(&url, &["executions", "stop", &id, "--yes"]));
        results.push(run(&url, &["executions", "show", &id]));
        results.push(run(&url, &["executions", "redrive", &id]));
        results
    })
    .await
    .unwrap();
    for (i, (code, _, err)) in out.iter().enumerate().take(7) {
        assert_eq!(*code, 0, "command {i}: {err}");
    }
    assert!(out[1].1.contains("hold"), "{}", out[1].1);
    assert!(out[3].1.contains("RUNNING"), "{}", out[3].1);
    assert!(out[4].1.contains("WaitStateEntered"), "{}", out[4].1);
    assert!(out[6].1.contains("ABORTED"), "{}", out[6].1);
    // Redriving an aborted execution is refused.
    assert_eq!(out[7].0, 1, "{}", out[7].2);
    assert!(out[7].2.contains("not-redrivable"), "{}", out[7].2);
    s.stop().await;
}
