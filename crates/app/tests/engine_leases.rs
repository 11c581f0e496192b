//! Leases: a task that runs longer than the lease keeps it (two workers, one call).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::json;
use tenancy_app::engine::{EngineOptions, TaskCall, TaskHandler, TaskOutput, TaskResult};
use tenancy_app::{App, OpContext, StartExecution, StateMachineSpec};
use tenancy_store::Store;
use tokio_util::sync::CancellationToken;

struct Slow {
    calls: Arc<AtomicUsize>,
}

#[async_trait]
impl TaskHandler for Slow {
    async fn call(&self, _call: TaskCall<'_>) -> TaskResult {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        Ok(TaskOutput::new(json!("slow")))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_longer_than_the_lease_runs_once() {
    let db = tenancy_store::sql::testing::sqlite().await;
    let store: Arc<dyn Store> = db.store.clone();
    let app = Arc::new(App::new(store, None));
    let calls = Arc::new(AtomicUsize::new(0));
    app.engine().handlers().register("test:slow", Slow { calls: calls.clone() });
    let ctx = OpContext::system();
    let def = json!({"StartAt": "S", "States": {"S": {"Type": "Task", "Resource": "test:slow", "End": true}}});
    app.state_machine_put(&ctx, "slow", StateMachineSpec { definition: def }).await.unwrap();

    let shutdown = CancellationToken::new();
    let mut workers = Vec::new();
    for owner in ["a", "b"] {
        let mut opts = EngineOptions::new(owner);
        opts.lease = Duration::from_millis(300);
        opts.poll_interval = Duration::from_millis(20);
        workers.push(tokio::spawn(app.engine().clone().run(opts, shutdown.clone())));
    }
    let req = StartExecution { state_machine: "slow".into(), input: None, name: None, tenant_id: None };
    let (exe, _) = app.execution_start(&ctx, req).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let e = app.execution_get(&ctx, &exe.id).await.unwrap();
        if e.status == "SUCCEEDED" {
            assert_eq!(e.output, Some(json!("slow")));
            break;
        }
        assert!(Instant::now() < deadline, "{e:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the task ran twice");
    shutdown.cancel();
    for w in workers {
        w.await.unwrap();
    }
}
