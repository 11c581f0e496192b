//! The tenant lifecycle's background half.
//!
//! An API call moves a tenant into a transitional status (`provisioning`, `updating`,
//! `offboarding`) and, in the same transaction, enqueues a job naming the operation.
//! [`run_job`] finishes the operation: it applies the final transition and commits it
//! with its event, its audit entry and the job's completion, so a crash at any point
//! either leaves the job to be retried or has finished everything.
//!
//! This is the seam the workflow engine replaces: the job becomes the start of an ASL
//! execution and the transition becomes that workflow's last step.

use serde_json::{json, Value};
use tenancy_domain::event::{names, Event};
use tenancy_domain::tenant::{Tenant, TenantStatus, Transition};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};
use tenancy_store::{Effects, Job, Store};

use crate::OpContext;

pub const PROVISION: &str = "tenant.provision";
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

/// Finishes the lifecycle operation `job` names, holding its lease as `owner`.
pub async fn run_job(store: &dyn Store, job: &Job, owner: &str) -> Result<()> {
    let tenant_id = job.tenant_id.as_deref().ok_or_else(|| Error::internal("lifecycle job without tenant"))?;
    let mut tenant = store.tenant_get(tenant_id).await?;
    let version = tenant.version;
    let (transition, expected, detail_type) = match job.kind.as_str() {
        PROVISION => (Transition::Provisioned, TenantStatus::Provisioning, names::TENANT_PROVISIONED),
        CHANGE_PLAN => (Transition::PlanChanged, TenantStatus::Updating, names::TENANT_PLAN_CHANGED),
        OFFBOARD => (Transition::Offboarded, TenantStatus::Offboarding, names::TENANT_OFFBOARDED),
        other => return Err(Error::internal(format!("unknown lifecycle job kind {other:?}"))),
    };
    let ctx = OpContext::system();
    if tenant.status != expected {
        // Another path already finished (or undid) the operation: nothing is left to do.
        tracing::warn!(job = %job.id, tenant = %tenant.id, status = tenant.status.as_str(), "lifecycle job found the tenant elsewhere");
        return store.job_complete(&Effects::none().completing(&job.id, owner)).await;
    }
    let mut changed = vec!["status"];
    let mut extra = json!({"previous_status": expected, "execution_id": job.id});
    if job.kind == CHANGE_PLAN {
        let to = job.payload["plan"].as_str().ok_or_else(|| Error::internal("plan change job without plan"))?;
        extra["previous_plan"] = json!(tenant.plan);
        tenant.plan = to.to_owned();
        changed.push("plan");
    }
    tenant.transition(transition)?;
    tenant.updated_at = Timestamp::now();
    tenant.version = version + 1;
    let event = tenant_event(detail_type, &tenant, &changed, extra);
    let audit = ctx.audit(
        &job.kind.replace("tenant.", "tenant.complete_"),
        format!("tenant/{}", tenant.id),
        Some(&tenant.id),
        json!({"execution_id": job.id}),
    );
    let fx = Effects::none().with_event(event).with_audit(audit).completing(&job.id, owner);
    store.tenant_update(&tenant, version, &fx).await?;
    Ok(())
}
