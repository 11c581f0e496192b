//! The tenants API: create, read, list, patch, suspend and resume, change plan, offboard,
//! purge, and the resources the lifecycle workflows created.

use crate::app::retry_stale;
use crate::context::Permission as P;
use crate::hooks::validate::Validation;
use crate::tenants::lifecycle::{self, tenant_event};
use crate::{App, OpContext};
use serde_json::json;
use tenancy_domain::entitlements::{self, QuotaViolation};
use tenancy_domain::event::names;
use tenancy_domain::hook::HookEvent;
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::plan::{Plan, QuotaPeriod};
use tenancy_domain::tenant::{NewTenant, Tenant, TenantFilter, TenantPatch, TenantStatus, Transition};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_store::{Effects, NewExecution};

pub use tenancy_domain::api::{TenantOperation, TenantResourceView, TenantResources};

/// A tenant may be created on, or moved to, `plan` in `region` only where the plan is
/// offered (409 `plan-unavailable` naming both).
fn check_offered(plan: &Plan, region: &str) -> Result<()> {
    if plan.offered_in(region) {
        return Ok(());
    }
    Err(Error::Conflict {
        code: ErrorCode::PlanUnavailable,
        message: format!(
            "plan {:?} is not offered in region {region:?}: it is offered in {}",
            plan.id,
            plan.regions.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>().join(", ")
        ),
    })
}

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

impl App {
    // Tenants.

    /// Creates a tenant in `provisioning` and starts its provisioning.
    pub async fn tenant_create(&self, ctx: &OpContext, new: NewTenant) -> Result<TenantOperation> {
        ctx.authorize(P::TenantAdmin)?;
        let mut tenant = new.into_tenant(Timestamp::now())?;
        // A new tenant starts on the fleet's default release, if there is one (as read
        // now: a default moved concurrently may not be seen).
        tenant.release = self.default_release().await?;
        // The door: the plan is offered in the tenant's region, and the validate hooks
        // allow the tenant. Room on the plan (`max_tenants`) is counted by the store in
        // the insert's transaction, so concurrent creates never pass the cap.
        let plan = self.target_plan(&tenant.plan).await?;
        check_offered(&plan, &tenant.region)?;
        self.validate_with_hooks(
            ctx,
            Validation { action: "tenant.create", tenant: &tenant, plan: &plan, from_plan: None },
        )
        .await?;
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
    pub(crate) async fn lifecycle_execution(
        &self,
        ctx: &OpContext,
        machine: &str,
        plan: Option<&str>,
        tenant_id: &str,
        mut input: serde_json::Value,
    ) -> Result<NewExecution> {
        input["started_by"] = lifecycle::started_by(ctx);
        let sm = self.lifecycle_machine(machine, plan).await?;
        let job = self.engine.prepare_start(&sm, None, input, Some(tenant_id.to_owned())).await?;
        lifecycle::refuse_ended_at_start(&job)?;
        Ok(job)
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
                        && filter.release.as_ref().is_none_or(|r| Some(r) == t.release.as_ref())
                        && page.after.as_ref().is_none_or(|a| t.id > *a)
                })
                .into_iter()
                .collect();
            return Ok(Page { items, next_cursor: None });
        }
        if !self.policies.has_operator_policies(self.store.as_ref()).await? {
            return self.store.tenant_list(filter, page).await;
        }
        // Operators' policies may hide tenants (docs/policies.md, "Lists"): read pages
        // of the store and keep what the caller may see (`get_tenant`) until the page
        // is full; the cursor is the last tenant read, so the next page starts after
        // what this one examined and no visible tenant is skipped or repeated.
        let mut items = Vec::new();
        let mut after = page.after.clone();
        loop {
            let want = page.limit.max(100);
            let chunk = self.store.tenant_list(filter, &PageRequest { after: after.clone(), limit: want }).await?;
            let more = chunk.next_cursor.is_some();
            for t in chunk.items {
                after = Some(t.id.clone());
                if self.may_see_tenant(ctx, &t).await? {
                    items.push(t);
                }
                if items.len() as u32 == page.limit {
                    break;
                }
            }
            if items.len() as u32 == page.limit {
                // Full: another page exists if the store has anything after `after`.
                let rest = self.store.tenant_list(filter, &PageRequest { after: after.clone(), limit: 1 }).await?;
                let next_cursor = if rest.items.is_empty() { None } else { after };
                return Ok(Page { items, next_cursor });
            }
            if !more {
                return Ok(Page { items, next_cursor: None });
            }
        }
    }

    /// Reads the tenant, applies `change` and writes it back with its effects. With
    /// `if_match` the write happens only at that version (else 412); without it a
    /// concurrent writer makes the change re-run on the fresh tenant.
    pub(crate) async fn tenant_modify(
        &self,
        id: &str,
        if_match: Option<i64>,
        change: impl Fn(&mut Tenant) -> Result<Effects>,
    ) -> Result<Tenant> {
        self.tenant_modify_joining(id, if_match, None, change).await
    }

    /// [`App::tenant_modify`]; with `joining`, the change starts the tenant's move to
    /// that plan, written only if the plan has room (`Store::tenant_move_start`).
    async fn tenant_modify_joining(
        &self,
        id: &str,
        if_match: Option<i64>,
        joining: Option<&str>,
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
            match joining {
                Some(plan) => self.store.tenant_move_start(&tenant, version, plan, &fx).await,
                None => self.store.tenant_update(&tenant, version, &fx).await,
            }
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
        // A tenant moves only to a region its plan is offered in (as it is created in
        // one; checked at request time); a plan withdrawn from its current region does
        // not stop other changes.
        if let Some(region) = patch.region.as_deref() {
            let current = self.store.tenant_get(id).await?;
            if region != current.region {
                check_offered(&self.store.plan_get(&current.plan).await?, region)?;
            }
        }
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
    pub(crate) async fn tenant_transition_now(
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
        // A plan change was authorized by its operation (`PlanChange`); the others
        // (offboarding) need `TenantAdmin`: a tenant key may not offboard its tenant.
        let needed = if op.target_plan.is_some() { P::PlanChange } else { P::TenantAdmin };
        ctx.authorize_tenant(needed, id)?;
        let current = self.store.tenant_get(id).await?;
        let mut input = op.payload.clone();
        input["tenant_id"] = json!(id);
        input["previous_plan"] = json!(current.plan);
        // A plan change runs the target plan's machine, offboarding the tenant's plan's.
        let plan = op.target_plan.unwrap_or(&current.plan);
        // An offboarding whose execution ended without finishing (TIMED_OUT or ABORTED,
        // which cannot be redriven, or FAILED) is started again by offboarding again.
        let again = match (&current.lifecycle_execution_id, op.transition, current.status) {
            (Some(eid), Transition::Offboard, TenantStatus::Offboarding) => {
                match self.engine.workflows().execution_get(eid).await {
                    Ok(rec) => rec.status != tenancy_store::status::RUNNING,
                    Err(Error::NotFound { .. }) => true,
                    Err(e) => return Err(e),
                }
            }
            _ => false,
        };
        let job = self.lifecycle_execution(ctx, op.machine, Some(plan), id, input).await?;
        let tenant = self
            .tenant_modify_joining(id, if_match, op.target_plan, |tenant| {
                // Checked on the tenant as read for this attempt, so a racing change
                // that already moved it to the plan makes this one a conflict.
                if op.target_plan == Some(tenant.plan.as_str()) {
                    return Err(Error::Conflict {
                        code: ErrorCode::InvalidTransition,
                        message: format!("tenant {:?} is already on plan {:?}", tenant.id, tenant.plan),
                    });
                }
                let from = if again
                    && tenant.status == TenantStatus::Offboarding
                    && tenant.lifecycle_execution_id == current.lifecycle_execution_id
                {
                    // The ended offboarding's steps fail as stale from now on.
                    tenant.status
                } else {
                    tenant.transition(op.transition)?
                };
                tenant.lifecycle_execution_id = Some(job.id.clone());
                let detail =
                    json!({"from": from, "request": op.payload, "execution_id": job.id, "region": tenant.region});
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

    /// Moves a tenant to `plan` (in the background). At the door, in this order: the
    /// plan exists (400 `unknown-plan`), is offered in the tenant's region and has room
    /// (409 `plan-unavailable`); the tenant's usage fits the plan's hard quotas, its
    /// unexpired overrides applied (409 `entitlement-violation` listing each quota over,
    /// unless `force`, which the audit record then notes with the violations); the
    /// validate hooks allow it. A refusal changes nothing.
    pub async fn tenant_change_plan(
        &self,
        ctx: &OpContext,
        id: &str,
        plan: &str,
        force: bool,
        if_match: Option<i64>,
    ) -> Result<TenantOperation> {
        ctx.authorize_tenant(P::PlanChange, id)?;
        if ctx.own_tenant().is_some() {
            // Self-service: a tenant key moves its tenant to plans marked
            // `self_service` only (an unknown plan gets the same answer), never by force.
            if force {
                return Err(Error::Forbidden("a tenant key may not force a plan change".into()));
            }
            let open = match self.store.plan_get(plan).await {
                Ok(p) => p.self_service,
                Err(Error::NotFound { .. }) => false,
                Err(e) => return Err(e),
            };
            if !open {
                return Err(Error::Forbidden(format!(
                    "a tenant key may move its tenant only to plans marked self_service; plan {plan:?} is not one"
                )));
            }
        }
        let next = self.target_plan(plan).await?;
        let current = self.store.tenant_get(id).await?;
        let mut payload = json!({"plan": plan});
        // Moving to the plan it is on is refused below, as before, without asking.
        if current.plan != plan {
            // Room on the plan (`max_tenants`) is counted by the store in the write that
            // starts the move, with the other tenants moving to it.
            check_offered(&next, &current.region)?;
            let violations = self.plan_change_violations(&current, &next).await?;
            if !violations.is_empty() {
                if !force {
                    let list = violations
                        .iter()
                        .map(|v| format!("{} ({} used, limit {})", v.quota, v.used, v.limit))
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(Error::EntitlementViolation {
                        message: format!(
                            "tenant {id:?} uses more than plan {plan:?} allows: {list}; nothing was changed \
                             (release usage first, or send force: true to move anyway)"
                        ),
                        violations,
                    });
                }
                payload["force"] = json!(true);
                payload["violations"] = json!(violations);
            }
            let from = self.store.plan_get(&current.plan).await.ok();
            self.validate_with_hooks(
                ctx,
                Validation { action: "tenant.change_plan", tenant: &current, plan: &next, from_plan: from.as_ref() },
            )
            .await?;
        }
        let op = Operation {
            transition: Transition::ChangePlan,
            kind: lifecycle::CHANGE_PLAN,
            machine: lifecycle::CHANGE_PLAN_MACHINE,
            payload,
            event: None,
            target_plan: Some(plan),
        };
        self.tenant_start_operation(ctx, id, if_match, op).await
    }

    /// The plan a tenant is created on or moved to (400 `unknown-plan` when it does not
    /// exist).
    async fn target_plan(&self, plan: &str) -> Result<Plan> {
        match self.store.plan_get(plan).await {
            Ok(p) => Ok(p),
            Err(Error::NotFound { .. }) => Err(Error::InvalidRequest {
                code: ErrorCode::UnknownPlan,
                message: format!("plan {plan:?} does not exist"),
            }),
            Err(e) => Err(e),
        }
    }

    /// The hard quotas `tenant`'s usage now is over on `next`, with its unexpired
    /// overrides applied (usage counted in the periods `next` gives the quotas).
    async fn plan_change_violations(&self, tenant: &Tenant, next: &Plan) -> Result<Vec<QuotaViolation>> {
        let now = Timestamp::now();
        let overrides = self.store.entitlements().overrides_get(&tenant.id).await?;
        let terms = entitlements::effective(&tenant.id, next, overrides.as_ref(), now);
        let hard: Vec<(String, Option<QuotaPeriod>)> =
            terms.quotas.iter().filter(|(_, q)| !q.soft).map(|(k, q)| (k.clone(), q.period)).collect();
        if hard.is_empty() {
            return Ok(Vec::new());
        }
        let usage = self.store.quotas().quota_usage(&tenant.id, &hard, now).await?;
        let usage = usage.into_iter().map(|c| (c.quota, c.used)).collect();
        Ok(entitlements::violations(&terms, &usage))
    }

    pub async fn tenant_offboard(&self, ctx: &OpContext, id: &str, if_match: Option<i64>) -> Result<TenantOperation> {
        self.tenant_offboard_as(ctx, id, if_match, crate::tenants::offboarding::ExportFormat::Ndjson).await
    }

    /// [`App::tenant_offboard`] with the export's events and audit records in `format`.
    pub async fn tenant_offboard_as(
        &self,
        ctx: &OpContext,
        id: &str,
        if_match: Option<i64>,
        format: crate::tenants::offboarding::ExportFormat,
    ) -> Result<TenantOperation> {
        let op = Operation {
            transition: Transition::Offboard,
            kind: lifecycle::OFFBOARD,
            machine: lifecycle::OFFBOARD_MACHINE,
            payload: json!({"format": format}),
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
            .find(|r| r.kind == crate::tenants::offboarding::EXPORT_KIND)
            .map(|r| r.detail["location"].clone())
            .unwrap_or(serde_json::Value::Null);
        let detail = json!({"offboarded_at": offboarded_at, "export_retention_days": days, "export": export});
        let fx = Effects::none()
            .with_event(tenant_event(names::TENANT_PURGED, &tenant, &[], detail.clone()))
            .with_audit(ctx.audit("tenant.purge", format!("tenant/{id}"), Some(id), detail));
        self.store.tenant_purge(id, tenant.version, &fx).await
    }
}

/// Statuses a filter may name, for error messages.
pub fn status_names() -> Vec<&'static str> {
    TenantStatus::ALL.iter().map(|s| s.as_str()).collect()
}

impl App {
    /// The resources the lifecycle workflows created for a tenant (tenant keys: their own).
    pub async fn tenant_resources(&self, ctx: &OpContext, tenant_id: &str) -> Result<TenantResources> {
        ctx.authorize_tenant(P::TenantRead, tenant_id)?;
        self.store().tenant_get(tenant_id).await?;
        let list = self.store().workflows().tenant_resource_list(tenant_id).await?;
        let mut items = Vec::with_capacity(list.len());
        for r in list {
            let isolation =
                (r.kind == "database").then(|| crate::dataplane::plane::record_isolation(&r.detail)).flatten();
            let observed = match (self.provisioner(), isolation) {
                (Some(p), Some(i)) if p.provisions(i) => {
                    Some(serde_json::to_value(p.database_observe(tenant_id, i).await?).map_err(Error::internal)?)
                }
                _ => None,
            };
            items.push(TenantResourceView { kind: r.kind, detail: r.detail, created_at: r.created_at, observed });
        }
        Ok(TenantResources { items })
    }
}
