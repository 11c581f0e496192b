//! The plans API: create or replace, patch, read, list, delete.

use crate::app::retry_stale;
use crate::context::Permission as P;
use crate::tenants::lifecycle::{self};
use crate::{App, OpContext};
use serde_json::json;
use tenancy_domain::apikey::{self};
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::plan::{Plan, PlanPatch, PlanSpec, PlanWorkflows};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_store::Effects;

impl App {
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
        self.flag_catalogue.plans_changed();
        let created = stored.version == 1;
        Ok((stored, created))
    }

    /// Changes the fields `patch` gives (a JSON merge patch); the others stay.
    pub async fn plan_patch(&self, ctx: &OpContext, id: &str, patch: PlanPatch, if_match: Option<i64>) -> Result<Plan> {
        ctx.authorize(P::PlanWrite)?;
        let plan = retry_stale(if_match, || async {
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
        .await?;
        self.flag_catalogue.plans_changed();
        Ok(plan)
    }

    /// Every state machine a plan names exists and is a lifecycle state machine (400
    /// `unknown-state-machine` otherwise).
    pub(crate) async fn check_plan_workflows(&self, workflows: &PlanWorkflows) -> Result<()> {
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
    pub(crate) async fn lifecycle_machine(
        &self,
        builtin: &str,
        plan: Option<&str>,
    ) -> Result<tenancy_store::StateMachineRecord> {
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

    /// A plan. A tenant key reads its own tenant's current plan and the plans marked
    /// `self_service` (which it may move to) only (any other: 404).
    pub async fn plan_get(&self, ctx: &OpContext, id: &str) -> Result<Plan> {
        if let Some(own) = &ctx.principal.tenant_id {
            ctx.authorize_tenant(P::TenantRead, own)?;
            let current = self.store.tenant_get(own).await?.plan;
            return match self.store.plan_get(id).await {
                Ok(p) if p.id == current || p.self_service => Ok(p),
                Ok(_) | Err(Error::NotFound { .. }) => Err(Error::not_found("plan", id)),
                Err(e) => Err(e),
            };
        }
        ctx.authorize(P::PlanRead)?;
        self.store.plan_get(id).await
    }

    /// The plans. A tenant key lists its own tenant's current plan and the plans marked
    /// `self_service` (pages are cut from the whole catalogue, so one may hold fewer
    /// than `limit` items and still have a next page).
    pub async fn plan_list(&self, ctx: &OpContext, page: &PageRequest) -> Result<Page<Plan>> {
        if let Some(own) = &ctx.principal.tenant_id {
            ctx.authorize_tenant(P::TenantRead, own)?;
            let current = self.store.tenant_get(own).await?.plan;
            let mut got = self.store.plan_list(page).await?;
            got.items.retain(|p| p.id == current || p.self_service);
            return Ok(got);
        }
        ctx.authorize(P::PlanRead)?;
        self.store.plan_list(page).await
    }

    pub async fn plan_delete(&self, ctx: &OpContext, id: &str) -> Result<()> {
        ctx.authorize(P::PlanWrite)?;
        let audit = ctx.audit("plan.delete", format!("plan/{id}"), None, json!({}));
        self.store.plan_delete(id, &Effects::none().with_audit(audit)).await?;
        self.flag_catalogue.plans_changed();
        Ok(())
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
