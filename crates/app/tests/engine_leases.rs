//! Leases: a task that runs longer than the lease keeps it (two workers, one call).
//! Fairness: claims reach past one tenant's backlog.

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
    let db = tenancy_store_sql::testing::sqlite().await;
    let store: Arc<dyn Store> = db.store.clone();
    let app = Arc::new(App::new(tenancy_app::Services::new(store)));
    let calls = Arc::new(AtomicUsize::new(0));
    app.engine().handlers().register("test:slow", Slow { calls: calls.clone() });
    let ctx = OpContext::system();
    let def = json!({"StartAt": "S", "States": {"S": {"Type": "Task", "Resource": "test:slow", "End": true}}});
    app.state_machine_put(&ctx, "slow", StateMachineSpec { definition: def, retention_days: None }).await.unwrap();

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

struct Sleepy;

#[async_trait]
impl TaskHandler for Sleepy {
    async fn call(&self, _call: TaskCall<'_>) -> TaskResult {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(TaskOutput::new(json!("done")))
    }
}

/// Fairness: a backlog of one tenant does not hold up another tenant's execution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_backlog_does_not_starve_another() {
    let db = tenancy_store_sql::testing::sqlite().await;
    let store: Arc<dyn Store> = db.store.clone();
    let app = Arc::new(App::new(tenancy_app::Services::new(store)));
    app.engine().handlers().register("test:sleepy", Sleepy);
    let ctx = OpContext::system();
    // An execution's tenant must exist.
    let plan: tenancy_domain::plan::PlanSpec =
        serde_json::from_value(json!({"name": "basic", "isolation": "pool"})).unwrap();
    app.plan_put(&ctx, "basic", plan, None).await.unwrap();
    for id in ["big", "small"] {
        let new = tenancy_domain::tenant::NewTenant {
            id: Some(id.into()),
            name: id.into(),
            plan: "basic".into(),
            region: None,
            metadata: None,
        };
        app.tenant_create(&ctx, new).await.unwrap();
    }
    let def = json!({"StartAt": "S", "States": {"S": {"Type": "Task", "Resource": "test:sleepy", "End": true}}});
    app.state_machine_put(&ctx, "sleepy", StateMachineSpec { definition: def, retention_days: None }).await.unwrap();
    let start = |tenant: &str| StartExecution {
        state_machine: "sleepy".into(),
        input: None,
        name: None,
        tenant_id: Some(tenant.into()),
    };
    const BACKLOG: usize = 1_000;
    for _ in 0..BACKLOG {
        app.execution_start(&ctx, start("big")).await.unwrap();
    }
    let (small, _) = app.execution_start(&ctx, start("small")).await.unwrap();

    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(app.engine().clone().run(EngineOptions::new("w"), shutdown.clone()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.execution_get(&ctx, &small.id).await.unwrap().status != "SUCCEEDED" {
        assert!(Instant::now() < deadline, "the small tenant's execution never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let page = tenancy_domain::page::PageRequest { limit: 1_000, after: None };
    let big = tenancy_store::ExecutionFilter { tenant_id: Some("big".into()), ..Default::default() };
    let done = db.store.workflows().execution_list(&big, &page).await.unwrap();
    let finished = done.items.iter().filter(|e| e.status == "SUCCEEDED").count();
    // Oldest-first claiming would have run the whole backlog first.
    assert!(finished < BACKLOG / 2, "{finished} of the {BACKLOG} executions of the backlog finished first");
    shutdown.cancel();
    worker.await.unwrap();
}
