//! Flag evaluation (OFREP): one flag, or every flag, of the tenant a request targets.
//!
//! An operation answers `Err` for what is no evaluation failure in OFREP's terms (the
//! caller may not evaluate, the store failed: problem+json), and `Ok(Err(failure))` for
//! what OFREP answers with an error code (no targeting key, no such tenant, no such
//! flag).

use std::sync::Arc;

use tenancy_domain::flags::{BulkEvaluation, EvaluationSuccess, Failure, FlagErrorCode, TenantFlags};
use tenancy_domain::{Error, Result};

use crate::context::Permission as P;
use crate::entitlements::terms::TenantTerms;
use crate::{App, OpContext};

/// What an evaluation answers: the evaluation, or OFREP's failure.
pub type Evaluated<T> = Result<std::result::Result<T, Failure>>;

impl App {
    /// The terms of the tenant an evaluation targets: a tenant key's own tenant whatever
    /// `targeting_key` says; else the tenant `targeting_key` names (`TARGETING_KEY_MISSING`
    /// without one, `INVALID_CONTEXT` when no tenant has that id).
    async fn targeted_terms(&self, ctx: &OpContext, targeting_key: Option<&str>) -> Evaluated<Arc<TenantTerms>> {
        ctx.authorize(P::FlagEvaluate)?;
        let tenant_id = match (ctx.principal.tenant_id.as_deref(), targeting_key) {
            (Some(own), _) => own,
            (None, Some(key)) => key,
            (None, None) => {
                return Ok(Err(Failure::new(
                    FlagErrorCode::TargetingKeyMissing,
                    "context.targetingKey must name the tenant (its id) whose flags to evaluate",
                )))
            }
        };
        match self.tenant_terms(tenant_id).await {
            Ok(terms) => Ok(Ok(terms)),
            Err(Error::NotFound { .. }) => Ok(Err(Failure::new(
                FlagErrorCode::InvalidContext,
                format!("context.targetingKey {tenant_id:?} names no tenant"),
            ))),
            Err(e) => Err(e),
        }
    }

    /// Evaluates flag `key` for the tenant the context targets (admins, operators,
    /// viewers, services; a tenant key for its own tenant). Only a key the tenant's
    /// terms do not name looks at the catalogue.
    pub async fn flag_evaluate(
        &self,
        ctx: &OpContext,
        key: &str,
        targeting_key: Option<&str>,
    ) -> Evaluated<EvaluationSuccess> {
        let terms = match self.targeted_terms(ctx, targeting_key).await? {
            Ok(terms) => terms,
            Err(failure) => return Ok(Err(failure)),
        };
        let flags = TenantFlags::new(&terms.tenant, &terms.entitlements);
        if let Some(found) = flags.named(key) {
            return Ok(Ok(found));
        }
        let catalogue = self.flag_catalogue.features(self.store.as_ref()).await?;
        Ok(flags.evaluate(key, &catalogue))
    }

    /// Evaluates every flag of the tenant the context targets, by key.
    pub async fn flags_evaluate_all(&self, ctx: &OpContext, targeting_key: Option<&str>) -> Evaluated<BulkEvaluation> {
        let terms = match self.targeted_terms(ctx, targeting_key).await? {
            Ok(terms) => terms,
            Err(failure) => return Ok(Err(failure)),
        };
        let catalogue = self.flag_catalogue.features(self.store.as_ref()).await?;
        Ok(Ok(TenantFlags::new(&terms.tenant, &terms.entitlements).all(&catalogue)))
    }
}
