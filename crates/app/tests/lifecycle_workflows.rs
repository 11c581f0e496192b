//! The lifecycle workflows tested the Oxide steno way: a failure injected at each step
//! must leave nothing behind once the undo steps ran, and running every step twice
//! must give the same result as running it once.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Value};
use tenancy_adapters::blob::BlobStore;
use tenancy_adapters::dataplane::SqliteFiles;
use tenancy_app::engine::failure;
use tenancy_app::engine::{EngineOptions, TaskCall, TaskHandler, TaskResult};
use tenancy_app::tenants::lifecycle::{BUILTIN_MACHINES, CHANGE_PLAN_MACHINE, PROVISION_MACHINE, UPGRADE_MACHINE};
use tenancy_app::{App, OpContext};
use tenancy_domain::apikey::{NewApiKey, Role};
use tenancy_domain::page::PageRequest;
use tenancy_domain::plan::PlanSpec;
use tenancy_domain::tenant::NewTenant;
use tenancy_engine::testing::{self as steps, TaskState};
use tenancy_store::{EventFilter, Store};
use tenancy_store_sql::testing::{self, TestDb};
use tokio_util::sync::CancellationToken;

/// Every resource the built-in lifecycle machines run, forward or undoing, read from
/// their definitions (callback-only resources aside: they run nothing twice).
fn lifecycle_resources() -> Vec<String> {
    let mut resources: Vec<String> = BUILTIN_MACHINES
        .iter()
        .flat_map(|(_, definition)| steps::task_states(&serde_json::from_str(definition).unwrap()))
        .map(|s| s.resource)
        .filter(|r| !r.ends_with(".waitForTaskToken"))
        .collect();
    resources.sort();
    resources.dedup();
    resources
}

struct Harness {
    app: Arc<App>,
    shutdown: CancellationToken,
    worker: tokio::task::JoinHandle<()>,
    /// `blobs/` is the blob store, `tenants/` the silo databases.
    dir: tempfile::TempDir,
    _db: TestDb,
}

impl Harness {
    async fn start() -> Harness {
        let db = testing::sqlite().await;
        let store: Arc<dyn Store> = db.store.clone();
        let dir = tempfile::tempdir().unwrap();
        let services = tenancy_app::Services::new(store)
            .with_blobs(BlobStore::local(&dir.path().join("blobs")).unwrap())
            .with_secrets(Arc::new(tenancy_adapters::keys::SecretBox::from_key(&[3; 32])))
            .with_data_plane(Arc::new(SqliteFiles::new(dir.path().join("tenants"))));
        let app = Arc::new(App::new(services));
        app.register_builtin_workflows().await.unwrap();
        let shutdown = CancellationToken::new();
        let mut opts = EngineOptions::new("test-worker");
        opts.poll_interval = Duration::from_millis(20);
        let worker = tokio::spawn(app.engine().clone().run(opts, shutdown.clone()));
        let ctx = OpContext::system();
        for (plan, isolation) in [("basic", "pool"), ("pro", "pool"), ("vault", "silo")] {
            let spec: PlanSpec = serde_json::from_value(json!({"name": plan, "isolation": isolation})).unwrap();
            app.plan_put(&ctx, plan, spec, None).await.unwrap();
        }
        Harness { app, shutdown, worker, dir, _db: db }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.worker.await.unwrap();
    }

    async fn create(&self, id: &str) -> String {
        self.create_on(id, "basic").await
    }

    async fn create_on(&self, id: &str, plan: &str) -> String {
        let new = NewTenant { id: Some(id.into()), name: id.into(), plan: plan.into(), region: None, metadata: None };
        let op = self.app.tenant_create(&OpContext::system(), new).await.unwrap();
        op.execution_id.unwrap()
    }

    async fn wait_tenant(&self, id: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let t = self.app.store().tenant_get(id).await.unwrap();
            if t.status.as_str() == status {
                return;
            }
            assert!(Instant::now() < deadline, "tenant {id} is {} not {status}", t.status.as_str());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_execution(&self, id: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let e = self.app.execution_get(&OpContext::system(), id).await.unwrap();
            if e.status == status {
                return;
            }
            assert!(Instant::now() < deadline, "execution {id} is {} not {status}", e.status);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Creates release `version`.
    async fn release(&self, version: &str) {
        let spec = tenancy_domain::release::ReleaseSpec::default();
        self.app.release_put(&OpContext::system(), version, spec).await.unwrap();
    }

    async fn resources(&self, tenant: &str) -> Vec<String> {
        let wf = self.app.store().workflows();
        wf.tenant_resource_list(tenant).await.unwrap().into_iter().map(|r| r.kind).collect()
    }

    async fn events(&self, tenant: &str) -> Vec<(String, Value)> {
        let filter = EventFilter { tenant_id: Some(tenant.into()), ..Default::default() };
        let page = PageRequest { limit: 1000, after: None };
        let events = self.app.store().event_list(&filter, &page).await.unwrap().items;
        events.into_iter().map(|e| (e.event.detail_type, e.event.detail)).collect()
    }

    async fn history_is_clean(&self, execution: &str) {
        let page = PageRequest { limit: 1000, after: None };
        let h = self.app.execution_history(&OpContext::system(), execution, &page).await.unwrap().items;
        let mut entered = std::collections::HashMap::new();
        for (i, e) in h.iter().enumerate() {
            assert_eq!(e.id, i as i64 + 1);
            if e.kind.ends_with("StateEntered") {
                *entered.entry(e.state.clone().unwrap()).or_insert(0) += 1;
            }
        }
        assert!(entered.values().all(|n| *n == 1), "a state was entered twice: {entered:?}");
    }
}

/// Fails for one resource kind (or always), else delegates to the built-in handler.
struct FailAt {
    kind: Option<&'static str>,
    inner: Arc<dyn TaskHandler>,
}

#[async_trait]
impl TaskHandler for FailAt {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        if self.kind.is_none_or(|k| call.parameters["kind"] == k) {
            return Err(failure("Test.Injected", format!("injected failure in {}", call.resource)));
        }
        self.inner.call(call).await
    }
}

/// Runs the handler twice and checks that the second run gives the first one's result.
struct Twice {
    inner: Arc<dyn TaskHandler>,
}

#[async_trait]
impl TaskHandler for Twice {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        let first = self.inner.call(call).await;
        let second = self.inner.call(call).await;
        match (&first, &second) {
            (Ok(a), Ok(b)) => assert_eq!(a.result, b.result, "a repeated step gave another result"),
            (a, b) => panic!("a step failed when run twice: {:?} / {:?}", a.as_ref().err(), b.as_ref().err()),
        }
        second
    }
}

/// The forward Task states of the built-in `machine`, read from its definition, that
/// `execution` (a clean run of it) entered: a state a run does not reach, such as the
/// callback hooks of a tenant without any, cannot fail in it.
async fn forward_states_that_ran(h: &Harness, machine: &str, execution: &str) -> Vec<TaskState> {
    let (_, definition) = BUILTIN_MACHINES.iter().find(|(name, _)| *name == machine).unwrap();
    let forward = steps::forward_task_states(&serde_json::from_str(definition).unwrap());
    h.wait_execution(execution, "SUCCEEDED").await;
    let page = PageRequest { limit: 1000, after: None };
    let history = h.app.execution_history(&OpContext::system(), execution, &page).await.unwrap().items;
    let ran: Vec<String> =
        history.into_iter().filter(|e| e.kind == "TaskStateEntered").filter_map(|e| e.state).collect();
    forward.into_iter().filter(|s| ran.contains(&s.name)).collect()
}

async fn provisioning_steps_that_run() -> Vec<TaskState> {
    let h = Harness::start().await;
    let execution = h.create("clean").await;
    let steps = forward_states_that_ran(&h, PROVISION_MACHINE, &execution).await;
    h.stop().await;
    steps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_each_provisioning_step_leaves_nothing_behind() {
    let steps = provisioning_steps_that_run().await;
    assert!(steps.len() >= 5, "the provisioning ran only {steps:?}");
    for state in steps {
        let step = state.name.as_str();
        let h = Harness::start().await;
        let fired = steps::fail_state(h.app.engine().handlers(), &state, "Test.Injected");
        let tenant = format!("t-{}", step.to_lowercase());
        let execution = h.create(&tenant).await;
        h.wait_tenant(&tenant, "failed").await;
        h.wait_execution(&execution, "FAILED").await;
        assert!(fired.load(Ordering::SeqCst), "{step}: the failure was not injected");
        assert!(h.resources(&tenant).await.is_empty(), "{step}: resources left: {:?}", h.resources(&tenant).await);
        let events = h.events(&tenant).await;
        let failed: Vec<&Value> =
            events.iter().filter(|(t, _)| t == "TenantProvisioningFailed").map(|(_, d)| d).collect();
        assert_eq!(failed.len(), 1, "{step}: {events:?}");
        assert_eq!(failed[0]["step"], step);
        assert_eq!(failed[0]["error"]["Error"], "Test.Injected");
        assert!(!events.iter().any(|(t, _)| t == "TenantProvisioned"), "{step}");
        assert_eq!(events.iter().filter(|(t, _)| t == "ExecutionFailed").count(), 1, "{step}");
        h.history_is_clean(&execution).await;
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lifecycle_step_run_twice_gives_the_same_result() {
    let h = Harness::start().await;
    let registry = h.app.engine().handlers();
    let resources = lifecycle_resources();
    assert!(resources.len() >= 12, "{resources:?}");
    for resource in &resources {
        let inner = registry.get(resource).unwrap();
        registry.register(resource, Twice { inner });
    }
    let ctx = OpContext::system();
    let execution = h.create("acme").await;
    h.wait_tenant("acme", "active").await;
    h.wait_execution(&execution, "SUCCEEDED").await;
    assert_eq!(h.resources("acme").await, ["database", "defaults", "namespace"]);

    let op = h.app.tenant_change_plan(&ctx, "acme", "pro", false, None).await.unwrap();
    h.wait_execution(&op.execution_id.unwrap(), "SUCCEEDED").await;
    let t = h.app.store().tenant_get("acme").await.unwrap();
    assert_eq!((t.status.as_str(), t.plan.as_str()), ("active", "pro"));

    h.release("2.0.0").await;
    let op = h.app.start_tenant_upgrade(&ctx, "acme", "2.0.0", false).await.unwrap();
    h.wait_execution(&op.execution_id.unwrap(), "SUCCEEDED").await;
    let t = h.app.store().tenant_get("acme").await.unwrap();
    assert_eq!((t.status.as_str(), t.release.as_deref()), ("active", Some("2.0.0")));

    let op = h.app.tenant_offboard(&ctx, "acme", None).await.unwrap();
    h.wait_execution(&op.execution_id.unwrap(), "SUCCEEDED").await;
    h.wait_tenant("acme", "offboarded").await;
    assert_eq!(h.resources("acme").await, ["export"], "only the export's record outlives the tenant");

    let types: Vec<String> = h.events("acme").await.into_iter().map(|(t, _)| t).collect();
    for once in ["TenantCreated", "TenantProvisioned", "TenantPlanChanged", "TenantUpgraded", "TenantOffboarded"] {
        assert_eq!(types.iter().filter(|t| *t == once).count(), 1, "{once}: {types:?}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_plan_change_is_reverted() {
    let h = Harness::start().await;
    let ctx = OpContext::system();
    h.create("acme").await;
    h.wait_tenant("acme", "active").await;
    let registry = h.app.engine().handlers();
    let inner = registry.get("tenancy:tenant.apply_plan").unwrap();
    registry.register("tenancy:tenant.apply_plan", FailAt { kind: None, inner });
    let op = h.app.tenant_change_plan(&ctx, "acme", "pro", false, None).await.unwrap();
    let execution = op.execution_id.unwrap();
    h.wait_execution(&execution, "FAILED").await;
    let t = h.app.store().tenant_get("acme").await.unwrap();
    assert_eq!((t.status.as_str(), t.plan.as_str()), ("active", "basic"));
    let types: Vec<String> = h.events("acme").await.into_iter().map(|(t, _)| t).collect();
    assert!(!types.contains(&"TenantPlanChanged".to_owned()), "{types:?}");
    h.history_is_clean(&execution).await;
    h.stop().await;
}

/// The plan change's forward Task states that a clean move from a pool plan to a silo
/// plan runs.
async fn plan_change_steps_that_run() -> Vec<TaskState> {
    let h = Harness::start().await;
    h.create("clean").await;
    h.wait_tenant("clean", "active").await;
    let op = h.app.tenant_change_plan(&OpContext::system(), "clean", "vault", false, None).await.unwrap();
    let steps = forward_states_that_ran(&h, CHANGE_PLAN_MACHINE, &op.execution_id.unwrap()).await;
    h.stop().await;
    steps
}

/// A failure at each step of a move from pool to silo that has a Catch is undone: the
/// tenant is active on its old plan, with its old database and no new one. A step
/// without a Catch (the last, after the tenant is on its new plan) fails the execution
/// and leaves the tenant where the steps before it put it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_each_plan_change_step_is_reverted() {
    let steps = plan_change_steps_that_run().await;
    assert!(steps.iter().filter(|s| s.caught).count() >= 4, "the plan change ran only {steps:?}");
    for state in steps {
        let step = state.name.as_str();
        let h = Harness::start().await;
        let tenant = format!("t-{}", step.to_lowercase());
        h.create(&tenant).await;
        h.wait_tenant(&tenant, "active").await;
        let fired = steps::fail_state(h.app.engine().handlers(), &state, "Test.Injected");
        let op = h.app.tenant_change_plan(&OpContext::system(), &tenant, "vault", false, None).await.unwrap();
        let execution = op.execution_id.unwrap();
        h.wait_execution(&execution, "FAILED").await;
        assert!(fired.load(Ordering::SeqCst), "{step}: the failure was not injected");
        let t = h.app.store().tenant_get(&tenant).await.unwrap();
        if state.caught {
            assert_eq!((t.status.as_str(), t.plan.as_str()), ("active", "basic"), "{step}");
            assert!(!h.dir.path().join("tenants").join(&tenant).exists(), "{step}: the new silo database is left");
            let types: Vec<String> = h.events(&tenant).await.into_iter().map(|(t, _)| t).collect();
            assert!(!types.contains(&"TenantPlanChanged".to_owned()), "{step}: {types:?}");
        }
        h.history_is_clean(&execution).await;
        h.stop().await;
    }
}

/// Offboarding a silo tenant exports it before anything is deleted, once, even when
/// the export step runs twice (as after a crash between the step and its commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offboarding_exports_a_silo_tenant_once() {
    let h = Harness::start().await;
    let ctx = OpContext::system();
    let registry = h.app.engine().handlers();
    let inner = registry.get("tenancy:tenant.export").unwrap();
    registry.register("tenancy:tenant.export", Twice { inner });
    h.create_on("acme", "vault").await;
    h.wait_tenant("acme", "active").await;
    let new_key = NewApiKey {
        name: "acme app".into(),
        role: Role::Tenant,
        tenant_id: Some("acme".into()),
        expires_at: None,
        rate_limit: None,
        labels: vec![],
        region: None,
    };
    let (key, plaintext) = h.app.api_key_create(&ctx, new_key).await.unwrap();

    let op = h.app.tenant_offboard(&ctx, "acme", None).await.unwrap();
    let execution = op.execution_id.unwrap();
    h.wait_execution(&execution, "SUCCEEDED").await;
    h.wait_tenant("acme", "offboarded").await;
    assert!(!h.dir.path().join("tenants/acme").exists(), "the database was deleted after the export");

    // One export, under the execution's stable prefix.
    let root = h.dir.path().join("blobs/tenants/acme");
    let exports: Vec<String> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(exports, [format!("offboard-{execution}")]);
    let dir = root.join(&exports[0]);
    let mut files: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    assert_eq!(files, ["audit.ndjson", "database.sqlite", "events.ndjson", "manifest.json"]);

    let manifest_text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let manifest: Value = serde_json::from_str(&manifest_text).unwrap();
    assert_eq!(manifest["format"], "tenancy.offboard-export/1");
    assert_eq!((manifest["tenant"]["id"].as_str(), manifest["plan"]["id"].as_str()), (Some("acme"), Some("vault")));
    assert_eq!(manifest["execution_id"], json!(execution));
    assert_eq!(manifest["api_keys"][0]["id"], json!(key.id));
    assert!(!manifest_text.contains(&key.hash) && !manifest_text.contains(&plaintext), "no key material");
    for f in manifest["files"].as_array().unwrap() {
        let bytes = std::fs::read(dir.join(f["name"].as_str().unwrap())).unwrap();
        assert_eq!(f["bytes"], json!(bytes.len()), "{f}");
        assert_eq!(f["sha256"].as_str().unwrap(), sha256_hex(&bytes), "{f}");
    }
    let events = std::fs::read_to_string(dir.join("events.ndjson")).unwrap();
    assert_eq!(manifest["counts"]["events"], json!(events.lines().count()));
    let types: Vec<Value> =
        events.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["detail-type"].clone()).collect();
    assert_eq!(types[0], "TenantCreated", "{types:?}");
    assert!(types.contains(&json!("TenantOffboardingStarted")), "{types:?}");
    let audit = std::fs::read_to_string(dir.join("audit.ndjson")).unwrap();
    assert!(audit.lines().all(|l| serde_json::from_str::<Value>(l).unwrap()["tenant_id"] == "acme"));
    assert!(audit.lines().any(|l| serde_json::from_str::<Value>(l).unwrap()["action"] == "tenant.create"));
    let db = std::fs::read(dir.join("database.sqlite")).unwrap();
    assert!(db.starts_with(b"SQLite format 3\0"), "a SQLite database");

    // The event and the tombstone's resources say where it is.
    let offboarded: Vec<Value> =
        h.events("acme").await.into_iter().filter(|(t, _)| t == "TenantOffboarded").map(|(_, d)| d).collect();
    assert_eq!(offboarded.len(), 1);
    let location = offboarded[0]["export"]["location"].as_str().unwrap().to_owned();
    assert!(location.ends_with(&format!("/tenants/acme/offboard-{execution}/")), "{location}");
    assert_eq!(offboarded[0]["export"]["manifest_sha256"].as_str().unwrap(), sha256_hex(manifest_text.as_bytes()));
    let wf = h.app.store().workflows();
    let export = wf.tenant_resource_list("acme").await.unwrap().into_iter().find(|r| r.kind == "export").unwrap();
    assert_eq!(export.detail["location"], json!(location));

    // Run again later (a redrive, a lost commit): the manifest is found, nothing is written.
    let blobs = BlobStore::local(&h.dir.path().join("blobs")).unwrap();
    let again = tenancy_app::tenants::offboarding::export_tenant(
        h.app.store().as_ref(),
        &blobs,
        h.app.provisioner().map(|p| p.as_ref()),
        "acme",
        &execution,
    )
    .await
    .unwrap();
    assert!(!again.written);
    assert_eq!((again.location, again.manifest_sha256), (location, sha256_hex(manifest_text.as_bytes())));
    assert_eq!(std::fs::read_to_string(dir.join("manifest.json")).unwrap(), manifest_text);
    let filter = tenancy_store::AuditFilter { action: Some("tenant.export".into()), ..Default::default() };
    let audited = h.app.store().audit_list(&filter, &PageRequest { limit: 100, after: None }).await.unwrap();
    assert_eq!(audited.items.len(), 1, "one export, one audit entry");
    h.history_is_clean(&execution).await;
    h.stop().await;
}

/// A tenant with more events than one upload part (8 MiB) is exported whole: the
/// NDJSON is streamed in parts, and its size and hash in the manifest are the file's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_tenants_records_are_exported_whole() {
    use tenancy_domain::event::Event;
    use tenancy_store::Effects;
    let h = Harness::start().await;
    h.create("acme").await;
    h.wait_tenant("acme", "active").await;
    let store = h.app.store();
    let filler = "x".repeat(4_000);
    for batch in 0..12 {
        let mut fx = Effects::none();
        for i in 0..250 {
            let n = batch * 250 + i;
            fx = fx.with_event(Event::new("OrderPlaced", Some("acme"), vec![], json!({"n": n, "note": filler})));
        }
        store.commit_effects(&fx).await.unwrap();
    }
    let blobs = BlobStore::local(&h.dir.path().join("blobs")).unwrap();
    let export = tenancy_app::tenants::offboarding::export_tenant(store.as_ref(), &blobs, None, "acme", "exe-big")
        .await
        .unwrap();
    assert!(export.written);
    let dir = h.dir.path().join("blobs/tenants/acme/offboard-exe-big");
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let events = std::fs::read(dir.join("events.ndjson")).unwrap();
    assert!(events.len() > 10 << 20, "more than one part: {} bytes", events.len());
    let file = manifest["files"].as_array().unwrap().iter().find(|f| f["name"] == "events.ndjson").unwrap().clone();
    assert_eq!(
        (file["bytes"].clone(), file["sha256"].as_str().unwrap()),
        (json!(events.len()), sha256_hex(&events).as_str())
    );
    let orders: Vec<i64> = std::str::from_utf8(&events)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["detail-type"] == "OrderPlaced")
        .map(|e| e["detail"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(orders, (0..3_000).collect::<Vec<_>>(), "every event, once, in order");
    assert_eq!(manifest["counts"]["events"], json!(events.iter().filter(|b| **b == b'\n').count()));
    h.stop().await;
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Calls the handler, then reports a failure as if the worker crashed after the work:
/// the compensation must undo what the step did.
struct FailAfter {
    inner: Arc<dyn TaskHandler>,
}

#[async_trait]
impl TaskHandler for FailAfter {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        self.inner.call(call).await?;
        Err(failure("Test.Injected", format!("injected failure after {}", call.resource)))
    }
}

/// A harness whose tenants get SQLite databases on silo plans ("vault").
async fn database_isolation(h: &Harness, tenant: &str) -> Value {
    let list = h.app.store().workflows().tenant_resource_list(tenant).await.unwrap();
    list.into_iter().find(|r| r.kind == "database").unwrap().detail["isolation"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_between_pool_and_silo_run_twice_and_undo_at_each_step() {
    let h = Harness::start().await;
    let dir = &h.dir;
    let ctx = OpContext::system();
    let file = dir.path().join("tenants").join("acme").join("data.db");
    let registry = h.app.engine().handlers();
    let originals: Vec<_> = lifecycle_resources().into_iter().map(|r| (r.clone(), registry.get(&r).unwrap())).collect();
    for (resource, inner) in &originals {
        registry.register(resource, Twice { inner: inner.clone() });
    }
    h.create("acme").await;
    h.wait_tenant("acme", "active").await;
    for (plan, exists) in [("vault", true), ("basic", false), ("vault", true)] {
        let op = h.app.tenant_change_plan(&ctx, "acme", plan, false, None).await.unwrap();
        h.wait_execution(&op.execution_id.unwrap(), "SUCCEEDED").await;
        assert_eq!(file.exists(), exists, "on {plan}");
        let want = if exists { "silo" } else { "pool" };
        assert_eq!(database_isolation(&h, "acme").await, want);
    }
    let exports = std::fs::read_dir(dir.path().join("blobs/tenants/acme/exports")).unwrap().count();
    assert_eq!(exports, 1, "the silo database was exported once, when it moved to the pool");

    // A failure after each step of a silo -> pool move (before applying the plan, whose
    // own failure is reverted by RevertPlan): the new resource goes, the old database
    // (and the tenant's plan) stay.
    for step in ["tenancy:database.move_create", "tenancy:database.export", "tenancy:tenant.apply_plan"] {
        let inner = originals.iter().find(|(r, _)| r == step).unwrap().1.clone();
        match step {
            "tenancy:tenant.apply_plan" => registry.register(step, FailAt { kind: None, inner: inner.clone() }),
            _ => registry.register(step, FailAfter { inner: inner.clone() }),
        }
        let op = h.app.tenant_change_plan(&ctx, "acme", "basic", false, None).await.unwrap();
        h.wait_execution(&op.execution_id.unwrap(), "FAILED").await;
        let t = h.app.store().tenant_get("acme").await.unwrap();
        assert_eq!((t.status.as_str(), t.plan.as_str()), ("active", "vault"), "{step}");
        assert!(file.exists(), "{step}: the old database is kept");
        assert_eq!(database_isolation(&h, "acme").await, "silo", "{step}");
        registry.register(step, Twice { inner });
    }

    // Pool -> silo failing after the new database exists: the undo deletes it.
    let op = h.app.tenant_change_plan(&ctx, "acme", "basic", false, None).await.unwrap();
    h.wait_execution(&op.execution_id.unwrap(), "SUCCEEDED").await;
    let export = originals.iter().find(|(r, _)| r == "tenancy:database.export").unwrap().1.clone();
    registry.register("tenancy:database.export", FailAfter { inner: export });
    let op = h.app.tenant_change_plan(&ctx, "acme", "vault", false, None).await.unwrap();
    h.wait_execution(&op.execution_id.unwrap(), "FAILED").await;
    assert!(!file.exists(), "the new silo database was removed");
    assert_eq!(h.app.store().tenant_get("acme").await.unwrap().plan, "basic");
    assert_eq!(database_isolation(&h, "acme").await, "pool");
    h.stop().await;
}

/// Holds a step until released, saying when it was entered.
struct Gate {
    inner: Arc<dyn TaskHandler>,
    entered: std::sync::atomic::AtomicBool,
    release: tokio::sync::Semaphore,
}

#[async_trait]
impl TaskHandler for Gate {
    fn inline(&self) -> bool {
        self.inner.inline()
    }

    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        self.entered.store(true, Ordering::SeqCst);
        let _open = self.release.acquire().await.unwrap();
        self.inner.call(call).await
    }
}

/// While a move deletes the old database, the tenant is on its new plan but still
/// `updating`: a client waiting for `active` cannot start the next plan change, whose
/// new database the first change's `FinishMove` would delete (a silo -> pool -> silo
/// round trip under load once lost the silo's credentials that way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moving_tenant_is_updating_until_its_old_database_is_gone() {
    let h = Harness::start().await;
    let ctx = OpContext::system();
    h.create_on("acme", "vault").await;
    h.wait_tenant("acme", "active").await;
    let file = h.dir.path().join("tenants").join("acme");
    assert!(file.exists());
    let registry = h.app.engine().handlers();
    let inner = registry.get("tenancy:database.finish_move").unwrap();
    let gate =
        Arc::new(Gate { inner: inner.clone(), entered: Default::default(), release: tokio::sync::Semaphore::new(0) });
    registry.register_arc("tenancy:database.finish_move", gate.clone());
    let op = h.app.tenant_change_plan(&ctx, "acme", "basic", false, None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gate.entered.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "FinishMove never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = h.app.store().tenant_get("acme").await.unwrap();
    assert_eq!((t.status.as_str(), t.plan.as_str()), ("updating", "basic"), "the plan applies before the move ends");
    assert!(file.exists(), "the old database is still there");
    let again = h.app.tenant_change_plan(&ctx, "acme", "vault", false, None).await;
    assert!(again.is_err(), "a plan change while the last one is finishing must be refused");

    gate.release.add_permits(1);
    h.wait_execution(&op.execution_id.unwrap(), "SUCCEEDED").await;
    let t = h.app.store().tenant_get("acme").await.unwrap();
    assert_eq!((t.status.as_str(), t.plan.as_str()), ("active", "basic"));
    assert!(!file.exists(), "the old database is gone once the tenant is active");
    let types: Vec<String> = h.events("acme").await.into_iter().map(|(t, _)| t).collect();
    let tenant_types: Vec<&str> = types.iter().map(String::as_str).filter(|t| t.starts_with("Tenant")).collect();
    let tail = &tenant_types[tenant_types.len().saturating_sub(2)..];
    assert_eq!(tail, ["TenantPlanChanged", "TenantUpdated"], "{types:?}");
    registry.register_arc("tenancy:database.finish_move", inner);
    h.stop().await;
}

/// Updates the tenant behind the step's back once, after the step read it: the step's
/// status change is then stale.
struct RaceOnce {
    inner: Arc<dyn TaskHandler>,
    raced: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl TaskHandler for RaceOnce {
    fn inline(&self) -> bool {
        self.inner.inline()
    }

    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        let out = self.inner.call(call).await;
        if !self.raced.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let id = call.parameters["tenant_id"].as_str().unwrap();
            let mut t = call.store.tenant_get(id).await.unwrap();
            let version = t.version;
            t.name = "Renamed meanwhile".into();
            call.store.tenant_update(&t, version, &tenancy_store::Effects::none()).await.unwrap();
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_change_computed_from_a_stale_tenant_runs_again() {
    let h = Harness::start().await;
    let registry = h.app.engine().handlers();
    let inner = registry.get("tenancy:tenant.activate").unwrap();
    registry.register("tenancy:tenant.activate", RaceOnce { inner, raced: Default::default() });
    let execution = h.create("acme").await;
    h.wait_tenant("acme", "active").await;
    h.wait_execution(&execution, "SUCCEEDED").await;
    // The rename survived (the stale activation wrote nothing), then the activation
    // ran again over it.
    let t = h.app.store().tenant_get("acme").await.unwrap();
    assert_eq!((t.name.as_str(), t.version), ("Renamed meanwhile", 3));
    let events = h.events("acme").await;
    let provisioned: Vec<&Value> = events.iter().filter(|(t, _)| t == "TenantProvisioned").map(|(_, d)| d).collect();
    assert_eq!(provisioned.len(), 1, "{events:?}");
    assert_eq!(provisioned[0]["name"], "Renamed meanwhile");
    h.history_is_clean(&execution).await;
    h.stop().await;
}

/// The upgrade's forward Task states that a clean upgrade (without hooks) runs.
async fn upgrade_steps_that_run() -> Vec<TaskState> {
    let h = Harness::start().await;
    h.create("clean").await;
    h.wait_tenant("clean", "active").await;
    h.release("2.0.0").await;
    let op = h.app.start_tenant_upgrade(&OpContext::system(), "clean", "2.0.0", false).await.unwrap();
    let steps = forward_states_that_ran(&h, UPGRADE_MACHINE, &op.execution_id.unwrap()).await;
    h.stop().await;
    steps
}

/// A failure at each step of an upgrade is rolled back: the tenant is active on the
/// release it was on, and `TenantUpgradeFailed` names the step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_each_upgrade_step_is_rolled_back() {
    let steps = upgrade_steps_that_run().await;
    assert_eq!(steps.len(), 4, "the upgrade ran {steps:?}");
    for state in steps {
        let step = state.name.as_str();
        assert!(state.caught, "{step} has no Catch");
        let h = Harness::start().await;
        h.app
            .release_put(&OpContext::system(), "1.0.0", serde_json::from_value(json!({"default": true})).unwrap())
            .await
            .unwrap();
        let tenant = format!("t-{}", step.to_lowercase());
        h.create(&tenant).await;
        h.wait_tenant(&tenant, "active").await;
        h.release("2.0.0").await;
        let fired = steps::fail_state(h.app.engine().handlers(), &state, "Test.Injected");
        let op = h.app.start_tenant_upgrade(&OpContext::system(), &tenant, "2.0.0", false).await.unwrap();
        let execution = op.execution_id.unwrap();
        h.wait_execution(&execution, "FAILED").await;
        assert!(fired.load(Ordering::SeqCst), "{step}: the failure was not injected");
        let t = h.app.store().tenant_get(&tenant).await.unwrap();
        assert_eq!((t.status.as_str(), t.release.as_deref()), ("active", Some("1.0.0")), "{step}");
        let events = h.events(&tenant).await;
        let failed: Vec<&Value> = events.iter().filter(|(t, _)| t == "TenantUpgradeFailed").map(|(_, d)| d).collect();
        assert_eq!(failed.len(), 1, "{step}: {events:?}");
        let expected = match step {
            "PreCheck" => "pre_check",
            "Apply" => "apply",
            "Verify" => "verify",
            _ => "upgraded",
        };
        assert_eq!(failed[0]["step"], expected, "{step}");
        assert!(!events.iter().any(|(t, _)| t == "TenantUpgraded"), "{step}");
        h.history_is_clean(&execution).await;
        h.stop().await;
    }
}
