//! The tenant lifecycle as workflows.
//!
//! Provisioning, plan changes and offboarding are built-in ASL definitions
//! (`crates/app/workflows/*.json`) run by the [`tenancy_engine`]: an API call moves the
//! tenant into a transitional status (`provisioning`, `updating`, `offboarding`) and, in
//! the same transaction, starts the execution. Each step is an idempotent built-in task
//! handler registered here; provisioning steps have undo steps that a `Catch` runs in
//! reverse before marking the tenant `failed` (`TenantProvisioningFailed` names the
//! failing step and its error). Suspension and resumption stay synchronous: they change
//! one status, take effect in their request and have nothing to undo; the same
//! transaction starts `tenancy.tenant.notify`, which tells the hooks of the change
//! afterwards (a hook that fails fails that execution, not the status change).
//! Offboarding first exports the tenant's data to the blob store ([`crate::offboarding`]).

use serde_json::{json, Value};
use tenancy_domain::event::Event;
use tenancy_domain::tenant::Tenant;
use tenancy_domain::{Error, Result};
use tenancy_store::Store;

use crate::OpContext;
use tenancy_engine::{app_failure, failure};

/// Built-in state machines: name and definition.
pub const PROVISION_MACHINE: &str = "tenancy.tenant.provision";
pub const CHANGE_PLAN_MACHINE: &str = "tenancy.tenant.change-plan";
pub const OFFBOARD_MACHINE: &str = "tenancy.tenant.offboard";
/// Tells the hooks of a status change that completed in its request (suspend, resume).
pub const NOTIFY_MACHINE: &str = "tenancy.tenant.notify";
/// Upgrades one tenant to a release (docs/releases.md); a release's `upgrade_workflow`
/// replaces it.
pub const UPGRADE_MACHINE: &str = "tenancy.tenant.upgrade";
pub const BUILTIN_MACHINES: &[(&str, &str)] = &[
    (PROVISION_MACHINE, include_str!("../../workflows/tenant-provision.json")),
    (CHANGE_PLAN_MACHINE, include_str!("../../workflows/tenant-change-plan.json")),
    (OFFBOARD_MACHINE, include_str!("../../workflows/tenant-offboard.json")),
    (NOTIFY_MACHINE, include_str!("../../workflows/tenant-notify.json")),
    (UPGRADE_MACHINE, include_str!("../../workflows/tenant-upgrade.json")),
    (crate::secrets::rotation::ROTATE_MACHINE, include_str!("../../workflows/secret-rotate.json")),
];
/// Names reserved for built-in state machines.
pub const RESERVED_PREFIX: &str = "tenancy.";

/// Task resources reserved to the built-in lifecycle definitions: they change tenants'
/// statuses, resources and databases and call the provisioning hooks, trusting their
/// parameters. A user state machine naming one is refused (`PUT`), and an execution of
/// one that is not built in fails if it reaches one anyway.
/// The secret rotation's steps (`tenancy:secret.*`) are reserved too: they trust their
/// parameters (which secret to rotate).
pub const RESERVED_RESOURCES: &[&str] =
    &["tenancy:tenant.", "tenancy:resource.", "tenancy:database.", "tenancy:hooks.", "tenancy:secret."];

/// Whether a Task resource (with or without `.waitForTaskToken`) is reserved.
pub fn is_reserved_resource(resource: &str) -> bool {
    let base = resource.strip_suffix(".waitForTaskToken").unwrap_or(resource);
    RESERVED_RESOURCES.iter().any(|p| base.starts_with(p))
}

/// Whether an event source is reserved: `tenancy` and `tenancy.*` name Tenancy's own
/// events, which subscribers trust; workflows may not put events with them.
pub fn is_reserved_source(source: &str) -> bool {
    source == tenancy_domain::event::SOURCE || source.starts_with("tenancy.")
}

/// Whether a state machine is a lifecycle definition: a built-in one or one an admin
/// defined for plans (`tenancy.lifecycle.*`). Only the lifecycle starts them.
pub fn is_builtin_machine(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX)
}

/// The prefix of the lifecycle state machines admins define for plans (a plan's
/// `workflows`): they may use the reserved lifecycle steps, like the built-in ones.
pub use tenancy_domain::plan::LIFECYCLE_MACHINE_PREFIX;

/// Whether a state machine is an admin-defined lifecycle state machine.
pub fn is_custom_lifecycle_machine(name: &str) -> bool {
    name.starts_with(LIFECYCLE_MACHINE_PREFIX)
}

/// Who started a lifecycle execution, as its input carries it: `{key_id, role}`.
pub fn started_by(ctx: &OpContext) -> Value {
    let probe = ctx.audit("", String::new(), None, Value::Null);
    json!({"key_id": probe.actor_key_id, "role": probe.actor_role})
}

/// Names the execution in the audit entries a step of it writes (`execution_id`,
/// `state_machine` in their detail) and, for a built-in lifecycle execution, the key
/// that started it as their actor (from its input's `started_by`, which only Tenancy
/// writes: users cannot start built-in state machines).
pub fn stamp_audit(audit: &mut [tenancy_audit::AuditEntry], execution: &tenancy_store::ExecutionRecord) {
    let starter = &execution.input["started_by"];
    for a in audit {
        if let Value::Object(d) = &mut a.detail {
            d.insert("execution_id".into(), json!(execution.id));
            d.insert("state_machine".into(), json!(execution.state_machine));
        }
        if is_builtin_machine(&execution.state_machine) {
            if let Some(role) = starter["role"].as_str() {
                a.actor_key_id = starter["key_id"].as_str().map(str::to_owned);
                a.actor_role = role.to_owned();
            }
        }
    }
}

/// The resources that put events (whose `Source` is checked).
pub use tenancy_engine::PUT_EVENTS_RESOURCES;

/// The run-time check of a task of an execution of `state_machine` (defence in depth
/// behind the check at `PUT`): a reserved resource outside the lifecycle definitions
/// (built-in or `tenancy.lifecycle.*`), or a reserved event source outside the built-in
/// ones, fails the task (`States.Runtime`).
pub fn check_task(state_machine: &str, resource: &str, parameters: &Value) -> Result<(), tenancy_asl::Failure> {
    let custom = is_custom_lifecycle_machine(state_machine);
    if is_builtin_machine(state_machine) && !custom {
        return Ok(());
    }
    if !custom && is_reserved_resource(resource) {
        return Err(failure(
            "States.Runtime",
            format!("the resource {resource:?} is reserved to the built-in lifecycle workflows"),
        ));
    }
    if PUT_EVENTS_RESOURCES.contains(&resource) {
        let sources = parameters["Entries"].as_array().into_iter().flatten().filter_map(|e| e["Source"].as_str());
        for source in sources {
            if is_reserved_source(source) {
                return Err(failure(
                    "States.Runtime",
                    format!("the event source {source:?} is reserved to Tenancy's own events"),
                ));
            }
        }
    }
    Ok(())
}

/// The error of a step of a lifecycle execution that is no longer the tenant's
/// current one (see [`check_current`]).
pub const STALE_EXECUTION: &str = "Tenancy.StaleExecution";

/// The run-time check that a lifecycle step belongs to the tenant's current lifecycle
/// execution ([`Tenant::lifecycle_execution_id`], set in the transaction that starts
/// one: create, retry, plan change, offboarding). A reserved step (tenant status,
/// resources, databases, exports, hooks) of another execution of the tenant (an old
/// provisioning redriven after a retry, an offboarding of a purged tenant whose id was
/// taken again) fails with `Tenancy.StaleExecution` before it does anything, so it can
/// neither mark the tenant failed nor undo what the current attempt created.
/// Notifications (`tenancy.tenant.notify`) change nothing and are not checked, nor
/// are tenants written before the marker existed (`None`).
///
/// A status change committed by a step is guarded by the tenant's version as well, and
/// the marker changes with the version, so a step that passed this check just before a
/// retry fails its commit and runs again (to fail here).
pub async fn check_current(
    store: &dyn Store,
    rec: &tenancy_store::ExecutionRecord,
    resource: &str,
) -> Result<(), tenancy_asl::Failure> {
    // Notifications change nothing; a secret's rotation is not a lifecycle execution
    // (its steps check that it is the secret's running rotation instead).
    if !is_reserved_resource(resource)
        || rec.state_machine == NOTIFY_MACHINE
        || rec.state_machine == crate::secrets::rotation::ROTATE_MACHINE
    {
        return Ok(());
    }
    // Lifecycle executions always name their tenant; a purge detaches the old tenant's
    // executions from the id, so one without a tenant is a purged tenant's.
    let Some(tenant_id) = rec.tenant_id.as_deref() else {
        return Err(failure(
            STALE_EXECUTION,
            format!("execution {} belongs to a purged tenant: it changes nothing", rec.id),
        ));
    };
    let tenant = match store.tenant_get(tenant_id).await {
        Ok(t) => t,
        Err(Error::NotFound { .. }) => {
            return Err(failure(
                STALE_EXECUTION,
                format!("tenant {tenant_id:?} no longer exists: execution {} changes nothing", rec.id),
            ))
        }
        Err(e) => return Err(app_failure(e)),
    };
    match tenant.lifecycle_execution_id {
        Some(current) if current != rec.id => Err(failure(
            STALE_EXECUTION,
            format!(
                "execution {} is not the current lifecycle execution of tenant {tenant_id:?} ({current}): it \
                 changes nothing",
                rec.id
            ),
        )),
        _ => Ok(()),
    }
}

/// The safety net under a tenant's lifecycle executions (docs/provisioning.md, "When a
/// lifecycle execution ends without settling its tenant"): `rec` ends (`end`, its final
/// state) while it is still its tenant's current lifecycle execution and the tenant is
/// still in that lifecycle's transitional status: a machine that ended in a `Fail`
/// state, timed out or was stopped before its last status step, or one that ended
/// SUCCEEDED without it. The tenant is then settled as the built-in machines settle it
/// on a failure, in the commit of the end (guarded by the tenant's version, with its
/// event and audit entry):
///
/// - `provisioning` -> `failed` (`TenantProvisioningFailed`, `tenant.fail_provision`),
///   `step` the state the execution ended in and `error` its final error and cause (or
///   "the workflow ended SUCCEEDED without activating the tenant"), so `tenants retry`
///   starts a new attempt;
/// - `updating` by a plan change -> `active` on the plan it had (`TenantUpdated`,
///   `tenant.revert_change_plan`); by an upgrade -> `active` on its release
///   (`TenantUpgradeFailed`, `tenant.fail_upgrade`);
/// - `offboarding` is left as it is, as the built-in offboarding leaves it: a failed
///   offboarding is redriven (its steps are idempotent), and one that timed out or was
///   stopped is started again by offboarding the tenant again.
///
/// `effects` are what the end's commit already carries: a tenant write among them (a
/// status step fused into the end) is the tenant as it will be.
pub async fn settle_end(
    store: &dyn Store,
    rec: &tenancy_store::ExecutionRecord,
    end: &tenancy_store::StepState,
    effects: &mut tenancy_store::Effects,
) -> Result<()> {
    use tenancy_domain::tenant::TenantStatus;
    let Some(tenant_id) = rec.tenant_id.as_deref() else { return Ok(()) };
    // Only lifecycle executions settle tenants: the built-in ones and the
    // `tenancy.lifecycle.*` ones plans and releases name (no read for any other).
    if !is_builtin_machine(&rec.state_machine)
        || rec.state_machine == NOTIFY_MACHINE
        || rec.state_machine == crate::secrets::rotation::ROTATE_MACHINE
    {
        return Ok(());
    }
    // A tenant write already in the commit is the tenant as it will be: the settled
    // tenant replaces it (computed from the same stored version).
    let written = effects.tenants.iter().rposition(|w| w.tenant.id == tenant_id);
    let (mut tenant, expected) = match written {
        Some(i) => (effects.tenants[i].tenant.clone(), effects.tenants[i].expected_version),
        None => match store.tenant_get(tenant_id).await {
            Ok(t) => {
                let v = t.version;
                (t, v)
            }
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        },
    };
    if tenant.lifecycle_execution_id.as_deref() != Some(rec.id.as_str()) {
        return Ok(());
    }
    if !matches!(tenant.status, TenantStatus::Provisioning | TenantStatus::Updating) {
        return Ok(());
    }
    tenant.version = expected;
    let Some((event, mut audit, next)) = settlement(&tenant, rec, end) else { return Ok(()) };
    stamp_audit(std::slice::from_mut(&mut audit), rec);
    if let Some(i) = written {
        effects.tenants.remove(i);
    }
    effects.events.push(event);
    effects.audit.push(audit);
    effects.tenants.push(tenancy_store::TenantWrite { tenant: next, expected_version: expected });
    Ok(())
}

/// Refuses a lifecycle execution `job` that ended at its first step, before any task
/// ran (a machine of `Pass`, `Choice`, `Fail` or `Succeed` states only, or one whose
/// first task's parameters do not evaluate on the input): it could run no status step, so starting it would leave the tenant in its transitional status for
/// good; 409 `lifecycle-ends-at-start`, and the operation changes nothing.
pub fn refuse_ended_at_start(job: &tenancy_store::NewExecution) -> Result<()> {
    if job.first.stopped_at.is_none() {
        return Ok(());
    }
    let end = match (&job.first.error, &job.first.cause) {
        (Some(e), Some(c)) => format!(" ({e}: {c})"),
        (Some(e), None) => format!(" ({e})"),
        (None, Some(c)) => format!(" ({c})"),
        (None, None) => String::new(),
    };
    Err(Error::Conflict {
        code: tenancy_domain::ErrorCode::LifecycleEndsAtStart,
        message: format!(
            "state machine {:?} ends {}{end} at its start, before any of its tasks ran, so it could not settle the \
             tenant: nothing changed",
            job.state_machine, job.first.status
        ),
    })
}

/// What [`settle_end`] writes for `tenant` (in its transitional status) at the end of
/// its current lifecycle execution `rec`: the event, the audit entry and the settled
/// tenant (its version still to set), or nothing when the status is not a lifecycle's.
fn settlement(
    tenant: &Tenant,
    rec: &tenancy_store::ExecutionRecord,
    end: &tenancy_store::StepState,
) -> Option<(Event, tenancy_audit::AuditEntry, Tenant)> {
    use tenancy_domain::event::names;
    use tenancy_domain::tenant::{TenantStatus, Transition};
    let ended = end.status.as_str();
    // The state the execution ended in: the last one its final step's history names.
    let step = end.history.iter().rev().find_map(|h| h.state.clone()).map(Value::from).unwrap_or(Value::Null);
    let error = if ended == tenancy_store::status::SUCCEEDED {
        let cause = match tenant.status {
            TenantStatus::Provisioning => "the workflow ended SUCCEEDED without activating the tenant",
            _ => "the workflow ended SUCCEEDED without finishing the change",
        };
        json!({"Error": "Tenancy.LifecycleUnsettled", "Cause": cause})
    } else {
        json!({
            "Error": end.error.clone().unwrap_or_else(|| "Tenancy.LifecycleUnsettled".into()),
            "Cause": end.cause.clone().unwrap_or_else(|| format!("the workflow ended {ended} without marking the tenant")),
        })
    };
    let from = tenant.status;
    let mut next = tenant.clone();
    next.updated_at = tenancy_domain::time::Timestamp::now();
    let mut extra = json!({
        "previous_status": from,
        "execution_id": rec.id,
        "execution_status": ended,
        "step": step,
        "error": error,
    });
    let (detail_type, action, changed): (&str, &str, &[&str]) = match from {
        TenantStatus::Provisioning => {
            next.transition(Transition::ProvisioningFailed).ok()?;
            (names::TENANT_PROVISIONING_FAILED, "tenant.fail_provision", &["status"])
        }
        TenantStatus::Updating if rec.input.get("upgrade").is_some_and(Value::is_object) => {
            next.transition(Transition::UpgradeFinished).ok()?;
            let upgrade = &rec.input["upgrade"];
            extra["target_release"] = upgrade["release"].clone();
            extra["reason"] = error["Cause"].clone();
            extra["rollback_error"] = Value::Null;
            (names::TENANT_UPGRADE_FAILED, "tenant.fail_upgrade", &["status"])
        }
        TenantStatus::Updating => {
            // A plan change applies the plan near its end (`apply_plan`): the tenant is
            // on the plan it had, or (a move that failed deleting the old database,
            // redriven to finish it) on the new one; either way it stays on it.
            next.transition(Transition::PlanChanged).ok()?;
            extra["previous_plan"] = json!(tenant.plan);
            (names::TENANT_UPDATED, "tenant.revert_change_plan", &["status"])
        }
        _ => return None,
    };
    next.version = tenant.version + 1;
    let event = tenant_event(detail_type, &next, changed, extra.clone());
    let mut detail = json!({"execution_id": rec.id, "from": from, "to": next.status, "settled": true});
    detail["execution_status"] = json!(ended);
    detail["step"] = extra["step"].clone();
    detail["error"] = error;
    let audit = OpContext::system().audit(action, format!("tenant/{}", tenant.id), Some(&tenant.id), detail);
    Some((event, audit, next))
}

/// The audit actions of the plan change and the offboarding.
pub const CHANGE_PLAN: &str = "tenant.change_plan";
pub const OFFBOARD: &str = "tenant.offboard";

/// The `detail` of every tenant event: where the tenant stands and what changed.
pub fn tenant_detail(t: &Tenant, changed: &[&str], extra: Value) -> Value {
    let mut d = json!({
        "id": t.id,
        "name": t.name,
        "plan": t.plan,
        "region": t.region,
        "status": t.status,
        "version": t.version,
        "release": t.release,
        "changed": changed,
    });
    if let (Some(d), Value::Object(extra)) = (d.as_object_mut(), extra) {
        d.extend(extra);
    }
    d
}

pub fn tenant_event(detail_type: &str, t: &Tenant, changed: &[&str], extra: Value) -> Event {
    Event::new(detail_type, Some(&t.id), vec![format!("tenant/{}", t.id)], tenant_detail(t, changed, extra))
}

/// The engine's [`tenancy_engine::TaskGuard`]: a task runs only when [`check_task`] and
/// [`check_current`] admit it, and its audit entries name the execution
/// ([`stamp_audit`]).
pub struct LifecycleGuard;

#[async_trait::async_trait]
impl tenancy_engine::TaskGuard for LifecycleGuard {
    async fn admit(
        &self,
        store: &dyn Store,
        rec: &tenancy_store::ExecutionRecord,
        resource: &str,
        parameters: &Value,
    ) -> Result<(), tenancy_asl::Failure> {
        check_task(&rec.state_machine, resource, parameters)?;
        check_current(store, rec, resource).await
    }

    fn stamp(&self, rec: &tenancy_store::ExecutionRecord, effects: &mut tenancy_store::Effects) {
        stamp_audit(&mut effects.audit, rec);
    }

    async fn settle(
        &self,
        store: &dyn Store,
        rec: &tenancy_store::ExecutionRecord,
        end: &tenancy_store::StepState,
        effects: &mut tenancy_store::Effects,
    ) -> Result<()> {
        settle_end(store, rec, end, effects).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lifecycle_steps_run_only_in_lifecycle_machines_and_the_tenancy_source_stays_reserved() {
        let none = json!({});
        let forged = json!({"Entries": [{"Source": "tenancy", "DetailType": "TenantProvisioned", "Detail": {}}]});
        // Built-in definitions: anything (they write Tenancy's own events).
        assert!(check_task(PROVISION_MACHINE, "tenancy:tenant.activate", &none).is_ok());
        assert!(check_task(PROVISION_MACHINE, "tenancy:events.put", &forged).is_ok());
        // An admin's lifecycle machine: the lifecycle steps, but not Tenancy's event source.
        assert!(check_task("tenancy.lifecycle.acme", "tenancy:tenant.activate", &none).is_ok());
        assert!(check_task("tenancy.lifecycle.acme", "tenancy:hooks.notify", &none).is_ok());
        assert!(check_task("tenancy.lifecycle.acme", "tenancy:events.put", &forged).is_err());
        // An ordinary user machine: neither.
        assert!(check_task("acme", "tenancy:tenant.activate", &none).is_err());
        assert!(check_task("acme", "tenancy:events.put", &forged).is_err());
        assert!(check_task("acme", "tenancy:noop", &none).is_ok());
    }
}
