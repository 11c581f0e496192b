//! The conformance suite every [`Store`] backend must pass.
//!
//! Written once against the trait; [`store_conformance_suite!`] instantiates it for a
//! backend as one `#[tokio::test]` per case:
//!
//! ```text
//! tenancy_store::store_conformance_suite!(sqlite, tenancy_store_sql::testing::sqlite());
//! ```

use std::sync::Arc;

use serde_json::json;
use tenancy_audit::AuditEntry;
use tenancy_domain::apikey::{ApiKey, Role};
use tenancy_domain::event::Event;
use tenancy_domain::page::PageRequest;
use tenancy_domain::plan::{Isolation, Plan};
use tenancy_domain::tenant::{Tenant, TenantFilter, TenantStatus, Transition};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode};

use crate::audit::*;
use crate::drift::ReconciliationRun;
use crate::events::*;
use crate::store::*;

/// Generates one test per conformance case for a backend. `$make` is an expression
/// evaluating to a future of a value with a `store: Arc<impl Store>` field, kept alive
/// for the test's duration.
#[macro_export]
macro_rules! store_conformance_suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            $crate::store_conformance_suite!(@cases $make;
                ready, plans_put_get_list, plan_versions, plan_delete_in_use, plan_isolation_in_use, tenant_create_and_duplicate,
                tenant_unknown_plan, tenant_list_filters_and_pages, tenant_update_versions, tenant_purge_releases_the_id,
                effects_commit_with_the_change, effects_roll_back_with_the_change,
                idempotency_keys, idempotency_lease_expiry, api_keys, signups_are_claimed_once, event_and_audit_lists, subscriptions_crud,
                outbox_dispatch_fans_out_once, deliveries_are_leased_and_recorded, dead_deliveries_retry,
                replay_ranges_and_pruning, events_and_audit_archive, audit_sealing, concurrent_writes_fail_alone, drift_is_reported_once,
                the_latest_reconciliation_run_is_kept, the_first_master_key_fingerprint_stays,
                functions_keep_their_secret, releases_move_the_default_and_keep_their_bundle,
                quotas_refuse_over_a_hard_limit, quotas_batches_are_all_or_nothing,
                quotas_soft_overage_and_events, quotas_idempotency_keys, quotas_release_and_periods,
                quotas_concurrent_consumers_never_over_grant, quotas_go_with_a_purged_tenant, plan_config_and_overrides,
                quotas_prune_ended_periods_and_old_grants,
                secrets_stages_versions_and_deletion, secrets_rewrap_is_all_or_nothing,
                connections_put_with_their_secret_and_refuse_deletion_in_use, policies_move_the_revision,
                secrets_rotations_run_one_at_a_time, job_leases_expire,

                tenant_create_keeps_to_max_tenants, tenant_moves_count_toward_max_tenants,
                metrics_gauges_count_stored_state);
        }
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let db = $make.await;
                let store: std::sync::Arc<dyn $crate::Store> = db.store.clone();
                $crate::conformance::$case(store).await;
            }
        )*
    };
}

pub(crate) fn plan(id: &str, isolation: Isolation) -> Plan {
    Plan {
        id: id.into(),
        name: id.to_uppercase(),
        isolation,
        features: vec!["sso".into()],
        quotas: Default::default(),
        workflows: Default::default(),
        config: Default::default(),
        rate_limit: None,
        regions: vec![],
        max_tenants: None,
        self_service: false,
        version: 1,
        created_at: Timestamp(1_000),
        updated_at: Timestamp(1_000),
    }
}

pub(crate) fn tenant(id: &str, plan: &str, region: &str) -> Tenant {
    Tenant {
        id: id.into(),
        name: format!("Tenant {id}"),
        plan: plan.into(),
        region: region.into(),
        status: TenantStatus::Provisioning,
        metadata: json!({"tier": "gold"}).as_object().cloned().unwrap_or_default(),
        version: 1,
        created_at: Timestamp(2_000),
        updated_at: Timestamp(2_000),
        // Round-trips through create, update and get like the other columns.
        lifecycle_execution_id: Some(format!("exe_{id}")),
        release: Some("1.0.0".into()),
        pinned: Some(tenancy_domain::release::Pin { reason: "audit".into(), pinned_at: Timestamp(2_000) }),
    }
}

fn audit(action: &str, tenant: Option<&str>) -> AuditEntry {
    AuditEntry {
        id: tenancy_domain::ids::new_id("aud"),
        time: Timestamp::now(),
        actor_key_id: Some("key_test".into()),
        actor_role: "admin".into(),
        action: action.into(),
        target: format!("tenant/{}", tenant.unwrap_or("-")),
        tenant_id: tenant.map(str::to_owned),
        request_id: Some("req-1".into()),
        source_ip: Some("127.0.0.1".into()),
        outcome: "success".into(),
        detail: json!({}),
    }
}

fn created(t: &Tenant) -> Effects {
    Effects::none()
        .with_event(Event::new("TenantCreated", Some(&t.id), vec![], json!({"id": t.id})))
        .with_audit(audit("tenant.create", Some(&t.id)))
}

fn page(limit: u32) -> PageRequest {
    PageRequest { limit, after: None }
}

async fn all_events(store: &dyn Store, tenant: &str) -> Vec<StoredEvent> {
    let filter = EventFilter { tenant_id: Some(tenant.into()), ..Default::default() };
    store.event_list(&filter, &page(1000)).await.unwrap().items
}

pub async fn ready(store: Arc<dyn Store>) {
    store.ready().await.unwrap();
}

pub async fn plans_put_get_list(store: Arc<dyn Store>) {
    for id in ["pro", "basic", "enterprise"] {
        store.plan_put(&plan(id, Isolation::Pool), None, &Effects::none()).await.unwrap();
    }
    let got = store.plan_get("pro").await.unwrap();
    assert_eq!(got, plan("pro", Isolation::Pool));
    let first = store.plan_list(&page(2)).await.unwrap();
    assert_eq!(first.items.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["basic", "enterprise"]);
    let next = PageRequest { limit: 2, after: first.next_cursor };
    let second = store.plan_list(&next).await.unwrap();
    assert_eq!(second.items.len(), 1);
    assert_eq!(second.next_cursor, None);
    assert!(matches!(store.plan_get("nope").await, Err(Error::NotFound { .. })));
    // A plan's own lifecycle state machines are kept, and cleared by a write without them.
    let mut own = plan("pro", Isolation::Pool);
    own.workflows.provision = Some("tenancy.lifecycle.pro".into());
    own.workflows.offboard = Some("tenancy.lifecycle.bye".into());
    store.plan_put(&own, None, &Effects::none()).await.unwrap();
    assert_eq!(store.plan_get("pro").await.unwrap().workflows, own.workflows);
    store.plan_put(&plan("pro", Isolation::Pool), None, &Effects::none()).await.unwrap();
    assert!(store.plan_get("pro").await.unwrap().workflows.is_empty());
}

/// A plan's config values are kept; a tenant's overrides are set whole, read back
/// (expiry included), replaced and cleared, each write with its effects.
pub async fn plan_config_and_overrides(store: Arc<dyn Store>) {
    use tenancy_domain::entitlements::Overrides;
    let mut p = plan("pro", Isolation::Pool);
    p.config.insert("theme".into(), json!("dark"));
    p.config.insert("limits".into(), json!({"upload_mb": 5}));
    p.rate_limit = Some(tenancy_domain::ratelimit::RateLimit::new(5, 10));
    store.plan_put(&p, None, &Effects::none()).await.unwrap();
    let stored = store.plan_get("pro").await.unwrap();
    assert_eq!((&stored.config, stored.rate_limit), (&p.config, p.rate_limit));
    // The rate limit is replaced with the plan, and goes when the plan has none.
    let none = Plan { rate_limit: None, ..stored.clone() };
    let stored = store.plan_put(&none, Some(stored.version), &Effects::none()).await.unwrap();
    assert_eq!(store.plan_get("pro").await.unwrap().rate_limit, None);
    store
        .plan_put(&Plan { rate_limit: p.rate_limit, ..stored.clone() }, Some(stored.version), &Effects::none())
        .await
        .unwrap();
    assert_eq!(store.plan_get("pro").await.unwrap().rate_limit, p.rate_limit);
    let t = tenant("acme", "pro", "eu");
    store.tenant_create(&t, &created(&t)).await.unwrap();
    let ents = store.entitlements();
    assert_eq!(ents.overrides_get("acme").await.unwrap(), None);
    let mut o = Overrides::none("acme");
    o.features.insert("sso".into(), false);
    o.quotas.insert("seats".into(), 50);
    o.config.insert("theme".into(), json!("light"));
    o.expires_at = Some(Timestamp(9_000));
    o.updated_at = Some(Timestamp(2_000));
    let fx = Effects::none()
        .with_event(Event::new("TenantEntitlementsChanged", Some("acme"), vec![], json!({})))
        .with_audit(audit("tenant.overrides.put", Some("acme")));
    ents.overrides_put(&o, &fx).await.unwrap();
    assert_eq!(ents.overrides_get("acme").await.unwrap(), Some(o.clone()));
    let mut replaced = Overrides::none("acme");
    replaced.features.insert("beta".into(), true);
    replaced.updated_at = Some(Timestamp(3_000));
    ents.overrides_put(&replaced, &Effects::none()).await.unwrap();
    assert_eq!(ents.overrides_get("acme").await.unwrap(), Some(replaced));
    assert!(ents.overrides_delete("acme", &Effects::none()).await.unwrap());
    assert!(!ents.overrides_delete("acme", &Effects::none()).await.unwrap());
    assert_eq!(ents.overrides_get("acme").await.unwrap(), None);
    let events = all_events(&*store, "acme").await;
    assert_eq!(events.iter().filter(|e| e.event.detail_type == "TenantEntitlementsChanged").count(), 1);
}

pub async fn plan_versions(store: Arc<dyn Store>) {
    let v1 = store.plan_put(&plan("pro", Isolation::Pool), None, &Effects::none()).await.unwrap();
    assert_eq!(v1.version, 1);
    let v2 = store.plan_put(&plan("pro", Isolation::Silo), Some(1), &Effects::none()).await.unwrap();
    assert_eq!((v2.version, v2.isolation), (2, Isolation::Silo));
    let stale = store.plan_put(&plan("pro", Isolation::Pool), Some(1), &Effects::none()).await;
    assert!(matches!(stale, Err(Error::PreconditionFailed { expected: 1, found: 2, .. })), "{stale:?}");
    assert_eq!(store.plan_get("pro").await.unwrap().isolation, Isolation::Silo);
}

pub async fn plan_delete_in_use(store: Arc<dyn Store>) {
    store.plan_put(&plan("pro", Isolation::Pool), None, &Effects::none()).await.unwrap();
    let t = store.tenant_create(&tenant("acme", "pro", "eu"), &Effects::none()).await.unwrap();
    let err = store.plan_delete("pro", &Effects::none()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PlanInUse);
    // Offboarded tenants are tombstones and do not hold their plan.
    let mut gone = t.clone();
    gone.status = TenantStatus::Offboarded;
    store.tenant_update(&gone, t.version, &Effects::none()).await.unwrap();
    store.plan_delete("pro", &Effects::none()).await.unwrap();
    assert!(matches!(store.plan_delete("pro", &Effects::none()).await, Err(Error::NotFound { .. })));
}

/// A plan's isolation is fixed while tenants hold it (their data is laid out by it);
/// its other fields still change, and an offboarded tenant no longer holds it.
pub async fn plan_isolation_in_use(store: Arc<dyn Store>) {
    store.plan_put(&plan("pro", Isolation::Pool), None, &Effects::none()).await.unwrap();
    let t = store.tenant_create(&tenant("acme", "pro", "eu"), &Effects::none()).await.unwrap();
    let err = store.plan_put(&plan("pro", Isolation::Silo), None, &Effects::none()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PlanInUse, "{err:?}");
    assert!(err.to_string().contains("isolation"), "{err}");
    let got = store.plan_get("pro").await.unwrap();
    assert_eq!((got.isolation, got.version), (Isolation::Pool, 1), "nothing changed");
    let mut renamed = plan("pro", Isolation::Pool);
    renamed.name = "Professional".into();
    assert_eq!(store.plan_put(&renamed, Some(1), &Effects::none()).await.unwrap().version, 2);
    let mut gone = t.clone();
    gone.status = TenantStatus::Offboarded;
    store.tenant_update(&gone, t.version, &Effects::none()).await.unwrap();
    // A tenant in the middle of a plan change may be moving to this plan.
    store.plan_put(&plan("basic", Isolation::Pool), None, &Effects::none()).await.unwrap();
    let other = store.tenant_create(&tenant("other", "basic", "eu"), &Effects::none()).await.unwrap();
    let mut moving = other.clone();
    moving.status = TenantStatus::Updating;
    store.tenant_update(&moving, other.version, &Effects::none()).await.unwrap();
    let err = store.plan_put(&plan("pro", Isolation::Silo), None, &Effects::none()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PlanInUse, "{err:?}");
    moving.status = TenantStatus::Active;
    store.tenant_update(&moving, other.version + 1, &Effects::none()).await.unwrap();
    let silo = store.plan_put(&plan("pro", Isolation::Silo), None, &Effects::none()).await.unwrap();
    assert_eq!((silo.isolation, silo.version), (Isolation::Silo, 3));
}

pub async fn tenant_create_and_duplicate(store: Arc<dyn Store>) {
    store.plan_put(&plan("pro", Isolation::Pool), None, &Effects::none()).await.unwrap();
    let t = tenant("acme", "pro", "eu");
    store.tenant_create(&t, &Effects::none()).await.unwrap();
    assert_eq!(store.tenant_get("acme").await.unwrap(), t);
    let dup = store.tenant_create(&t, &created(&t)).await.unwrap_err();
    assert!(matches!(dup, Error::AlreadyExists { .. }), "{dup:?}");
    assert!(all_events(&*store, "acme").await.is_empty(), "a rejected create wrote an event");
}

/// A plan's `max_tenants` holds under concurrent creates (each with its event): exactly
/// the cap commit, the others are `plan-unavailable` and write nothing; an offboarded
/// tenant makes room; a plan without a cap takes any number.
pub async fn tenant_create_keeps_to_max_tenants(store: Arc<dyn Store>) {
    let mut capped = plan("tiny", Isolation::Pool);
    capped.max_tenants = Some(3);
    store.plan_put(&capped, None, &Effects::none()).await.unwrap();
    store.plan_put(&plan("open", Isolation::Pool), None, &Effects::none()).await.unwrap();
    let creates = (0..16).map(|i| {
        let store = store.clone();
        // Half on the open plan: they share the SQLite writer's batches with the capped ones.
        let t = tenant(&format!("t{i}"), if i % 2 == 0 { "tiny" } else { "open" }, "eu");
        tokio::spawn(async move { store.tenant_create(&t, &created(&t)).await })
    });
    let results: Vec<_> = futures::future::join_all(creates).await.into_iter().map(|r| r.unwrap()).collect();
    let (ok, refused): (Vec<_>, Vec<_>) =
        results.iter().enumerate().filter(|(i, _)| i % 2 == 0).partition(|(_, r)| r.is_ok());
    assert_eq!(ok.len(), 3, "exactly max_tenants creates commit");
    for (i, r) in &refused {
        assert_eq!(r.as_ref().unwrap_err().code(), ErrorCode::PlanUnavailable, "{r:?}");
        assert!(all_events(&*store, &format!("t{i}")).await.is_empty(), "a refused create wrote an event");
    }
    assert!(results.iter().enumerate().filter(|(i, _)| i % 2 == 1).all(|(_, r)| r.is_ok()), "no cap, no refusal");
    let filter = TenantFilter { plan: Some("tiny".into()), ..Default::default() };
    assert_eq!(store.tenant_list(&filter, &page(100)).await.unwrap().items.len(), 3);
    // An offboarded tenant does not hold the plan: room for one more.
    let i = ok[0].0;
    let mut gone = store.tenant_get(&format!("t{i}")).await.unwrap();
    let version = gone.version;
    gone.status = TenantStatus::Offboarded;
    store.tenant_update(&gone, version, &Effects::none()).await.unwrap();
    store.tenant_create(&tenant("late", "tiny", "eu"), &Effects::none()).await.unwrap();
    let full = store.tenant_create(&tenant("later", "tiny", "eu"), &Effects::none()).await.unwrap_err();
    assert_eq!(full.code(), ErrorCode::PlanUnavailable, "{full:?}");
}

/// A tenant moving to a capped plan counts toward it from the write that starts the
/// move until the move ends (applied: as a holder; reverted: not at all), for other
/// moves and for creates alike.
pub async fn tenant_moves_count_toward_max_tenants(store: Arc<dyn Store>) {
    let mut capped = plan("tiny", Isolation::Pool);
    capped.max_tenants = Some(1);
    store.plan_put(&capped, None, &Effects::none()).await.unwrap();
    store.plan_put(&plan("open", Isolation::Pool), None, &Effects::none()).await.unwrap();
    let start = |id: &str, execution: &str| {
        let store = store.clone();
        let (id, execution) = (id.to_owned(), execution.to_owned());
        async move {
            let mut t = store.tenant_get(&id).await.unwrap();
            let version = t.version;
            t.status = TenantStatus::Updating;
            t.lifecycle_execution_id = Some(execution);
            store.tenant_move_start(&t, version, "tiny", &Effects::none()).await
        }
    };
    for id in ["a", "b"] {
        let mut t = store.tenant_create(&tenant(id, "open", "eu"), &Effects::none()).await.unwrap();
        t.status = TenantStatus::Active;
        store.tenant_update(&t, 1, &Effects::none()).await.unwrap();
    }
    let a = start("a", "exe-a1").await.unwrap();
    assert_eq!((a.plan.as_str(), a.status), ("open", TenantStatus::Updating), "the move starts; the plan is kept");
    let err = start("b", "exe-b1").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PlanUnavailable, "{err:?}");
    assert_eq!(store.tenant_get("b").await.unwrap().status, TenantStatus::Active, "a refused move writes nothing");
    let err = store.tenant_create(&tenant("c", "tiny", "eu"), &Effects::none()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PlanUnavailable, "a mover counts for creates: {err:?}");
    // Reverted (back to active on its old plan): it no longer counts.
    let mut reverted = store.tenant_get("a").await.unwrap();
    let version = reverted.version;
    reverted.status = TenantStatus::Active;
    store.tenant_update(&reverted, version, &Effects::none()).await.unwrap();
    let b = start("b", "exe-b2").await.unwrap();
    // Applied: it counts once, as a holder.
    let mut applied = b.clone();
    applied.plan = "tiny".into();
    applied.status = TenantStatus::Active;
    store.tenant_update(&applied, b.version, &Effects::none()).await.unwrap();
    let err = start("a", "exe-a2").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PlanUnavailable, "{err:?}");
    let err = store.tenant_move_start(&reverted, 0, "ghost", &Effects::none()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnknownPlan, "{err:?}");
}

pub async fn tenant_unknown_plan(store: Arc<dyn Store>) {
    let err = store.tenant_create(&tenant("acme", "ghost", "eu"), &Effects::none()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnknownPlan);
    assert!(matches!(store.tenant_get("acme").await, Err(Error::NotFound { .. })));
}

pub async fn tenant_list_filters_and_pages(store: Arc<dyn Store>) {
    store.plan_put(&plan("pro", Isolation::Pool), None, &Effects::none()).await.unwrap();
    store.plan_put(&plan("basic", Isolation::Pool), None, &Effects::none()).await.unwrap();
    for i in 0..30 {
        let p = if i % 3 == 0 { "pro" } else { "basic" };
        let r = if i % 2 == 0 { "eu" } else { "us" };
        let mut t = tenant(&format!("t{i:02}"), p, r);
        if i % 5 == 0 {
            t.status = TenantStatus::Active;
        }
        store.tenant_create(&t, &Effects::none()).await.unwrap();
    }
    let filter = TenantFilter { plan: Some("pro".into()), ..Default::default() };
    let mut seen = Vec::new();
    let mut req = page(3);
    loop {
        let p = store.tenant_list(&filter, &req).await.unwrap();
        assert!(p.items.len() <= 3);
        seen.extend(p.items.iter().map(|t| t.id.clone()));
        match p.next_cursor {
            Some(c) => req = PageRequest { limit: 3, after: Some(c) },
            None => break,
        }
    }
    let expected: Vec<String> = (0..30).filter(|i| i % 3 == 0).map(|i| format!("t{i:02}")).collect();
    assert_eq!(seen, expected);
    let filter = TenantFilter {
        plan: Some("pro".into()),
        status: Some(TenantStatus::Active),
        region: Some("eu".into()),
        release: Some("1.0.0".into()),
    };
    let ids: Vec<String> =
        store.tenant_list(&filter, &page(100)).await.unwrap().items.into_iter().map(|t| t.id).collect();
    assert_eq!(ids, ["t00"]);
    let other = TenantFilter { release: Some("2.0.0".into()), ..Default::default() };
    assert!(store.tenant_list(&other, &page(100)).await.unwrap().items.is_empty(), "no tenant is on 2.0.0");
}

pub async fn tenant_update_versions(store: Arc<dyn Store>) {
    store.plan_put(&plan("pro", Isolation::Pool), None, &Effects::none()).await.unwrap();
    let mut t = store.tenant_create(&tenant("acme", "pro", "eu"), &Effects::none()).await.unwrap();
    t.transition(Transition::Provisioned).unwrap();
    let v2 = store.tenant_update(&t, 1, &Effects::none()).await.unwrap();
    assert_eq!(v2.version, 2);
    let mut other = t.clone();
    other.name = "Lost update".into();
    let fx = Effects::none().with_event(Event::new("TenantUpdated", Some("acme"), vec![], json!({})));
    let err = store.tenant_update(&other, 1, &fx).await.unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { expected: 1, found: 2, .. }), "{err:?}");
    let stored = store.tenant_get("acme").await.unwrap();
    assert_eq!((stored.name.as_str(), stored.status, stored.version), ("Tenant acme", TenantStatus::Active, 2));
    assert!(all_events(&*store, "acme").await.is_empty());
}

/// A purge deletes an offboarded tenant at its version, with its resource records and
/// secrets, and writes its effects; the id can be created again (and read back, not
/// the old tombstone); anything else is refused and writes nothing.
pub async fn tenant_purge_releases_the_id(store: Arc<dyn Store>) {
    store.plan_put(&plan("pro", Isolation::Pool), None, &Effects::none()).await.unwrap();
    let t = store.tenant_create(&tenant("acme", "pro", "eu"), &Effects::none()).await.unwrap();
    let fx = || Effects::none().with_event(Event::new("TenantPurged", Some("acme"), vec![], json!({})));
    let err = store.tenant_purge("acme", 1, &fx()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidTransition, "{err:?}");
    let record = crate::TenantResource {
        tenant_id: "acme".into(),
        kind: "export".into(),
        detail: json!({}),
        created_by: "k".into(),
        created_at: Timestamp(3_000),
    };
    store.workflows().tenant_resource_put(&record).await.unwrap();
    store.workflows().tenant_secret_put("acme", "database:silo", "sealed").await.unwrap();
    let gone =
        store.tenant_update(&Tenant { status: TenantStatus::Offboarded, ..t.clone() }, 1, &Effects::none()).await;
    assert_eq!(store.tenant_get("acme").await.unwrap().status, TenantStatus::Offboarded);
    let err = store.tenant_purge("acme", 1, &fx()).await.unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { expected: 1, found: 2, .. }), "{err:?}");
    assert!(all_events(&*store, "acme").await.is_empty(), "a refused purge writes nothing");
    store.tenant_purge("acme", gone.unwrap().version, &fx()).await.unwrap();
    assert!(matches!(store.tenant_get("acme").await, Err(Error::NotFound { .. })));
    assert!(store.workflows().tenant_resource_list("acme").await.unwrap().is_empty());
    assert_eq!(store.workflows().tenant_secret_get("acme", "database:silo").await.unwrap(), None);
    assert_eq!(all_events(&*store, "acme").await.len(), 1);
    assert!(matches!(store.tenant_purge("acme", 2, &fx()).await, Err(Error::NotFound { .. })));
    // The id again: a new tenant, read back as itself.
    let again = Tenant { name: "Again".into(), created_at: Timestamp(5_000), ..tenant("acme", "pro", "eu") };
    store.tenant_create(&again, &Effects::none()).await.unwrap();
    let read = store.tenant_get("acme").await.unwrap();
    assert_eq!((read.name.as_str(), read.version, read.status), ("Again", 1, TenantStatus::Provisioning));
}

pub async fn effects_commit_with_the_change(store: Arc<dyn Store>) {
    store.plan_put(&plan("pro", Isolation::Pool), None, &Effects::none()).await.unwrap();
    let t = tenant("acme", "pro", "eu");
    let fx = created(&t);
    store.tenant_create(&t, &fx).await.unwrap();
    let events = all_events(&*store, "acme").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event, fx.events[0]);
    let audit = store
        .audit_list(&AuditFilter { tenant_id: Some("acme".into()), ..Default::default() }, &page(10))
        .await
        .unwrap();
    assert_eq!(audit.items.len(), 1);
    assert_eq!(audit.items[0].entry, fx.audit[0]);
}

pub async fn effects_roll_back_with_the_change(store: Arc<dyn Store>) {
    store.plan_put(&plan("pro", Isolation::Pool), None, &Effects::none()).await.unwrap();
    let t = tenant("acme", "pro", "eu");
    // The change is written, then one of its effects fails (an event id that already
    // exists): the change must not survive without its event.
    let e = Event::new("TenantCreated", Some("other"), vec![], json!({}));
    store.commit_effects(&Effects::none().with_event(e.clone())).await.unwrap();
    let fx = Effects::none().with_event(e).with_audit(audit("tenant.create", Some("acme")));
    assert!(store.tenant_create(&t, &fx).await.is_err());
    assert!(matches!(store.tenant_get("acme").await, Err(Error::NotFound { .. })));
    assert!(all_events(&*store, "acme").await.is_empty());
    let audit = store.audit_list(&AuditFilter::default(), &page(10)).await.unwrap();
    assert!(audit.items.is_empty());
}

pub async fn idempotency_keys(store: Arc<dyn Store>) {
    const LEASE: i64 = 60_000;
    assert_eq!(store.idempotency_begin("k1", "abc", "h1", LEASE).await.unwrap(), IdempotencyState::Started);
    assert_eq!(
        store.idempotency_begin("k1", "abc", "h2", LEASE).await.unwrap(),
        IdempotencyState::InProgress { request_hash: "h1".into() }
    );
    assert_eq!(
        store.idempotency_begin("k1", "abc", "h1", LEASE).await.unwrap(),
        IdempotencyState::InProgress { request_hash: "h1".into() },
        "leased to the first request"
    );
    assert_eq!(
        store.idempotency_begin("k2", "abc", "h2", LEASE).await.unwrap(),
        IdempotencyState::Started,
        "scoped per caller"
    );
    store.idempotency_finish("k1", "abc", 201, "{\"ok\":true}").await.unwrap();
    assert_eq!(
        store.idempotency_begin("k1", "abc", "h1", LEASE).await.unwrap(),
        IdempotencyState::Completed { request_hash: "h1".into(), status: 201, response: "{\"ok\":true}".into() }
    );
    store.idempotency_abandon("k2", "abc").await.unwrap();
    assert_eq!(store.idempotency_begin("k2", "abc", "h3", LEASE).await.unwrap(), IdempotencyState::Started);
    // Past retention a key is forgotten and may be used afresh.
    assert_eq!(store.idempotency_prune(Timestamp(0)).await.unwrap(), 0);
    assert_eq!(store.idempotency_prune(Timestamp::now().plus_millis(1_000)).await.unwrap(), 2);
    assert_eq!(store.idempotency_begin("k1", "abc", "h9", LEASE).await.unwrap(), IdempotencyState::Started);
}

/// An in-progress key whose lease ran out (its process died) is taken over by a retry
/// of the same request, by one retry only; another request with that key stays refused.
pub async fn idempotency_lease_expiry(store: Arc<dyn Store>) {
    assert_eq!(store.idempotency_begin("k", "dead", "h1", -1).await.unwrap(), IdempotencyState::Started);
    assert_eq!(
        store.idempotency_begin("k", "dead", "h2", 60_000).await.unwrap(),
        IdempotencyState::InProgress { request_hash: "h1".into() },
        "another request does not take the key over"
    );
    assert_eq!(store.idempotency_begin("k", "dead", "h1", 60_000).await.unwrap(), IdempotencyState::Started);
    assert_eq!(
        store.idempotency_begin("k", "dead", "h1", 60_000).await.unwrap(),
        IdempotencyState::InProgress { request_hash: "h1".into() },
        "the taker holds a fresh lease"
    );
    store.idempotency_finish("k", "dead", 200, "{}").await.unwrap();
    assert!(matches!(
        store.idempotency_begin("k", "dead", "h1", 60_000).await.unwrap(),
        IdempotencyState::Completed { status: 200, .. }
    ));
}

pub async fn api_keys(store: Arc<dyn Store>) {
    let key = ApiKey {
        id: "key_abc".into(),
        name: "ci".into(),
        role: Role::Tenant,
        tenant_id: Some("acme".into()),
        created_at: Timestamp(1),
        expires_at: Some(Timestamp(99)),
        rate_limit: Some(tenancy_domain::ratelimit::RateLimit::new(3, 7)),
        labels: vec!["eu".into(), "support".into()],
        region: Some("eu-west-1".into()),
        last_used_at: None,
        previous_secret_expires_at: None,
        hash: "ff".repeat(32),
        previous_hash: None,
    };
    // A tenant key names a tenant that exists.
    let err = store.api_key_create(&key, &Effects::none()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnknownTenant);
    assert!(store.api_key_list(None, &page(10)).await.unwrap().items.is_empty());
    store.plan_put(&plan("pro", Isolation::Pool), None, &Effects::none()).await.unwrap();
    let acme = store.tenant_create(&tenant("acme", "pro", "eu"), &Effects::none()).await.unwrap();
    store.api_key_create(&key, &Effects::none()).await.unwrap();
    assert!(matches!(store.api_key_create(&key, &Effects::none()).await, Err(Error::AlreadyExists { .. })));
    assert_eq!(store.api_key_get("key_abc").await.unwrap(), key);
    assert_eq!(store.api_key_list(None, &page(10)).await.unwrap().items, vec![key.clone()]);
    assert_eq!(store.api_key_list(Some("acme"), &page(10)).await.unwrap().items, vec![key.clone()]);
    assert!(store.api_key_list(Some("other"), &page(10)).await.unwrap().items.is_empty());
    // Use is recorded, never backwards; a rotation keeps the replaced secret's hash
    // with the end of its grace.
    store.api_key_touch("key_abc", Timestamp(50)).await.unwrap();
    store.api_key_touch("key_abc", Timestamp(40)).await.unwrap();
    assert_eq!(store.api_key_get("key_abc").await.unwrap().last_used_at, Some(Timestamp(50)));
    let rotated = store.api_key_rotate("key_abc", &"ee".repeat(32), Timestamp(77), &Effects::none()).await.unwrap();
    assert_eq!(
        (rotated.hash.as_str(), rotated.previous_hash.as_deref(), rotated.previous_secret_expires_at),
        ("ee".repeat(32).as_str(), Some("ff".repeat(32).as_str()), Some(Timestamp(77)))
    );
    assert_eq!(store.api_key_get("key_abc").await.unwrap(), rotated);
    let missing = store.api_key_rotate("key_nope", "00", Timestamp(1), &Effects::none()).await;
    assert!(matches!(missing, Err(Error::NotFound { .. })));
    store.api_key_delete("key_abc", &Effects::none()).await.unwrap();
    assert!(matches!(store.api_key_get("key_abc").await, Err(Error::NotFound { .. })));
    assert!(matches!(store.api_key_delete("key_abc", &Effects::none()).await, Err(Error::NotFound { .. })));

    // Offboarding deletes the tenant's keys with its status change, and no more are made.
    store.tenant_create(&tenant("other", "pro", "eu"), &Effects::none()).await.unwrap();
    let theirs = ApiKey { id: "key_other".into(), tenant_id: Some("other".into()), ..key.clone() };
    store.api_key_create(&theirs, &Effects::none()).await.unwrap();
    store.api_key_create(&ApiKey { id: "key_acme".into(), ..key.clone() }, &Effects::none()).await.unwrap();
    let gone = Tenant { status: TenantStatus::Offboarded, ..acme.clone() };
    store.tenant_update(&gone, acme.version, &Effects::none()).await.unwrap();
    assert_eq!(store.api_key_list(None, &page(10)).await.unwrap().items, vec![theirs]);
    let err = store.api_key_create(&key, &Effects::none()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnknownTenant);
}

pub async fn signups_are_claimed_once(store: Arc<dyn Store>) {
    use tenancy_domain::signup::Signup;
    let signups = store.signups();
    let s = Signup {
        token_hash: "aa".repeat(32),
        email: "ann@example.com".into(),
        org_name: "Acme".into(),
        plan: "pro".into(),
        created_at: Timestamp(1_000),
        expires_at: Timestamp(2_000),
        activated_at: None,
        tenant_id: None,
    };
    signups.signup_create(&s, &Effects::none()).await.unwrap();
    assert_eq!(signups.signup_get(&s.token_hash).await.unwrap(), Some(s.clone()));
    assert_eq!(signups.signup_get("nope").await.unwrap(), None);
    // Expired: no claim.
    assert!(!signups.signup_claim(&s.token_hash, "t1", Timestamp(2_000)).await.unwrap());
    // Once, and not twice.
    assert!(signups.signup_claim(&s.token_hash, "t1", Timestamp(1_500)).await.unwrap());
    assert!(!signups.signup_claim(&s.token_hash, "t2", Timestamp(1_500)).await.unwrap());
    let got = signups.signup_get(&s.token_hash).await.unwrap().unwrap();
    assert_eq!((got.activated_at, got.tenant_id.as_deref()), (Some(Timestamp(1_500)), Some("t1")));
    // Undone: claimable again.
    signups.signup_unclaim(&s.token_hash).await.unwrap();
    assert!(signups.signup_claim(&s.token_hash, "t3", Timestamp(1_600)).await.unwrap());
    // Purged once expired, the others stay.
    let later = Signup { token_hash: "bb".repeat(32), expires_at: Timestamp(9_000), ..s.clone() };
    signups.signup_create(&later, &Effects::none()).await.unwrap();
    assert_eq!(signups.signup_purge_expired(Timestamp(1_999)).await.unwrap(), 0);
    assert_eq!(signups.signup_purge_expired(Timestamp(2_000)).await.unwrap(), 1);
    assert_eq!(signups.signup_get(&s.token_hash).await.unwrap(), None);
    assert!(signups.signup_get(&later.token_hash).await.unwrap().is_some());
}

pub async fn event_and_audit_lists(store: Arc<dyn Store>) {
    for i in 0..5 {
        let tenant = if i % 2 == 0 { "a" } else { "b" };
        let fx = Effects::none()
            .with_event(Event::new(if i < 3 { "X" } else { "Y" }, Some(tenant), vec![], json!({"i": i})))
            .with_audit(audit(if i < 3 { "x.do" } else { "y.do" }, Some(tenant)));
        store.commit_effects(&fx).await.unwrap();
    }
    let f = EventFilter { detail_type: Some("X".into()), ..Default::default() };
    let p1 = store.event_list(&f, &page(2)).await.unwrap();
    assert_eq!(p1.items.len(), 2);
    let p2 = store.event_list(&f, &PageRequest { limit: 2, after: p1.next_cursor }).await.unwrap();
    assert_eq!(p2.items.iter().map(|e| e.event.detail["i"].as_i64().unwrap()).collect::<Vec<_>>(), [2]);
    assert_eq!(all_events(&*store, "b").await.len(), 2);
    let a = store
        .audit_list(
            &AuditFilter { action: Some("y.do".into()), tenant_id: Some("b".into()), ..Default::default() },
            &page(10),
        )
        .await
        .unwrap();
    assert_eq!(a.items.len(), 1);
    assert!(store
        .event_list(&EventFilter::default(), &PageRequest { limit: 1, after: Some("x".into()) })
        .await
        .is_err());
}

fn subscription(id: &str, pattern: serde_json::Value) -> StoredSubscription {
    use tenancy_domain::subscription::{Subscription, Target};
    StoredSubscription {
        subscription: Subscription {
            id: id.into(),
            name: format!("sub {id}"),
            pattern,
            target: Target::Webhook {
                url: "http://127.0.0.1:9/hook".into(),
                max_concurrency: None,
                timeout_ms: None,
                max_attempts: Some(3),
                connection: None,
            },
            version: 1,
            created_at: Timestamp(1_000),
            updated_at: Timestamp(1_000),
        },
        secret: Some("whsec_current".into()),
        previous_secret: None,
        previous_expires_at: None,
    }
}

/// Matches when the subscription's pattern names the event's detail-type (a stand-in
/// for the app's EventBridge matcher).
fn by_type(s: &StoredSubscription, e: &Event) -> bool {
    s.subscription.pattern["detail-type"].as_array().is_some_and(|a| a.iter().any(|t| t == &json!(e.detail_type)))
}

async fn emit(store: &dyn Store, detail_type: &str, time: Timestamp) -> Event {
    let mut e = Event::new(detail_type, Some("acme"), vec![], json!({}));
    e.time = time;
    store.commit_effects(&Effects::none().with_event(e.clone())).await.unwrap();
    e
}

pub async fn subscriptions_crud(store: Arc<dyn Store>) {
    let s = subscription("sub_a", json!({"detail-type": ["X"]}));
    store.subscription_create(&s, &Effects::none()).await.unwrap();
    assert!(matches!(store.subscription_create(&s, &Effects::none()).await, Err(Error::AlreadyExists { .. })));
    assert_eq!(store.subscription_get("sub_a").await.unwrap(), s);
    let mut rotated = s.clone();
    rotated.previous_secret = rotated.secret.replace("whsec_next".into());
    rotated.previous_expires_at = Some(Timestamp(5_000));
    let v2 = store.subscription_update(&rotated, 1, &Effects::none()).await.unwrap();
    assert_eq!(v2.subscription.version, 2);
    assert_eq!(v2.active_secrets(Timestamp(4_000)), ["whsec_next", "whsec_current"]);
    assert_eq!(v2.active_secrets(Timestamp(5_000)), ["whsec_next"]);
    let stale = store.subscription_update(&rotated, 1, &Effects::none()).await.unwrap_err();
    assert!(matches!(stale, Error::PreconditionFailed { expected: 1, found: 2, .. }), "{stale:?}");
    store.subscription_create(&subscription("sub_b", json!({})), &Effects::none()).await.unwrap();
    let p = store.subscription_list(&page(1)).await.unwrap();
    assert_eq!(p.items[0].subscription.id, "sub_a");
    let p = store.subscription_list(&PageRequest { limit: 1, after: p.next_cursor }).await.unwrap();
    assert_eq!((p.items[0].subscription.id.as_str(), p.next_cursor), ("sub_b", None));
    let fx = Effects::none().with_audit(audit("subscription.delete", None));
    store.subscription_delete("sub_a", &fx).await.unwrap();
    assert!(matches!(store.subscription_get("sub_a").await, Err(Error::NotFound { .. })));
    assert!(matches!(store.subscription_delete("sub_a", &Effects::none()).await, Err(Error::NotFound { .. })));
}

pub async fn outbox_dispatch_fans_out_once(store: Arc<dyn Store>) {
    // Events dispatched while nobody subscribed are marked, and a later subscription
    // does not receive them.
    emit(&*store, "X", Timestamp::now()).await;
    let out = store.outbox_dispatch(100, &by_type, Timestamp::now()).await.unwrap();
    assert_eq!(out, DispatchOutcome { events: 1, deliveries: 0 });
    store.subscription_create(&subscription("sub_x", json!({"detail-type": ["X"]})), &Effects::none()).await.unwrap();
    store
        .subscription_create(&subscription("sub_xy", json!({"detail-type": ["X", "Y"]})), &Effects::none())
        .await
        .unwrap();
    for t in ["X", "Y", "Z"] {
        emit(&*store, t, Timestamp::now()).await;
    }
    let out = store.outbox_dispatch(100, &by_type, Timestamp::now()).await.unwrap();
    assert_eq!(out, DispatchOutcome { events: 3, deliveries: 3 });
    let again = store.outbox_dispatch(100, &by_type, Timestamp::now()).await.unwrap();
    assert_eq!(again, DispatchOutcome::default(), "every event is dispatched once");
    let xs = store.delivery_list("sub_x", None, &page(10)).await.unwrap().items;
    assert_eq!(xs.len(), 1);
    assert_eq!(xs[0].status, tenancy_domain::subscription::DeliveryStatus::Pending);
    assert_eq!(store.delivery_list("sub_xy", None, &page(10)).await.unwrap().items.len(), 2);
}

pub async fn deliveries_are_leased_and_recorded(store: Arc<dyn Store>) {
    use tenancy_domain::subscription::DeliveryStatus;
    store.subscription_create(&subscription("sub_a", json!({"detail-type": ["X"]})), &Effects::none()).await.unwrap();
    store.subscription_create(&subscription("sub_b", json!({"detail-type": ["X"]})), &Effects::none()).await.unwrap();
    // Emitted in a traced span: the delivery continues its trace.
    let e = Event::new("X", Some("acme"), vec![], json!({}));
    let mut fx = Effects::none().with_event(e.clone());
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    fx.traces.insert(e.id.clone(), traceparent.to_owned());
    store.commit_effects(&fx).await.unwrap();
    store.outbox_dispatch(100, &by_type, Timestamp(1_000)).await.unwrap();
    let skip = vec!["sub_b".to_owned()];
    let claimed = store.delivery_claim("w1", 1_000, 10, Timestamp(2_000), &skip).await.unwrap();
    assert_eq!(claimed.len(), 1, "sub_b is skipped");
    assert_eq!(claimed[0].trace_context.as_deref(), Some(traceparent));
    assert_eq!((claimed[0].subscription_id.as_str(), &claimed[0].event, claimed[0].attempts), ("sub_a", &e, 0));
    let version = store.subscription_get("sub_a").await.unwrap().subscription.version;
    assert_eq!(claimed[0].subscription_version, version, "the claim carries the subscription's version");
    assert!(store.delivery_claim("w2", 1_000, 10, Timestamp(2_500), &skip).await.unwrap().is_empty(), "leased");
    // A release by another owner changes nothing; by the owner, frees the delivery.
    store.delivery_release("w2", std::slice::from_ref(&claimed[0].id)).await.unwrap();
    assert!(store.delivery_claim("w2", 1_000, 10, Timestamp(2_500), &skip).await.unwrap().is_empty());
    store.delivery_release("w1", std::slice::from_ref(&claimed[0].id)).await.unwrap();
    let claimed = store.delivery_claim("w1", 1_000, 10, Timestamp(2_000), &skip).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let retry = AttemptResult {
        delivery_id: claimed[0].id.clone(),
        attempt: 1,
        time: Timestamp(2_100),
        status_code: Some(500),
        latency_ms: 3,
        error: Some("HTTP 500".into()),
        next: DeliveryNext::RetryAt(Timestamp(4_000)),
    };
    store.delivery_record("w1", std::slice::from_ref(&retry)).await.unwrap();
    assert!(store.delivery_claim("w2", 1_000, 10, Timestamp(3_000), &skip).await.unwrap().is_empty(), "not due");
    let again = store.delivery_claim("w2", 1_000, 10, Timestamp(4_000), &skip).await.unwrap();
    assert_eq!((again.len(), again[0].attempts, again[0].tries), (1, 1, 1));
    // w1's stale result for the same attempt changes nothing.
    let stale = AttemptResult { next: DeliveryNext::Delivered, ..retry.clone() };
    store.delivery_record("w1", &[stale]).await.unwrap();
    let ok = AttemptResult {
        attempt: 2,
        time: Timestamp(4_100),
        status_code: Some(204),
        error: None,
        next: DeliveryNext::Delivered,
        ..retry
    };
    store.delivery_record("w2", &[ok]).await.unwrap();
    let d = store.delivery_get("sub_a", &again[0].id).await.unwrap();
    assert_eq!((d.status, d.attempts, d.next_attempt_at), (DeliveryStatus::Delivered, 2, None));
    assert_eq!(d.attempt_log.iter().map(|a| a.status_code).collect::<Vec<_>>(), [Some(500), Some(204)]);
    assert!(matches!(store.delivery_get("sub_b", &d.id).await, Err(Error::NotFound { .. })));
}

pub async fn dead_deliveries_retry(store: Arc<dyn Store>) {
    use tenancy_domain::subscription::DeliveryStatus;
    store.subscription_create(&subscription("sub_a", json!({"detail-type": ["X"]})), &Effects::none()).await.unwrap();
    emit(&*store, "X", Timestamp::now()).await;
    store.outbox_dispatch(100, &by_type, Timestamp(1_000)).await.unwrap();
    let c = store.delivery_claim("w1", 1_000, 10, Timestamp(1_000), &[]).await.unwrap().remove(0);
    assert_eq!(c.trace_context, None, "emitted outside a traced span");
    let conflict = store.delivery_retry("sub_a", &c.id, Timestamp(1_100), &Effects::none()).await.unwrap_err();
    assert_eq!(conflict.code(), ErrorCode::DeliveryNotDead);
    let dead = AttemptResult {
        delivery_id: c.id.clone(),
        attempt: 1,
        time: Timestamp(1_100),
        status_code: None,
        latency_ms: 1,
        error: Some("connection refused".into()),
        next: DeliveryNext::Dead,
    };
    store.delivery_record("w1", &[dead]).await.unwrap();
    let dead_list = store.delivery_list("sub_a", Some(DeliveryStatus::Dead), &page(10)).await.unwrap().items;
    assert_eq!(dead_list.len(), 1);
    assert_eq!(dead_list[0].last_error.as_deref(), Some("connection refused"));
    let fx = Effects::none().with_audit(audit("delivery.retry", None));
    store.delivery_retry("sub_a", &c.id, Timestamp(2_000), &fx).await.unwrap();
    let again = store.delivery_claim("w2", 1_000, 10, Timestamp(2_000), &[]).await.unwrap();
    assert_eq!((again.len(), again[0].attempts, again[0].tries), (1, 1, 0), "numbering goes on, budget is fresh");
    assert!(matches!(
        store.delivery_retry("sub_a", "dlv_nope", Timestamp(2_000), &Effects::none()).await,
        Err(Error::NotFound { .. })
    ));
}

pub async fn replay_ranges_and_pruning(store: Arc<dyn Store>) {
    use tenancy_domain::subscription::DeliveryStatus;
    store.subscription_create(&subscription("sub_a", json!({"detail-type": ["X"]})), &Effects::none()).await.unwrap();
    let old = emit(&*store, "X", Timestamp(10_000)).await;
    let mid = emit(&*store, "X", Timestamp(20_000)).await;
    emit(&*store, "X", Timestamp(30_000)).await;
    let range = store.event_range(Timestamp(10_000), Timestamp(30_000), 0, 10).await.unwrap();
    assert_eq!(range.iter().map(|e| e.event.id.clone()).collect::<Vec<_>>(), [old.id.clone(), mid.id.clone()]);
    let next = store.event_range(Timestamp(10_000), Timestamp(30_000), range[0].seq, 10).await.unwrap();
    assert_eq!(next.len(), 1);
    store.delivery_create(&[NewDelivery::new("sub_a", &old.id, Timestamp(0))], &Effects::none()).await.unwrap();
    // Undispatched events and events with pending deliveries are kept.
    assert_eq!(store.events_prune(Timestamp(25_000), false).await.unwrap(), (0, 0));
    store.outbox_dispatch(100, &|_, _| false, Timestamp(1)).await.unwrap();
    assert_eq!(
        store.events_prune(Timestamp(25_000), false).await.unwrap(),
        (1, 0),
        "only mid: old has a pending delivery"
    );
    let c = store.delivery_claim("w", 1_000, 10, Timestamp(1), &[]).await.unwrap().remove(0);
    let done = AttemptResult {
        delivery_id: c.id,
        attempt: 1,
        time: Timestamp(1),
        status_code: Some(200),
        latency_ms: 1,
        error: None,
        next: DeliveryNext::Delivered,
    };
    store.delivery_record("w", &[done]).await.unwrap();
    let far = Timestamp::now().plus_millis(60_000);
    assert_eq!(store.events_prune(far, false).await.unwrap(), (2, 1));
    assert!(store.delivery_list("sub_a", Some(DeliveryStatus::Delivered), &page(10)).await.unwrap().items.is_empty());
}

pub async fn events_and_audit_archive(store: Arc<dyn Store>) {
    assert_eq!(store.events_oldest().await.unwrap(), None);
    let old = emit(&*store, "X", Timestamp(10_000)).await;
    let new = emit(&*store, "X", Timestamp(20_000)).await;
    assert_eq!(store.events_oldest().await.unwrap(), Some(Timestamp(10_000)));
    store.outbox_dispatch(100, &|_, _| false, Timestamp(1)).await.unwrap();
    let pending = store.events_unarchived(0, 10).await.unwrap();
    assert_eq!(pending.iter().map(|e| e.event.id.clone()).collect::<Vec<_>>(), [old.id.clone(), new.id.clone()]);
    assert_eq!(store.events_unarchived(0, 1).await.unwrap().len(), 1);
    let rest = store.events_unarchived(pending[0].seq, 10).await.unwrap();
    assert_eq!(rest.iter().map(|e| e.event.id.as_str()).collect::<Vec<_>>(), [new.id.as_str()], "the next page");
    // Not archived yet: an archiving pruner keeps both.
    assert_eq!(store.events_prune(Timestamp(30_000), true).await.unwrap(), (0, 0));
    store.events_mark_archived(&[pending[0].seq]).await.unwrap();
    assert_eq!(store.events_unarchived(0, 10).await.unwrap().len(), 1);
    assert_eq!(store.events_prune(Timestamp(30_000), true).await.unwrap(), (1, 0), "only the archived one");
    assert_eq!(store.events_oldest().await.unwrap(), Some(Timestamp(20_000)));
    // Restored from the archive: present again, neither dispatched again nor archived again.
    store.events_restore(&[old.clone(), new.clone()]).await.unwrap();
    let range = store.event_range(Timestamp(0), Timestamp(30_000), 0, 10).await.unwrap();
    assert_eq!(range.len(), 2);
    assert_eq!(range.iter().find(|e| e.event.id == old.id).unwrap().event, old);
    assert_eq!(store.events_unarchived(0, 10).await.unwrap().len(), 1, "the restored event counts as archived");
    assert_eq!(store.outbox_dispatch(100, &|_, _| true, Timestamp(1)).await.unwrap().events, 0);
    // The audit archive's cursor moves by compare-and-set.
    assert_eq!(store.audit_archive_cursor().await.unwrap(), 0);
    assert!(store.audit_archive_advance(0, 5).await.unwrap());
    assert!(!store.audit_archive_advance(0, 7).await.unwrap(), "a stale cursor moves nothing");
    assert!(store.audit_archive_advance(5, 9).await.unwrap());
    assert_eq!(store.audit_archive_cursor().await.unwrap(), 9);
}

pub async fn audit_sealing(store: Arc<dyn Store>) {
    let seal = |e: &AuditEntry, seq: i64, prev: &str| format!("{seq}:{}:{}", e.action, &prev[..4]);
    assert_eq!(store.audit_seal(10, &seal).await.unwrap(), 0);
    for i in 0..5 {
        store.commit_effects(&Effects::none().with_audit(audit(&format!("a{i}"), None))).await.unwrap();
    }
    assert_eq!(store.audit_counts().await.unwrap(), (0, 5));
    assert_eq!(store.audit_seal(3, &seal).await.unwrap(), 3);
    assert_eq!(store.audit_seal(10, &seal).await.unwrap(), 2);
    assert_eq!(store.audit_counts().await.unwrap(), (5, 0));
    let sealed = store.audit_sealed(0, 100).await.unwrap();
    assert_eq!(sealed.iter().map(|a| a.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(sealed[0].prev_hash, "0".repeat(64));
    assert_eq!(sealed[0].hash, "1:a0:0000");
    assert_eq!(sealed[0].entry.action, "a0", "the entry as written");
    assert_eq!(sealed[3].prev_hash, sealed[2].hash, "the chain continues across batches");
    assert_eq!(sealed[3].hash, "4:a3:3:a2");
    assert_eq!(store.audit_sealed(4, 100).await.unwrap().len(), 1);
    let hashes = store.audit_hashes(2, 2).await.unwrap();
    assert_eq!(hashes, [(3, "3:a2:2:a1".to_owned()), (4, "4:a3:3:a2".to_owned())]);
    assert!(store.audit_hashes(5, 10).await.unwrap().is_empty());
    assert_eq!(store.audit_seq_range(None, None).await.unwrap(), Some((1, 5)));
    assert_eq!(store.audit_seq_range(Some(Timestamp::now().plus_millis(60_000)), None).await.unwrap(), None);
    assert_eq!(store.audit_checkpoint_latest().await.unwrap(), None);
    for size in [2, 5] {
        let cp = AuditCheckpoint { tree_size: size, root: format!("root{size}"), time: Timestamp(size) };
        store.audit_checkpoint_put(&cp).await.unwrap();
        store.audit_checkpoint_put(&cp).await.unwrap();
    }
    assert_eq!(store.audit_checkpoint_latest().await.unwrap().map(|c| c.tree_size), Some(5));
}

/// Many writes at once (grouped into one transaction on SQLite): each failing write
/// leaves no trace, and the others commit with all their effects.
pub async fn concurrent_writes_fail_alone(store: Arc<dyn Store>) {
    store.plan_put(&plan("pro", Isolation::Pool), None, &Effects::none()).await.unwrap();
    store.tenant_create(&tenant("t005", "pro", "eu"), &Effects::none()).await.unwrap();
    let writes = (0..40).map(|i| {
        let store = store.clone();
        async move {
            // Every tenth write names a missing plan, t005 already exists.
            let plan = if i % 10 == 3 { "ghost" } else { "pro" };
            let t = tenant(&format!("t{i:03}"), plan, "eu");
            store.tenant_create(&t, &created(&t)).await
        }
    });
    // Five creates of one new id at once (on SQLite, likely in one multi-row insert).
    let twins = (0..5).map(|i| {
        let store = store.clone();
        async move {
            let mut t = tenant("t100", "pro", "eu");
            t.name = format!("twin {i}");
            store.tenant_create(&t, &created(&t)).await
        }
    });
    let (results, twins) =
        futures::future::join(futures::future::join_all(writes), futures::future::join_all(twins)).await;
    for (i, r) in results.iter().enumerate() {
        let should_fail = i % 10 == 3 || i == 5;
        assert_eq!(r.is_err(), should_fail, "write {i}: {r:?}");
        match r {
            Err(e) if i == 5 => assert!(matches!(e, Error::AlreadyExists { .. }), "write {i}: {e:?}"),
            Err(e) => assert_eq!(e.code(), ErrorCode::UnknownPlan, "write {i}"),
            Ok(_) => {}
        }
        let events = all_events(&*store, &format!("t{i:03}")).await;
        assert_eq!(events.len(), usize::from(!should_fail), "events of write {i}");
    }
    let won: Vec<_> = twins.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "{twins:?}");
    assert!(twins.iter().filter_map(|r| r.as_ref().err()).all(|e| matches!(e, Error::AlreadyExists { .. })));
    assert_eq!(store.tenant_get("t100").await.unwrap().name, won[0].name);
    assert_eq!(all_events(&*store, "t100").await.len(), 1);
    assert_eq!(store.audit_counts().await.unwrap(), (0, 36), "one audit entry per tenant created");
}

pub async fn drift_is_reported_once(store: Arc<dyn Store>) {
    let drift = store.drift();
    let fx = || Effects::none().with_audit(audit("tenant.reconcile", None));
    assert!(drift.drift_reported().await.unwrap().is_empty());
    assert!(drift.drift_report("silo/acme", Timestamp(1), &fx()).await.unwrap());
    // Reported already: nothing is written, not even the effects.
    assert!(!drift.drift_report("silo/acme", Timestamp(2), &fx()).await.unwrap());
    assert!(drift.drift_report("pool/bank", Timestamp(3), &fx()).await.unwrap());
    let reported = drift.drift_reported().await.unwrap();
    assert_eq!(reported, [("pool/bank".to_owned(), Timestamp(3)), ("silo/acme".to_owned(), Timestamp(1))]);
    let audits = store.audit_list(&Default::default(), &page(10)).await.unwrap().items;
    assert_eq!(audits.len(), 2, "one audit entry per report");
    // Concurrent reporters (replicas): exactly one records it.
    let (fx_a, fx_b) = (fx(), fx());
    let (a, b) = tokio::join!(
        drift.drift_report("silo/zed", Timestamp(4), &fx_a),
        drift.drift_report("silo/zed", Timestamp(4), &fx_b)
    );
    assert!(a.unwrap() ^ b.unwrap(), "exactly one of two concurrent reports records it");
    // Gone, then back: reported again.
    drift.drift_forget(&["silo/acme".to_owned()]).await.unwrap();
    let ids: Vec<String> = drift.drift_reported().await.unwrap().into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, ["pool/bank", "silo/zed"]);
    assert!(drift.drift_report("silo/acme", Timestamp(5), &fx()).await.unwrap());
    drift.drift_forget(&[]).await.unwrap();
}

pub async fn the_latest_reconciliation_run_is_kept(store: Arc<dyn Store>) {
    let drift = store.drift();
    assert_eq!(drift.reconciliation_last().await.unwrap(), None);
    let run = |node: &str, finished: i64| ReconciliationRun {
        started_at: Timestamp(finished - 5),
        finished_at: Timestamp(finished),
        node: node.into(),
        report: json!({"drift": [{"key": node}], "tenants_checked": finished}),
    };
    assert!(drift.reconciliation_record(&run("a", 100)).await.unwrap());
    assert_eq!(drift.reconciliation_last().await.unwrap(), Some(run("a", 100)));
    assert!(drift.reconciliation_record(&run("b", 200)).await.unwrap());
    // A slower replica's pass that finished earlier does not replace the later one.
    assert!(!drift.reconciliation_record(&run("a", 150)).await.unwrap());
    assert_eq!(drift.reconciliation_last().await.unwrap(), Some(run("b", 200)));
}

pub async fn the_first_master_key_fingerprint_stays(store: Arc<dyn Store>) {
    assert_eq!(store.master_key_state().await.unwrap(), MasterKeyState::default(), "a new database");
    // Two servers starting at once: the first recorded fingerprint is everyone's answer.
    assert_eq!(store.master_key_record("v1:a").await.unwrap(), "v1:a");
    assert_eq!(store.master_key_record("v1:b").await.unwrap(), "v1:a");
    let state = store.master_key_state().await.unwrap();
    assert_eq!((state.fingerprint.as_deref(), state.sealed_values), (Some("v1:a"), false));
}

/// A function's put creates it with its secret, a second put replaces url and timeout
/// but keeps the secret and `created_at`; writes commit with their audit entries.
pub async fn functions_keep_their_secret(store: Arc<dyn Store>) {
    use crate::functions::StoredFunction;
    use tenancy_domain::function::Function;
    let f = |name: &str, url: &str, secret: &str, at: i64| StoredFunction {
        function: Function {
            name: name.into(),
            url: url.into(),
            timeout_s: 30,
            created_at: Timestamp(at),
            updated_at: Timestamp(at),
        },
        secret: secret.into(),
    };
    let fns = store.functions();
    let fx = || Effects::none().with_audit(audit("function.put", None));
    let (a, created) = fns.function_put(&f("allocate", "http://a", "sealed-1", 1_000), &fx()).await.unwrap();
    assert!(created);
    assert_eq!(a, f("allocate", "http://a", "sealed-1", 1_000));
    let (a2, created) = fns.function_put(&f("allocate", "http://b", "sealed-2", 2_000), &fx()).await.unwrap();
    assert!(!created);
    assert_eq!((a2.secret.as_str(), a2.function.url.as_str()), ("sealed-1", "http://b"));
    assert_eq!((a2.function.created_at, a2.function.updated_at), (Timestamp(1_000), Timestamp(2_000)));
    assert_eq!(fns.function_get("allocate").await.unwrap(), a2);
    fns.function_put(&f("notify", "http://n", "sealed-3", 3_000), &fx()).await.unwrap();
    let names: Vec<String> = fns.function_list().await.unwrap().into_iter().map(|f| f.name).collect();
    assert_eq!(names, ["allocate", "notify"]);
    fns.function_delete("allocate", &Effects::none().with_audit(audit("function.delete", None))).await.unwrap();
    assert!(matches!(fns.function_get("allocate").await, Err(Error::NotFound { .. })));
    let fx = Effects::none().with_audit(audit("function.delete", None));
    assert!(matches!(fns.function_delete("allocate", &fx).await, Err(Error::NotFound { .. })));
    let audit = store.audit_list(&AuditFilter::default(), &page(10)).await.unwrap();
    assert_eq!(audit.items.len(), 4, "three puts and one delete; the failed delete wrote nothing");
}

/// A release's put creates it; `default` moves the fleet's default in the same
/// transaction; a replace keeps `created_at`, the bundle and the default flag; a bundle
/// set returns the one it replaced; writes commit with their audit entries.
pub async fn releases_move_the_default_and_keep_their_bundle(store: Arc<dyn Store>) {
    use tenancy_domain::release::{Bundle, Release};
    let r = |version: &str, default: bool, at: i64| Release {
        version: version.into(),
        description: Some(format!("release {version}")),
        upgrade_workflow: None,
        default,
        bundle: None,
        created_at: Timestamp(at),
        updated_at: Timestamp(at),
    };
    let bundle = |sha: &str| Bundle {
        sha256: sha.into(),
        size: 3,
        content_type: "application/octet-stream".into(),
        location: format!("releases/x/{sha}"),
        uploaded_at: Timestamp(5),
    };
    let rel = store.releases();
    let fx = || Effects::none().with_audit(audit("release.put", None));
    assert_eq!(rel.release_default().await.unwrap(), None);
    let (one, created) = rel.release_put(&r("1.0.0", true, 1_000), &fx()).await.unwrap();
    assert!(created && one.default);
    let (_, old) = rel.release_bundle_set("1.0.0", &bundle("aaa"), &fx()).await.unwrap();
    assert_eq!(old, None);
    let (again, created) = rel.release_put(&r("1.0.0", false, 2_000), &fx()).await.unwrap();
    assert!(!created);
    assert_eq!((again.created_at, again.default), (Timestamp(1_000), true), "a replace keeps the default");
    assert_eq!(again.bundle, Some(bundle("aaa")));
    rel.release_put(&r("2.0.0", true, 3_000), &fx()).await.unwrap();
    assert_eq!(rel.release_default().await.unwrap().map(|r| r.version).as_deref(), Some("2.0.0"));
    let listed: Vec<(String, bool)> =
        rel.release_list().await.unwrap().into_iter().map(|r| (r.version, r.default)).collect();
    assert_eq!(listed, [("1.0.0".to_owned(), false), ("2.0.0".to_owned(), true)]);
    let (with, old) = rel.release_bundle_set("1.0.0", &bundle("bbb"), &fx()).await.unwrap();
    assert_eq!((with.bundle, old), (Some(bundle("bbb")), Some(bundle("aaa"))));
    assert!(matches!(rel.release_get("9.9.9").await, Err(Error::NotFound { .. })));
    let missing = rel.release_bundle_set("9.9.9", &bundle("ccc"), &fx()).await;
    assert!(matches!(missing, Err(Error::NotFound { .. })));
    let audit = store.audit_list(&AuditFilter::default(), &page(10)).await.unwrap();
    assert_eq!(audit.items.len(), 5, "three puts and two bundles; the failed one wrote nothing");
}

// Quotas.

fn demand(quota: &str, amount: u64, limit: u64, soft: bool) -> crate::QuotaDemand {
    crate::QuotaDemand { quota: quota.into(), amount, limit, soft, period: None }
}

fn consume_req(tenant: &str, demands: Vec<crate::QuotaDemand>, key: Option<&str>) -> crate::QuotaConsumeRequest {
    crate::QuotaConsumeRequest {
        tenant_id: tenant.into(),
        demands,
        idempotency_key: key.map(str::to_owned),
        now: Timestamp(1_700_000_000_000),
    }
}

async fn quota_events(store: &dyn Store, tenant: &str) -> Vec<(String, u64)> {
    all_events(store, tenant)
        .await
        .into_iter()
        .map(|e| (e.event.detail_type, e.event.detail["used"].as_u64().unwrap_or(u64::MAX)))
        .collect()
}

fn used(outcome: &crate::QuotaOutcome) -> Vec<u64> {
    match outcome {
        crate::QuotaOutcome::Granted { usage, .. } => usage.iter().map(|u| u.used).collect(),
        crate::QuotaOutcome::Refused { .. } => panic!("refused: {outcome:?}"),
    }
}

pub async fn quotas_refuse_over_a_hard_limit(store: Arc<dyn Store>) {
    let q = store.quotas();
    let fx = Effects::none();
    assert_eq!(
        used(&q.quota_consume(&consume_req("qa", vec![demand("seats", 3, 5, false)], None), &fx).await.unwrap()),
        [3]
    );
    let refused = q.quota_consume(&consume_req("qa", vec![demand("seats", 3, 5, false)], None), &fx).await.unwrap();
    assert_eq!(refused, crate::QuotaOutcome::Refused { quota: "seats".into(), used: 3 });
    assert_eq!(
        used(&q.quota_consume(&consume_req("qa", vec![demand("seats", 2, 5, false)], None), &fx).await.unwrap()),
        [5]
    );
    // Another tenant's usage is its own.
    assert_eq!(
        used(&q.quota_consume(&consume_req("qb", vec![demand("seats", 5, 5, false)], None), &fx).await.unwrap()),
        [5]
    );
    let usage = q.quota_usage("qa", &[("seats".into(), None), ("other".into(), None)], Timestamp(0)).await.unwrap();
    assert_eq!(usage.iter().map(|u| u.used).collect::<Vec<_>>(), [5, 0]);
    // One refusal event for the crossing, not one per refused call.
    q.quota_consume(&consume_req("qa", vec![demand("seats", 1, 5, false)], None), &fx).await.unwrap();
    let exceeded = quota_events(&*store, "qa").await.into_iter().filter(|(t, _)| t == "QuotaExceeded").count();
    assert_eq!(exceeded, 1);
}

pub async fn quotas_batches_are_all_or_nothing(store: Arc<dyn Store>) {
    let q = store.quotas();
    let fx = Effects::none();
    let batch = vec![demand("a", 2, 10, false), demand("b", 2, 3, false)];
    assert_eq!(used(&q.quota_consume(&consume_req("qc", batch.clone(), None), &fx).await.unwrap()), [2, 2]);
    let refused = q.quota_consume(&consume_req("qc", batch, None), &fx).await.unwrap();
    assert_eq!(refused, crate::QuotaOutcome::Refused { quota: "b".into(), used: 2 });
    let usage = q.quota_usage("qc", &[("a".into(), None), ("b".into(), None)], Timestamp(0)).await.unwrap();
    assert_eq!(usage.iter().map(|u| u.used).collect::<Vec<_>>(), [2, 2], "nothing of the refused batch stays");
}

pub async fn quotas_soft_overage_and_events(store: Arc<dyn Store>) {
    let q = store.quotas();
    let fx = Effects::none();
    for _ in 0..7 {
        q.quota_consume(&consume_req("qd", vec![demand("calls", 1, 5, true)], None), &fx).await.unwrap();
    }
    // 80% of 5 is 4: reached once; over 5 at 6, once.
    assert_eq!(
        quota_events(&*store, "qd").await,
        [("QuotaThresholdReached".to_owned(), 4), ("QuotaExceeded".to_owned(), 6)]
    );
}

pub async fn quotas_idempotency_keys(store: Arc<dyn Store>) {
    let q = store.quotas();
    let fx = Effects::none();
    let first =
        q.quota_consume(&consume_req("qe", vec![demand("seats", 2, 10, false)], Some("k1")), &fx).await.unwrap();
    q.quota_consume(&consume_req("qe", vec![demand("seats", 1, 10, false)], None), &fx).await.unwrap();
    let again =
        q.quota_consume(&consume_req("qe", vec![demand("seats", 2, 10, false)], Some("k1")), &fx).await.unwrap();
    assert_eq!(
        again,
        crate::QuotaOutcome::Granted {
            usage: vec![crate::QuotaCount { quota: "seats".into(), used: 2 }],
            repeat: true
        }
    );
    assert_eq!(used(&first), [2]);
    let usage = q.quota_usage("qe", &[("seats".into(), None)], Timestamp(0)).await.unwrap();
    assert_eq!(usage[0].used, 3);
    // A refused consume keeps no key: the same key may be granted later.
    let refused =
        q.quota_consume(&consume_req("qe", vec![demand("seats", 20, 10, false)], Some("k2")), &fx).await.unwrap();
    assert!(matches!(refused, crate::QuotaOutcome::Refused { .. }));
    let later =
        q.quota_consume(&consume_req("qe", vec![demand("seats", 1, 10, false)], Some("k2")), &fx).await.unwrap();
    assert_eq!(used(&later), [4]);
}

pub async fn quotas_release_and_periods(store: Arc<dyn Store>) {
    use tenancy_domain::plan::QuotaPeriod;
    let q = store.quotas();
    let fx = Effects::none();
    q.quota_consume(&consume_req("qf", vec![demand("seats", 4, 5, false)], None), &fx).await.unwrap();
    assert_eq!(q.quota_release("qf", "seats", None, 3, Timestamp(0), &fx).await.unwrap(), 1);
    assert_eq!(q.quota_release("qf", "seats", None, 3, Timestamp(0), &fx).await.unwrap(), 0, "never below 0");
    assert_eq!(q.quota_release("qf", "never", None, 3, Timestamp(0), &fx).await.unwrap(), 0);
    // A day quota: usage belongs to its day; the next day starts at 0.
    let day = |now: i64, amount: u64| crate::QuotaConsumeRequest {
        tenant_id: "qf".into(),
        demands: vec![crate::QuotaDemand { period: Some(QuotaPeriod::Day), ..demand("calls", amount, 3, false) }],
        idempotency_key: None,
        now: Timestamp(now),
    };
    const D: i64 = 86_400_000;
    assert_eq!(used(&q.quota_consume(&day(10 * D + 5, 3), &fx).await.unwrap()), [3]);
    assert!(matches!(q.quota_consume(&day(11 * D - 1, 1), &fx).await.unwrap(), crate::QuotaOutcome::Refused { .. }));
    assert_eq!(used(&q.quota_consume(&day(11 * D, 1), &fx).await.unwrap()), [1]);
    let periods = [("calls".to_owned(), Some(QuotaPeriod::Day))];
    assert_eq!(q.quota_usage("qf", &periods, Timestamp(10 * D)).await.unwrap()[0].used, 3);
    assert_eq!(q.quota_usage("qf", &periods, Timestamp(11 * D + 7)).await.unwrap()[0].used, 1);
}

/// The ledger's housekeeping deletes period rows before the cutoff (but the kept
/// starts, and never a count quota's row) and grants before theirs, in batches; what
/// it leaves answers as before, and a pruned grant's key counts again.
pub async fn quotas_prune_ended_periods_and_old_grants(store: Arc<dyn Store>) {
    use tenancy_domain::plan::QuotaPeriod;
    const D: i64 = 86_400_000;
    let q = store.quotas();
    let fx = Effects::none();
    let at = |now: i64, period: Option<QuotaPeriod>, key: Option<&str>| crate::QuotaConsumeRequest {
        tenant_id: "qp".into(),
        demands: vec![crate::QuotaDemand { period, ..demand("calls", 1, 100, false) }],
        idempotency_key: key.map(str::to_owned),
        now: Timestamp(now),
    };
    // Day rows of days 1 to 9, a count row, and grants made on days 1 and 9.
    for day in 1..10 {
        q.quota_consume(&at(day * D + 5, Some(QuotaPeriod::Day), None), &fx).await.unwrap();
    }
    q.quota_consume(&at(D, None, Some("old")), &fx).await.unwrap();
    q.quota_consume(&at(9 * D, None, Some("new")), &fx).await.unwrap();
    let prune = |limit| crate::QuotaPrune {
        periods_before: Timestamp(8 * D),
        keep_starts: vec![Timestamp(2 * D)],
        grants_before: Timestamp(5 * D),
        limit,
    };
    // Days 1 and 3..7 go (6 rows), day 2 is kept, days 8 and 9 are after the cutoff.
    assert_eq!(q.quota_prune(&prune(4)).await.unwrap(), crate::QuotaPruned { usage: 4, grants: 1 });
    assert_eq!(q.quota_prune(&prune(4)).await.unwrap(), crate::QuotaPruned { usage: 2, grants: 0 });
    assert_eq!(q.quota_prune(&prune(4)).await.unwrap(), crate::QuotaPruned::default());
    let day = [("calls".to_owned(), Some(QuotaPeriod::Day))];
    for (d, used) in [(1, 0), (2, 1), (3, 0), (7, 0), (8, 1), (9, 1)] {
        assert_eq!(q.quota_usage("qp", &day, Timestamp(d * D)).await.unwrap()[0].used, used, "day {d}");
    }
    let count = [("calls".to_owned(), None)];
    assert_eq!(q.quota_usage("qp", &count, Timestamp(9 * D)).await.unwrap()[0].used, 2, "a count row stays");
    // The kept grant still answers a repeat; the pruned one's key counts again.
    let repeat = q.quota_consume(&at(9 * D, None, Some("new")), &fx).await.unwrap();
    assert!(matches!(repeat, crate::QuotaOutcome::Granted { repeat: true, .. }), "{repeat:?}");
    assert_eq!(used(&q.quota_consume(&at(9 * D, None, Some("old")), &fx).await.unwrap()), [3]);
}

pub async fn quotas_concurrent_consumers_never_over_grant(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .quotas()
                .quota_consume(&consume_req("qg", vec![demand("seats", 1, 20, false)], None), &Effects::none())
                .await
        }));
    }
    let mut granted = 0;
    for t in tasks {
        if matches!(t.await.unwrap().unwrap(), crate::QuotaOutcome::Granted { .. }) {
            granted += 1;
        }
    }
    assert_eq!(granted, 20);
    assert_eq!(store.quotas().quota_usage("qg", &[("seats".into(), None)], Timestamp(0)).await.unwrap()[0].used, 20);
}

pub async fn quotas_go_with_a_purged_tenant(store: Arc<dyn Store>) {
    store.plan_put(&plan("pro", Isolation::Pool), None, &Effects::none()).await.unwrap();
    let t = store.tenant_create(&tenant("acme", "pro", "eu"), &Effects::none()).await.unwrap();
    let q = store.quotas();
    q.quota_consume(&consume_req("acme", vec![demand("seats", 3, 5, false)], Some("k")), &Effects::none())
        .await
        .unwrap();
    let gone =
        store.tenant_update(&Tenant { status: TenantStatus::Offboarded, ..t }, 1, &Effects::none()).await.unwrap();
    store.tenant_purge("acme", gone.version, &Effects::none()).await.unwrap();
    // A new tenant with the id starts with no usage and no earlier grant.
    let usage = q.quota_usage("acme", &[("seats".into(), None)], Timestamp(0)).await.unwrap();
    assert_eq!(usage[0].used, 0);
    let fresh =
        q.quota_consume(&consume_req("acme", vec![demand("seats", 1, 5, false)], Some("k")), &Effects::none()).await;
    assert_eq!(used(&fresh.unwrap()), [1]);
}

// Secrets.

fn sealed(version: i64, at: i64) -> crate::SealedVersion {
    crate::SealedVersion {
        version,
        ciphertext: format!("v1:ct{version}"),
        wrapped_key: format!("v1:wk{version}"),
        kek_id: "v1:kek-a".into(),
        created_at: Timestamp(at),
    }
}

/// Puts move the labels (current to previous, the old previous unlabelled), a stale
/// expected version is refused and writes nothing, a tenant's and the platform's
/// secrets of one name are apart, unlabelled versions beyond the kept window go, and a
/// deleted secret refuses puts until restored, then is purged only once due.
pub async fn secrets_stages_versions_and_deletion(store: Arc<dyn Store>) {
    let sec = store.secrets();
    let fx = || Effects::none().with_audit(audit("secret.put", Some("acme")));
    let rec = sec.secret_put(Some("acme"), "db", None, &sealed(1, 1_000), &fx()).await.unwrap();
    assert_eq!((rec.current_version, rec.previous_version), (1, None));
    let rec = sec.secret_put(Some("acme"), "db", Some(1), &sealed(2, 2_000), &fx()).await.unwrap();
    assert_eq!((rec.current_version, rec.previous_version), (2, Some(1)));
    let stale = sec.secret_put(Some("acme"), "db", Some(1), &sealed(3, 3_000), &fx()).await;
    assert!(matches!(stale, Err(Error::PreconditionFailed { .. })), "{stale:?}");
    let dup = sec.secret_put(Some("acme"), "db", None, &sealed(1, 3_000), &fx()).await;
    assert!(dup.is_err(), "a second first put");
    let rec = sec.secret_put(Some("acme"), "db", Some(2), &sealed(3, 3_000), &fx()).await.unwrap();
    assert_eq!((rec.current_version, rec.previous_version), (3, Some(2)));
    let versions: Vec<i64> = rec.versions.iter().map(|v| v.0).collect();
    assert_eq!(versions, [3, 2, 1]);
    assert_eq!(sec.secret_version_get(Some("acme"), "db", 1).await.unwrap(), sealed(1, 1_000));
    assert!(matches!(sec.secret_get(None, "db").await, Err(Error::NotFound { .. })), "the platform's is another");
    assert!(matches!(sec.secret_get(Some("globex"), "db").await, Err(Error::NotFound { .. })));
    sec.secret_put(None, "db", None, &sealed(1, 1_000), &fx()).await.unwrap();
    assert_eq!(sec.secret_get(None, "db").await.unwrap().tenant_id, None);
    let audits = store.audit_list(&AuditFilter::default(), &page(100)).await.unwrap();
    assert_eq!(audits.items.len(), 4, "the refused puts wrote nothing");

    // The kept window: labelled versions and the most recent unlabelled ones.
    let mut current = 3;
    for v in 4..=14 {
        sec.secret_put(Some("acme"), "db", Some(current), &sealed(v, v * 1_000), &fx()).await.unwrap();
        current = v;
    }
    let rec = sec.secret_get(Some("acme"), "db").await.unwrap();
    let versions: Vec<i64> = rec.versions.iter().map(|v| v.0).collect();
    assert_eq!(versions, (5..=14).rev().collect::<Vec<_>>(), "10 kept");
    assert!(matches!(sec.secret_version_get(Some("acme"), "db", 4).await, Err(Error::NotFound { .. })));

    // Listing is by name, per scope, paged.
    sec.secret_put(Some("acme"), "api", None, &sealed(1, 1_000), &fx()).await.unwrap();
    let p1 = sec.secret_list(Some("acme"), &page(1)).await.unwrap();
    assert_eq!((p1.items[0].name.as_str(), p1.items[0].versions.len()), ("api", 1));
    let p2 = sec.secret_list(Some("acme"), &PageRequest { limit: 1, after: p1.next_cursor.clone() }).await.unwrap();
    assert_eq!((p2.items[0].name.as_str(), p2.items[0].versions.len(), p2.next_cursor), ("db", 10, None));

    // Deletion, restore, purge.
    let del = || Effects::none().with_audit(audit("secret.delete", Some("acme")));
    sec.secret_delete(Some("acme"), "db", Timestamp(20_000), Some(Timestamp(30_000)), &del()).await.unwrap();
    let again = sec.secret_delete(Some("acme"), "db", Timestamp(20_000), Some(Timestamp(30_000)), &del()).await;
    assert_eq!(again.unwrap_err().code(), ErrorCode::SecretDeleted);
    let put = sec.secret_put(Some("acme"), "db", Some(14), &sealed(15, 21_000), &fx()).await;
    assert_eq!(put.unwrap_err().code(), ErrorCode::SecretDeleted);
    assert_eq!(sec.secret_purge_due(Timestamp(29_999), 10).await.unwrap(), vec![]);
    assert!(!sec.secret_purge(Some("acme"), "db", Timestamp(29_999), &del()).await.unwrap(), "not due yet");
    let rec = sec.secret_restore(Some("acme"), "db", &del()).await.unwrap();
    assert_eq!((rec.deleted_at, rec.purge_at), (None, None));
    let again = sec.secret_restore(Some("acme"), "db", &del()).await;
    assert_eq!(again.unwrap_err().code(), ErrorCode::SecretNotDeleted);
    sec.secret_delete(Some("acme"), "db", Timestamp(20_000), Some(Timestamp(30_000)), &del()).await.unwrap();
    let due = sec.secret_purge_due(Timestamp(30_000), 10).await.unwrap();
    assert_eq!(due, vec![(Some("acme".to_owned()), "db".to_owned())]);
    assert!(sec.secret_purge(Some("acme"), "db", Timestamp(30_000), &del()).await.unwrap());
    assert!(matches!(sec.secret_get(Some("acme"), "db").await, Err(Error::NotFound { .. })));
    assert!(matches!(sec.secret_version_get(Some("acme"), "db", 14).await, Err(Error::NotFound { .. })));
    sec.secret_delete(None, "db", Timestamp(20_000), None, &del()).await.unwrap();
    assert!(matches!(sec.secret_get(None, "db").await, Err(Error::NotFound { .. })), "forced: gone at once");
    let missing = sec.secret_delete(None, "db", Timestamp(20_000), None, &del()).await;
    assert!(matches!(missing, Err(Error::NotFound { .. })));
}

/// A re-wrap replaces wrapped keys and the fingerprint together, and only from the
/// recorded fingerprint; the ciphertexts stay.
pub async fn secrets_rewrap_is_all_or_nothing(store: Arc<dyn Store>) {
    let sec = store.secrets();
    assert_eq!(store.master_key_record("v1:kek-a").await.unwrap(), "v1:kek-a");
    sec.secret_put(Some("acme"), "db", None, &sealed(1, 1_000), &Effects::none()).await.unwrap();
    assert!(store.master_key_state().await.unwrap().sealed_values, "a secret version is sealed data");
    let mut keys = sec.secret_wrapped_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    keys[0].wrapped_key = "v1:rewrapped".into();
    keys[0].kek_id = "v1:kek-b".into();
    let wrong = sec.secret_rewrap(&keys, &[], "v1:kek-x", "v1:kek-b").await;
    assert!(wrong.is_err());
    assert_eq!(sec.secret_version_get(Some("acme"), "db", 1).await.unwrap(), sealed(1, 1_000), "nothing changed");
    sec.secret_rewrap(&keys, &[], "v1:kek-a", "v1:kek-b").await.unwrap();
    let v = sec.secret_version_get(Some("acme"), "db", 1).await.unwrap();
    assert_eq!(
        (v.ciphertext.as_str(), v.wrapped_key.as_str(), v.kek_id.as_str()),
        ("v1:ct1", "v1:rewrapped", "v1:kek-b")
    );
    assert_eq!(store.master_key_state().await.unwrap().fingerprint.as_deref(), Some("v1:kek-b"));
}

// Connections.

/// A connection's put writes its row and its credential as a version of the platform
/// secret `connection.<name>` together (a stale expected version writes neither); a
/// replace keeps `created_at`; a hook may name only an existing connection; a
/// connection a hook names cannot be deleted (409 naming the hook), and a delete takes
/// the secret with it; every write commits with its audit entry, a refused one with
/// nothing.
pub async fn connections_put_with_their_secret_and_refuse_deletion_in_use(store: Arc<dyn Store>) {
    use crate::hooks::HookSecretWrite;
    use tenancy_domain::connection::{AuthMeta, Connection};
    let conn = |header: &str, at: i64| Connection {
        name: "crm".into(),
        auth: AuthMeta::ApiKey { header: header.into() },
        description: None,
        created_at: Timestamp(at),
        updated_at: Timestamp(at),
    };
    let conns = store.connections();
    let secret = tenancy_domain::connection::secret_name("crm");
    let fx = || Effects::none().with_audit(audit("connection.put", None));
    let (c, created) = conns.connection_put(&conn("X-A", 1_000), None, &sealed(1, 1_000), &fx()).await.unwrap();
    assert!(created);
    assert_eq!(c, conn("X-A", 1_000));
    let (c, created) = conns.connection_put(&conn("X-B", 2_000), Some(1), &sealed(2, 2_000), &fx()).await.unwrap();
    assert!(!created);
    assert_eq!((c.created_at, c.updated_at, c.auth.header()), (Timestamp(1_000), Timestamp(2_000), "X-B"));
    let stale = conns.connection_put(&conn("X-C", 3_000), Some(1), &sealed(3, 3_000), &fx()).await;
    assert!(matches!(stale, Err(Error::PreconditionFailed { .. })), "{stale:?}");
    assert_eq!(conns.connection_get("crm").await.unwrap().auth.header(), "X-B", "the stale put wrote nothing");
    let rec = store.secrets().secret_get(None, &secret).await.unwrap();
    assert_eq!((rec.current_version, rec.previous_version), (2, Some(1)));
    assert_eq!(store.secrets().secret_version_get(None, &secret, 2).await.unwrap(), sealed(2, 2_000));

    let hook = |connection: &str| {
        serde_json::from_value::<tenancy_domain::hook::HookSpec>(
            json!({"url": "http://a/h", "events": ["provision"], "connection": connection}),
        )
        .unwrap()
        .into_hook("billing", Timestamp(4_000))
        .unwrap()
    };
    let missing = store.hooks().hook_put(&hook("nobody"), &HookSecretWrite::Keep, &Effects::none()).await;
    assert!(matches!(&missing, Err(Error::InvalidRequest { code: ErrorCode::InvalidConnection, .. })), "{missing:?}");
    store.hooks().hook_put(&hook("crm"), &HookSecretWrite::Keep, &Effects::none()).await.unwrap();
    let del = || Effects::none().with_audit(audit("connection.delete", None));
    match conns.connection_delete("crm", &del()).await {
        Err(Error::Conflict { code: ErrorCode::ConnectionInUse, message }) => {
            assert!(message.contains("hook/billing"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    store.hooks().hook_delete("billing", &Effects::none()).await.unwrap();
    conns.connection_delete("crm", &del()).await.unwrap();
    assert!(matches!(conns.connection_get("crm").await, Err(Error::NotFound { .. })));
    assert!(matches!(store.secrets().secret_get(None, &secret).await, Err(Error::NotFound { .. })));
    assert!(matches!(conns.connection_delete("crm", &del()).await, Err(Error::NotFound { .. })));
    assert!(conns.connection_list().await.unwrap().is_empty());
    let audit = store.audit_list(&AuditFilter::default(), &page(10)).await.unwrap();
    assert_eq!(audit.items.len(), 3, "two puts and one delete; the refused writes wrote nothing");
}

// Rotations.

/// A rotation starts only when none runs (or the running one is taken over), only its
/// execution may label a pending version or end it, its finish moves pending ->
/// current -> previous once, and a scheduled start is refused when the due time moved.
pub async fn secrets_rotations_run_one_at_a_time(store: Arc<dyn Store>) {
    let sec = store.secrets();
    let start = |id: &str, takeover: Option<&str>, due: Option<i64>| crate::RotationStart {
        execution_id: id.into(),
        takeover: takeover.map(str::to_owned),
        due: due.map(Timestamp),
        next_rotation_at: None,
        last_rotation: format!("{{\"execution_id\": \"{id}\"}}"),
    };
    let none = Effects::none();
    sec.secret_put(None, "k", None, &sealed(1, 1_000), &none).await.unwrap();
    sec.secret_rotation_start(None, "k", &start("e1", None, None), &none).await.unwrap();
    let busy = sec.secret_rotation_start(None, "k", &start("e2", None, None), &none).await.unwrap_err();
    assert_eq!(busy.code(), ErrorCode::RotationInProgress);
    let stranger = sec.secret_pending_put(None, "k", "e2", &sealed(2, 2_000)).await;
    assert!(matches!(stranger, Err(Error::PreconditionFailed { .. })), "{stranger:?}");
    sec.secret_pending_put(None, "k", "e1", &sealed(2, 2_000)).await.unwrap();
    sec.secret_pending_put(None, "k", "e1", &sealed(2, 2_000)).await.unwrap();
    let rec = sec.secret_get(None, "k").await.unwrap();
    assert_eq!(
        (rec.current_version, rec.pending_version, rec.rotation_execution_id.as_deref()),
        (1, Some(2), Some("e1"))
    );
    assert!(!sec.secret_rotation_end(None, "k", "e2", Some(2), "{}", &none).await.unwrap(), "not its rotation");
    assert!(sec.secret_rotation_end(None, "k", "e1", Some(3), "{}", &none).await.is_err(), "3 is not pending");
    assert!(sec.secret_rotation_end(None, "k", "e1", Some(2), "{\"done\": 1}", &none).await.unwrap());
    assert!(!sec.secret_rotation_end(None, "k", "e1", Some(2), "{}", &none).await.unwrap(), "once");
    let rec = sec.secret_get(None, "k").await.unwrap();
    assert_eq!((rec.current_version, rec.previous_version, rec.pending_version), (2, Some(1), None));
    assert_eq!((rec.rotation_execution_id, rec.last_rotation.as_deref()), (None, Some("{\"done\": 1}")));

    // A scheduled start whose due time moved is refused; a taken-over rotation loses
    // its pending label and can no longer end.
    let moved = sec.secret_rotation_start(None, "k", &start("e3", None, Some(5)), &none).await.unwrap_err();
    assert_eq!(moved.code(), ErrorCode::RotationInProgress);
    sec.secret_rotation_start(None, "k", &start("e3", None, None), &none).await.unwrap();
    sec.secret_pending_put(None, "k", "e3", &sealed(3, 3_000)).await.unwrap();
    sec.secret_rotation_start(None, "k", &start("e4", Some("e3"), None), &none).await.unwrap();
    let rec = sec.secret_get(None, "k").await.unwrap();
    assert_eq!((rec.pending_version, rec.rotation_execution_id.as_deref()), (None, Some("e4")));
    assert!(!sec.secret_rotation_end(None, "k", "e3", Some(3), "{}", &none).await.unwrap());

    // Due rotations: scheduled, none running.
    let config = crate::SecretConfig { generator: None, rotation: Some(("{}".into(), Some(Timestamp(100)))) };
    sec.secret_put_configured(None, "k", Some(2), &sealed(4, 4_000), &config, &none).await.unwrap();
    assert!(sec.secret_rotation_due(Timestamp(200), 10).await.unwrap().is_empty(), "one is running");
    assert!(sec.secret_rotation_end(None, "k", "e4", None, "{}", &none).await.unwrap());
    assert!(sec.secret_rotation_due(Timestamp(50), 10).await.unwrap().is_empty());
    assert_eq!(sec.secret_rotation_due(Timestamp(200), 10).await.unwrap(), [(None, "k".to_owned(), Timestamp(100))]);
}

/// A job lease is its owner's until it expires, renewable by its owner.
pub async fn job_leases_expire(store: Arc<dyn Store>) {
    let sec = store.secrets();
    assert!(sec.job_lease("j", "a", Timestamp(0), Timestamp(10)).await.unwrap());
    assert!(!sec.job_lease("j", "b", Timestamp(5), Timestamp(15)).await.unwrap(), "held by a");
    assert!(sec.job_lease("j", "a", Timestamp(5), Timestamp(20)).await.unwrap(), "renewed");
    assert!(!sec.job_lease("j", "b", Timestamp(15), Timestamp(30)).await.unwrap(), "still a's");
    assert!(sec.job_lease("j", "b", Timestamp(20), Timestamp(40)).await.unwrap(), "expired: taken over");
    assert!(!sec.job_lease("j", "a", Timestamp(25), Timestamp(50)).await.unwrap());
}

/// The `/metrics` gauges of stored state: tenants by status and plan, running and
/// stuck executions by state machine, queue depths with the oldest message and which
/// queues are dead-letter queues; a deleted queue and an emptied one are counted right.
pub async fn metrics_gauges_count_stored_state(store: Arc<dyn Store>) {
    use crate::workflow::*;
    use crate::StoreGauges;
    let now = Timestamp::now();
    let empty = store.metrics_gauges(now, now).await.unwrap();
    assert_eq!(empty, StoreGauges::default());
    store.plan_put(&plan("basic", Isolation::Pool), None, &Effects::none()).await.unwrap();
    store.plan_put(&plan("pro", Isolation::Pool), None, &Effects::none()).await.unwrap();
    for (id, plan, status) in [
        ("a1", "basic", TenantStatus::Active),
        ("a2", "basic", TenantStatus::Active),
        ("p1", "basic", TenantStatus::Provisioning),
        ("b1", "pro", TenantStatus::Active),
    ] {
        let t = Tenant { status, ..tenant(id, plan, "eu") };
        store.tenant_create(&t, &created(&t)).await.unwrap();
    }
    let wf = store.workflows();
    let new = |id: &str, machine: &str, wake_at: Option<i64>, status: &str| NewExecution {
        id: id.into(),
        name: id.into(),
        state_machine: machine.into(),
        version: 1,
        tenant_id: None,
        input: json!({}),
        started_at: Timestamp(1_000),
        first: StepState {
            status: status.into(),
            cursor: Some(json!({})),
            pending: Some(json!({})),
            wake_at: wake_at.map(Timestamp),
            stopped_at: (status != status::RUNNING).then_some(Timestamp(2_000)),
            ..StepState::default()
        },
        trace_context: None,
    };
    // Due long ago: stuck. Waiting for a callback without a deadline, or due later: not.
    wf.execution_start(&new("e1", "sm", Some(1_000), status::RUNNING), &Effects::none()).await.unwrap();
    wf.execution_start(&new("e2", "sm", None, status::RUNNING), &Effects::none()).await.unwrap();
    let later = now.plus_millis(3_600_000).millis();
    wf.execution_start(&new("e3", "other", Some(later), status::RUNNING), &Effects::none()).await.unwrap();
    wf.execution_start(&new("e4", "other", None, status::SUCCEEDED), &Effects::none()).await.unwrap();
    let spec = |s: serde_json::Value| serde_json::from_value::<tenancy_domain::queue::QueueSpec>(s).unwrap();
    let q = |name: &str, s: serde_json::Value| spec(s).into_queue(name, Timestamp(1_000)).unwrap();
    let queues = store.queues();
    queues.queue_put(&q("dlq", json!({})), &Effects::none()).await.unwrap();
    queues
        .queue_put(&q("orders", json!({"max_receive_count": 3, "dead_letter_queue": "dlq"})), &Effects::none())
        .await
        .unwrap();
    queues.queue_put(&q("idle", json!({})), &Effects::none()).await.unwrap();
    let msg = || tenancy_domain::queue::NewMessage {
        id: tenancy_domain::ids::new_id("msg"),
        body: "{}".into(),
        delay_ms: None,
        group_id: None,
        dedup_id: None,
        attributes: Default::default(),
    };
    let sent_at = now.plus_millis(-5_000);
    queues.message_send("orders", &[msg(), msg(), msg()], sent_at).await.unwrap();
    queues.message_send("dlq", &[msg()], now).await.unwrap();
    let received = queues.message_receive("orders", 1, now).await.unwrap();
    assert_eq!(received.messages.len(), 1);

    let g = store.metrics_gauges(now, now.plus_millis(60_000)).await.unwrap();
    assert_eq!(
        g.tenants,
        vec![
            ("active".into(), "basic".into(), 2),
            ("active".into(), "pro".into(), 1),
            ("provisioning".into(), "basic".into(), 1)
        ]
    );
    assert_eq!(g.running_executions, vec![("other".into(), 1), ("sm".into(), 2)]);
    assert_eq!(g.stuck_executions, vec![("sm".into(), 1)]);
    let by_name = |n: &str| g.queues.iter().find(|q| q.queue == n).cloned().unwrap();
    assert_eq!(g.queues.len(), 3);
    let orders = by_name("orders");
    assert_eq!((orders.waiting, orders.in_flight, orders.dead_letter), (2, 1, false));
    assert_eq!(orders.oldest_sent_at, Some(sent_at));
    let dlq = by_name("dlq");
    assert_eq!((dlq.waiting, dlq.in_flight, dlq.dead_letter), (1, 0, true));
    let idle = by_name("idle");
    assert_eq!((idle.waiting, idle.in_flight, idle.oldest_sent_at), (0, 0, None));
    assert!(g.deliveries.is_empty());
    assert!(g.rollouts.is_empty());

    // A deleted queue is no longer listed.
    queues.queue_delete("idle", &Effects::none()).await.unwrap();
    let g = store.metrics_gauges(now, now).await.unwrap();
    assert_eq!(g.queues.iter().map(|q| q.queue.as_str()).collect::<Vec<_>>(), vec!["dlq", "orders"]);
    // A stuck cutoff before the execution's last move: not stuck.
    assert!(g.stuck_executions.is_empty());
}

pub async fn policies_move_the_revision(store: Arc<dyn Store>) {
    use tenancy_domain::policy::Policy;
    let policies = store.policies();
    let start = policies.policy_revision().await.unwrap();
    let p = Policy {
        name: "eu-only".into(),
        cedar: "forbid(principal, action, resource);".into(),
        created_at: Timestamp(1_000),
        updated_at: Timestamp(1_000),
    };
    let (stored, created) =
        policies.policy_put(&p, &Effects::none().with_audit(audit("policy.put", None))).await.unwrap();
    assert!(created);
    assert_eq!(stored, p);
    let after_create = policies.policy_revision().await.unwrap();
    assert!(after_create > start, "a put moves the revision");

    // A replace keeps created_at and moves the revision again.
    let newer =
        Policy { cedar: "permit(principal, action, resource);".into(), updated_at: Timestamp(2_000), ..p.clone() };
    let (stored, created) =
        policies.policy_put(&Policy { created_at: Timestamp(2_000), ..newer.clone() }, &Effects::none()).await.unwrap();
    assert!(!created);
    assert_eq!(stored, newer);
    assert_eq!(policies.policy_get("eu-only").await.unwrap(), newer);
    let after_replace = policies.policy_revision().await.unwrap();
    assert!(after_replace > after_create);

    let other = Policy { name: "another".into(), ..p.clone() };
    policies.policy_put(&other, &Effects::none()).await.unwrap();
    let names: Vec<String> = policies.policy_list().await.unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["another", "eu-only"]);

    policies.policy_delete("eu-only", &Effects::none()).await.unwrap();
    assert!(matches!(policies.policy_get("eu-only").await, Err(Error::NotFound { .. })));
    assert!(matches!(policies.policy_delete("eu-only", &Effects::none()).await, Err(Error::NotFound { .. })));
    assert!(policies.policy_revision().await.unwrap() > after_replace);
    assert_eq!(policies.policy_list().await.unwrap().len(), 1);
}
