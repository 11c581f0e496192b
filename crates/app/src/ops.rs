//! The operations of the API, one method each.

use std::sync::Arc;

use secrecy::SecretString;
use serde_json::json;
use tenancy_domain::apikey::{self, ApiKey, NewApiKey};
use tenancy_domain::event::names;
use tenancy_domain::hook::HookEvent;
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::plan::{Plan, PlanPatch, PlanSpec, PlanWorkflows};
use tenancy_domain::tenant::{NewTenant, Tenant, TenantFilter, TenantPatch, TenantStatus, Transition};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_store::{AuditFilter, Effects, EventFilter, NewExecution, Store, StoredAudit, StoredEvent};

use crate::auth::Authenticator;
use crate::context::Permission as P;
use crate::engine::Engine;
use crate::lifecycle::{self, tenant_event};
use crate::OpContext;

/// The application: the store plus what operations share.
pub struct App {
    store: Arc<dyn Store>,
    pub auth: Authenticator,
    /// Where audit exports and offboarding exports go (see [`App::set_blob_store`]).
    pub(crate) blobs: Arc<std::sync::OnceLock<crate::audit::BlobStore>>,
    /// Encrypts stored secrets (see [`App::set_secret_box`]).
    pub(crate) secrets: std::sync::OnceLock<Arc<crate::secretbox::SecretBox>>,
    /// Creates tenants' databases (see [`App::set_provisioner`]); shared with the
    /// offboarding export step, which may run before it is set.
    pub(crate) provisioner: Arc<std::sync::OnceLock<Arc<crate::provisioning::DataPlane>>>,
    /// The workflow engine (its worker runs from `serve`).
    pub(crate) engine: Arc<Engine>,
    /// Stored versions of the built-in state machines, once registered.
    pub(crate) builtins: std::sync::Mutex<std::collections::HashMap<String, tenancy_store::StateMachineRecord>>,
    /// A RUNNING execution without progress for this long is listed as stuck.
    pub(crate) stuck_after: std::time::Duration,
    /// This process among the replicas (see [`App::set_node_id`]).
    pub(crate) node_id: std::sync::OnceLock<String>,
    /// Caps on RUNNING user executions per state machine and per tenant (see
    /// [`App::set_execution_caps`]).
    pub(crate) execution_caps: (u64, u64),
    /// How long an offboarded tenant's id stays taken (see [`App::set_export_retention`]).
    pub(crate) export_retention: std::time::Duration,
    /// The kinds of missing resources the reconciler repairs on its own (see
    /// [`App::set_reconcile_repair`]).
    pub(crate) reconcile_repair: std::collections::BTreeSet<crate::reconcile::DriftKind>,
}

/// The default of [`App::set_export_retention`]: 30 days.
pub const DEFAULT_EXPORT_RETENTION_DAYS: u32 = 30;

pub use tenancy_domain::api::TenantOperation;

/// A lifecycle operation that finishes in the background.
struct Operation<'a> {
    transition: Transition,
    kind: &'a str,
    /// The built-in state machine that carries it out.
    machine: &'a str,
    payload: serde_json::Value,
    /// Emitted when the operation starts, if anything.
    event: Option<&'a str>,
    /// For a plan change: the plan the tenant must not already be on.
    target_plan: Option<&'a str>,
}

/// How long a read-modify-write without a demanded version keeps re-reading and
/// retrying while other writers win (64 concurrent PATCHes of one tenant all land).
const OPTIMISTIC_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// Retries `attempt` while it fails with a stale version and no version was demanded,
/// for up to [`OPTIMISTIC_RETRY_FOR`], with a short random pause that grows a little
/// per round, so racing writers spread out instead of colliding again.
async fn retry_stale<T, F, Fut>(if_match: Option<i64>, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = std::time::Instant::now() + OPTIMISTIC_RETRY_FOR;
    let mut round: u64 = 0;
    loop {
        match attempt().await {
            Err(Error::PreconditionFailed { .. }) if if_match.is_none() && std::time::Instant::now() < deadline => {
                round += 1;
                let cap = (round * 2).min(50);
                let pause = rand::Rng::gen_range(&mut rand::thread_rng(), 0..=cap);
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            r => return r,
        }
    }
}

impl App {
    pub fn new(store: Arc<dyn Store>, admin_token: Option<SecretString>) -> Self {
        let engine = Engine::new(store.clone());
        let blobs = Arc::new(std::sync::OnceLock::new());
        let provisioner = Arc::new(std::sync::OnceLock::new());
        // The offboarding export needs what `serve` sets after start-up, so it shares the cells.
        engine.handlers().register(
            crate::offboarding::EXPORT_RESOURCE,
            crate::offboarding::ExportTenant::new(blobs.clone(), provisioner.clone()),
        );
        App {
            auth: Authenticator::new(store.clone(), admin_token),
            engine,
            store,
            blobs,
            secrets: std::sync::OnceLock::new(),
            provisioner,
            builtins: Default::default(),
            stuck_after: std::time::Duration::from_secs(300),
            node_id: std::sync::OnceLock::new(),
            execution_caps: (crate::engine::MAX_RUNNING_PER_STATE_MACHINE, crate::engine::MAX_RUNNING_PER_TENANT),
            export_retention: std::time::Duration::from_secs(u64::from(DEFAULT_EXPORT_RETENTION_DAYS) * 86_400),
            reconcile_repair: crate::reconcile::DriftKind::DEFAULT_REPAIR.iter().copied().collect(),
        }
    }

    /// How long an offboarded tenant's export is kept before its id may be released
    /// (`DELETE /v1/tenants/{id}?purge=true`, `serve --export-retention-days`); counted
    /// from the end of the offboarding.
    pub fn set_export_retention(&mut self, d: std::time::Duration) {
        self.export_retention = d;
    }

    /// Names this process among the replicas (`serve --node-id`, or a random one), in
    /// what it records for the others (the reconciliation pass it made). Set once;
    /// `local` until then.
    pub fn set_node_id(&self, id: impl Into<String>) {
        let _ = self.node_id.set(id.into());
    }

    pub fn node_id(&self) -> &str {
        self.node_id.get().map_or("local", String::as_str)
    }

    /// The workflow engine (its handler registry, its worker's `run`).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// How long a RUNNING execution may go without progress before `stuck=true` lists it.
    pub fn set_stuck_after(&mut self, d: std::time::Duration) {
        self.stuck_after = d;
    }

    /// Caps on the RUNNING user executions of one state machine and of one tenant: a
    /// start beyond either is 429 `too-many-requests` (defaults
    /// [`crate::engine::MAX_RUNNING_PER_STATE_MACHINE`] and
    /// [`crate::engine::MAX_RUNNING_PER_TENANT`]; at least 1).
    pub fn set_execution_caps(&mut self, per_state_machine: u64, per_tenant: u64) {
        self.execution_caps = (per_state_machine.max(1), per_tenant.max(1));
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The master key's box, once `serve` set it (see [`App::set_secret_box`]): the
    /// HTTP layer seals the responses it keeps for idempotency keys with it.
    pub fn secrets(&self) -> Option<&Arc<crate::secretbox::SecretBox>> {
        self.secrets.get()
    }

    // Plans.

    /// Creates or replaces a plan; returns it and whether it was created.
    pub async fn plan_put(
        &self,
        ctx: &OpContext,
        id: &str,
        spec: PlanSpec,
        if_match: Option<i64>,
    ) -> Result<(Plan, bool)> {
        ctx.authorize(P::PlanWrite)?;
        let admin = ctx.principal.role == apikey::Role::Admin;
        let stored = retry_stale(if_match, || async {
            let (workflows, version) = match self.store.plan_get(id).await {
                Ok(p) => (p.workflows, p.version),
                Err(Error::NotFound { .. }) => (PlanWorkflows::default(), 0),
                Err(e) => return Err(e),
            };
            authorize_workflows(ctx, &workflows, &spec.workflows)?;
            let plan = spec.clone().into_plan(id, Timestamp::now())?;
            self.check_plan_workflows(&plan.workflows).await?;
            let audit = ctx.audit(
                "plan.put",
                format!("plan/{id}"),
                None,
                json!({"isolation": plan.isolation, "features": plan.features, "workflows": plan.workflows}),
            );
            // A non-admin's write happens only over the workflows it was checked against
            // (an admin's concurrent change of them makes it re-read and check again).
            let guard = if_match.or((!admin).then_some(version));
            self.store.plan_put(&plan, guard, &Effects::none().with_audit(audit)).await
        })
        .await?;
        let created = stored.version == 1;
        Ok((stored, created))
    }

    /// Changes the fields `patch` gives (a JSON merge patch); the others stay.
    pub async fn plan_patch(&self, ctx: &OpContext, id: &str, patch: PlanPatch, if_match: Option<i64>) -> Result<Plan> {
        ctx.authorize(P::PlanWrite)?;
        retry_stale(if_match, || async {
            let current = self.store.plan_get(id).await?;
            if let Some(expected) = if_match {
                if expected != current.version {
                    return Err(Error::PreconditionFailed {
                        kind: "plan",
                        id: id.to_owned(),
                        expected,
                        found: current.version,
                    });
                }
            }
            let (spec, given) = current.patched(patch.clone())?;
            authorize_workflows(ctx, &current.workflows, &spec.workflows)?;
            let plan = spec.into_plan(id, Timestamp::now())?;
            self.check_plan_workflows(&plan.workflows).await?;
            let audit = ctx.audit(
                "plan.patch",
                format!("plan/{id}"),
                None,
                json!({"fields": given, "isolation": plan.isolation, "features": plan.features,
                       "workflows": plan.workflows}),
            );
            let fx = Effects::none().with_audit(audit);
            self.store.plan_put(&plan, Some(current.version), &fx).await
        })
        .await
    }

    /// Every state machine a plan names exists and is a lifecycle state machine (400
    /// `unknown-state-machine` otherwise).
    async fn check_plan_workflows(&self, workflows: &PlanWorkflows) -> Result<()> {
        for (member, name) in workflows.named() {
            match self.engine.workflows().state_machine_get(name, None).await {
                Ok(_) => {}
                Err(Error::NotFound { .. }) => {
                    return Err(Error::InvalidRequest {
                        code: ErrorCode::UnknownStateMachine,
                        message: format!(
                            "workflows.{member}: state machine {name:?} does not exist (PUT \
                             /v1/state-machines/{name} first, as an admin)"
                        ),
                    })
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The state machine that carries out the lifecycle operation `builtin` for a tenant
    /// on `plan`: the plan's own (`workflows`), else the built-in one. A plan that does
    /// not exist gets the built-in one (the write that follows refuses the plan).
    async fn lifecycle_machine(&self, builtin: &str, plan: Option<&str>) -> Result<tenancy_store::StateMachineRecord> {
        let workflows = match plan {
            Some(plan) => match self.store.plan_get(plan).await {
                Ok(p) => p.workflows,
                Err(Error::NotFound { .. }) => PlanWorkflows::default(),
                Err(e) => return Err(e),
            },
            None => PlanWorkflows::default(),
        };
        let own = match builtin {
            lifecycle::PROVISION_MACHINE => workflows.provision,
            lifecycle::CHANGE_PLAN_MACHINE => workflows.change_plan,
            lifecycle::OFFBOARD_MACHINE => workflows.offboard,
            _ => None,
        };
        match own {
            Some(name) => self.engine.workflows().state_machine_get(&name, None).await,
            None => self.builtin_machine(builtin).await,
        }
    }

    pub async fn plan_get(&self, ctx: &OpContext, id: &str) -> Result<Plan> {
        ctx.authorize(P::PlanRead)?;
        self.store.plan_get(id).await
    }

    pub async fn plan_list(&self, ctx: &OpContext, page: &PageRequest) -> Result<Page<Plan>> {
        ctx.authorize(P::PlanRead)?;
        self.store.plan_list(page).await
    }

    pub async fn plan_delete(&self, ctx: &OpContext, id: &str) -> Result<()> {
        ctx.authorize(P::PlanWrite)?;
        let audit = ctx.audit("plan.delete", format!("plan/{id}"), None, json!({}));
        self.store.plan_delete(id, &Effects::none().with_audit(audit)).await
    }

    // Tenants.

    /// Creates a tenant in `provisioning` and starts its provisioning.
    pub async fn tenant_create(&self, ctx: &OpContext, new: NewTenant) -> Result<TenantOperation> {
        ctx.authorize(P::TenantAdmin)?;
        let mut tenant = new.into_tenant(Timestamp::now())?;
        let execution = self
            .lifecycle_execution(
                ctx,
                lifecycle::PROVISION_MACHINE,
                Some(&tenant.plan),
                &tenant.id,
                json!({"tenant_id": tenant.id, "plan": tenant.plan, "region": tenant.region}),
            )
            .await?;
        let fx = Effects::none()
            .with_event(tenant_event(names::TENANT_CREATED, &tenant, &[], json!({"execution_id": execution.id})))
            .with_audit(ctx.audit(
                "tenant.create",
                format!("tenant/{}", tenant.id),
                Some(&tenant.id),
                json!({"plan": tenant.plan, "region": tenant.region, "execution_id": execution.id}),
            ))
            .with_execution(execution.clone());
        tenant.lifecycle_execution_id = Some(execution.id.clone());
        let tenant = self.store.tenant_create(&tenant, &fx).await?;
        self.engine.notify();
        Ok(TenantOperation { tenant, execution_id: Some(execution.id) })
    }

    /// A lifecycle execution for a tenant, to start in the transaction of the change:
    /// of the built-in `machine`, or of the state machine `plan` names instead. Its
    /// input names the caller (`started_by`), whom the audit entries of its steps name
    /// as their actor.
    async fn lifecycle_execution(
        &self,
        ctx: &OpContext,
        machine: &str,
        plan: Option<&str>,
        tenant_id: &str,
        mut input: serde_json::Value,
    ) -> Result<NewExecution> {
        input["started_by"] = lifecycle::started_by(ctx);
        let sm = self.lifecycle_machine(machine, plan).await?;
        self.engine.prepare_start(&sm, None, input, Some(tenant_id.to_owned())).await
    }

    pub async fn tenant_get(&self, ctx: &OpContext, id: &str) -> Result<Tenant> {
        ctx.authorize_tenant(P::TenantRead, id)?;
        self.store.tenant_get(id).await
    }

    pub async fn tenant_list(
        &self,
        ctx: &OpContext,
        filter: &TenantFilter,
        page: &PageRequest,
    ) -> Result<Page<Tenant>> {
        ctx.authorize(P::TenantRead)?;
        if let Some(own) = &ctx.principal.tenant_id {
            // A tenant-scoped caller lists exactly its own tenant, when it matches.
            let t = match self.store.tenant_get(own).await {
                Ok(t) => Some(t),
                Err(Error::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
            let items = t
                .filter(|t| {
                    filter.plan.as_ref().is_none_or(|p| *p == t.plan)
                        && filter.status.is_none_or(|s| s == t.status)
                        && filter.region.as_ref().is_none_or(|r| *r == t.region)
                        && page.after.as_ref().is_none_or(|a| t.id > *a)
                })
                .into_iter()
                .collect();
            return Ok(Page { items, next_cursor: None });
        }
        self.store.tenant_list(filter, page).await
    }

    /// Reads the tenant, applies `change` and writes it back with its effects. With
    /// `if_match` the write happens only at that version (else 412); without it a
    /// concurrent writer makes the change re-run on the fresh tenant.
    async fn tenant_modify(
        &self,
        id: &str,
        if_match: Option<i64>,
        change: impl Fn(&mut Tenant) -> Result<Effects>,
    ) -> Result<Tenant> {
        let change = &change;
        retry_stale(if_match, || async move {
            let mut tenant = self.store.tenant_get(id).await?;
            let version = tenant.version;
            if let Some(expected) = if_match {
                if expected != version {
                    return Err(Error::PreconditionFailed { kind: "tenant", id: id.into(), expected, found: version });
                }
            }
            tenant.ensure_mutable()?;
            let fx = change(&mut tenant)?;
            tenant.updated_at = Timestamp::now();
            self.store.tenant_update(&tenant, version, &fx).await
        })
        .await
    }

    pub async fn tenant_patch(
        &self,
        ctx: &OpContext,
        id: &str,
        patch: TenantPatch,
        if_match: Option<i64>,
    ) -> Result<Tenant> {
        ctx.authorize_tenant(P::TenantWrite, id)?;
        self.tenant_modify(id, if_match, |t| {
            let changed = t.patch(patch.clone())?;
            let mut fx = Effects::none().with_audit(ctx.audit(
                "tenant.update",
                format!("tenant/{}", t.id),
                Some(&t.id),
                json!({"changed": changed}),
            ));
            if !changed.is_empty() {
                let mut next = t.clone();
                next.version += 1;
                fx = fx.with_event(tenant_event(names::TENANT_UPDATED, &next, &changed, json!({})));
            }
            Ok(fx)
        })
        .await
    }

    /// A transition that completes within the request (suspend, resume). The status
    /// change takes effect at once; the same transaction starts the notification of the
    /// hooks subscribed to `hook_event` (`tenancy.tenant.notify`), which runs after it
    /// and cannot undo it.
    async fn tenant_transition_now(
        &self,
        ctx: &OpContext,
        id: &str,
        if_match: Option<i64>,
        hook_event: HookEvent,
    ) -> Result<TenantOperation> {
        ctx.authorize_tenant(P::TenantAdmin, id)?;
        let (t, action, event) = match hook_event {
            HookEvent::Suspend => (Transition::Suspend, "tenant.suspend", names::TENANT_SUSPENDED),
            HookEvent::Resume => (Transition::Resume, "tenant.resume", names::TENANT_RESUMED),
            other => return Err(Error::internal(format!("{} is not a status change of the request", other.as_str()))),
        };
        let notify = self
            .lifecycle_execution(
                ctx,
                lifecycle::NOTIFY_MACHINE,
                None,
                id,
                json!({"event": hook_event, "tenant_id": id}),
            )
            .await?;
        let tenant = self
            .tenant_modify(id, if_match, |tenant| {
                let from = tenant.transition(t)?;
                let mut next = tenant.clone();
                next.version += 1;
                let extra = json!({"previous_status": from, "execution_id": notify.id});
                Ok(Effects::none()
                    .with_event(tenant_event(event, &next, &["status"], extra))
                    .with_audit(ctx.audit(
                        action,
                        format!("tenant/{}", tenant.id),
                        Some(&tenant.id),
                        json!({"from": from, "to": tenant.status, "execution_id": notify.id}),
                    ))
                    .with_execution(notify.clone()))
            })
            .await?;
        self.engine.notify();
        Ok(TenantOperation { tenant, execution_id: Some(notify.id) })
    }

    pub async fn tenant_suspend(&self, ctx: &OpContext, id: &str, if_match: Option<i64>) -> Result<TenantOperation> {
        self.tenant_transition_now(ctx, id, if_match, HookEvent::Suspend).await
    }

    pub async fn tenant_resume(&self, ctx: &OpContext, id: &str, if_match: Option<i64>) -> Result<TenantOperation> {
        self.tenant_transition_now(ctx, id, if_match, HookEvent::Resume).await
    }

    /// A transition that starts background work (plan change, offboarding).
    async fn tenant_start_operation(
        &self,
        ctx: &OpContext,
        id: &str,
        if_match: Option<i64>,
        op: Operation<'_>,
    ) -> Result<TenantOperation> {
        ctx.authorize_tenant(P::TenantAdmin, id)?;
        let current = self.store.tenant_get(id).await?;
        let mut input = op.payload.clone();
        input["tenant_id"] = json!(id);
        input["previous_plan"] = json!(current.plan);
        // A plan change runs the target plan's machine, offboarding the tenant's plan's.
        let plan = op.target_plan.unwrap_or(&current.plan);
        let job = self.lifecycle_execution(ctx, op.machine, Some(plan), id, input).await?;
        let tenant = self
            .tenant_modify(id, if_match, |tenant| {
                // Checked on the tenant as read for this attempt, so a racing change
                // that already moved it to the plan makes this one a conflict.
                if op.target_plan == Some(tenant.plan.as_str()) {
                    return Err(Error::Conflict {
                        code: ErrorCode::InvalidTransition,
                        message: format!("tenant {:?} is already on plan {:?}", tenant.id, tenant.plan),
                    });
                }
                let from = tenant.transition(op.transition)?;
                tenant.lifecycle_execution_id = Some(job.id.clone());
                let detail = json!({"from": from, "request": op.payload, "execution_id": job.id});
                let mut fx = Effects::none()
                    .with_audit(ctx.audit(op.kind, format!("tenant/{}", tenant.id), Some(&tenant.id), detail))
                    .with_execution(job.clone());
                if let Some(event) = op.event {
                    let mut next = tenant.clone();
                    next.version += 1;
                    let extra = json!({"previous_status": from, "execution_id": job.id});
                    fx = fx.with_event(tenant_event(event, &next, &["status"], extra));
                }
                Ok(fx)
            })
            .await?;
        self.engine.notify();
        Ok(TenantOperation { tenant, execution_id: Some(job.id) })
    }

    pub async fn tenant_change_plan(
        &self,
        ctx: &OpContext,
        id: &str,
        plan: &str,
        if_match: Option<i64>,
    ) -> Result<TenantOperation> {
        ctx.authorize_tenant(P::TenantAdmin, id)?;
        match self.store.plan_get(plan).await {
            Ok(_) => {}
            Err(Error::NotFound { .. }) => {
                return Err(Error::InvalidRequest {
                    code: ErrorCode::UnknownPlan,
                    message: format!("plan {plan:?} does not exist"),
                })
            }
            Err(e) => return Err(e),
        }
        let op = Operation {
            transition: Transition::ChangePlan,
            kind: lifecycle::CHANGE_PLAN,
            machine: lifecycle::CHANGE_PLAN_MACHINE,
            payload: json!({"plan": plan}),
            event: None,
            target_plan: Some(plan),
        };
        self.tenant_start_operation(ctx, id, if_match, op).await
    }

    pub async fn tenant_offboard(&self, ctx: &OpContext, id: &str, if_match: Option<i64>) -> Result<TenantOperation> {
        let op = Operation {
            transition: Transition::Offboard,
            kind: lifecycle::OFFBOARD,
            machine: lifecycle::OFFBOARD_MACHINE,
            payload: json!({}),
            event: Some(names::TENANT_OFFBOARDING_STARTED),
            target_plan: None,
        };
        self.tenant_start_operation(ctx, id, if_match, op).await
    }

    /// A new provisioning attempt of a `failed` tenant (409 `invalid-transition`
    /// otherwise): the tenant goes back to `provisioning` and, in the same transaction,
    /// a new `tenancy.tenant.provision` execution starts from the beginning. The failed
    /// attempt undid what it created, and every step is idempotent, so the new attempt
    /// creates what is missing and the tenant ends `active` once the cause is fixed.
    pub async fn tenant_retry(&self, ctx: &OpContext, id: &str, if_match: Option<i64>) -> Result<TenantOperation> {
        ctx.authorize_tenant(P::TenantAdmin, id)?;
        let current = self.store.tenant_get(id).await?;
        let input = json!({"tenant_id": id, "plan": current.plan, "region": current.region});
        let job = self.lifecycle_execution(ctx, lifecycle::PROVISION_MACHINE, Some(&current.plan), id, input).await?;
        let tenant = self
            .tenant_modify(id, if_match, |tenant| {
                let from = tenant.transition(Transition::RetryProvisioning)?;
                // The execution's input was read before: a plan or region changed since
                // (a PATCH of the failed tenant) makes the caller try again.
                if tenant.plan != current.plan || tenant.region != current.region {
                    return Err(Error::Conflict {
                        code: ErrorCode::InvalidTransition,
                        message: format!("tenant {:?} changed during the retry; try again", tenant.id),
                    });
                }
                // Only the new attempt's steps may change the tenant from now on: a
                // redrive of the failed one fails with `Tenancy.StaleExecution`.
                tenant.lifecycle_execution_id = Some(job.id.clone());
                let mut next = tenant.clone();
                next.version += 1;
                let extra = json!({"previous_status": from, "execution_id": job.id});
                Ok(Effects::none()
                    .with_event(tenant_event(names::TENANT_PROVISIONING_RETRIED, &next, &["status"], extra))
                    .with_audit(ctx.audit(
                        "tenant.retry_provision",
                        format!("tenant/{}", tenant.id),
                        Some(&tenant.id),
                        json!({"from": from, "to": tenant.status, "execution_id": job.id}),
                    ))
                    .with_execution(job.clone()))
            })
            .await?;
        self.engine.notify();
        Ok(TenantOperation { tenant, execution_id: Some(job.id) })
    }

    /// Releases an offboarded tenant's id once the export retention has passed (admins
    /// only): the tombstone and its resource records go, `TenantPurged` and the audit
    /// entry `tenant.purge` commit with the deletion, and `POST /v1/tenants` may take
    /// the id again. Events, audit records, executions and the export in the blob
    /// store stay. 409 `invalid-transition` for a tenant that is not offboarded, 409
    /// `retention-not-passed` (saying from when) before the retention has passed.
    pub async fn tenant_purge(&self, ctx: &OpContext, id: &str, if_match: Option<i64>) -> Result<()> {
        ctx.authorize_tenant(P::TenantPurge, id)?;
        let tenant = self.store.tenant_get(id).await?;
        if let Some(expected) = if_match {
            if expected != tenant.version {
                return Err(Error::PreconditionFailed {
                    kind: "tenant",
                    id: id.into(),
                    expected,
                    found: tenant.version,
                });
            }
        }
        if tenant.status != TenantStatus::Offboarded {
            return Err(Error::Conflict {
                code: ErrorCode::InvalidTransition,
                message: format!(
                    "tenant {id:?} is {}: only an offboarded tenant can be purged (offboard it first)",
                    tenant.status.as_str()
                ),
            });
        }
        // A tombstone changes no more: its last update is the end of the offboarding.
        let offboarded_at = tenant.updated_at;
        let retention_ms = i64::try_from(self.export_retention.as_millis()).unwrap_or(i64::MAX);
        let purgeable_at = Timestamp(offboarded_at.millis().saturating_add(retention_ms));
        let days = self.export_retention.as_secs() / 86_400;
        if Timestamp::now() < purgeable_at {
            return Err(Error::Conflict {
                code: ErrorCode::RetentionNotPassed,
                message: format!(
                    "tenant {id:?} was offboarded at {} and its export is kept for {days} day(s): it may be purged \
                     from {}",
                    offboarded_at.to_rfc3339(),
                    purgeable_at.to_rfc3339()
                ),
            });
        }
        let export = self
            .store
            .workflows()
            .tenant_resource_list(id)
            .await?
            .into_iter()
            .find(|r| r.kind == crate::offboarding::EXPORT_KIND)
            .map(|r| r.detail["location"].clone())
            .unwrap_or(serde_json::Value::Null);
        let detail = json!({"offboarded_at": offboarded_at, "export_retention_days": days, "export": export});
        let fx = Effects::none()
            .with_event(tenant_event(names::TENANT_PURGED, &tenant, &[], detail.clone()))
            .with_audit(ctx.audit("tenant.purge", format!("tenant/{id}"), Some(id), detail));
        self.store.tenant_purge(id, tenant.version, &fx).await
    }

    // API keys.

    /// Creates a key; the plaintext is returned this once and never stored.
    pub async fn api_key_create(&self, ctx: &OpContext, new: NewApiKey) -> Result<(ApiKey, String)> {
        ctx.authorize(P::KeyAdmin)?;
        let now = Timestamp::now();
        new.validate(now)?;
        let generated = apikey::generate(&mut rand::thread_rng());
        let key = ApiKey {
            id: generated.id,
            name: new.name,
            role: new.role,
            tenant_id: new.tenant_id,
            created_at: now,
            expires_at: new.expires_at,
            hash: generated.hash,
        };
        let audit = ctx.audit(
            "api_key.create",
            format!("api-key/{}", key.id),
            key.tenant_id.as_deref(),
            json!({"name": key.name, "role": key.role}),
        );
        self.store.api_key_create(&key, &Effects::none().with_audit(audit)).await?;
        Ok((key, generated.plaintext))
    }

    pub async fn api_key_list(&self, ctx: &OpContext, page: &PageRequest) -> Result<Page<ApiKey>> {
        ctx.authorize(P::KeyAdmin)?;
        self.store.api_key_list(page).await
    }

    pub async fn api_key_delete(&self, ctx: &OpContext, id: &str) -> Result<()> {
        ctx.authorize(P::KeyAdmin)?;
        let audit = ctx.audit("api_key.delete", format!("api-key/{id}"), None, json!({}));
        self.store.api_key_delete(id, &Effects::none().with_audit(audit)).await?;
        self.auth.evict(id);
        Ok(())
    }

    // Records.

    pub async fn event_list(
        &self,
        ctx: &OpContext,
        filter: EventFilter,
        page: &PageRequest,
    ) -> Result<Page<StoredEvent>> {
        ctx.authorize(P::RecordsRead)?;
        self.store.event_list(&filter, page).await
    }

    pub async fn audit_list(
        &self,
        ctx: &OpContext,
        filter: AuditFilter,
        page: &PageRequest,
    ) -> Result<Page<StoredAudit>> {
        ctx.authorize(P::RecordsRead)?;
        self.store.audit_list(&filter, page).await
    }
}

/// Setting or changing a plan's lifecycle state machines is admin-only: they run with
/// the lifecycle's privileges. Other members stay open to operators (a `PUT` that
/// repeats the plan's `workflows`, or a `PATCH` without them).
fn authorize_workflows(ctx: &OpContext, current: &PlanWorkflows, next: &PlanWorkflows) -> Result<()> {
    if current != next && ctx.principal.role != apikey::Role::Admin {
        return Err(Error::Forbidden(format!(
            "role {} may not change a plan's workflows: only admins name a plan's lifecycle state machines",
            ctx.principal.role.as_str()
        )));
    }
    Ok(())
}

/// Statuses a filter may name, for error messages.
pub fn status_names() -> Vec<&'static str> {
    TenantStatus::ALL.iter().map(|s| s.as_str()).collect()
}
