//! Releases: the versions of the product a tenant can be on, each with an optional
//! configuration bundle (bytes in the blob store, their SHA-256 recorded) and the state
//! machine that upgrades one tenant to it. One release may be the fleet's default: a
//! tenant created while there is one starts on it.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;
use crate::{Error, ErrorCode, Result};

/// The longest release version.
pub const MAX_VERSION_LEN: usize = 64;
/// The longest release description.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// The longest pin reason.
pub const MAX_PIN_REASON_LEN: usize = 512;

/// The body of `PUT /v1/releases/{version}`: creates the release or replaces its
/// description and upgrade workflow (a bundle is uploaded apart, `PUT
/// /v1/releases/{version}/bundle`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSpec {
    #[serde(default)]
    pub description: Option<String>,
    /// The state machine (`PUT /v1/state-machines/{name}`) that upgrades one tenant to
    /// this release; without one, the built-in `tenancy.tenant.upgrade`.
    #[serde(default)]
    pub upgrade_workflow: Option<String>,
    /// Makes this release the fleet's default (the one new tenants start on); the
    /// previous default stops being it. `false` or absent leaves the default as it is.
    #[serde(default)]
    pub default: bool,
}

/// A release's configuration bundle as stored: where, how big, and its SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Bundle {
    /// Lowercase hex SHA-256 of the bytes, computed while they were uploaded.
    pub sha256: String,
    pub size: u64,
    pub content_type: String,
    /// The blob store object (a path under the blob store's URL).
    pub location: String,
    pub uploaded_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Release {
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_workflow: Option<String>,
    /// Whether this is the fleet's default release.
    pub default: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<Bundle>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

fn invalid(message: String) -> Error {
    Error::InvalidRequest { code: ErrorCode::InvalidRelease, message }
}

/// A release version: 1-64 characters of `A-Z a-z 0-9 . _ + -` (semver and most
/// other version schemes fit).
pub fn validate_version(version: &str) -> Result<()> {
    let ok = !version.is_empty()
        && version.len() <= MAX_VERSION_LEN
        && version.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "release version {version:?} is invalid: use 1-{MAX_VERSION_LEN} letters, digits and '.', '_', '+', '-'"
        )))
    }
}

impl ReleaseSpec {
    /// The release this spec describes, new at `now` (the store keeps `created_at` and
    /// the bundle of a release it replaces).
    pub fn into_release(self, version: &str, now: Timestamp) -> Result<Release> {
        validate_version(version)?;
        if let Some(d) = &self.description {
            if d.len() > MAX_DESCRIPTION_LEN {
                return Err(invalid(format!("description must be at most {MAX_DESCRIPTION_LEN} bytes")));
            }
        }
        if let Some(w) = &self.upgrade_workflow {
            if w.is_empty() || w.len() > 80 {
                return Err(invalid(format!("upgrade_workflow {w:?} is not a state machine name")));
            }
        }
        Ok(Release {
            version: version.to_owned(),
            description: self.description,
            upgrade_workflow: self.upgrade_workflow,
            default: self.default,
            bundle: None,
            created_at: now,
            updated_at: now,
        })
    }
}

/// Why a tenant is pinned to its release: a pinned tenant is not upgraded (409
/// `tenant-pinned`) unless the upgrade says `force`, and rollouts skip it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Pin {
    pub reason: String,
    pub pinned_at: Timestamp,
}

/// The body of `PUT /v1/tenants/{id}/pin`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PinRequest {
    /// Why (1-512 characters), shown with the tenant and in the audit log.
    pub reason: String,
}

impl PinRequest {
    pub fn into_pin(self, now: Timestamp) -> Result<Pin> {
        if self.reason.trim().is_empty() || self.reason.len() > MAX_PIN_REASON_LEN {
            return Err(Error::invalid(format!("a pin reason must be 1-{MAX_PIN_REASON_LEN} characters")));
        }
        Ok(Pin { reason: self.reason, pinned_at: now })
    }
}

/// The body of `POST /v1/tenants/{id}/upgrade`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradeRequest {
    /// The release to upgrade to (it must exist: else 400 `invalid-release`).
    pub version: String,
    /// Upgrades a pinned tenant anyway (the audit entry notes it).
    #[serde(default)]
    pub force: bool,
}

/// The answer of `GET /v1/releases`: every release, by version.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReleaseList {
    pub items: Vec<Release>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for ok in ["1.2.3", "v2", "1.0.0-rc.1+build.5", "2026_12_06", &"9".repeat(64)] {
            validate_version(ok).unwrap();
        }
        for bad in ["", "a b", "1/2", "ü", &"9".repeat(65), "1.0:0"] {
            let err = validate_version(bad).unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidRelease, "{bad:?}");
        }
    }

    #[test]
    fn pins_need_a_reason() {
        assert!(PinRequest { reason: " ".into() }.into_pin(Timestamp(0)).is_err());
        assert!(PinRequest { reason: "x".repeat(513) }.into_pin(Timestamp(0)).is_err());
        assert_eq!(PinRequest { reason: "audit".into() }.into_pin(Timestamp(1)).unwrap().reason, "audit");
    }
}
