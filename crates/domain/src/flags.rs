//! Feature flags over the OpenFeature Remote Evaluation Protocol (OFREP): the
//! protocol's bodies and the one pure evaluation of a flag against a tenant's terms
//! (docs/flags.md).
//!
//! A tenant's flags are its effective entitlements ([`crate::entitlements`]): every
//! feature is a boolean flag (on when its plan or its overrides turn it on), every
//! config value a flag of the value's type. A feature some other plan names, which the
//! tenant's terms do not, is off for it; any other key is `FLAG_NOT_FOUND`.
//!
//! The wire format is OFREP's (`service/openapi.yaml` of open-feature/protocol):
//! camelCase members, reasons and error codes as OpenFeature spells them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::entitlements::Entitlements;
use crate::tenant::{Tenant, TenantStatus};

/// An OpenFeature resolution reason, of those Tenancy gives. `STATIC` ("no dynamic
/// evaluation") is never given: every value here depends on the targeted tenant, and a
/// client may cache a `STATIC` value for every context. `ERROR` is what the SDK reports
/// with an error code when the answer is an evaluation failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// The tenant's terms gave the value: its plan, or its overrides.
    TargetingMatch,
    /// The tenant's terms do not name the feature (another plan does): off.
    Default,
    /// The tenant is not in service (suspended, offboarding, offboarded, failed): its
    /// features are off and its config values defer to the caller's code default.
    Disabled,
}

/// An OpenFeature error code, of those Tenancy answers with. No `TYPE_MISMATCH`: an
/// OFREP request carries no type (the SDK checks the value's type itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FlagErrorCode {
    /// No such flag for the tenant: 404.
    FlagNotFound,
    /// The body is not an evaluation request (not JSON, not an object): 400.
    ParseError,
    /// The context has no `targetingKey` (and the caller is not a tenant key): 400.
    TargetingKeyMissing,
    /// The context is not an object, its `targetingKey` not a string, or it names no
    /// tenant: 400.
    InvalidContext,
    /// Anything else (the store unavailable): 5xx.
    General,
}

impl FlagErrorCode {
    /// The HTTP status OFREP gives the code.
    pub fn status(self) -> u16 {
        match self {
            FlagErrorCode::FlagNotFound => 404,
            FlagErrorCode::ParseError | FlagErrorCode::TargetingKeyMissing | FlagErrorCode::InvalidContext => 400,
            FlagErrorCode::General => 500,
        }
    }
}

/// The body of both evaluation requests (`POST /ofrep/v1/evaluate/flags/{key}` and
/// `POST /ofrep/v1/evaluate/flags`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EvaluationRequest {
    /// The evaluation context: `targetingKey` is the tenant's id; other members are
    /// ignored. A tenant key's requests evaluate its own tenant whatever they say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub context: Option<Value>,
}

/// Why a request could not be evaluated: an OFREP error code and a description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: FlagErrorCode,
    pub details: String,
}

impl Failure {
    pub fn new(code: FlagErrorCode, details: impl Into<String>) -> Self {
        Failure { code, details: details.into() }
    }

    /// The single evaluation's failure body for flag `key`.
    pub fn for_flag(self, key: &str) -> EvaluationFailure {
        EvaluationFailure { key: key.to_owned(), error_code: self.code, error_details: self.details }
    }

    /// The bulk evaluation's failure body.
    pub fn for_bulk(self) -> BulkEvaluationFailure {
        BulkEvaluationFailure { error_code: self.code, error_details: self.details }
    }
}

/// The targeting key of an evaluation request's JSON body: `Ok(None)` when it names
/// none (no body, no `context`, no or an empty `targetingKey`).
pub fn targeting_key(body: &[u8]) -> Result<Option<String>, Failure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let request: Value = serde_json::from_slice(body)
        .map_err(|e| Failure::new(FlagErrorCode::ParseError, format!("the request body is not valid JSON: {e}")))?;
    let Value::Object(mut request) = request else {
        return Err(Failure::new(
            FlagErrorCode::ParseError,
            "the request body must be an object: {\"context\": {...}}",
        ));
    };
    let context = match request.remove("context") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(context)) => context,
        Some(_) => return Err(Failure::new(FlagErrorCode::InvalidContext, "context must be an object")),
    };
    match context.get("targetingKey") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(key)) if key.is_empty() => Ok(None),
        Some(Value::String(key)) => Ok(Some(key.clone())),
        Some(_) => {
            Err(Failure::new(FlagErrorCode::InvalidContext, "context.targetingKey must be a string (a tenant id)"))
        }
    }
}

/// One flag's successful evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EvaluationSuccess {
    pub key: String,
    /// A boolean for a feature, the config value (string, number, boolean or object)
    /// for a config key. Absent for a config key of a disabled tenant: the caller's
    /// code default applies (OFREP's `codeDefaultFlag`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = flag_value_schema)]
    pub value: Option<Value>,
    pub reason: Reason,
    /// `on` or `off` for a feature, `config` for a config value, `disabled` for any
    /// flag of a disabled tenant.
    pub variant: String,
    /// `tenantId`, `plan` and `tenantStatus` of the tenant evaluated.
    pub metadata: BTreeMap<String, String>,
}

/// OFREP's flag value: boolean, string, integer, number or object.
fn flag_value_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
    let of = |t: Type| ObjectBuilder::new().schema_type(t).build();
    let one_of = OneOfBuilder::new()
        .item(of(Type::Boolean))
        .item(of(Type::String))
        .item(of(Type::Number))
        .item(of(Type::Object))
        .description(Some("The flag's value: a boolean (a feature) or a config value (string, number, object)"))
        .build();
    Schema::OneOf(one_of)
}

/// A single evaluation's failure (400 and 404 of `POST /ofrep/v1/evaluate/flags/{key}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationFailure {
    pub key: String,
    pub error_code: FlagErrorCode,
    pub error_details: String,
}

/// A bulk evaluation's failure (400 of `POST /ofrep/v1/evaluate/flags`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkEvaluationFailure {
    pub error_code: FlagErrorCode,
    pub error_details: String,
}

/// Every flag of a tenant (200 of `POST /ofrep/v1/evaluate/flags`), by key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BulkEvaluation {
    pub flags: Vec<EvaluationSuccess>,
    /// `tenantId`, `plan` and `tenantStatus` of the tenant evaluated.
    pub metadata: BTreeMap<String, String>,
}

/// Whether a tenant in `status` is served its terms. A provisioning tenant is (its
/// product's provisioning hooks may ask); one suspended, being offboarded, offboarded
/// or failed has its flags disabled.
pub fn serves_flags(status: TenantStatus) -> bool {
    matches!(status, TenantStatus::Provisioning | TenantStatus::Active | TenantStatus::Updating)
}

const ON: &str = "on";
const OFF: &str = "off";
const CONFIG: &str = "config";
const DISABLED: &str = "disabled";

/// A tenant's flags: its terms (the tenant and its effective entitlements), evaluated.
#[derive(Debug, Clone, Copy)]
pub struct TenantFlags<'a> {
    tenant: &'a Tenant,
    entitlements: &'a Entitlements,
}

impl<'a> TenantFlags<'a> {
    pub fn new(tenant: &'a Tenant, entitlements: &'a Entitlements) -> Self {
        TenantFlags { tenant, entitlements }
    }

    /// `tenantId`, `plan` and `tenantStatus`: the metadata of every answer.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("tenantId".to_owned(), self.tenant.id.clone()),
            ("plan".to_owned(), self.entitlements.plan.clone()),
            ("tenantStatus".to_owned(), self.tenant.status.as_str().to_owned()),
        ])
    }

    fn success(&self, key: &str, value: Option<Value>, reason: Reason, variant: &str) -> EvaluationSuccess {
        EvaluationSuccess { key: key.to_owned(), value, reason, variant: variant.to_owned(), metadata: self.metadata() }
    }

    fn feature(&self, key: &str, on: bool, reason: Reason) -> EvaluationSuccess {
        if !serves_flags(self.tenant.status) {
            return self.success(key, Some(Value::Bool(false)), Reason::Disabled, DISABLED);
        }
        self.success(key, Some(Value::Bool(on)), reason, if on { ON } else { OFF })
    }

    /// The flag as the tenant's terms name it, or `None` when they do not. A key that
    /// is both a config key and a feature is the config value.
    pub fn named(&self, key: &str) -> Option<EvaluationSuccess> {
        if let Some(value) = self.entitlements.config.get(key) {
            if !serves_flags(self.tenant.status) {
                return Some(self.success(key, None, Reason::Disabled, DISABLED));
            }
            return Some(self.success(key, Some(value.clone()), Reason::TargetingMatch, CONFIG));
        }
        let on = *self.entitlements.features.get(key)?;
        Some(self.feature(key, on, Reason::TargetingMatch))
    }

    /// Flag `key`: as the tenant's terms name it; else off when a plan of `catalogue`
    /// (the features every plan names) has it; else `FLAG_NOT_FOUND`.
    pub fn evaluate(&self, key: &str, catalogue: &BTreeSet<String>) -> Result<EvaluationSuccess, Failure> {
        if let Some(found) = self.named(key) {
            return Ok(found);
        }
        if catalogue.contains(key) {
            return Ok(self.feature(key, false, Reason::Default));
        }
        Err(Failure::new(
            FlagErrorCode::FlagNotFound,
            format!(
                "no flag {key:?}: flags are the features of the plans and the tenant's overrides, and its config keys"
            ),
        ))
    }

    /// Every flag of the tenant, by key: its config keys and features, and the
    /// features of `catalogue` its terms do not name.
    pub fn all(&self, catalogue: &BTreeSet<String>) -> BulkEvaluation {
        let keys: BTreeSet<&str> = catalogue
            .iter()
            .chain(self.entitlements.features.keys())
            .chain(self.entitlements.config.keys())
            .map(String::as_str)
            .collect();
        let flags = keys.into_iter().filter_map(|k| self.evaluate(k, catalogue).ok()).collect();
        BulkEvaluation { flags, metadata: self.metadata() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entitlements::{effective, OverridesSpec};
    use crate::plan::PlanSpec;
    use crate::tenant::DEFAULT_REGION;
    use crate::time::Timestamp;
    use serde_json::json;

    fn tenant(status: TenantStatus) -> Tenant {
        Tenant {
            id: "acme".into(),
            name: "Acme".into(),
            plan: "pro".into(),
            region: DEFAULT_REGION.into(),
            status,
            metadata: Default::default(),
            version: 1,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            lifecycle_execution_id: None,
            release: None,
            pinned: None,
        }
    }

    fn entitlements(overrides: Option<serde_json::Value>) -> Entitlements {
        let plan = serde_json::from_value::<PlanSpec>(json!({
            "name": "Pro", "isolation": "pool", "features": ["sso", "audit"],
            "config": {"theme": "dark", "max_upload_mb": 50, "ratio": 0.5, "banner": {"text": "hi"}}
        }))
        .unwrap()
        .into_plan("pro", Timestamp(0))
        .unwrap();
        let overrides = overrides
            .map(|o| serde_json::from_value::<OverridesSpec>(o).unwrap().into_overrides("acme", Timestamp(0)).unwrap());
        effective("acme", &plan, overrides.as_ref(), Timestamp(1))
    }

    fn catalogue() -> BTreeSet<String> {
        ["sso", "audit", "sandbox"].into_iter().map(String::from).collect()
    }

    fn eval(t: &Tenant, e: &Entitlements, key: &str) -> Result<(Option<Value>, Reason, String), FlagErrorCode> {
        TenantFlags::new(t, e).evaluate(key, &catalogue()).map(|s| (s.value, s.reason, s.variant)).map_err(|f| f.code)
    }

    #[test]
    fn features_config_and_unknown_keys() {
        let (t, e) = (tenant(TenantStatus::Active), entitlements(None));
        assert_eq!(eval(&t, &e, "sso"), Ok((Some(json!(true)), Reason::TargetingMatch, "on".into())));
        assert_eq!(eval(&t, &e, "sandbox"), Ok((Some(json!(false)), Reason::Default, "off".into())));
        assert_eq!(eval(&t, &e, "theme"), Ok((Some(json!("dark")), Reason::TargetingMatch, "config".into())));
        assert_eq!(eval(&t, &e, "max_upload_mb").unwrap().0, Some(json!(50)));
        assert_eq!(eval(&t, &e, "ratio").unwrap().0, Some(json!(0.5)));
        assert_eq!(eval(&t, &e, "banner").unwrap().0, Some(json!({"text": "hi"})));
        assert_eq!(eval(&t, &e, "nope"), Err(FlagErrorCode::FlagNotFound));
        let s = TenantFlags::new(&t, &e).evaluate("sso", &catalogue()).unwrap();
        assert_eq!(
            serde_json::to_value(&s).unwrap()["metadata"],
            json!({"tenantId": "acme", "plan": "pro", "tenantStatus": "active"})
        );
    }

    #[test]
    fn overrides_turn_features_off_and_on_and_config_wins_over_a_feature() {
        let t = tenant(TenantStatus::Active);
        let e = entitlements(Some(json!({
            "features": {"sso": false, "beta": true}, "config": {"theme": "light", "audit": "full"}
        })));
        assert_eq!(eval(&t, &e, "sso"), Ok((Some(json!(false)), Reason::TargetingMatch, "off".into())));
        assert_eq!(eval(&t, &e, "beta"), Ok((Some(json!(true)), Reason::TargetingMatch, "on".into())));
        assert_eq!(eval(&t, &e, "theme").unwrap().0, Some(json!("light")));
        assert_eq!(eval(&t, &e, "audit").unwrap().0, Some(json!("full")), "a config key shadows the feature");
    }

    #[test]
    fn a_tenant_out_of_service_has_its_flags_disabled() {
        let e = entitlements(None);
        for status in TenantStatus::ALL {
            let t = tenant(status);
            let sso = eval(&t, &e, "sso").unwrap();
            let theme = eval(&t, &e, "theme").unwrap();
            if serves_flags(status) {
                assert_eq!((sso.0, sso.1), (Some(json!(true)), Reason::TargetingMatch), "{status:?}");
                assert_eq!(theme.0, Some(json!("dark")), "{status:?}");
            } else {
                assert_eq!(sso, (Some(json!(false)), Reason::Disabled, "disabled".into()), "{status:?}");
                assert_eq!(eval(&t, &e, "sandbox").unwrap().1, Reason::Disabled);
                assert_eq!(theme, (None, Reason::Disabled, "disabled".into()), "{status:?}: the code default applies");
                assert_eq!(eval(&t, &e, "nope"), Err(FlagErrorCode::FlagNotFound));
            }
        }
        assert!(!serves_flags(TenantStatus::Suspended) && serves_flags(TenantStatus::Updating));
    }

    #[test]
    fn all_lists_every_key_once_in_order() {
        let t = tenant(TenantStatus::Active);
        let e = entitlements(Some(json!({"features": {"beta": true}})));
        let all = TenantFlags::new(&t, &e).all(&catalogue());
        let keys: Vec<&str> = all.flags.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(keys, ["audit", "banner", "beta", "max_upload_mb", "ratio", "sandbox", "sso", "theme"]);
        let wire = serde_json::to_value(&all.flags[5]).unwrap();
        assert_eq!(
            wire,
            json!({"key": "sandbox", "value": false, "reason": "DEFAULT", "variant": "off",
                   "metadata": {"tenantId": "acme", "plan": "pro", "tenantStatus": "active"}})
        );
    }

    #[test]
    fn targeting_keys() {
        assert_eq!(targeting_key(br#"{"context": {"targetingKey": "acme", "x": 1}}"#), Ok(Some("acme".into())));
        for none in [
            &b""[..],
            b" ",
            b"{}",
            br#"{"context": null}"#,
            br#"{"context": {}}"#,
            br#"{"context": {"targetingKey": ""}}"#,
        ] {
            assert_eq!(targeting_key(none), Ok(None), "{}", String::from_utf8_lossy(none));
        }
        let code = |b: &[u8]| targeting_key(b).unwrap_err().code;
        assert_eq!(code(b"{"), FlagErrorCode::ParseError);
        assert_eq!(code(b"[1]"), FlagErrorCode::ParseError);
        assert_eq!(code(br#"{"context": 5}"#), FlagErrorCode::InvalidContext);
        assert_eq!(code(br#"{"context": {"targetingKey": 7}}"#), FlagErrorCode::InvalidContext);
    }

    #[test]
    fn failures_on_the_wire() {
        let f = Failure::new(FlagErrorCode::TargetingKeyMissing, "no key");
        assert_eq!(
            serde_json::to_value(f.clone().for_flag("sso")).unwrap(),
            json!({"key": "sso", "errorCode": "TARGETING_KEY_MISSING", "errorDetails": "no key"})
        );
        assert_eq!(
            serde_json::to_value(f.for_bulk()).unwrap(),
            json!({"errorCode": "TARGETING_KEY_MISSING", "errorDetails": "no key"})
        );
        assert_eq!(FlagErrorCode::FlagNotFound.status(), 404);
        assert_eq!(serde_json::to_value(Reason::TargetingMatch).unwrap(), json!("TARGETING_MATCH"));
    }
}
