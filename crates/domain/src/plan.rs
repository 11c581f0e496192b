//! Plans: isolation model, features and quotas.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;
use crate::{Error, Result};

/// How a tenant's data is kept: in shared infrastructure (`pool`) or dedicated
/// infrastructure (`silo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    Pool,
    Silo,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Pool => "pool",
            Isolation::Silo => "silo",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pool" => Some(Isolation::Pool),
            "silo" => Some(Isolation::Silo),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum QuotaPeriod {
    Day,
    Month,
}

/// A quota as written by callers: a bare number (a hard, non-resetting limit) or the
/// full form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum QuotaSpec {
    Limit(u64),
    Full(Quota),
}

/// A quota in its normalized form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub limit: u64,
    /// When usage resets; absent means never (a capacity such as "seats").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<QuotaPeriod>,
    /// A soft quota reports `QuotaExceeded` but still allows consumption.
    #[serde(default)]
    pub soft: bool,
}

impl From<QuotaSpec> for Quota {
    fn from(spec: QuotaSpec) -> Self {
        match spec {
            QuotaSpec::Limit(limit) => Quota { limit, period: None, soft: false },
            QuotaSpec::Full(q) => q,
        }
    }
}

/// The body of `PUT /v1/plans/{id}`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanSpec {
    pub name: String,
    pub isolation: Isolation,
    #[serde(default)]
    pub features: Vec<String>,
    #[serde(default)]
    pub quotas: BTreeMap<String, QuotaSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Plan {
    pub id: String,
    pub name: String,
    pub isolation: Isolation,
    pub features: Vec<String>,
    pub quotas: BTreeMap<String, Quota>,
    /// Optimistic-concurrency version; the `ETag` of the resource.
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

fn validate_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!("{what} {name:?} is invalid: use 1-64 letters, digits, '-', '_', '.' or ':'")))
    }
}

impl PlanSpec {
    /// Validates the spec and builds the plan it describes (version 1, new timestamps).
    pub fn into_plan(self, id: &str, now: Timestamp) -> Result<Plan> {
        crate::ids::validate_slug("plan", id)?;
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err(Error::invalid("plan name must be 1-200 characters"));
        }
        let mut features = self.features;
        for f in &features {
            validate_name("feature", f)?;
        }
        features.sort();
        features.dedup();
        let mut quotas = BTreeMap::new();
        for (name, spec) in self.quotas {
            validate_name("quota", &name)?;
            quotas.insert(name, Quota::from(spec));
        }
        Ok(Plan {
            id: id.to_owned(),
            name: self.name,
            isolation: self.isolation,
            features,
            quotas,
            version: 1,
            created_at: now,
            updated_at: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_normalize() {
        let spec: PlanSpec = serde_json::from_value(serde_json::json!({
            "name": "Pro", "isolation": "pool", "features": ["sso", "audit", "sso"],
            "quotas": {"seats": 10, "api_calls": {"limit": 1000, "period": "month", "soft": true}}
        }))
        .unwrap();
        let plan = spec.into_plan("pro", Timestamp(0)).unwrap();
        assert_eq!(plan.features, ["audit", "sso"]);
        assert_eq!(plan.quotas["seats"], Quota { limit: 10, period: None, soft: false });
        assert_eq!(plan.quotas["api_calls"].period, Some(QuotaPeriod::Month));
    }

    #[test]
    fn rejects_bad_fields() {
        let bad = serde_json::json!({"name": "x", "isolation": "shared"});
        assert!(serde_json::from_value::<PlanSpec>(bad).is_err());
        let spec: PlanSpec =
            serde_json::from_value(serde_json::json!({"name": "x", "isolation": "pool", "features": ["a b"]})).unwrap();
        assert!(spec.into_plan("x", Timestamp(0)).is_err());
    }
}
