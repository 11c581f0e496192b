//! Events (the outbox and archive) and who causes them ([`Actor`]): append-only
//! records that commit in the same transaction as the change they describe. The audit
//! entry, the other such record, is `tenancy_audit::AuditEntry`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::time::Timestamp;

pub const SOURCE: &str = "tenancy";

/// The names of the events Tenancy emits (`detail-type`).
pub mod names {
    pub const TENANT_CREATED: &str = "TenantCreated";
    pub const TENANT_PROVISIONED: &str = "TenantProvisioned";
    pub const TENANT_PROVISIONING_FAILED: &str = "TenantProvisioningFailed";
    pub const TENANT_PROVISIONING_RETRIED: &str = "TenantProvisioningRetried";
    /// An offboarded tenant's record was deleted and its id released.
    pub const TENANT_PURGED: &str = "TenantPurged";
    pub const TENANT_UPDATED: &str = "TenantUpdated";
    pub const TENANT_SUSPENDED: &str = "TenantSuspended";
    pub const TENANT_RESUMED: &str = "TenantResumed";
    pub const TENANT_PLAN_CHANGED: &str = "TenantPlanChanged";
    /// A tenant's entitlement overrides were set or cleared.
    pub const TENANT_ENTITLEMENTS_CHANGED: &str = "TenantEntitlementsChanged";
    pub const TENANT_OFFBOARDING_STARTED: &str = "TenantOffboardingStarted";
    pub const TENANT_OFFBOARDED: &str = "TenantOffboarded";
    pub const EXECUTION_FAILED: &str = "ExecutionFailed";
    /// A release was created (`PUT /v1/releases/{version}` of a new version).
    pub const RELEASE_CREATED: &str = "ReleaseCreated";
    /// A release's description, upgrade workflow or default flag changed.
    pub const RELEASE_UPDATED: &str = "ReleaseUpdated";
    /// A release's bundle was uploaded (its SHA-256 and size in the detail).
    pub const RELEASE_BUNDLE_UPLOADED: &str = "ReleaseBundleUploaded";
    /// A rollout started (its tenants resolved, its waves planned).
    pub const ROLLOUT_STARTED: &str = "RolloutStarted";
    /// A rollout's wave finished within its tolerated failures.
    pub const WAVE_COMPLETED: &str = "WaveCompleted";
    /// A rollout halted: a wave failed more than tolerated.
    pub const ROLLOUT_HALTED: &str = "RolloutHalted";
    /// Every wave of a rollout completed.
    pub const ROLLOUT_COMPLETED: &str = "RolloutCompleted";
    /// A rollout was paused, resumed or aborted by an operator.
    pub const ROLLOUT_PAUSED: &str = "RolloutPaused";
    pub const ROLLOUT_RESUMED: &str = "RolloutResumed";
    pub const ROLLOUT_ABORTED: &str = "RolloutAborted";
    /// A tenant was pinned to its release, or unpinned.
    pub const TENANT_PINNED: &str = "TenantPinned";
    pub const TENANT_UNPINNED: &str = "TenantUnpinned";
    /// A tenant's upgrade to a release started (status `updating`).
    pub const TENANT_UPGRADE_STARTED: &str = "TenantUpgradeStarted";
    /// A tenant is on its new release (status back to `active`).
    pub const TENANT_UPGRADED: &str = "TenantUpgraded";
    /// A tenant's upgrade failed and was rolled back: `active` on its old release;
    /// the detail names the failed step and why.
    pub const TENANT_UPGRADE_FAILED: &str = "TenantUpgradeFailed";
    /// A secret's rotation finished: its pending version became current.
    pub const SECRET_ROTATED: &str = "SecretRotated";
    /// A secret's rotation failed: its current version is untouched.
    pub const SECRET_ROTATION_FAILED: &str = "SecretRotationFailed";
    /// A self-service sign-up: its detail carries the activation token (a credential,
    /// by design: docs/self-service.md), for a trusted product service to send.
    pub const SIGNUP_REQUESTED: &str = "SignupRequested";
}

/// An event in the EventBridge envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub id: String,
    pub source: String,
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub time: Timestamp,
    pub tenant_id: Option<String>,
    pub resources: Vec<String>,
    #[schema(value_type = Object)]
    pub detail: Value,
}

impl Event {
    pub fn new(detail_type: &str, tenant_id: Option<&str>, resources: Vec<String>, detail: Value) -> Self {
        Event {
            id: crate::ids::new_id("evt"),
            source: SOURCE.to_owned(),
            detail_type: detail_type.to_owned(),
            time: Timestamp::now(),
            tenant_id: tenant_id.map(str::to_owned),
            resources,
            detail,
        }
    }
}

/// Who did something: an API key (with its role) or the system itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Actor {
    pub key_id: Option<String>,
    pub role: String,
}

impl Actor {
    pub fn system() -> Self {
        Actor { key_id: None, role: "system".into() }
    }
}
