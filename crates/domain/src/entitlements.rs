//! Entitlements: what a tenant may use, its plan's features, config values and quotas
//! with the tenant's own overrides laid over them until they expire.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plan::{validate_config, validate_name, Plan, QuotaPeriod};
use crate::time::Timestamp;
use crate::Result;

/// The body of `PUT /v1/tenants/{id}/overrides`: replaces the tenant's overrides whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverridesSpec {
    /// Features turned on (`true`) or off (`false`) whatever the plan says.
    #[serde(default)]
    pub features: BTreeMap<String, bool>,
    /// Quota limits replacing the plan's (a quota the plan lacks is added, hard and
    /// without a period).
    #[serde(default)]
    pub quotas: BTreeMap<String, u64>,
    /// Config values replacing or adding to the plan's.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, Object>)]
    pub config: BTreeMap<String, serde_json::Value>,
    /// When the overrides stop applying (RFC 3339); absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// A tenant's overrides as set (empty, without `updated_at`, when it has none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Overrides {
    pub tenant_id: String,
    pub features: BTreeMap<String, bool>,
    pub quotas: BTreeMap<String, u64>,
    #[schema(value_type = BTreeMap<String, Object>)]
    pub config: BTreeMap<String, serde_json::Value>,
    /// When they stop applying; absent: never. Expired overrides are still shown here
    /// (the effective view ignores them) until cleared or replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// When they were last set; absent when the tenant has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
}

impl OverridesSpec {
    /// Validates the names and values and builds the stored overrides.
    pub fn into_overrides(self, tenant_id: &str, now: Timestamp) -> Result<Overrides> {
        for name in self.features.keys() {
            validate_name("feature", name)?;
        }
        for name in self.quotas.keys() {
            validate_name("quota", name)?;
        }
        for (key, value) in &self.config {
            validate_config(key, value)?;
        }
        Ok(Overrides {
            tenant_id: tenant_id.to_owned(),
            features: self.features,
            quotas: self.quotas,
            config: self.config,
            expires_at: self.expires_at,
            updated_at: Some(now),
        })
    }
}

impl Overrides {
    /// No overrides: the plan alone applies.
    pub fn none(tenant_id: &str) -> Self {
        Overrides {
            tenant_id: tenant_id.to_owned(),
            features: BTreeMap::new(),
            quotas: BTreeMap::new(),
            config: BTreeMap::new(),
            expires_at: None,
            updated_at: None,
        }
    }

    /// Whether the overrides still apply at `now`.
    pub fn applies_at(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|t| now < t)
    }
}

/// A hard quota whose usage is over the limit a plan change would give it (see
/// `entitlement-violation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QuotaViolation {
    pub quota: String,
    /// Usage now (in the current period for a period quota).
    pub used: u64,
    /// The limit on the new plan, the tenant's unexpired overrides included.
    pub limit: u64,
}

/// The hard quotas of `next` (a tenant's effective entitlements on the plan it would
/// move to) that `usage` (by quota, in current periods) is over, by name. Soft quotas
/// never block; a quota `next` does not have is not limited there.
pub fn violations(next: &Entitlements, usage: &BTreeMap<String, u64>) -> Vec<QuotaViolation> {
    next.quotas
        .iter()
        .filter(|(_, q)| !q.soft)
        .filter_map(|(name, q)| {
            let used = usage.get(name).copied().unwrap_or(0);
            (used > q.limit).then(|| QuotaViolation { quota: name.clone(), used, limit: q.limit })
        })
        .collect()
}

/// One quota in the effective view. The quota ledger adds `used`, `remaining` and
/// `resets_at` as optional members; this type holds the limits only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EffectiveQuota {
    pub limit: u64,
    pub soft: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<QuotaPeriod>,
    /// Usage in the current period (all time for a quota without one), from the quota
    /// ledger; absent where the view is computed without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<u64>,
    /// `limit - used`, 0 when a soft quota is over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
    /// When the current period ends and usage starts again at 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<Timestamp>,
}

impl EffectiveQuota {
    /// The terms the quota ledger enforces.
    pub fn terms(&self) -> crate::plan::Quota {
        crate::plan::Quota { limit: self.limit, period: self.period, soft: self.soft }
    }
}

/// The answer of `GET /v1/tenants/{id}/entitlements`: the plan with the unexpired
/// overrides applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Entitlements {
    pub tenant_id: String,
    pub plan: String,
    /// Every feature named by the plan or the overrides: `true` on, `false` turned off.
    pub features: BTreeMap<String, bool>,
    #[schema(value_type = BTreeMap<String, Object>)]
    pub config: BTreeMap<String, serde_json::Value>,
    pub quotas: BTreeMap<String, EffectiveQuota>,
    /// When the overrides in this view stop applying; absent when none apply or they
    /// do not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides_expire_at: Option<Timestamp>,
}

/// The tenant's effective entitlements at `now`: the plan's, with `overrides` laid over
/// them unless they have expired.
pub fn effective(tenant_id: &str, plan: &Plan, overrides: Option<&Overrides>, now: Timestamp) -> Entitlements {
    let mut features: BTreeMap<String, bool> = plan.features.iter().map(|f| (f.clone(), true)).collect();
    let mut config = plan.config.clone();
    let mut quotas: BTreeMap<String, EffectiveQuota> = plan
        .quotas
        .iter()
        .map(|(k, q)| {
            (k.clone(), EffectiveQuota { limit: q.limit, soft: q.soft, period: q.period, ..Default::default() })
        })
        .collect();
    let mut overrides_expire_at = None;
    if let Some(o) = overrides.filter(|o| o.applies_at(now)) {
        features.extend(o.features.iter().map(|(k, v)| (k.clone(), *v)));
        config.extend(o.config.iter().map(|(k, v)| (k.clone(), v.clone())));
        for (name, limit) in &o.quotas {
            quotas
                .entry(name.clone())
                .and_modify(|q| q.limit = *limit)
                .or_insert(EffectiveQuota { limit: *limit, ..Default::default() });
        }
        overrides_expire_at = o.expires_at;
    }
    Entitlements {
        tenant_id: tenant_id.to_owned(),
        plan: plan.id.clone(),
        features,
        config,
        quotas,
        overrides_expire_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PlanSpec;
    use serde_json::json;

    fn plan() -> Plan {
        serde_json::from_value::<PlanSpec>(json!({
            "name": "Pro", "isolation": "pool", "features": ["sso", "audit"],
            "quotas": {"seats": 10, "api_calls": {"limit": 1000, "period": "month", "soft": true}},
            "config": {"theme": "dark", "max_upload_mb": 50}
        }))
        .unwrap()
        .into_plan("pro", Timestamp(0))
        .unwrap()
    }

    fn overrides(v: serde_json::Value) -> Overrides {
        serde_json::from_value::<OverridesSpec>(v).unwrap().into_overrides("t1", Timestamp(0)).unwrap()
    }

    #[test]
    fn overrides_turn_features_off_and_on_and_replace_limits() {
        let o = overrides(json!({
            "features": {"sso": false, "beta": true},
            "quotas": {"api_calls": 5000, "projects": 3},
            "config": {"theme": "light", "banner": {"text": "hi"}}
        }));
        let e = effective("t1", &plan(), Some(&o), Timestamp(1));
        assert_eq!(e.features, BTreeMap::from([("audit".into(), true), ("beta".into(), true), ("sso".into(), false)]));
        assert_eq!(
            e.quotas["api_calls"],
            EffectiveQuota { limit: 5000, soft: true, period: Some(QuotaPeriod::Month), ..Default::default() }
        );
        assert_eq!(e.quotas["seats"].limit, 10);
        assert_eq!(e.quotas["projects"], EffectiveQuota { limit: 3, ..Default::default() });
        assert_eq!(e.config["theme"], "light");
        assert_eq!(e.config["max_upload_mb"], 50);
        assert_eq!(e.config["banner"], json!({"text": "hi"}));
        assert_eq!((e.plan.as_str(), e.overrides_expire_at), ("pro", None));
    }

    #[test]
    fn expired_overrides_are_ignored() {
        let o = overrides(json!({"features": {"sso": false}, "quotas": {"seats": 1},
                                 "expires_at": "1970-01-01T00:00:01Z"}));
        let before = effective("t1", &plan(), Some(&o), Timestamp(999));
        assert_eq!((before.features["sso"], before.quotas["seats"].limit), (false, 1));
        assert_eq!(before.overrides_expire_at, Some(Timestamp(1000)));
        let after = effective("t1", &plan(), Some(&o), Timestamp(1000));
        assert_eq!(after, effective("t1", &plan(), None, Timestamp(1000)));
        assert_eq!((after.features["sso"], after.quotas["seats"].limit), (true, 10));
    }

    #[test]
    fn bad_names_and_values_are_refused() {
        let bad = |v| serde_json::from_value::<OverridesSpec>(v).unwrap().into_overrides("t1", Timestamp(0)).is_err();
        assert!(bad(json!({"features": {"a b": true}})));
        assert!(bad(json!({"quotas": {"": 1}})));
        assert!(bad(json!({"config": {"k": null}})));
        assert!(bad(json!({"config": {"k": [1]}})));
        assert!(serde_json::from_value::<OverridesSpec>(json!({"quotas": {"x": -1}})).is_err());
        assert!(serde_json::from_value::<OverridesSpec>(json!({"feature": {}})).is_err());
        assert!(serde_json::from_value::<OverridesSpec>(json!({"expires_at": "tomorrow"})).is_err());
    }
}
