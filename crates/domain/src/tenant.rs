//! Tenants and their status state machine.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;
use crate::{Error, ErrorCode, Result};

/// The lifecycle status of a tenant.
///
/// ```text
///   provisioning ──ok──▶ active ◀──resume── suspended
///        │                 │ ▲  └──suspend──▶  │
///      fail                │ └──done── updating (plan change, upgrade)
///        ▼                 ▼                   ▼
///      failed ──────▶ offboarding ──▶ offboarded
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    Provisioning,
    Active,
    Updating,
    Suspended,
    Offboarding,
    Offboarded,
    Failed,
}

impl TenantStatus {
    pub const ALL: [TenantStatus; 7] = [
        TenantStatus::Provisioning,
        TenantStatus::Active,
        TenantStatus::Updating,
        TenantStatus::Suspended,
        TenantStatus::Offboarding,
        TenantStatus::Offboarded,
        TenantStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Provisioning => "provisioning",
            TenantStatus::Active => "active",
            TenantStatus::Updating => "updating",
            TenantStatus::Suspended => "suspended",
            TenantStatus::Offboarding => "offboarding",
            TenantStatus::Offboarded => "offboarded",
            TenantStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// Something that moves a tenant from one status to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// Provisioning finished.
    Provisioned,
    /// Provisioning failed for good (after compensation).
    ProvisioningFailed,
    Suspend,
    Resume,
    /// A plan change started.
    ChangePlan,
    /// A plan change finished.
    PlanChanged,
    /// Offboarding started.
    Offboard,
    /// Offboarding finished.
    Offboarded,
    /// A new provisioning attempt of a failed tenant (`POST /v1/tenants/{id}/retry`).
    RetryProvisioning,
    /// An upgrade to a release started (`POST /v1/tenants/{id}/upgrade`).
    Upgrade,
    /// An upgrade finished: upgraded, or rolled back to the old release.
    UpgradeFinished,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Provisioned => "provisioned",
            Transition::ProvisioningFailed => "provisioning_failed",
            Transition::Suspend => "suspend",
            Transition::Resume => "resume",
            Transition::ChangePlan => "change_plan",
            Transition::PlanChanged => "plan_changed",
            Transition::Offboard => "offboard",
            Transition::Offboarded => "offboarded",
            Transition::RetryProvisioning => "retry_provisioning",
            Transition::Upgrade => "upgrade",
            Transition::UpgradeFinished => "upgrade_finished",
        }
    }
}

impl TenantStatus {
    /// The status after `t`, or a conflict when the state machine does not allow it.
    pub fn apply(self, t: Transition) -> Result<TenantStatus> {
        use TenantStatus as S;
        use Transition as T;
        let next = match (self, t) {
            (S::Provisioning, T::Provisioned) => S::Active,
            (S::Provisioning, T::ProvisioningFailed) => S::Failed,
            (S::Active, T::Suspend) => S::Suspended,
            (S::Suspended, T::Resume) => S::Active,
            (S::Active, T::ChangePlan) => S::Updating,
            (S::Updating, T::PlanChanged) => S::Active,
            (S::Active, T::Upgrade) => S::Updating,
            (S::Updating, T::UpgradeFinished) => S::Active,
            (S::Active | S::Suspended | S::Failed, T::Offboard) => S::Offboarding,
            (S::Offboarding, T::Offboarded) => S::Offboarded,
            (S::Failed, T::RetryProvisioning) => S::Provisioning,
            (from, t) => {
                return Err(Error::Conflict {
                    code: ErrorCode::InvalidTransition,
                    message: format!("cannot {} a tenant that is {}", t.as_str().replace('_', " "), from.as_str()),
                })
            }
        };
        Ok(next)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub plan: String,
    pub region: String,
    pub status: TenantStatus,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Optimistic-concurrency version; the `ETag` of the resource.
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The lifecycle execution (provisioning, retry, plan change, offboarding) started
    /// by the tenant's last status change that starts one; only its steps may change
    /// the tenant (an older execution, redriven, fails with `Tenancy.StaleExecution`).
    /// `None` for tenants written before it was recorded. Not part of the API's
    /// tenant (each operation returns its `execution_id`).
    #[serde(skip)]
    pub lifecycle_execution_id: Option<String>,
    /// The release the tenant is on (`None`: created before any default release and
    /// never upgraded). Named `release` because `version` is the tenant's ETag.
    #[serde(default)]
    pub release: Option<String>,
    /// Set when the tenant is pinned to its release (upgrades refused unless forced).
    #[serde(default)]
    pub pinned: Option<crate::release::Pin>,
}

pub const DEFAULT_REGION: &str = "default";

/// The body of `POST /v1/tenants`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    pub id: Option<String>,
    pub name: String,
    pub plan: String,
    pub region: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The body of `PATCH /v1/tenants/{id}`: only name, region and metadata change here;
/// status and plan have their own operations.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantPatch {
    pub name: Option<String>,
    pub region: Option<String>,
    /// Replaces the metadata object when given.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

fn validate_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.len() > 200 {
        return Err(Error::invalid("tenant name must be 1-200 characters"));
    }
    Ok(())
}

fn validate_region(region: &str) -> Result<()> {
    crate::ids::validate_slug("region", region)
}

fn validate_metadata(m: &serde_json::Map<String, serde_json::Value>) -> Result<()> {
    let size = serde_json::to_vec(m).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > 16 * 1024 {
        return Err(Error::invalid("tenant metadata must be at most 16 KiB of JSON"));
    }
    Ok(())
}

impl NewTenant {
    pub fn into_tenant(self, now: Timestamp) -> Result<Tenant> {
        let id = match self.id {
            Some(id) => {
                crate::ids::validate_slug("tenant", &id)?;
                id
            }
            None => crate::ids::new_tenant_id(),
        };
        validate_name(&self.name)?;
        crate::ids::validate_slug("plan", &self.plan)?;
        let region = self.region.unwrap_or_else(|| DEFAULT_REGION.to_owned());
        validate_region(&region)?;
        let metadata = self.metadata.unwrap_or_default();
        validate_metadata(&metadata)?;
        Ok(Tenant {
            id,
            name: self.name,
            plan: self.plan,
            region,
            status: TenantStatus::Provisioning,
            metadata,
            version: 1,
            created_at: now,
            updated_at: now,
            lifecycle_execution_id: None,
            release: None,
            pinned: None,
        })
    }
}

impl Tenant {
    /// Applies a patch, returning the names of the fields that changed.
    pub fn patch(&mut self, patch: TenantPatch) -> Result<Vec<&'static str>> {
        let mut changed = Vec::new();
        if let Some(name) = patch.name {
            validate_name(&name)?;
            if name != self.name {
                self.name = name;
                changed.push("name");
            }
        }
        if let Some(region) = patch.region {
            validate_region(&region)?;
            if region != self.region {
                self.region = region;
                changed.push("region");
            }
        }
        if let Some(metadata) = patch.metadata {
            validate_metadata(&metadata)?;
            if metadata != self.metadata {
                self.metadata = metadata;
                changed.push("metadata");
            }
        }
        Ok(changed)
    }

    /// Moves the tenant through the state machine.
    pub fn transition(&mut self, t: Transition) -> Result<TenantStatus> {
        let from = self.status;
        self.status = from.apply(t)?;
        Ok(from)
    }

    /// Offboarded tenants are tombstones: kept for the record, changed by nothing.
    pub fn ensure_mutable(&self) -> Result<()> {
        if self.status == TenantStatus::Offboarded {
            return Err(Error::Conflict {
                code: ErrorCode::InvalidTransition,
                message: format!("tenant {:?} is offboarded", self.id),
            });
        }
        Ok(())
    }
}

/// Filters of `GET /v1/tenants`.
#[derive(Debug, Clone, Default)]
pub struct TenantFilter {
    pub plan: Option<String>,
    pub status: Option<TenantStatus>,
    pub region: Option<String>,
    /// The tenants on this release.
    pub release: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TRANSITIONS: [Transition; 11] = [
        Transition::Upgrade,
        Transition::UpgradeFinished,
        Transition::Provisioned,
        Transition::ProvisioningFailed,
        Transition::Suspend,
        Transition::Resume,
        Transition::ChangePlan,
        Transition::PlanChanged,
        Transition::Offboard,
        Transition::Offboarded,
        Transition::RetryProvisioning,
    ];

    #[test]
    fn happy_lifecycle() {
        let mut s = TenantStatus::Provisioning;
        for t in [
            Transition::Provisioned,
            Transition::Suspend,
            Transition::Resume,
            Transition::ChangePlan,
            Transition::PlanChanged,
            Transition::Offboard,
            Transition::Offboarded,
        ] {
            s = s.apply(t).unwrap();
        }
        assert_eq!(s, TenantStatus::Offboarded);
    }

    #[test]
    fn illegal_transitions_are_conflicts() {
        let err = TenantStatus::Suspended.apply(Transition::Suspend).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidTransition);
        assert_eq!(err.to_string(), "cannot suspend a tenant that is suspended");
        assert!(TenantStatus::Provisioning.apply(Transition::Offboard).is_err());
        assert_eq!(TenantStatus::Failed.apply(Transition::RetryProvisioning).unwrap(), TenantStatus::Provisioning);
        let err = TenantStatus::Active.apply(Transition::RetryProvisioning).unwrap_err();
        assert_eq!(err.to_string(), "cannot retry provisioning a tenant that is active");
    }

    proptest! {
        /// Whatever sequence of transitions is attempted, offboarded is terminal and
        /// every accepted step is one the diagram allows.
        #[test]
        fn offboarded_is_terminal(steps in proptest::collection::vec(0usize..11, 0..40)) {
            let mut s = TenantStatus::Provisioning;
            for i in steps {
                let before = s;
                if let Ok(next) = s.apply(TRANSITIONS[i]) {
                    prop_assert_ne!(before, TenantStatus::Offboarded);
                    s = next;
                }
            }
        }
    }
}
