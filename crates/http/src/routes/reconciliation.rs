//! `/v1/reconciliation`: the reconciler's last report, and a pass on demand.

use std::sync::Arc;

use axum::extract::State;
use tenancy_app::reconcile::ReconciliationReport;

use crate::extract::Caller;
use crate::problem::{ApiResult, Problem};
use crate::server::ServerState;

/// The last reconciliation pass, made by any replica (`null` before the first).
#[utoipa::path(get, path = "/v1/reconciliation", tag = "tenants",
    responses((status = 200, body = Option<ReconciliationReport>),
        (status = "4XX", description = "Problem", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn last_reconciliation(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
) -> ApiResult<axum::Json<Option<ReconciliationReport>>> {
    Ok(axum::Json(s.app.reconciliation_last(&ctx).await?))
}

/// Run a reconciliation pass now: observe every tenant's resources against its plan,
/// recreate missing databases and report extra ones (which are never deleted).
#[utoipa::path(post, path = "/v1/reconciliation", tag = "tenants",
    responses((status = 200, body = ReconciliationReport),
        (status = "4XX", description = "Problem", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn run_reconciliation(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
) -> ApiResult<axum::Json<ReconciliationReport>> {
    Ok(axum::Json(s.app.reconciliation_run(&ctx).await?))
}
