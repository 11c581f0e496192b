//! The upgrade's reserved steps (`tenancy:tenant.*`, so only lifecycle state machines
//! run them): the end of a tenant's upgrade, on the new release or back on the old one.
//! Both are idempotent (a tenant already `active` is left alone) and commit the
//! tenant's change with its event and audit entry in the step's transaction.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use tenancy_domain::event::names;
use tenancy_domain::tenant::{TenantStatus, Transition};
use tenancy_domain::time::Timestamp;
use tenancy_engine::{app_failure, failure, Registry, TaskCall, TaskHandler, TaskOutput, TaskResult};
use tenancy_store::Effects;

use crate::tenants::lifecycle::tenant_event;
use crate::OpContext;

/// `tenancy:tenant.upgraded` `{tenant_id, release}`: the tenant is `active` on `release`
/// (`TenantUpgraded`).
pub const UPGRADED: &str = "tenancy:tenant.upgraded";
/// `tenancy:tenant.upgrade_failed` `{tenant_id, release, step, error, rollback_error?}`:
/// the tenant is `active` on the release it was on (`TenantUpgradeFailed`, naming the
/// failed step and its error).
pub const UPGRADE_FAILED: &str = "tenancy:tenant.upgrade_failed";

pub fn register(r: &Registry) {
    r.register(UPGRADED, Finish { upgraded: true });
    r.register(UPGRADE_FAILED, Finish { upgraded: false });
}

#[derive(Deserialize)]
struct Params {
    tenant_id: String,
    /// The release the upgrade was to.
    release: String,
    execution_id: Option<String>,
    #[serde(default)]
    step: Value,
    #[serde(default)]
    error: Value,
    #[serde(default)]
    rollback_error: Value,
}

struct Finish {
    upgraded: bool,
}

#[async_trait]
impl TaskHandler for Finish {
    /// Inline: the tenant's change is an effect of the step (see the lifecycle's own).
    fn inline(&self) -> bool {
        true
    }

    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        let p: Params = call.params()?;
        let execution_id = p.execution_id.as_deref().unwrap_or(call.execution_id);
        let mut tenant = call.store.tenant_get(&p.tenant_id).await.map_err(app_failure)?;
        let out = |t: &tenancy_domain::tenant::Tenant| json!({"status": t.status, "release": t.release});
        if tenant.status == TenantStatus::Active {
            // Done by an earlier attempt of this step.
            return Ok(TaskOutput::new(out(&tenant)));
        }
        if tenant.status != TenantStatus::Updating {
            return Err(failure(
                "Tenancy.invalid-transition",
                format!("tenant {:?} is {}, not updating", tenant.id, tenant.status.as_str()),
            ));
        }
        let version = tenant.version;
        let previous = tenant.release.clone();
        tenant.transition(Transition::UpgradeFinished).map_err(app_failure)?;
        let (detail_type, action, extra) = if self.upgraded {
            tenant.release = Some(p.release.clone());
            let extra = json!({"execution_id": execution_id, "previous_release": previous});
            (names::TENANT_UPGRADED, "tenant.complete_upgrade", extra)
        } else {
            let reason = match &p.error {
                Value::Object(e) => e.get("Cause").or_else(|| e.get("Error")).cloned().unwrap_or(Value::Null),
                other => other.clone(),
            };
            let extra = json!({
                "execution_id": execution_id,
                "target_release": p.release,
                "step": p.step,
                "reason": reason,
                "error": p.error,
                "rollback_error": p.rollback_error,
            });
            (names::TENANT_UPGRADE_FAILED, "tenant.fail_upgrade", extra)
        };
        tenant.updated_at = Timestamp::now();
        tenant.version = version + 1;
        let changed: &[&str] = if self.upgraded { &["status", "release"] } else { &["status"] };
        let event = tenant_event(detail_type, &tenant, changed, extra.clone());
        let audit = OpContext::system().audit(action, format!("tenant/{}", tenant.id), Some(&tenant.id), extra);
        let output = out(&tenant);
        let fx = Effects::none().with_event(event).with_audit(audit).with_tenant(tenant, version);
        Ok(TaskOutput { effects: fx, ..TaskOutput::new(output) })
    }
}
