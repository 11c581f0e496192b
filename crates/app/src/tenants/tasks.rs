//! The lifecycle's task handlers: tenant resources recorded and deleted, the tenant's
//! status moved at the end of a provisioning, plan change or offboarding.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use tenancy_domain::event::names;
use tenancy_domain::tenant::{Tenant, TenantStatus, Transition};
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;
use tenancy_engine::{app_failure, failure, Registry, TaskCall, TaskHandler, TaskOutput, TaskResult};
use tenancy_store::{Effects, ResourceChange, TenantResource};

use crate::dataplane::plane::DataPlane;
use crate::dataplane::tasks::with_database;
use crate::tenants::lifecycle::tenant_event;
use crate::OpContext;

/// `tenancy:resource.create`: records a tenant resource.
pub const RESOURCE_CREATE: &str = "tenancy:resource.create";
/// `tenancy:resource.delete`: deletes a tenant resource's record.
pub const RESOURCE_DELETE: &str = "tenancy:resource.delete";

/// Registers the lifecycle's handlers. With a data plane, recording or deleting a
/// `database` resource also creates or deletes the tenant's database
/// ([`crate::dataplane::tasks::with_database`]).
pub fn register(r: &Registry, plane: Option<&Arc<DataPlane>>) {
    let create: Arc<dyn TaskHandler> = Arc::new(ResourceCreate);
    let delete: Arc<dyn TaskHandler> = Arc::new(ResourceDelete);
    match plane {
        Some(p) => {
            r.register(RESOURCE_CREATE, with_database(create, p.clone(), true));
            r.register(RESOURCE_DELETE, with_database(delete, p.clone(), false));
        }
        None => {
            r.register_arc(RESOURCE_CREATE, create);
            r.register_arc(RESOURCE_DELETE, delete);
        }
    }
    r.register("tenancy:tenant.activate", Finish { op: FinishOp::Activate });
    r.register("tenancy:tenant.provisioning_failed", Finish { op: FinishOp::ProvisioningFailed });
    r.register("tenancy:tenant.apply_plan", Finish { op: FinishOp::ApplyPlan });
    r.register("tenancy:tenant.revert_plan", Finish { op: FinishOp::RevertPlan });
    r.register("tenancy:tenant.finish_plan_change", Finish { op: FinishOp::FinishPlanChange });
    r.register("tenancy:tenant.offboarded", Finish { op: FinishOp::Offboarded });
    r.register("tenancy:tenant.set_status", Finish { op: FinishOp::SetStatus });
}

/// The parameters of `resource.create` and `resource.delete` (create keeps all of
/// them, these included, as the record's detail).
#[derive(Deserialize)]
struct ResourceParams {
    tenant_id: String,
    kind: String,
}

/// The parameters of the `tenancy:tenant.*` status changes.
#[derive(Deserialize)]
struct FinishParams {
    tenant_id: String,
    /// The lifecycle execution (by default the one running the task).
    execution_id: Option<String>,
    /// `provisioning_failed`: the state that failed and its error, as the Catch gave them.
    #[serde(default)]
    step: Value,
    #[serde(default)]
    error: Value,
    /// `apply_plan`, `revert_plan` and `finish_plan_change`: the plan the tenant ends on.
    plan: Option<String>,
    /// `apply_plan`: the database moves after this step (`tenancy:database.finish_move`),
    /// so the tenant stays `updating`, on its new plan, until
    /// `tenancy:tenant.finish_plan_change` makes it `active`. A tenant seen `active`
    /// is then done changing: a plan change started at once cannot create the
    /// database the previous one is still deleting.
    #[serde(default)]
    moving: bool,
    /// `offboarded`: where the export went, if anywhere.
    export: Option<Value>,
    /// `set_status`: the status.
    status: Option<String>,
}

/// A parameter `op` needs though the type leaves it optional.
fn required<'a>(call: &TaskCall<'_>, value: &'a Option<String>, name: &str) -> Result<&'a str, tenancy_asl::Failure> {
    value
        .as_deref()
        .ok_or_else(|| failure("States.Runtime", format!("{}: parameter {name:?} must be a string", call.resource)))
}

/// `tenancy:resource.create` `{tenant_id, kind, ...}`: records a tenant resource of
/// that kind; a second call finds it and changes nothing.
struct ResourceCreate;

#[async_trait]
impl TaskHandler for ResourceCreate {
    fn inline(&self) -> bool {
        true
    }

    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        let ResourceParams { tenant_id, kind } = call.params()?;
        let r = TenantResource {
            tenant_id: tenant_id.clone(),
            kind: kind.clone(),
            detail: call.parameters.clone(),
            created_by: call.idempotency_key.to_owned(),
            created_at: Timestamp::now(),
        };
        // The record commits with the step (an existing one is left as it is), so the
        // result is the same whether this call or an earlier attempt created it.
        let out = TaskOutput::new(json!({"tenant_id": tenant_id, "kind": kind}));
        Ok(TaskOutput { effects: Effects::none().with_resource(ResourceChange::Put(r)), ..out })
    }
}

/// `tenancy:resource.delete` `{tenant_id, kind}`: the undo of `resource.create`;
/// deleting a missing resource succeeds.
struct ResourceDelete;

#[async_trait]
impl TaskHandler for ResourceDelete {
    fn inline(&self) -> bool {
        true
    }

    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        let ResourceParams { tenant_id, kind } = call.params()?;
        let out = TaskOutput::new(json!({"tenant_id": tenant_id, "kind": kind}));
        let forget = ResourceChange::Delete { tenant_id, kind };
        Ok(TaskOutput { effects: Effects::none().with_resource(forget), ..out })
    }
}

#[derive(Clone, Copy)]
enum FinishOp {
    Activate,
    ProvisioningFailed,
    ApplyPlan,
    RevertPlan,
    FinishPlanChange,
    Offboarded,
    SetStatus,
}

/// The tenant status changes of the lifecycle. Each is idempotent: a tenant already in
/// the target state is left alone (no second event).
struct Finish {
    op: FinishOp,
}

#[async_trait]
impl TaskHandler for Finish {
    /// Inline: the status change is an effect of the step ([`Effects::with_tenant`]),
    /// so it commits in one transaction with the steps fused before it (e.g. the undo
    /// steps' forgotten resources): a caller never sees `failed` while resources are
    /// still recorded. A change computed from a stale tenant fails the commit, and the
    /// engine runs the steps again from the last commit.
    fn inline(&self) -> bool {
        true
    }

    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        let params: FinishParams = call.params()?;
        let tenant_id = params.tenant_id.as_str();
        let execution_id = params.execution_id.as_deref().unwrap_or(call.execution_id);
        let mut tenant = call.store.tenant_get(tenant_id).await.map_err(app_failure)?;
        let version = tenant.version;
        let from = tenant.status;
        let mut changed = vec!["status"];
        let mut extra = json!({"previous_status": from, "execution_id": execution_id});
        let (to, detail_type, action) = match self.op {
            FinishOp::Activate => (TenantStatus::Active, names::TENANT_PROVISIONED, "tenant.complete_provision"),
            FinishOp::ProvisioningFailed => {
                extra["step"] = params.step.clone();
                extra["error"] = params.error.clone();
                (TenantStatus::Failed, names::TENANT_PROVISIONING_FAILED, "tenant.fail_provision")
            }
            FinishOp::ApplyPlan | FinishOp::RevertPlan => {
                let plan = required(&call, &params.plan, "plan")?;
                let stays_updating = params.moving && matches!(self.op, FinishOp::ApplyPlan);
                let done = tenant.plan == plan
                    && (tenant.status == TenantStatus::Active
                        || (stays_updating && tenant.status == TenantStatus::Updating));
                if done {
                    return Ok(TaskOutput::new(json!({"status": tenant.status, "plan": tenant.plan})));
                }
                if tenant.status != TenantStatus::Updating {
                    return Err(failure(
                        "Tenancy.invalid-transition",
                        format!("tenant {tenant_id:?} is {}, not updating", tenant.status.as_str()),
                    ));
                }
                extra["previous_plan"] = json!(tenant.plan);
                tenant.plan = plan.to_owned();
                changed.push("plan");
                match self.op {
                    FinishOp::ApplyPlan if stays_updating => {
                        (TenantStatus::Updating, names::TENANT_PLAN_CHANGED, "tenant.apply_plan")
                    }
                    FinishOp::ApplyPlan => {
                        (TenantStatus::Active, names::TENANT_PLAN_CHANGED, "tenant.complete_change_plan")
                    }
                    _ => (TenantStatus::Active, names::TENANT_UPDATED, "tenant.revert_change_plan"),
                }
            }
            FinishOp::FinishPlanChange => {
                let plan = required(&call, &params.plan, "plan")?;
                if tenant.status == TenantStatus::Active && tenant.plan == plan {
                    return Ok(TaskOutput::new(json!({"status": tenant.status, "plan": tenant.plan})));
                }
                if tenant.status != TenantStatus::Updating || tenant.plan != plan {
                    return Err(failure(
                        "Tenancy.invalid-transition",
                        format!(
                            "tenant {tenant_id:?} is {} on plan {:?}, not updating on {plan:?}",
                            tenant.status.as_str(),
                            tenant.plan
                        ),
                    ));
                }
                (TenantStatus::Active, names::TENANT_UPDATED, "tenant.complete_change_plan")
            }
            FinishOp::Offboarded => {
                // Where the offboarding export went (`tenancy:tenant.export`), if anywhere.
                if let Some(export) = params.export.as_ref().filter(|e| !e.is_null()) {
                    extra["export"] = export.clone();
                }
                (TenantStatus::Offboarded, names::TENANT_OFFBOARDED, "tenant.complete_offboard")
            }
            FinishOp::SetStatus => {
                let to = required(&call, &params.status, "status")?;
                let to = TenantStatus::parse(to)
                    .ok_or_else(|| failure("States.Runtime", format!("unknown tenant status {to:?}")))?;
                (to, names::TENANT_UPDATED, "tenant.set_status")
            }
        };
        if !matches!(self.op, FinishOp::ApplyPlan | FinishOp::RevertPlan | FinishOp::FinishPlanChange) {
            if tenant.status == to {
                return Ok(TaskOutput::new(json!({"status": tenant.status, "plan": tenant.plan})));
            }
            let transition = match self.op {
                FinishOp::Activate => Some(Transition::Provisioned),
                FinishOp::ProvisioningFailed => Some(Transition::ProvisioningFailed),
                FinishOp::Offboarded => Some(Transition::Offboarded),
                _ => None,
            };
            match transition {
                Some(t) => {
                    tenant.transition(t).map_err(app_failure)?;
                }
                None => tenant.status = to,
            }
        } else {
            tenant.status = to;
        }
        tenant.updated_at = Timestamp::now();
        tenant.version = version + 1;
        if matches!(self.op, FinishOp::Activate | FinishOp::ApplyPlan) {
            // What the tenant may now use: its plan with its unexpired overrides.
            extra["entitlements"] = entitlements_detail(&**call.store, &tenant).await.map_err(app_failure)?;
        }
        let event = tenant_event(detail_type, &tenant, &changed, extra);
        let audit = OpContext::system().audit(
            action,
            format!("tenant/{}", tenant.id),
            Some(&tenant.id),
            json!({"execution_id": execution_id, "from": from, "to": tenant.status}),
        );
        let out = TaskOutput::new(json!({"status": tenant.status, "plan": tenant.plan}));
        let fx = Effects::none().with_event(event).with_audit(audit).with_tenant(tenant, version);
        Ok(TaskOutput { effects: fx, ..out })
    }
}

/// The effective features (those on) and quota limits of `tenant` on its current plan,
/// as `TenantProvisioned` and `TenantPlanChanged` carry them (docs/entitlements.md).
async fn entitlements_detail(store: &dyn tenancy_store::Store, tenant: &Tenant) -> Result<Value> {
    let plan = store.plan_get(&tenant.plan).await?;
    let overrides = store.entitlements().overrides_get(&tenant.id).await?;
    let view = tenancy_domain::entitlements::effective(&tenant.id, &plan, overrides.as_ref(), Timestamp::now());
    let features: Vec<&String> = view.features.iter().filter(|(_, on)| **on).map(|(name, _)| name).collect();
    let quotas: serde_json::Map<String, Value> =
        view.quotas.iter().map(|(name, q)| (name.clone(), json!(q.limit))).collect();
    Ok(json!({"features": features, "quotas": quotas}))
}
