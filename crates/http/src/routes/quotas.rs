//! `/v1/tenants/{id}/quotas`: consuming and releasing a tenant's quotas, exactly.

use std::sync::Arc;

use axum::extract::State;
use tenancy_domain::api::{QuotaBatchGranted, QuotaConsume, QuotaConsumeBatch, QuotaGranted, QuotaList, QuotaRelease};
use tenancy_domain::quota::QuotaUsage;

use crate::extract::{Caller, Json, Path};
use crate::problem::ApiResult;
use crate::server::ServerState;

/// Every quota of the tenant's plan with its usage in the current period, by name.
#[utoipa::path(get, path = "/v1/tenants/{id}/quotas", tag = "quotas",
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = QuotaList)))]
pub async fn list_quotas(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<QuotaList>> {
    Ok(axum::Json(QuotaList { items: s.app.quota_list(&ctx, &id).await? }))
}

/// Consume `amount` of a quota. A hard quota that would go over its limit refuses:
/// 429 `quota-exceeded`, nothing consumed; a soft one allows it (`used > limit`). A
/// repeat with the same `idempotency_key` answers as the first and consumes nothing.
/// The tenant must be active (else 409 `tenant-not-active`); a quota its plan does not
/// have is 404.
#[utoipa::path(post, path = "/v1/tenants/{id}/quotas/{name}/consume", tag = "quotas", request_body = QuotaConsume,
    params(("id" = String, Path, description = "Tenant id"), ("name" = String, Path, description = "Quota name")),
    responses((status = 200, body = QuotaGranted)))]
pub async fn consume_quota(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path((id, name)): Path<(String, String)>,
    Json(body): Json<QuotaConsume>,
) -> ApiResult<axum::Json<QuotaGranted>> {
    Ok(axum::Json(s.app.quota_consume(&ctx, &id, &name, body.amount, body.idempotency_key).await?))
}

/// Consume several quotas together, all or nothing: the first hard quota (by name)
/// that would go over its limit refuses the whole (429 `quota-exceeded` naming it).
#[utoipa::path(post, path = "/v1/tenants/{id}/quotas/consume", tag = "quotas", request_body = QuotaConsumeBatch,
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = QuotaBatchGranted)))]
pub async fn consume_quotas(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
    Json(body): Json<QuotaConsumeBatch>,
) -> ApiResult<axum::Json<QuotaBatchGranted>> {
    Ok(axum::Json(s.app.quota_consume_batch(&ctx, &id, &body.items, body.idempotency_key).await?))
}

/// Give back `amount` of a quota's current usage (never below 0): a seat freed.
#[utoipa::path(post, path = "/v1/tenants/{id}/quotas/{name}/release", tag = "quotas", request_body = QuotaRelease,
    params(("id" = String, Path, description = "Tenant id"), ("name" = String, Path, description = "Quota name")),
    responses((status = 200, body = QuotaUsage)))]
pub async fn release_quota(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path((id, name)): Path<(String, String)>,
    Json(body): Json<QuotaRelease>,
) -> ApiResult<axum::Json<QuotaUsage>> {
    Ok(axum::Json(s.app.quota_release(&ctx, &id, &name, body.amount).await?))
}
