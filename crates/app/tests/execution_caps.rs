//! Caps on RUNNING user executions per state machine and per tenant (issue 11, finding
//! 2), on both engines: a start beyond a cap is 429 and writes nothing.

use std::sync::Arc;

use serde_json::json;
use tenancy_app::{App, OpContext, StartExecution, StateMachineSpec};
use tenancy_domain::plan::PlanSpec;
use tenancy_domain::tenant::NewTenant;
use tenancy_domain::{Error, ErrorCode};
use tenancy_store::{ExecutionFilter, Store};
use tenancy_store_sql::testing::{self, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_beyond_the_caps_are_refused_sqlite() {
    starts_beyond_the_caps_are_refused(testing::sqlite().await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_beyond_the_caps_are_refused_postgres() {
    starts_beyond_the_caps_are_refused(testing::postgres().await).await
}

async fn starts_beyond_the_caps_are_refused(db: TestDb) {
    let store: Arc<dyn Store> = db.store.clone();
    let mut app = App::new(tenancy_app::Services::new(store));
    app.set_execution_caps(3, 2);
    let ctx = OpContext::system();
    // No worker runs: the executions stay RUNNING in their Wait.
    let def = json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": true}}});
    for name in ["one", "two"] {
        app.state_machine_put(&ctx, name, StateMachineSpec { definition: def.clone(), retention_days: None })
            .await
            .unwrap();
    }
    let plan: PlanSpec = serde_json::from_value(json!({"name": "basic", "isolation": "pool"})).unwrap();
    app.plan_put(&ctx, "basic", plan, None).await.unwrap();
    let tenant =
        NewTenant { id: Some("acme".into()), name: "acme".into(), plan: "basic".into(), region: None, metadata: None };
    app.tenant_create(&ctx, tenant).await.unwrap();
    let start = |machine: &str, tenant: Option<&str>| StartExecution {
        state_machine: machine.into(),
        input: None,
        name: None,
        tenant_id: tenant.map(str::to_owned),
    };

    for _ in 0..3 {
        app.execution_start(&ctx, start("one", None)).await.unwrap();
    }
    let refused = app.execution_start(&ctx, start("one", None)).await.unwrap_err();
    assert!(matches!(refused, Error::TooManyRequests(_)), "{refused:?}");
    assert_eq!(refused.code(), ErrorCode::TooManyRequests);
    assert!(refused.to_string().contains("\"one\""), "{refused}");

    // Per tenant: across state machines; the lifecycle execution does not count.
    app.execution_start(&ctx, start("two", Some("acme"))).await.unwrap();
    app.execution_start(&ctx, start("two", Some("acme"))).await.unwrap();
    let refused = app.execution_start(&ctx, start("two", Some("acme"))).await.unwrap_err();
    assert!(matches!(refused, Error::TooManyRequests(_)), "{refused:?}");
    assert!(refused.to_string().contains("\"acme\""), "{refused}");
    // Another machine without a tenant is not capped by the tenant's.
    app.execution_start(&ctx, start("two", None)).await.unwrap();

    let page = tenancy_domain::page::PageRequest { limit: 100, after: None };
    let all = db.store.workflows().execution_list(&ExecutionFilter::default(), &page).await.unwrap();
    let user = all.items.iter().filter(|e| !e.state_machine.starts_with("tenancy.")).count();
    assert_eq!(user, 6, "a refused start wrote nothing");
}
