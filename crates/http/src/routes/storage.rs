//! `/v1/storage`: the control plane's tables and what the next prune removes
//! (docs/storage.md, "Retention").

use std::sync::Arc;

use axum::extract::State;
use tenancy_domain::api::StorageReport;

use crate::extract::Caller;
use crate::problem::ApiResult;
use crate::server::ServerState;

/// Rows and bytes of each table of the control plane's database, and the rows a prune
/// run now would delete (finished executions and their history past retention,
/// idempotency keys past 24 h, events and finished deliveries past theirs, expired
/// queue messages, quota grants and sign-ups; never the audit log). Admins and
/// operators.
#[utoipa::path(get, path = "/v1/storage", tag = "storage",
    responses((status = 200, body = StorageReport)))]
pub async fn storage_report(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
) -> ApiResult<axum::Json<StorageReport>> {
    Ok(axum::Json(s.app.storage_report(&ctx).await?))
}
