//! Plans: isolation model, features and quotas.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ratelimit::RateLimit;
use crate::time::Timestamp;
use crate::{Error, ErrorCode, Result};

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

/// Names of lifecycle state machines must start with this: the namespace of the
/// built-in ones, whose rules they follow (they may use the built-in lifecycle steps
/// and are started only by the lifecycle, never by `POST /v1/executions`).
pub const LIFECYCLE_MACHINE_PREFIX: &str = "tenancy.lifecycle.";

/// The lifecycle state machines a plan names instead of the built-in ones (each an
/// existing `tenancy.lifecycle.*` state machine; setting them is admin-only). Absent:
/// the built-in one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanWorkflows {
    /// Provisions a tenant created on the plan (and retries it); input `{tenant_id,
    /// plan, region, started_by}` like `tenancy.tenant.provision`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision: Option<String>,
    /// Moves a tenant onto the plan (the target plan's machine runs); input
    /// `{tenant_id, plan, previous_plan, started_by}` like `tenancy.tenant.change-plan`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_plan: Option<String>,
    /// Offboards a tenant on the plan; input `{tenant_id, previous_plan, started_by}`
    /// like `tenancy.tenant.offboard`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offboard: Option<String>,
}

impl PlanWorkflows {
    pub fn is_empty(&self) -> bool {
        self.provision.is_none() && self.change_plan.is_none() && self.offboard.is_none()
    }

    /// `(member, state machine)` of the machines named.
    pub fn named(&self) -> Vec<(&'static str, &str)> {
        [("provision", &self.provision), ("change_plan", &self.change_plan), ("offboard", &self.offboard)]
            .into_iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
            .collect()
    }

    fn validate(&self) -> Result<()> {
        for (member, name) in self.named() {
            if !name.starts_with(LIFECYCLE_MACHINE_PREFIX) || name.len() == LIFECYCLE_MACHINE_PREFIX.len() {
                return Err(Error::InvalidRequest {
                    code: ErrorCode::InvalidPlanWorkflow,
                    message: format!(
                        "workflows.{member}: {name:?} is not a lifecycle state machine: their names start with \
                         {LIFECYCLE_MACHINE_PREFIX:?}"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// A change of [`PlanWorkflows`] in a merge patch: a member given as `null` goes back
/// to the built-in machine.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanWorkflowsPatch {
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, nullable)]
    pub provision: Option<Option<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, nullable)]
    pub change_plan: Option<Option<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, nullable)]
    pub offboard: Option<Option<String>>,
}

/// The body of `PUT /v1/plans/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanSpec {
    pub name: String,
    pub isolation: Isolation,
    #[serde(default)]
    pub features: Vec<String>,
    #[serde(default)]
    pub quotas: BTreeMap<String, QuotaSpec>,
    /// The plan's own lifecycle state machines (admin-only).
    #[serde(default)]
    pub workflows: PlanWorkflows,
    /// Static configuration values (string, number, boolean or object) by key; keys
    /// follow the rules of feature names.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, Object>)]
    pub config: BTreeMap<String, serde_json::Value>,
    /// The API rate limit of each tenant on the plan (the bucket all of a tenant's keys
    /// share), instead of the server's `--rate-limit-tenant-*` (docs/rate-limits.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// The regions the plan is offered in (a tenant is created on it, or moves to it,
    /// only in one of them); empty or absent: every region.
    #[serde(default)]
    pub regions: Vec<String>,
    /// The most tenants that may hold the plan at once (every tenant on it but the
    /// offboarded); absent: no cap.
    #[serde(default)]
    pub max_tenants: Option<u64>,
    /// Whether self-service signup may put new tenants on the plan (default false).
    #[serde(default)]
    pub self_service: bool,
}

/// The body of `PATCH /v1/plans/{id}`: a JSON merge patch (RFC 7386). Absent members
/// stay as they are; `features` replaces the list; `quotas` is merged by name, a quota
/// set to `null` is removed (`"quotas": null` removes them all). `name` and
/// `isolation` cannot be removed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanPatch {
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Isolation>)]
    pub isolation: Option<Option<Isolation>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>, nullable)]
    pub features: Option<Option<Vec<String>>>,
    /// Quotas to add or replace by name; `null` removes one.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BTreeMap<String, QuotaSpec>>, nullable)]
    pub quotas: Option<Option<BTreeMap<String, Option<QuotaSpec>>>>,
    /// Lifecycle state machines to set by member; `null` (a member or the whole)
    /// goes back to the built-in ones. Admin-only.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<PlanWorkflowsPatch>, nullable)]
    pub workflows: Option<Option<PlanWorkflowsPatch>>,
    /// Config values to add or replace by key; `null` removes one (`"config": null`
    /// removes them all).
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BTreeMap<String, Object>>, nullable)]
    pub config: Option<Option<BTreeMap<String, serde_json::Value>>>,
    /// The tenants' API rate limit; `null` goes back to the server's.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<RateLimit>, nullable)]
    pub rate_limit: Option<Option<RateLimit>>,
    /// Replaces the regions; `null` or `[]`: offered everywhere.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>, nullable)]
    pub regions: Option<Option<Vec<String>>>,
    /// Sets the cap of tenants; `null` removes it.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u64>, nullable)]
    pub max_tenants: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<bool>)]
    pub self_service: Option<Option<bool>>,
}

/// A member that is present (`Some`), `null` included (`Some(None)`); absent is `None`
/// through `#[serde(default)]`.
fn present<'de, D, T>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Plan {
    pub id: String,
    pub name: String,
    pub isolation: Isolation,
    pub features: Vec<String>,
    pub quotas: BTreeMap<String, Quota>,
    /// The plan's own lifecycle state machines; absent when it uses the built-in ones.
    #[serde(default, skip_serializing_if = "PlanWorkflows::is_empty")]
    pub workflows: PlanWorkflows,
    /// Static configuration values by key.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, Object>)]
    pub config: BTreeMap<String, serde_json::Value>,
    /// The API rate limit of each of the plan's tenants; absent: the server's
    /// (`--rate-limit-tenant-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// The regions the plan is offered in, sorted; empty: every region.
    #[serde(default)]
    pub regions: Vec<String>,
    /// The most tenants (all but the offboarded) that may hold the plan; `null`: no cap.
    #[serde(default)]
    pub max_tenants: Option<u64>,
    /// Whether self-service signup may put new tenants on the plan.
    #[serde(default)]
    pub self_service: bool,
    /// Optimistic-concurrency version; the `ETag` of the resource.
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Most regions a plan names.
pub const MAX_REGIONS: usize = 100;
/// Highest `max_tenants` (it is stored as a signed 64-bit number).
pub const MAX_TENANTS_CAP: u64 = i64::MAX as u64;

pub(crate) fn validate_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!("{what} {name:?} is invalid: use 1-64 letters, digits, '-', '_', '.' or ':'")))
    }
}

/// A static config value's key and value: the key named like a feature, the value a
/// string, number, boolean or object (no `null`, no array at the top).
pub fn validate_config(key: &str, value: &serde_json::Value) -> Result<()> {
    validate_name("config key", key)?;
    match value {
        serde_json::Value::Null | serde_json::Value::Array(_) => {
            Err(Error::invalid(format!("config {key:?}: a value is a string, number, boolean or object")))
        }
        _ => Ok(()),
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
        self.workflows.validate()?;
        for (key, value) in &self.config {
            validate_config(key, value)?;
        }
        if let Some(limit) = &self.rate_limit {
            limit.validate("rate_limit")?;
        }
        let mut regions = self.regions;
        if regions.len() > MAX_REGIONS {
            return Err(Error::invalid(format!("a plan names at most {MAX_REGIONS} regions")));
        }
        for r in &regions {
            crate::ids::validate_slug("region", r)?;
        }
        regions.sort();
        regions.dedup();
        if self.max_tenants.is_some_and(|m| m > MAX_TENANTS_CAP) {
            return Err(Error::invalid(format!("max_tenants must be at most {MAX_TENANTS_CAP}")));
        }
        Ok(Plan {
            id: id.to_owned(),
            name: self.name,
            isolation: self.isolation,
            features,
            quotas,
            workflows: self.workflows,
            config: self.config,
            rate_limit: self.rate_limit,
            regions,
            max_tenants: self.max_tenants,
            self_service: self.self_service,
            version: 1,
            created_at: now,
            updated_at: now,
        })
    }
}

impl Plan {
    /// The spec that [`PlanSpec::into_plan`] turns back into this plan.
    pub fn spec(&self) -> PlanSpec {
        PlanSpec {
            name: self.name.clone(),
            isolation: self.isolation,
            features: self.features.clone(),
            quotas: self.quotas.iter().map(|(k, q)| (k.clone(), QuotaSpec::Full(q.clone()))).collect(),
            workflows: self.workflows.clone(),
            config: self.config.clone(),
            rate_limit: self.rate_limit,
            regions: self.regions.clone(),
            max_tenants: self.max_tenants,
            self_service: self.self_service,
        }
    }

    /// Whether the plan is offered in `region` (a plan without regions is offered in
    /// every one).
    pub fn offered_in(&self, region: &str) -> bool {
        self.regions.is_empty() || self.regions.iter().any(|r| r == region)
    }

    /// The spec of this plan with `patch` applied (validated by `into_plan`), and the
    /// names of the fields the patch gave.
    pub fn patched(&self, patch: PlanPatch) -> Result<(PlanSpec, Vec<&'static str>)> {
        let mut spec = self.spec();
        let mut given = Vec::new();
        if let Some(name) = patch.name {
            spec.name = name.ok_or_else(|| Error::invalid("a plan's name cannot be removed"))?;
            given.push("name");
        }
        if let Some(isolation) = patch.isolation {
            spec.isolation = isolation.ok_or_else(|| Error::invalid("a plan's isolation cannot be removed"))?;
            given.push("isolation");
        }
        if let Some(features) = patch.features {
            spec.features = features.unwrap_or_default();
            given.push("features");
        }
        if let Some(quotas) = patch.quotas {
            match quotas {
                None => spec.quotas.clear(),
                Some(changes) => {
                    for (name, quota) in changes {
                        match quota {
                            Some(q) => spec.quotas.insert(name, q),
                            None => spec.quotas.remove(&name),
                        };
                    }
                }
            }
            given.push("quotas");
        }
        if let Some(workflows) = patch.workflows {
            match workflows {
                None => spec.workflows = PlanWorkflows::default(),
                Some(w) => {
                    for (change, member) in [
                        (w.provision, &mut spec.workflows.provision),
                        (w.change_plan, &mut spec.workflows.change_plan),
                        (w.offboard, &mut spec.workflows.offboard),
                    ] {
                        if let Some(to) = change {
                            *member = to;
                        }
                    }
                }
            }
            given.push("workflows");
        }
        if let Some(config) = patch.config {
            match config {
                None => spec.config.clear(),
                Some(changes) => {
                    for (key, value) in changes {
                        match value {
                            serde_json::Value::Null => spec.config.remove(&key),
                            v => spec.config.insert(key, v),
                        };
                    }
                }
            }
            given.push("config");
        }
        if let Some(limit) = patch.rate_limit {
            spec.rate_limit = limit;
            given.push("rate_limit");
        }
        if let Some(regions) = patch.regions {
            spec.regions = regions.unwrap_or_default();
            given.push("regions");
        }
        if let Some(max) = patch.max_tenants {
            spec.max_tenants = max;
            given.push("max_tenants");
        }
        if let Some(self_service) = patch.self_service {
            spec.self_service =
                self_service.ok_or_else(|| Error::invalid("self_service is true or false, not null"))?;
            given.push("self_service");
        }
        Ok((spec, given))
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

    #[test]
    fn merge_patch() {
        let spec: PlanSpec = serde_json::from_value(serde_json::json!({
            "name": "Pro", "isolation": "pool", "features": ["sso"],
            "quotas": {"seats": 10, "api_calls": {"limit": 1000, "period": "month"}}
        }))
        .unwrap();
        let plan = spec.into_plan("pro", Timestamp(0)).unwrap();
        let patch = |v| serde_json::from_value::<PlanPatch>(v).unwrap();
        let (spec, given) = plan.patched(patch(serde_json::json!({"name": "Pro 2"}))).unwrap();
        let next = spec.into_plan("pro", Timestamp(0)).unwrap();
        assert_eq!(given, ["name"]);
        assert_eq!((next.name.as_str(), &next.quotas, &next.features), ("Pro 2", &plan.quotas, &plan.features));
        let (spec, _) = plan.patched(patch(serde_json::json!({"quotas": {"seats": null, "projects": 3}}))).unwrap();
        let next = spec.into_plan("pro", Timestamp(0)).unwrap();
        assert_eq!(next.quotas.keys().collect::<Vec<_>>(), ["api_calls", "projects"]);
        assert_eq!(next.quotas["api_calls"], plan.quotas["api_calls"]);
        let (spec, _) = plan.patched(patch(serde_json::json!({"quotas": null, "features": null}))).unwrap();
        assert!(spec.quotas.is_empty() && spec.features.is_empty());
        assert!(plan.patched(patch(serde_json::json!({"name": null}))).is_err());
        assert!(plan.patched(patch(serde_json::json!({"isolation": null}))).is_err());
        assert!(serde_json::from_value::<PlanPatch>(serde_json::json!({"nme": "x"})).is_err());
    }

    #[test]
    fn workflows_are_lifecycle_machines_and_merge_by_member() {
        let spec = |w: serde_json::Value| -> PlanSpec {
            serde_json::from_value(serde_json::json!({"name": "x", "isolation": "pool", "workflows": w})).unwrap()
        };
        let bad = spec(serde_json::json!({"provision": "mine"})).into_plan("x", Timestamp(0)).unwrap_err();
        assert!(matches!(bad, Error::InvalidRequest { code: ErrorCode::InvalidPlanWorkflow, .. }), "{bad:?}");
        assert!(spec(serde_json::json!({"provision": "tenancy.lifecycle."})).into_plan("x", Timestamp(0)).is_err());
        assert!(serde_json::from_value::<PlanSpec>(
            serde_json::json!({"name": "x", "isolation": "pool", "workflows": {"provison": "tenancy.lifecycle.a"}})
        )
        .is_err());
        let plan = spec(serde_json::json!({"provision": "tenancy.lifecycle.a", "offboard": "tenancy.lifecycle.b"}))
            .into_plan("x", Timestamp(0))
            .unwrap();
        let patch = |v| serde_json::from_value::<PlanPatch>(v).unwrap();
        let (next, given) = plan
            .patched(patch(serde_json::json!({"workflows": {"provision": null, "change_plan": "tenancy.lifecycle.c"}})))
            .unwrap();
        assert_eq!(given, ["workflows"]);
        assert_eq!(
            next.workflows,
            PlanWorkflows {
                provision: None,
                change_plan: Some("tenancy.lifecycle.c".into()),
                offboard: Some("tenancy.lifecycle.b".into())
            }
        );
        let (next, _) = plan.patched(patch(serde_json::json!({"name": "y"}))).unwrap();
        assert_eq!(next.workflows, plan.workflows, "absent: kept");
        let (next, _) = plan.patched(patch(serde_json::json!({"workflows": null}))).unwrap();
        assert!(next.workflows.is_empty());
    }

    #[test]
    fn rate_limit_validates_and_patches() {
        let spec = |r: serde_json::Value| -> PlanSpec {
            serde_json::from_value(serde_json::json!({"name": "x", "isolation": "pool", "rate_limit": r})).unwrap()
        };
        let plan = spec(serde_json::json!({"per_second": 5, "burst": 10})).into_plan("x", Timestamp(0)).unwrap();
        assert_eq!(plan.rate_limit, Some(RateLimit::new(5, 10)));
        assert!(spec(serde_json::json!({"per_second": 0, "burst": 10})).into_plan("x", Timestamp(0)).is_err());
        assert!(spec(serde_json::json!({"per_second": 5, "burst": 0})).into_plan("x", Timestamp(0)).is_err());
        let patch = |v| serde_json::from_value::<PlanPatch>(v).unwrap();
        let (next, given) = plan.patched(patch(serde_json::json!({"name": "y"}))).unwrap();
        assert_eq!((next.rate_limit, given), (plan.rate_limit, vec!["name"]), "absent: kept");
        let (next, _) = plan.patched(patch(serde_json::json!({"rate_limit": {"per_second": 1, "burst": 2}}))).unwrap();
        assert_eq!(next.rate_limit, Some(RateLimit::new(1, 2)));
        let (next, given) = plan.patched(patch(serde_json::json!({"rate_limit": null}))).unwrap();
        assert_eq!((next.rate_limit, given), (None, vec!["rate_limit"]));
    }

    #[test]
    fn availability_validates_and_patches() {
        let spec = |v: serde_json::Value| -> PlanSpec { serde_json::from_value(v).unwrap() };
        let plan =
            spec(serde_json::json!({"name": "x", "isolation": "pool", "regions": ["us-east", "eu-west", "us-east"],
                                           "max_tenants": 3, "self_service": true}))
            .into_plan("x", Timestamp(0))
            .unwrap();
        assert_eq!(
            (plan.regions.as_slice(), plan.max_tenants, plan.self_service),
            (&["eu-west".to_owned(), "us-east".to_owned()][..], Some(3), true)
        );
        assert!(plan.offered_in("eu-west") && !plan.offered_in("ap-south"));
        let everywhere =
            spec(serde_json::json!({"name": "x", "isolation": "pool"})).into_plan("x", Timestamp(0)).unwrap();
        assert!(everywhere.offered_in("anywhere") && everywhere.max_tenants.is_none() && !everywhere.self_service);
        assert!(spec(serde_json::json!({"name": "x", "isolation": "pool", "regions": ["Bad Region"]}))
            .into_plan("x", Timestamp(0))
            .is_err());
        let patch = |v| serde_json::from_value::<PlanPatch>(v).unwrap();
        let (next, given) = plan.patched(patch(serde_json::json!({"regions": null, "max_tenants": null}))).unwrap();
        assert_eq!(given, ["regions", "max_tenants"]);
        assert!(next.regions.is_empty() && next.max_tenants.is_none() && next.self_service);
        let (next, _) = plan.patched(patch(serde_json::json!({"name": "y"}))).unwrap();
        assert_eq!((next.regions.len(), next.max_tenants), (2, Some(3)), "absent: kept");
        assert!(plan.patched(patch(serde_json::json!({"self_service": null}))).is_err());
    }

    #[test]
    fn config_validates_and_merges_by_key() {
        let spec = |c: serde_json::Value| -> PlanSpec {
            serde_json::from_value(serde_json::json!({"name": "x", "isolation": "pool", "config": c})).unwrap()
        };
        assert!(spec(serde_json::json!({"bad key": 1})).into_plan("x", Timestamp(0)).is_err());
        assert!(spec(serde_json::json!({"k": [1, 2]})).into_plan("x", Timestamp(0)).is_err());
        let plan = spec(serde_json::json!({"theme": "dark", "limits": {"a": 1}, "beta": true}))
            .into_plan("x", Timestamp(0))
            .unwrap();
        let patch = |v| serde_json::from_value::<PlanPatch>(v).unwrap();
        let (next, given) = plan.patched(patch(serde_json::json!({"config": {"theme": null, "n": 2.5}}))).unwrap();
        assert_eq!(given, ["config"]);
        assert_eq!(next.config.keys().collect::<Vec<_>>(), ["beta", "limits", "n"]);
        let (next, _) = plan.patched(patch(serde_json::json!({"config": null}))).unwrap();
        assert!(next.config.is_empty());
    }
}
