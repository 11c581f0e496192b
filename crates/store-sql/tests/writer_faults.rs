//! The SQLite writer under a database fault in the middle of a batch: a tenant create
//! answered with an error leaves no tenant row behind, even when other writes of the
//! same batch commit (a change and its events commit together or not at all).
//!
//! The fault is a trigger that refuses one tenant's insert. Tenants on a capped plan
//! are inserted one by one after the batch's merged insert of the others, so the
//! refusal comes after the merged statement has written its rows.

use std::sync::Arc;

use serde_json::json;
use sqlx::Connection;
use tenancy_domain::event::Event;
use tenancy_domain::plan::{Isolation, Plan};
use tenancy_domain::tenant::{Tenant, TenantStatus};
use tenancy_domain::time::Timestamp;
use tenancy_store::{Effects, Store};

fn plan(id: &str, max_tenants: Option<u64>) -> Plan {
    Plan {
        id: id.into(),
        name: id.into(),
        isolation: Isolation::Pool,
        features: vec![],
        quotas: Default::default(),
        workflows: Default::default(),
        config: Default::default(),
        rate_limit: None,
        regions: vec![],
        max_tenants,
        self_service: false,
        version: 1,
        created_at: Timestamp(1_000),
        updated_at: Timestamp(1_000),
    }
}

fn tenant(id: &str, plan: &str) -> Tenant {
    Tenant {
        id: id.into(),
        name: id.into(),
        plan: plan.into(),
        region: "eu".into(),
        status: TenantStatus::Provisioning,
        metadata: Default::default(),
        version: 1,
        created_at: Timestamp(2_000),
        updated_at: Timestamp(2_000),
        lifecycle_execution_id: None,
        release: None,
        pinned: None,
    }
}

fn created(id: &str) -> Effects {
    Effects::none().with_event(Event::new("TenantCreated", Some(id), vec![], json!({"id": id})))
}

#[tokio::test]
async fn a_create_refused_mid_batch_leaves_no_tenant_behind() {
    let db = tenancy_store_sql::testing::sqlite().await;
    let store: Arc<dyn Store> = db.store.clone();
    store.plan_put(&plan("open", None), None, &Effects::none()).await.unwrap();
    store.plan_put(&plan("capped", Some(1_000)), None, &Effects::none()).await.unwrap();
    let mut side = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER injected_fault BEFORE INSERT ON tenants WHEN NEW.id LIKE 'boom%' \
         BEGIN SELECT RAISE(ABORT, 'injected fault'); END",
    )
    .execute(&mut side)
    .await
    .unwrap();
    drop(side);
    for round in 0..20 {
        // Creates on the open plan (merged into one statement), refused creates on the
        // capped plan (inserted alone, after it), and other writes that succeed, all
        // at once so that they share the writer's batches.
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (s, id) = (store.clone(), format!("t{round}-{i}"));
            tasks.push(tokio::spawn(async move {
                let r = s.tenant_create(&tenant(&id, "open"), &created(&id)).await;
                (id, r.is_ok())
            }));
            let (s, id) = (store.clone(), format!("boom{round}-{i}"));
            tasks.push(tokio::spawn(async move {
                let r = s.tenant_create(&tenant(&id, "capped"), &created(&id)).await;
                (id, r.is_ok())
            }));
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                let fx = Effects::none().with_event(Event::new("Other", None, vec![], json!({})));
                s.commit_effects(&fx).await.unwrap();
                (String::new(), true)
            }));
        }
        for t in tasks {
            let (id, ok) = t.await.unwrap();
            if id.is_empty() {
                continue;
            }
            let exists = store.tenant_get(&id).await.is_ok();
            assert_eq!(exists, ok, "tenant {id}: create answered ok={ok}, but the row exists={exists}");
            assert!(!id.starts_with("boom") || !ok, "the injected fault refuses {id}");
        }
    }
}
