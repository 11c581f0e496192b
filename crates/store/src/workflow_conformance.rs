//! The conformance suite of [`WorkflowStore`] backends, instantiated per backend by
//! [`workflow_conformance_suite!`] like the [`crate::conformance`] suite.

use std::sync::Arc;

use serde_json::json;
use tenancy_domain::event::Event;
use tenancy_domain::page::PageRequest;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode};

use crate::store::*;
use crate::workflow::*;

#[macro_export]
macro_rules! workflow_conformance_suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            $crate::workflow_conformance_suite!(@cases $make;
                state_machine_versions, execution_start_is_idempotent_by_name, steps_commit_with_seq,
                claims_are_leased, claims_are_fair_across_tenants, effects_start_executions, execution_lists_and_tokens,
                tenant_resources_and_secrets, step_tenant_writes_are_version_checked,
                a_claimed_execution_reads_the_tenant_write_that_started_it,
                claims_by_state_machine_prefix_and_running_counts,
                finished_executions_are_pruned_in_batches_after_their_retention);
        }
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let db = $make.await;
                let store: std::sync::Arc<dyn $crate::Store> = db.store.clone();
                $crate::workflow_conformance::$case(store).await;
            }
        )*
    };
}

fn page(limit: u32) -> PageRequest {
    PageRequest { limit, after: None }
}

fn hist(id: i64, kind: &str) -> HistoryRecord {
    HistoryRecord { event_id: id, kind: kind.into(), state: Some("S".into()), details: json!({}), time: Timestamp(5) }
}

/// The trace context every test execution is started with.
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn new_execution(id: &str, name: &str, due: Option<i64>) -> NewExecution {
    NewExecution {
        id: id.into(),
        name: name.into(),
        state_machine: "sm".into(),
        version: 1,
        tenant_id: Some("acme".into()),
        input: json!({"a": 1}),
        started_at: Timestamp(1_000),
        first: StepState {
            status: status::RUNNING.into(),
            cursor: Some(json!({"at": "S"})),
            pending: Some(json!({"task": 1})),
            wake_at: due.map(Timestamp),
            history: vec![hist(1, "ExecutionStarted"), hist(2, "TaskStateEntered")],
            ..StepState::default()
        },
        trace_context: Some(TRACEPARENT.into()),
    }
}

pub async fn state_machine_versions(store: Arc<dyn Store>) {
    let wf = store.workflows();
    let (v1, added) = wf.state_machine_put("sm", &json!({"v": 1}), &Effects::none()).await.unwrap();
    assert!(added);
    assert_eq!(v1.version, 1);
    let (same, added) = wf.state_machine_put("sm", &json!({"v": 1}), &Effects::none()).await.unwrap();
    assert!(!added);
    assert_eq!(same.version, 1);
    let (v2, _) = wf.state_machine_put("sm", &json!({"v": 2}), &Effects::none()).await.unwrap();
    assert_eq!(v2.version, 2);
    wf.state_machine_put("other", &json!({}), &Effects::none()).await.unwrap();
    assert_eq!(wf.state_machine_get("sm", None).await.unwrap().definition, json!({"v": 2}));
    assert_eq!(wf.state_machine_get("sm", Some(1)).await.unwrap().definition, json!({"v": 1}));
    let list = wf.state_machine_list(&page(10)).await.unwrap();
    assert_eq!(list.items.iter().map(|s| (s.name.as_str(), s.version)).collect::<Vec<_>>(), [("other", 1), ("sm", 2)]);
    assert!(matches!(wf.state_machine_get("nope", None).await, Err(Error::NotFound { .. })));
}

pub async fn execution_start_is_idempotent_by_name(store: Arc<dyn Store>) {
    let wf = store.workflows();
    let (e, created) = wf.execution_start(&new_execution("exe_1", "n1", Some(0)), &Effects::none()).await.unwrap();
    assert!(created);
    assert_eq!((e.status.as_str(), e.seq), ("RUNNING", 1));
    assert_eq!(e.trace_context.as_deref(), Some(TRACEPARENT));
    let (again, created) = wf.execution_start(&new_execution("exe_2", "n1", Some(0)), &Effects::none()).await.unwrap();
    assert!(!created);
    assert_eq!(again.id, "exe_1");
    let got = wf.execution_get("exe_1").await.unwrap();
    assert_eq!(got.cursor, Some(json!({"at": "S"})));
    assert_eq!(got.input, json!({"a": 1}));
    assert_eq!(got.trace_context.as_deref(), Some(TRACEPARENT));
    let h = wf.execution_history("exe_1", &page(10)).await.unwrap();
    assert_eq!(h.items.iter().map(|h| h.kind.as_str()).collect::<Vec<_>>(), ["ExecutionStarted", "TaskStateEntered"]);
    assert!(matches!(wf.execution_get("exe_2").await, Err(Error::NotFound { .. })));
}

pub async fn steps_commit_with_seq(store: Arc<dyn Store>) {
    let wf = store.workflows();
    wf.execution_start(&new_execution("exe_1", "n1", Some(0)), &Effects::none()).await.unwrap();
    let event = Event::new("ExecutionFailed", Some("acme"), vec![], json!({}));
    let step = StepCommit {
        execution_id: "exe_1".into(),
        expected_seq: 1,
        state: StepState {
            status: status::FAILED.into(),
            error: Some("E".into()),
            cause: Some("C".into()),
            stopped_at: Some(Timestamp(9)),
            history: vec![hist(3, "TaskFailed"), hist(4, "ExecutionFailed")],
            ..StepState::default()
        },
        redrive_point: Some((json!({"at": "S"}), json!({"task": 1}))),
        effects: Effects::none().with_event(event.clone()),
        ..StepCommit::default()
    };
    let res = wf.execution_commit(std::slice::from_ref(&step)).await.unwrap();
    assert!(res[0].is_ok());
    // The same step again: the execution moved on, nothing is written twice.
    let res = wf.execution_commit(&[step]).await.unwrap();
    assert!(matches!(&res[0], Err(Error::Conflict { code: ErrorCode::ExecutionMoved, .. })), "{res:?}");
    let got = wf.execution_get("exe_1").await.unwrap();
    assert_eq!((got.status.as_str(), got.seq, got.wake_at), ("FAILED", 2, None));
    assert_eq!(got.error.as_deref(), Some("E"));
    assert_eq!(got.stopped_at, Some(Timestamp(9)));
    assert_eq!(wf.execution_history("exe_1", &page(10)).await.unwrap().items.len(), 4);
    let events = store.event_list(&EventFilter::default(), &page(10)).await.unwrap().items;
    assert_eq!(events.iter().filter(|e| e.event.id == event.id).count(), 1);
    let point = wf.execution_redrive_point("exe_1").await.unwrap().unwrap();
    assert_eq!(point.pending, json!({"task": 1}));
    // A step whose history repeats an event id fails as a whole.
    let dup = StepCommit {
        execution_id: "exe_1".into(),
        expected_seq: 2,
        state: StepState { status: status::RUNNING.into(), history: vec![hist(4, "X")], ..StepState::default() },
        ..StepCommit::default()
    };
    assert!(wf.execution_commit(&[dup]).await.is_err());
    assert_eq!(wf.execution_get("exe_1").await.unwrap().status, "FAILED");
}

pub async fn claims_are_leased(store: Arc<dyn Store>) {
    let wf = store.workflows();
    wf.execution_start(&new_execution("exe_1", "n1", Some(100)), &Effects::none()).await.unwrap();
    wf.execution_start(&new_execution("exe_2", "n2", Some(5_000)), &Effects::none()).await.unwrap();
    wf.execution_start(&new_execution("exe_3", "n3", None), &Effects::none()).await.unwrap();
    let a = wf.execution_claim(&Claim::new("a", 1_000, 10, Timestamp(200))).await.unwrap();
    assert_eq!(a.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["exe_1"]);
    // A claim restores the trace context (another replica's steps join the trace).
    assert_eq!(a[0].trace_context.as_deref(), Some(TRACEPARENT));
    assert!(wf.execution_claim(&Claim::new("b", 1_000, 10, Timestamp(300))).await.unwrap().is_empty());
    // The lease expires: another worker takes the execution over.
    let b = wf.execution_claim(&Claim::new("b", 1_000, 10, Timestamp(1_300))).await.unwrap();
    assert_eq!(b.len(), 1);
    // The holder extends its lease; a former holder cannot.
    assert!(wf.execution_lease_extend("exe_1", "b", Timestamp(5_000)).await.unwrap());
    assert!(!wf.execution_lease_extend("exe_1", "a", Timestamp(9_000)).await.unwrap());
    assert!(wf.execution_claim(&Claim::new("c", 1_000, 10, Timestamp(4_000))).await.unwrap().is_empty());
    // Releasing the lease with a new timer.
    let step = StepCommit {
        execution_id: "exe_1".into(),
        expected_seq: 1,
        state: StepState { status: status::RUNNING.into(), wake_at: Some(Timestamp(1_500)), ..StepState::default() },
        ..StepCommit::default()
    };
    assert!(wf.execution_commit(&[step]).await.unwrap()[0].is_ok());
    let c = wf.execution_claim(&Claim::new("c", 1_000, 10, Timestamp(6_000))).await.unwrap();
    assert_eq!(c.len(), 2);
}

pub async fn claims_are_fair_across_tenants(store: Arc<dyn Store>) {
    let wf = store.workflows();
    let start = |id: String, tenant: Option<&str>, due: i64| {
        let mut n = new_execution(&id, &id, Some(due));
        n.tenant_id = tenant.map(str::to_owned);
        n
    };
    // A backlog of 400 executions of one tenant, older than everybody else's.
    for i in 0..400 {
        wf.execution_start(&start(format!("a{i:03}"), Some("big"), 100 + i), &Effects::none()).await.unwrap();
    }
    wf.execution_start(&start("b0".into(), Some("small"), 1_000), &Effects::none()).await.unwrap();
    wf.execution_start(&start("b1".into(), Some("small"), 1_001), &Effects::none()).await.unwrap();
    for i in 0..3 {
        wf.execution_start(&start(format!("n{i}"), None, 1_002 + i), &Effects::none()).await.unwrap();
    }
    let ids = |v: Vec<ExecutionRecord>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    // Unfair: oldest first, the backlog only.
    let plain = wf.execution_claim(&Claim::new("w", 60_000, 4, Timestamp(2_000))).await.unwrap();
    assert_eq!(ids(plain), ["a000", "a001", "a002", "a003"]);
    // The per-tenant cap holds within a claim.
    let capped = Claim { per_tenant: 2, ..Claim::new("w", 60_000, 10, Timestamp(2_000)) };
    assert_eq!(ids(wf.execution_claim(&capped).await.unwrap()), ["a004", "a005"]);
    // With the big tenant skipped, the others come, round-robin by rank.
    let skip = ["big".to_owned()];
    let claim = Claim { per_tenant: 2, skip_tenants: &skip, ..Claim::new("w", 60_000, 4, Timestamp(2_000)) };
    let mut got = ids(wf.execution_claim(&claim).await.unwrap());
    got.sort();
    assert_eq!(got, ["b0", "n0", "n1", "n2"], "every tenant's oldest first");
    assert_eq!(ids(wf.execution_claim(&claim).await.unwrap()), ["b1"]);
    // Past the window: with the big tenant skipped, a later tenant is still reached.
    wf.execution_start(&start("c0".into(), Some("late"), 1_500), &Effects::none()).await.unwrap();
    for i in 400..1_000 {
        wf.execution_start(&start(format!("a{i:03}"), Some("big"), 100 + i), &Effects::none()).await.unwrap();
    }
    assert_eq!(ids(wf.execution_claim(&claim).await.unwrap()), ["c0"]);
}

/// The claim of the slots reserved to lifecycle executions takes only the state machines
/// of its prefix; running counts are by state machine, tenant and prefix, capped.
pub async fn claims_by_state_machine_prefix_and_running_counts(store: Arc<dyn Store>) {
    let wf = store.workflows();
    let start = |id: &str, machine: &str, tenant: Option<&str>, due: i64| {
        let mut n = new_execution(id, id, Some(due));
        n.state_machine = machine.into();
        n.tenant_id = tenant.map(str::to_owned);
        n
    };
    for i in 0..5 {
        wf.execution_start(&start(&format!("u{i}"), "user", Some("acme"), 100 + i), &Effects::none()).await.unwrap();
    }
    // Names just outside the prefix's range on both sides.
    wf.execution_start(&start("x0", "tenancy", None, 50), &Effects::none()).await.unwrap();
    wf.execution_start(&start("x1", "tenancy/x", None, 51), &Effects::none()).await.unwrap();
    wf.execution_start(&start("x2", "Tenancy.x", None, 52), &Effects::none()).await.unwrap();
    wf.execution_start(&start("x3", "tenancyx.y", None, 53), &Effects::none()).await.unwrap();
    wf.execution_start(&start("l0", "tenancy.tenant.provision", Some("acme"), 900), &Effects::none()).await.unwrap();
    let claim = Claim { state_machine_prefix: Some("tenancy."), ..Claim::new("w", 60_000, 10, Timestamp(2_000)) };
    let got: Vec<String> = wf.execution_claim(&claim).await.unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(got, ["l0"]);
    let hostile = Claim { state_machine_prefix: Some("x' OR 1=1 --"), ..claim };
    assert!(wf.execution_claim(&hostile).await.is_err());

    assert_eq!(wf.execution_running_count(Some("user"), None, None, 100).await.unwrap(), 5);
    assert_eq!(wf.execution_running_count(Some("user"), None, None, 3).await.unwrap(), 3, "counted up to the cap");
    assert_eq!(wf.execution_running_count(None, Some("acme"), None, 100).await.unwrap(), 6);
    assert_eq!(wf.execution_running_count(None, Some("acme"), Some("tenancy."), 100).await.unwrap(), 5);
    // Finished executions do not count.
    let done = StepCommit {
        execution_id: "u0".into(),
        expected_seq: 1,
        state: StepState {
            status: status::SUCCEEDED.into(),
            stopped_at: Some(Timestamp(3_000)),
            ..StepState::default()
        },
        ..StepCommit::default()
    };
    assert!(wf.execution_commit(&[done]).await.unwrap()[0].is_ok());
    assert_eq!(wf.execution_running_count(Some("user"), Some("acme"), None, 100).await.unwrap(), 4);
}

pub async fn effects_start_executions(store: Arc<dyn Store>) {
    let wf = store.workflows();
    let fx = Effects::none().with_execution(new_execution("exe_1", "n1", Some(0)));
    store.commit_effects(&fx).await.unwrap();
    let got = wf.execution_get("exe_1").await.unwrap();
    assert_eq!((got.name.as_str(), got.trace_context.as_deref()), ("n1", Some(TRACEPARENT)));
    // Without a trace context (no traces exported): none is stored.
    let fx = Effects::none().with_execution(NewExecution { trace_context: None, ..new_execution("exe_4", "n4", None) });
    store.commit_effects(&fx).await.unwrap();
    assert_eq!(wf.execution_get("exe_4").await.unwrap().trace_context, None);
    // A change that fails takes its executions with it.
    let fx = Effects::none().with_execution(new_execution("exe_2", "n2", Some(0))).with_execution(new_execution(
        "exe_3",
        "n1",
        Some(0),
    ));
    assert!(store.commit_effects(&fx).await.is_err());
    assert!(matches!(wf.execution_get("exe_2").await, Err(Error::NotFound { .. })));
}

pub async fn execution_lists_and_tokens(store: Arc<dyn Store>) {
    let wf = store.workflows();
    for i in 0..5 {
        let mut n = new_execution(&format!("exe_{i}"), &format!("n{i}"), Some(0));
        if i % 2 == 0 {
            n.tenant_id = None;
        }
        if i == 3 {
            n.first.task_token = Some("tok".into());
            n.first.wake_at = None;
        }
        wf.execution_start(&n, &Effects::none()).await.unwrap();
    }
    let filter = ExecutionFilter { tenant_id: Some("acme".into()), ..Default::default() };
    let got = wf.execution_list(&filter, &page(10)).await.unwrap();
    assert_eq!(got.items.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["exe_1", "exe_3"]);
    let first = wf.execution_list(&ExecutionFilter::default(), &page(3)).await.unwrap();
    assert_eq!(first.items.len(), 3);
    let rest =
        wf.execution_list(&ExecutionFilter::default(), &PageRequest { limit: 3, after: first.next_cursor }).await;
    assert_eq!(rest.unwrap().items.len(), 2);
    let stuck = ExecutionFilter { updated_before: Some(Timestamp::now().plus_millis(60_000)), ..Default::default() };
    // exe_3 waits for a callback without a deadline: not stuck.
    assert_eq!(wf.execution_list(&stuck, &page(10)).await.unwrap().items.len(), 4);
    let recent = ExecutionFilter { updated_before: Some(Timestamp(1)), ..Default::default() };
    assert!(wf.execution_list(&recent, &page(10)).await.unwrap().items.is_empty());
    assert_eq!(wf.execution_by_token("tok").await.unwrap().id, "exe_3");
    assert!(matches!(wf.execution_by_token("nope").await, Err(Error::NotFound { .. })));
}

/// Resources are put once and replaced on a move; a secret's first put wins.
pub async fn tenant_resources_and_secrets(store: Arc<dyn Store>) {
    let w = store.workflows();
    let r = TenantResource {
        tenant_id: "acme".into(),
        kind: "database".into(),
        detail: json!({"isolation": "pool"}),
        created_by: "k1".into(),
        created_at: Timestamp::now(),
    };
    assert!(w.tenant_resource_put(&r).await.unwrap().1);
    let moved = TenantResource { detail: json!({"isolation": "silo"}), created_by: "k2".into(), ..r.clone() };
    assert!(!w.tenant_resource_put(&moved).await.unwrap().1, "put keeps the first");
    w.tenant_resource_replace(&moved).await.unwrap();
    w.tenant_resource_replace(&moved).await.unwrap();
    let list = w.tenant_resource_list("acme").await.unwrap();
    assert_eq!((list.len(), &list[0].detail), (1, &json!({"isolation": "silo"})));

    assert_eq!(w.tenant_secret_get("acme", "database:silo").await.unwrap(), None);
    assert_eq!(w.tenant_secret_put("acme", "database:silo", "v1:a").await.unwrap(), "v1:a");
    assert_eq!(w.tenant_secret_put("acme", "database:silo", "v1:b").await.unwrap(), "v1:a", "first wins");
    assert_eq!(w.tenant_secret_get("acme", "database:silo").await.unwrap().as_deref(), Some("v1:a"));
    assert!(w.tenant_secret_delete("acme", "database:silo").await.unwrap());
    assert!(!w.tenant_secret_delete("acme", "database:silo").await.unwrap());
    assert_eq!(w.tenant_secret_get("acme", "database:silo").await.unwrap(), None);
}

/// A step's [`Effects::tenants`] commit with it, and only over the version they were
/// computed from: a stale one fails the commit and writes nothing, alone or in a batch.
pub async fn step_tenant_writes_are_version_checked(store: Arc<dyn Store>) {
    use crate::conformance::{plan, tenant};
    use tenancy_domain::plan::Isolation;
    use tenancy_domain::tenant::{Tenant, TenantStatus};
    let wf = store.workflows();
    store.plan_put(&plan("pro", Isolation::Pool), None, &Effects::none()).await.unwrap();
    let mut acme = tenant("acme", "pro", "eu");
    store.tenant_create(&acme, &Effects::none()).await.unwrap();
    for i in 1..=3 {
        wf.execution_start(&new_execution(&format!("exe_{i}"), &format!("n{i}"), Some(0)), &Effects::none())
            .await
            .unwrap();
    }
    let step = |id: &str, t: &Tenant, expected: i64| StepCommit {
        execution_id: id.into(),
        expected_seq: 1,
        state: StepState { status: status::SUCCEEDED.into(), history: vec![hist(3, "X")], ..StepState::default() },
        effects: Effects::none()
            .with_event(Event::new("TenantProvisioned", Some("acme"), vec![], json!({})))
            .with_tenant(Tenant { version: expected + 1, ..t.clone() }, expected),
        ..StepCommit::default()
    };
    // Stale (version 0 is long gone after the update below): nothing is written.
    acme.name = "Acme Inc".into();
    let acme = store.tenant_update(&acme, 1, &Effects::none()).await.unwrap();
    let mut active = acme.clone();
    active.status = TenantStatus::Active;
    let stale = wf.execution_commit(&[step("exe_1", &active, 1)]).await;
    let failed = match stale {
        Ok(r) => r[0].is_err(),
        Err(_) => true,
    };
    assert!(failed, "a stale tenant write committed");
    assert_eq!(wf.execution_get("exe_1").await.unwrap().seq, 1);
    assert_eq!(store.tenant_get("acme").await.unwrap().status, acme.status);
    // Current: the status change, the step and its event commit together (in a batch
    // with a plain step).
    let plain = StepCommit {
        execution_id: "exe_3".into(),
        expected_seq: 1,
        state: StepState { status: status::RUNNING.into(), ..StepState::default() },
        ..StepCommit::default()
    };
    let res = wf.execution_commit(&[step("exe_2", &active, acme.version), plain]).await.unwrap();
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    let stored = store.tenant_get("acme").await.unwrap();
    assert_eq!((stored.status, stored.version, stored.name.as_str()), (TenantStatus::Active, 3, "Acme Inc"));
    assert_eq!(wf.execution_get("exe_2").await.unwrap().status, status::SUCCEEDED);
    let events = store.event_list(&EventFilter::default(), &page(10)).await.unwrap().items;
    assert_eq!(events.iter().filter(|e| e.event.detail_type == "TenantProvisioned").count(), 1);
}

/// A tenant update that starts an execution (a plan change, an offboarding) is what the
/// execution's steps read: a worker claiming it, or a reader seeing it, the moment it
/// is committed must not get the tenant as it was before (on SQLite, where tenants are
/// cached, the cache is refreshed before the COMMIT).
pub async fn a_claimed_execution_reads_the_tenant_write_that_started_it(store: Arc<dyn Store>) {
    use crate::conformance::{plan, tenant};
    use tenancy_domain::plan::Isolation;
    store.plan_put(&plan("pro", Isolation::Pool), None, &Effects::none()).await.unwrap();
    let mut acme = store.tenant_create(&tenant("acme", "pro", "eu"), &Effects::none()).await.unwrap();
    for i in 0..100 {
        // A worker polling for due executions as fast as it can (even runs), or a
        // reader polling for the execution (odd runs: it sees the commit first).
        let worker = tokio::spawn({
            let (store, id) = (store.clone(), format!("exe_{i}"));
            async move {
                let wf = store.workflows();
                loop {
                    // (The claim also takes the executions only read before, still due.)
                    let seen = match i % 2 {
                        0 => {
                            let claim = Claim::new("w", 60_000, 100, Timestamp::now());
                            wf.execution_claim(&claim).await.unwrap().iter().any(|e| e.id == id)
                        }
                        _ => wf.execution_get(&id).await.is_ok(),
                    };
                    if seen {
                        return store.tenant_get("acme").await.unwrap().version;
                    }
                    tokio::task::yield_now().await;
                }
            }
        });
        let started = new_execution(&format!("exe_{i}"), &format!("n{i}"), Some(0));
        acme.name = format!("v{i}");
        acme = store.tenant_update(&acme, acme.version, &Effects::none().with_execution(started)).await.unwrap();
        let seen = worker.await.unwrap();
        assert_eq!(seen, acme.version, "run {i}: the worker read the tenant before the write that started it");
    }
}

/// The retention's batches: a finished execution stopped before its state machine's
/// cutoff goes with its history, at most `limit` rows per statement (history first);
/// running executions, recent ones, a tenant's current lifecycle execution and those
/// of a state machine with a longer retention of its own stay. The preview counts what
/// a prune removes.
pub async fn finished_executions_are_pruned_in_batches_after_their_retention(store: Arc<dyn Store>) {
    use crate::conformance::{plan, tenant};
    use crate::retention::{ExecutionHorizon, ExecutionsPruned, PruneCutoffs};
    use tenancy_domain::plan::Isolation;
    const DAY: i64 = 86_400_000;
    let wf = store.workflows();
    let ret = store.retention();
    store.plan_put(&plan("pro", Isolation::Pool), None, &Effects::none()).await.unwrap();
    // acme's current lifecycle execution is exe_acme (see `tenant`).
    store.tenant_create(&tenant("acme", "pro", "eu"), &Effects::none()).await.unwrap();
    let finish = |id: &str, machine: &str, status: &str, stopped: Option<i64>, events: i64| {
        let mut n = new_execution(id, id, None);
        n.state_machine = machine.into();
        n.first.status = status.into();
        n.first.stopped_at = stopped.map(Timestamp);
        n.first.history = (1..=events).map(|i| hist(i, "Event")).collect();
        n
    };
    for (id, machine, status, stopped, events) in [
        ("exe_old1", "sm", status::SUCCEEDED, Some(DAY), 3),
        ("exe_old2", "sm", status::FAILED, Some(2 * DAY), 2),
        ("exe_old3", "sm", status::ABORTED, Some(3 * DAY), 1),
        ("exe_acme", "tenancy.tenant.provision", status::SUCCEEDED, Some(DAY), 2),
        ("exe_running", "sm", status::RUNNING, None, 2),
        ("exe_recent", "sm", status::TIMED_OUT, Some(95 * DAY), 2),
        ("exe_kept", "long", status::SUCCEEDED, Some(DAY), 2),
        ("exe_short", "short", status::SUCCEEDED, Some(99 * DAY), 1),
    ] {
        wf.execution_start(&finish(id, machine, status, stopped, events), &Effects::none()).await.unwrap();
    }
    ret.retention_set("long", Some(365), &Effects::none()).await.unwrap();
    ret.retention_set("short", Some(0), &Effects::none()).await.unwrap();
    ret.retention_set("gone", Some(5), &Effects::none()).await.unwrap();
    ret.retention_set("gone", None, &Effects::none()).await.unwrap();
    assert_eq!(ret.retention_list().await.unwrap(), [("long".to_owned(), 365), ("short".to_owned(), 0)]);

    // At day 100 with 90 days of retention: before day 10, or `short` at once.
    let h = ExecutionHorizon { now: Timestamp(100 * DAY), before: Timestamp(10 * DAY), limit: 4 };
    let cut = PruneCutoffs {
        executions: h.clone(),
        idempotency_before: Timestamp(0),
        events_before: Timestamp(0),
        grants_before: Timestamp(0),
    };
    let preview = ret.prune_preview(&cut).await.unwrap();
    let of = |t: &str| preview.iter().find(|(n, _)| n == t).unwrap().1;
    assert_eq!((of("executions"), of("execution_history")), (4, 7), "{preview:?}");

    // 7 history rows in batches of 4: history first, then the emptied executions.
    assert_eq!(ret.executions_prune(&h).await.unwrap(), ExecutionsPruned { executions: 0, history: 4 });
    let mut total = ExecutionsPruned { executions: 0, history: 4 };
    loop {
        let n = ret.executions_prune(&h).await.unwrap();
        assert!(n.history <= 4 && n.executions <= 4, "{n:?}");
        if n == ExecutionsPruned::default() {
            break;
        }
        total.executions += n.executions;
        total.history += n.history;
    }
    assert_eq!(total, ExecutionsPruned { executions: 4, history: 7 });
    for gone in ["exe_old1", "exe_old2", "exe_old3", "exe_short"] {
        assert!(matches!(wf.execution_get(gone).await, Err(Error::NotFound { .. })), "{gone}");
        assert!(wf.execution_history(gone, &page(10)).await.unwrap().items.is_empty(), "{gone}");
    }
    for kept in ["exe_acme", "exe_running", "exe_recent", "exe_kept"] {
        wf.execution_get(kept).await.unwrap();
        assert_eq!(wf.execution_history(kept, &page(10)).await.unwrap().items.len(), 2, "{kept}");
    }
    let preview = ret.prune_preview(&cut).await.unwrap();
    assert_eq!(preview.iter().find(|(n, _)| n == "executions").unwrap().1, 0);

    // The report counts every listed table's rows.
    let sizes = ret.storage_sizes().await.unwrap();
    let executions = sizes.iter().find(|t| t.table == "executions").unwrap();
    assert_eq!(executions.rows, 4);
    assert!(sizes.iter().any(|t| t.table == "audit_log"));
}
