//! The storage traits and the records that only storage needs.

use async_trait::async_trait;
use tenancy_audit::AuditEntry;
use tenancy_domain::apikey::ApiKey;
use tenancy_domain::event::Event;
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::plan::Plan;
use tenancy_domain::tenant::{Tenant, TenantFilter};
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;

/// Which engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// What a change causes, committed with it in one transaction.
#[derive(Debug, Clone, Default)]
pub struct Effects {
    pub events: Vec<Event>,
    pub audit: Vec<AuditEntry>,
    /// Workflow executions started by the change (e.g. a tenant's provisioning).
    pub executions: Vec<crate::workflow::NewExecution>,
    /// Tenant resources recorded or forgotten, in order (a lifecycle step's record
    /// commits with the step).
    pub resources: Vec<ResourceChange>,
    /// Tenants' new states, each written only if the stored version is still the one
    /// it was computed from (a lifecycle step's status change commits with the step).
    /// A stale one fails the write with `PreconditionFailed`. Only the writes of
    /// [`crate::Store`] and step commits apply these (they keep the SQLite store's
    /// tenant cache coherent).
    pub tenants: Vec<TenantWrite>,
    /// The W3C `traceparent` of the span each event was added in (by event id), when
    /// traces are exported: the event's webhook deliveries continue that trace.
    pub traces: std::collections::HashMap<String, String>,
}

/// A tenant's new state and the version it replaces (see [`Effects::tenants`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TenantWrite {
    /// The new state; its `version` is `expected_version + 1`.
    pub tenant: Tenant,
    pub expected_version: i64,
}

/// A change of the `tenant_resources` records, as an effect.
#[derive(Debug, Clone, PartialEq)]
pub enum ResourceChange {
    /// Records the resource unless one of its kind exists (which is then left as it is).
    Put(crate::workflow::TenantResource),
    /// Forgets the tenant's resource of this kind, if any.
    Delete { tenant_id: String, kind: String },
}

impl Effects {
    pub fn none() -> Self {
        Effects::default()
    }
    pub fn with_event(mut self, e: Event) -> Self {
        if let Some(tp) = tenancy_trace::traceparent() {
            self.traces.insert(e.id.clone(), tp);
        }
        self.events.push(e);
        self
    }
    pub fn with_audit(mut self, a: AuditEntry) -> Self {
        self.audit.push(a);
        self
    }
    pub fn with_execution(mut self, e: crate::workflow::NewExecution) -> Self {
        self.executions.push(e);
        self
    }
    pub fn with_resource(mut self, change: ResourceChange) -> Self {
        self.resources.push(change);
        self
    }
    /// Writes `tenant` (whose `version` must be `expected_version + 1`) if the stored
    /// one is still at `expected_version`.
    pub fn with_tenant(mut self, tenant: Tenant, expected_version: i64) -> Self {
        debug_assert_eq!(tenant.version, expected_version + 1);
        self.tenants.push(TenantWrite { tenant, expected_version });
        self
    }
    /// Whether there is nothing to commit.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.audit.is_empty()
            && self.executions.is_empty()
            && self.resources.is_empty()
            && self.tenants.is_empty()
    }
    /// Appends `more`'s effects after these.
    pub fn extend(&mut self, more: Effects) {
        self.events.extend(more.events);
        self.audit.extend(more.audit);
        self.executions.extend(more.executions);
        self.resources.extend(more.resources);
        self.tenants.extend(more.tenants);
        self.traces.extend(more.traces);
    }
}

/// A stored idempotency record.
#[derive(Debug, Clone, PartialEq)]
pub enum IdempotencyState {
    /// The key is new: the caller owns it and must `finish` or `abandon` it.
    Started,
    /// A request with this key is still running (its lease has not run out).
    InProgress { request_hash: String },
    /// A request with this key completed with this response.
    Completed { request_hash: String, status: u16, response: String },
}

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub detail_type: Option<String>,
    pub tenant_id: Option<String>,
    /// Only events at or after this time.
    pub after: Option<Timestamp>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub tenant_id: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub after: Option<Timestamp>,
}

/// An event with its archive position.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: i64,
    pub event: Event,
}

pub use tenancy_audit::StoredAudit;

/// What the database knows of the master key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MasterKeyState {
    /// The fingerprint recorded by the first server that ran on this database.
    pub fingerprint: Option<String>,
    /// Whether any value sealed with a master key is stored (webhook, hook and
    /// function secrets, database passwords, the secret store's data keys).
    pub sealed_values: bool,
}

/// A counter of the writes of what a tenant's terms are made of (tenant records, plans,
/// overrides), for the app's memory of computed terms (`App::tenant_terms`): a value
/// computed from records read after the counter showed `value` is current for as long
/// as the counter shows it (see [`Store::terms_epoch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermsEpoch {
    pub value: u64,
    /// Every such write is counted: this process is the database's only writer
    /// (SQLite). Without it (PostgreSQL, shared by replicas) only this process's writes
    /// are, and the other replicas' are seen only when the records are read again.
    pub exact: bool,
}

/// The whole store. Object safe: held as `Arc<dyn Store>`. Event delivery and audit
/// sealing are the supertraits [`crate::EventStore`] and [`crate::AuditStore`].
#[async_trait]
pub trait Store: crate::EventStore + crate::AuditStore + Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// The workflow engine's storage, on the same database (so a change and the
    /// executions it starts commit together, see [`Effects::executions`]).
    fn workflows(&self) -> std::sync::Arc<dyn crate::workflow::WorkflowStore>;

    /// The queues' storage, on the same database.
    fn queues(&self) -> std::sync::Arc<dyn crate::queues::QueueStore>;

    /// The quotas' usage, on the same database.
    fn quotas(&self) -> std::sync::Arc<dyn crate::quotas::QuotaStore>;

    /// The provisioning hooks' storage, on the same database.
    fn hooks(&self) -> std::sync::Arc<dyn crate::hooks::HookStore>;

    /// The tenants' entitlement overrides, on the same database.
    fn entitlements(&self) -> std::sync::Arc<dyn crate::entitlements::EntitlementStore>;

    /// The functions' storage, on the same database.
    fn functions(&self) -> std::sync::Arc<dyn crate::functions::FunctionStore>;

    /// The releases' storage, on the same database.
    fn releases(&self) -> std::sync::Arc<dyn crate::releases::ReleaseStore>;

    /// The rollouts' storage, on the same database.
    fn rollouts(&self) -> std::sync::Arc<dyn crate::rollouts::RolloutStore>;

    /// The secret store's rows and sealed versions, on the same database.
    fn secrets(&self) -> std::sync::Arc<dyn crate::secrets::SecretStore>;

    /// The connections' metadata and credentials, on the same database.
    fn connections(&self) -> std::sync::Arc<dyn crate::connections::ConnectionStore>;
    /// Operators' authorization policies, on the same database.
    fn policies(&self) -> std::sync::Arc<dyn crate::policies::PolicyStore>;
    /// Self-service sign-ups awaiting activation, on the same database.
    fn signups(&self) -> std::sync::Arc<dyn crate::signups::SignupStore>;

    /// Retention (finished executions' pruning, per-state-machine retention) and the
    /// storage report, on the same database.
    fn retention(&self) -> std::sync::Arc<dyn crate::retention::RetentionStore>;

    /// The reconciler's record of reported drift, on the same database.
    fn drift(&self) -> std::sync::Arc<dyn crate::drift::DriftStore>;

    /// The terms epoch now. It moves when a write of a tenant record (but its creation,
    /// which changes no terms anyone holds), a plan or a tenant's overrides is made, twice:
    /// before the write commits and after the COMMIT, before the writer is answered
    /// (and after the store's own caches show the write). So whoever computes terms
    /// from records read after seeing a value, and keeps them only while the epoch
    /// still shows that value, never serves an acknowledged write's older records.
    fn terms_epoch(&self) -> TermsEpoch;

    /// Succeeds when the database answers and every migration is applied.
    async fn ready(&self) -> Result<()>;

    /// The gauges of `/metrics` that reflect stored state (tenants, running and stuck
    /// executions, queue depths, deliveries, rollouts): aggregate queries only.
    /// `stuck_before`: an execution due before it and not moved since is stuck.
    async fn metrics_gauges(&self, now: Timestamp, stuck_before: Timestamp) -> Result<crate::StoreGauges>;

    // The master key that seals stored secrets (see `tenancy_app::secretbox`).

    /// The recorded fingerprint of the master key, and whether sealed values exist.
    async fn master_key_state(&self) -> Result<MasterKeyState>;
    /// Records `fingerprint` unless one is recorded already; returns the recorded one
    /// (so of two servers starting at once with different keys, one learns it lost).
    async fn master_key_record(&self, fingerprint: &str) -> Result<String>;

    // Plans.
    /// Creates the plan, or replaces it when `if_version` is `None` or matches.
    async fn plan_put(&self, plan: &Plan, if_version: Option<i64>, fx: &Effects) -> Result<Plan>;
    async fn plan_get(&self, id: &str) -> Result<Plan>;
    async fn plan_list(&self, page: &PageRequest) -> Result<Page<Plan>>;
    /// Deletes the plan; a conflict while any tenant that is not offboarded uses it.
    async fn plan_delete(&self, id: &str, fx: &Effects) -> Result<()>;

    // Tenants.
    /// Inserts a new tenant; its plan must exist and, when it has a `max_tenants`, hold
    /// fewer tenants than that (counted in the insert's transaction, so concurrent
    /// inserts never pass it: else a conflict `plan-unavailable`).
    async fn tenant_create(&self, tenant: &Tenant, fx: &Effects) -> Result<Tenant>;
    async fn tenant_get(&self, id: &str) -> Result<Tenant>;
    async fn tenant_list(&self, filter: &TenantFilter, page: &PageRequest) -> Result<Page<Tenant>>;
    /// Writes `tenant` if the stored version is still `expected_version`; returns the
    /// stored tenant with its new version. A stale version is `PreconditionFailed`.
    async fn tenant_update(&self, tenant: &Tenant, expected_version: i64, fx: &Effects) -> Result<Tenant>;
    /// [`Store::tenant_update`] of a tenant starting its move to `plan` (its
    /// `lifecycle_execution_id` the move's execution), if `plan` exists (else
    /// `unknown-plan`) and has room: its `max_tenants` counts the tenants holding it
    /// and those moving to it, in this transaction, so concurrent moves and creates
    /// never pass it (else a conflict `plan-unavailable`).
    async fn tenant_move_start(
        &self,
        tenant: &Tenant,
        expected_version: i64,
        plan: &str,
        fx: &Effects,
    ) -> Result<Tenant>;
    /// Deletes an offboarded tenant's record (the tombstone) with its resource records
    /// and stored secrets, and writes `fx`, in one transaction, if it is still at
    /// `expected_version` (else `PreconditionFailed`) and offboarded (else a conflict
    /// `invalid-transition`); its id can then be created again. Its events, audit
    /// records and executions stay.
    async fn tenant_purge(&self, id: &str, expected_version: i64, fx: &Effects) -> Result<()>;

    // API keys.
    async fn api_key_create(&self, key: &ApiKey, fx: &Effects) -> Result<()>;
    async fn api_key_get(&self, id: &str) -> Result<ApiKey>;
    /// Keys in id order; of one tenant only when `tenant_id` is given.
    async fn api_key_list(&self, tenant_id: Option<&str>, page: &PageRequest) -> Result<Page<ApiKey>>;
    async fn api_key_delete(&self, id: &str, fx: &Effects) -> Result<()>;
    /// Replaces a key's secret by the one hashed `hash`; the secret it replaces stays
    /// valid until `previous_expires_at` (a grace of 0: now). Returns the key as stored.
    async fn api_key_rotate(
        &self,
        id: &str,
        hash: &str,
        previous_expires_at: Timestamp,
        fx: &Effects,
    ) -> Result<ApiKey>;
    /// Records that the key was used at `at` (never moving `last_used_at` back); no
    /// effects: bookkeeping, not a change anyone is told about.
    async fn api_key_touch(&self, id: &str, at: Timestamp) -> Result<()>;

    // Idempotency keys.
    /// Claims `key` in `scope` for a request whose canonical hash is `request_hash`,
    /// leased for `lease_ms`: an in-progress key whose lease ran out is taken over by
    /// the same request (`Started`), as if the first had never run.
    async fn idempotency_begin(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        lease_ms: i64,
    ) -> Result<IdempotencyState>;
    async fn idempotency_finish(&self, scope: &str, key: &str, status: u16, response: &str) -> Result<()>;
    /// Forgets a started key (the request failed in a way worth retrying).
    async fn idempotency_abandon(&self, scope: &str, key: &str) -> Result<()>;
    /// Forgets keys first used before `before`; returns how many.
    async fn idempotency_prune(&self, before: Timestamp) -> Result<u64>;

    /// Commits `fx` with no other change (effects whose cause is not a store write,
    /// such as the audit entry of a read).
    async fn commit_effects(&self, fx: &Effects) -> Result<()>;

    // Archive and audit (read side).
    async fn event_list(&self, filter: &EventFilter, page: &PageRequest) -> Result<Page<StoredEvent>>;
    async fn audit_list(&self, filter: &AuditFilter, page: &PageRequest) -> Result<Page<StoredAudit>>;
}
