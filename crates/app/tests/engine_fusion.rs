//! Step fusion: a task that is local for its call (`TaskHandler::local_call`, such as a
//! hook step with no hook subscribed) commits with the remote task after it, and at
//! most one remote task runs between two commits (a crash never calls a finished
//! remote task again).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Value};
use tenancy_app::engine::{EngineOptions, TaskCall, TaskHandler, TaskOutput, TaskResult};
use tenancy_app::{App, OpContext, StartExecution, StateMachineSpec};
use tenancy_domain::page::PageRequest;
use tenancy_store::Store;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Local when its parameters say so (as a hook step with nobody to call).
struct MaybeLocal;

#[async_trait]
impl TaskHandler for MaybeLocal {
    async fn local_call(&self, _store: &Arc<dyn Store>, parameters: &Value) -> bool {
        parameters["local"] == json!(true)
    }

    async fn call(&self, _call: TaskCall<'_>) -> TaskResult {
        Ok(TaskOutput::new(json!("checked")))
    }
}

/// A remote call that waits for the test's go.
struct Remote {
    go: Arc<Semaphore>,
}

#[async_trait]
impl TaskHandler for Remote {
    async fn call(&self, _call: TaskCall<'_>) -> TaskResult {
        self.go.acquire().await.expect("semaphore").forget();
        Ok(TaskOutput::new(json!("applied")))
    }
}

/// The states whose task succeeded in the stored history.
async fn committed(store: &Arc<dyn Store>, id: &str) -> Vec<String> {
    let page = PageRequest::new(Some(1000), None).unwrap();
    let h = store.workflows().execution_history(id, &page).await.unwrap();
    h.items.iter().filter(|e| e.kind == "TaskSucceeded").filter_map(|e| e.state.clone()).collect()
}

async fn wait_for(store: &Arc<dyn Store>, id: &str, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = committed(store, id).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "committed {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_step_commits_with_the_remote_step_after_it_and_remote_steps_commit_one_by_one() {
    let db = tenancy_store_sql::testing::sqlite().await;
    let store: Arc<dyn Store> = db.store.clone();
    let app = Arc::new(App::new(tenancy_app::Services::new(store.clone())));
    let go = Arc::new(Semaphore::new(0));
    app.engine().handlers().register("test:maybe_local", MaybeLocal);
    app.engine().handlers().register("test:remote", Remote { go: go.clone() });
    let ctx = OpContext::system();
    let def = json!({"StartAt": "Check", "States": {
        "Check": {"Type": "Task", "Resource": "test:maybe_local", "Parameters": {"local": true}, "Next": "Apply"},
        "Apply": {"Type": "Task", "Resource": "test:remote", "Next": "Verify"},
        "Verify": {"Type": "Task", "Resource": "test:remote", "Next": "Again"},
        "Again": {"Type": "Task", "Resource": "test:maybe_local", "Parameters": {"local": false}, "End": true}
    }});
    app.state_machine_put(&ctx, "fused", StateMachineSpec { definition: def, retention_days: None }).await.unwrap();
    let shutdown = CancellationToken::new();
    let mut opts = EngineOptions::new("a");
    opts.poll_interval = Duration::from_millis(20);
    let worker = tokio::spawn(app.engine().clone().run(opts, shutdown.clone()));
    let req = StartExecution { state_machine: "fused".into(), input: None, name: None, tenant_id: None };
    let (exe, _) = app.execution_start(&ctx, req).await.unwrap();

    // `Check` ran (local for this call) and waits to commit with `Apply`, which runs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(committed(&store, &exe.id).await.is_empty(), "the local step committed alone");
    go.add_permits(1);
    // `Apply` done: it commits (with `Check`) before `Verify`, another remote call, runs.
    wait_for(&store, &exe.id, &["Check", "Apply"]).await;
    go.add_permits(1);
    // `Again` (remote for its call) runs after `Verify`'s commit; both are recorded.
    wait_for(&store, &exe.id, &["Check", "Apply", "Verify", "Again"]).await;
    let e = app.execution_get(&ctx, &exe.id).await.unwrap();
    assert_eq!(e.status, "SUCCEEDED");
    shutdown.cancel();
    worker.await.unwrap();
}
