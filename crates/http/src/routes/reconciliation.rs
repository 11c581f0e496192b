//! `/v1/reconciliation`: the reconciler's last report, and a pass on demand.

use std::sync::Arc;

use axum::extract::State;
use tenancy_app::reconcile::ops::{Drift, ReconciliationReport};

use crate::extract::{Caller, Path};
use crate::problem::ApiResult;
use crate::server::ServerState;

/// The last reconciliation pass, made by any replica (`null` before the first).
#[utoipa::path(get, path = "/v1/reconciliation", tag = "tenants",
    responses((status = 200, body = Option<ReconciliationReport>)))]
pub async fn last_reconciliation(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
) -> ApiResult<axum::Json<Option<ReconciliationReport>>> {
    Ok(axum::Json(s.app.reconciliation_last(&ctx).await?))
}

/// Run a reconciliation pass now: observe every tenant's resources against its plan,
/// recreate what is missing of the kinds repaired automatically (`--reconcile-repair`;
/// by default logins and records), report the rest and extras (never deleted).
#[utoipa::path(post, path = "/v1/reconciliation", tag = "tenants",
    responses((status = 200, body = ReconciliationReport)))]
pub async fn run_reconciliation(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
) -> ApiResult<axum::Json<ReconciliationReport>> {
    Ok(axum::Json(s.app.reconciliation_run(&ctx).await?))
}

/// Recreate a missing resource the last pass reported (a database or schema empty, a
/// login with its stored password, a record), on an operator's request.
///
/// 404 for an id the last pass did not report; 409 `drift-not-repairable` for an
/// extra (Tenancy never deletes one); 409 `drift-gone` when it is there again. Writes
/// `TenantDriftRepaired` and the audit entry `reconciliation.repair` with the repair.
#[utoipa::path(post, path = "/v1/reconciliation/{id}/repair", tag = "tenants",
    params(("id" = String, Path, description = "Drift id (`drift_...`) of the last report")),
    responses((status = 200, description = "Repaired", body = Drift)))]
pub async fn repair_drift(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Drift>> {
    Ok(axum::Json(s.app.reconciliation_repair(&ctx, &id).await?))
}
