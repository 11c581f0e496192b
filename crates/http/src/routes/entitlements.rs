//! `/v1/tenants/{id}/overrides` and `/v1/tenants/{id}/entitlements`: a tenant's
//! overrides of its plan and its effective entitlements.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use tenancy_domain::entitlements::{Entitlements, Overrides, OverridesSpec};

use crate::extract::{Caller, Json, Path};
use crate::problem::ApiResult;
use crate::server::ServerState;

/// Set the tenant's overrides, replacing any: features on or off, quota limits, config
/// values, until `expires_at` if given (admins and operators).
#[utoipa::path(put, path = "/v1/tenants/{id}/overrides", tag = "entitlements", request_body = OverridesSpec,
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = Overrides)))]
pub async fn put_overrides(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
    Json(spec): Json<OverridesSpec>,
) -> ApiResult<axum::Json<Overrides>> {
    Ok(axum::Json(s.app.overrides_put(&ctx, &id, spec).await?))
}

/// The tenant's overrides as set, expired or not (empty when it has none).
#[utoipa::path(get, path = "/v1/tenants/{id}/overrides", tag = "entitlements",
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = Overrides)))]
pub async fn get_overrides(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Overrides>> {
    Ok(axum::Json(s.app.overrides_get(&ctx, &id).await?))
}

/// Clear the tenant's overrides: its plan alone applies again.
#[utoipa::path(delete, path = "/v1/tenants/{id}/overrides", tag = "entitlements",
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 204, description = "Cleared")))]
pub async fn delete_overrides(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.app.overrides_clear(&ctx, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The tenant's effective entitlements: its plan's features, config values and quota
/// limits with its unexpired overrides applied.
#[utoipa::path(get, path = "/v1/tenants/{id}/entitlements", tag = "entitlements",
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = Entitlements)))]
pub async fn get_entitlements(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Entitlements>> {
    Ok(axum::Json(s.app.entitlements_get(&ctx, &id).await?))
}
