//! `workflow-throughput`: executions per second of the durable workflow engine.
//!
//! Runs `executions` executions of a five-state machine (Pass, Task `tenancy:noop`,
//! Choice, Pass, Succeed) with `concurrency` of them in flight, on an in-process app
//! and engine worker (no HTTP): SQLite in a temporary directory by default, or the
//! PostgreSQL database at `database_url`. Every step is durable (committed before the
//! next), exactly as in `tenancy serve`.
//!
//! Prints executions/s, state transitions/s, start-to-finish p50/p99, and last the line
//! `workflow-throughput: <n> executions/s`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tenancy_app::engine::EngineOptions;
use tenancy_app::{App, OpContext, StartExecution, StateMachineSpec};
use tenancy_store::Store;
use tenancy_store_sql::{SqlOptions, SqlStore};
use tokio::sync::{oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

/// States entered by one execution of the machine.
const STATES_PER_EXECUTION: usize = 5;

fn machine() -> serde_json::Value {
    json!({
        "Comment": "workflow-throughput: Pass, Task, Choice, Pass, Succeed",
        "StartAt": "Prepare",
        "States": {
            "Prepare": {"Type": "Pass", "Parameters": {"n.$": "$.n"}, "Next": "Work"},
            "Work": {"Type": "Task", "Resource": "tenancy:noop", "ResultPath": "$.work", "Next": "Decide"},
            "Decide": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericGreaterThanEquals": 0, "Next": "Label"}],
                "Default": "Label"},
            "Label": {"Type": "Pass", "Result": "done", "ResultPath": "$.label", "Next": "Done"},
            "Done": {"Type": "Succeed"}
        }
    })
}

#[derive(Default)]
struct Finished {
    waiting: HashMap<String, oneshot::Sender<String>>,
    early: HashMap<String, String>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub async fn run(database_url: Option<String>, executions: usize, concurrency: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = database_url.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let mut sql = SqlOptions::new(&url);
    sql.max_connections = 16;
    let store = SqlStore::connect(&sql).await.context("failed to open the store")?;
    let store: Arc<dyn Store> = Arc::new(store);
    let backend = store.backend().as_str();
    let app = Arc::new(App::new(tenancy_app::Services::new(store)));
    let ctx = OpContext::system();
    let name = format!("bench-{}", uuid::Uuid::new_v4().simple());
    app.state_machine_put(&ctx, &name, StateMachineSpec { definition: machine(), retention_days: None }).await?;

    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(app.engine().clone().run(EngineOptions::new("bench-worker"), shutdown.clone()));

    let finished = Arc::new(Mutex::new(Finished::default()));
    let mut rx = app.engine().subscribe_finished();
    let listener = {
        let finished = finished.clone();
        tokio::spawn(async move {
            while let Ok((id, status)) = rx.recv().await {
                let mut f = finished.lock().expect("lock");
                match f.waiting.remove(&id) {
                    Some(tx) => {
                        let _ = tx.send(status);
                    }
                    None => {
                        f.early.insert(id, status);
                    }
                }
            }
        })
    };

    eprintln!("workflow-throughput: {executions} executions, {concurrency} in flight, {backend}");
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(executions)));
    let failures = Arc::new(Mutex::new(HashSet::new()));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..executions {
        let permit = permits.clone().acquire_owned().await?;
        let (app, finished, latencies, failures, name) =
            (app.clone(), finished.clone(), latencies.clone(), failures.clone(), name.clone());
        tasks.spawn(async move {
            let t0 = Instant::now();
            let req = StartExecution { state_machine: name, input: Some(json!({"n": i})), name: None, tenant_id: None };
            let (exe, _) = app.execution_start(&OpContext::system(), req).await?;
            let rx = {
                let mut f = finished.lock().expect("lock");
                match f.early.remove(&exe.id) {
                    Some(status) => Err(status),
                    None => {
                        let (tx, rx) = oneshot::channel();
                        f.waiting.insert(exe.id.clone(), tx);
                        Ok(rx)
                    }
                }
            };
            let status = match rx {
                Err(status) => status,
                Ok(rx) => match tokio::time::timeout(Duration::from_secs(120), rx).await {
                    Ok(Ok(status)) => status,
                    _ => app.execution_get(&OpContext::system(), &exe.id).await?.status,
                },
            };
            if status != "SUCCEEDED" {
                failures.lock().expect("lock").insert(exe.id.clone());
            }
            latencies.lock().expect("lock").push(t0.elapsed());
            drop(permit);
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    worker.await?;
    listener.abort();

    let failed = failures.lock().expect("lock").len();
    anyhow::ensure!(failed == 0, "{failed} executions did not succeed");
    let mut lat = latencies.lock().expect("lock").clone();
    lat.sort();
    let secs = elapsed.as_secs_f64();
    let per_s = executions as f64 / secs;
    println!("backend: {backend}");
    println!("executions: {executions} in {secs:.2} s ({concurrency} in flight)");
    println!("executions/s: {per_s:.0}");
    println!("state transitions/s: {:.0}", (executions * STATES_PER_EXECUTION) as f64 / secs);
    println!(
        "start-to-finish: p50 {:.1} ms, p99 {:.1} ms",
        percentile(&lat, 0.50).as_secs_f64() * 1000.0,
        percentile(&lat, 0.99).as_secs_f64() * 1000.0
    );
    println!("workflow-throughput: {per_s:.0} executions/s");
    Ok(())
}
