//! `/v1/tenants`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use tenancy_app::TenantOperation;
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::tenant::{NewTenant, Tenant, TenantFilter, TenantPatch, TenantStatus};

use crate::extract::{etag, record_tenant, Caller, IfMatch, Json, Path, Query};
use crate::problem::ApiResult;
use crate::server::ServerState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TenantListQuery {
    pub plan: Option<String>,
    pub status: Option<TenantStatus>,
    pub region: Option<String>,
    /// The tenants on this release (`release` in the tenant).
    pub release: Option<String>,
    /// Items per page, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The query of `DELETE /v1/tenants/{id}`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteTenantQuery {
    /// `true`: release an offboarded tenant's id once the export retention has passed
    /// (admins only) instead of offboarding.
    pub purge: Option<bool>,
    /// The offboarding export's events and audit records: `ndjson` (the default,
    /// verifiable offline with `tenancy audit verify`) or `parquet` (the archive's
    /// columns, for Athena or DuckDB).
    pub format: Option<tenancy_app::tenants::offboarding::ExportFormat>,
}

pub use tenancy_domain::api::PlanChange;

fn accepted(op: TenantOperation) -> impl IntoResponse {
    let location = format!("/v1/tenants/{}", op.tenant.id);
    (StatusCode::ACCEPTED, [etag(op.tenant.version), (header::LOCATION, location)], axum::Json(op))
}

/// Create a tenant; provisioning runs in the background (`status: provisioning`).
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = NewTenant,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 202, description = "Provisioning started", body = TenantOperation)))]
pub async fn create_tenant(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Json(new): Json<NewTenant>,
) -> ApiResult<impl IntoResponse> {
    let op = s.app.tenant_create(&ctx, new).await?;
    record_tenant(&op.tenant.id);
    Ok(accepted(op))
}

/// List tenants, filtered by plan, status and region.
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", params(TenantListQuery),
    responses((status = 200, body = Page<Tenant>)))]
pub async fn list_tenants(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Query(q): Query<TenantListQuery>,
) -> ApiResult<axum::Json<Page<Tenant>>> {
    let page = PageRequest::new(q.limit, q.cursor)?;
    let filter = TenantFilter { plan: q.plan, status: q.status, region: q.region, release: q.release };
    Ok(axum::Json(s.app.tenant_list(&ctx, &filter, &page).await?))
}

/// Get a tenant.
#[utoipa::path(get, path = "/v1/tenants/{id}", tag = "tenants",
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = Tenant, headers(("ETag" = String)))))]
pub async fn get_tenant(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    record_tenant(&id);
    let t = s.app.tenant_get(&ctx, &id).await?;
    Ok(([etag(t.version)], axum::Json(t)))
}

/// Change a tenant's name, region or metadata.
#[utoipa::path(patch, path = "/v1/tenants/{id}", tag = "tenants", request_body = TenantPatch,
    params(("id" = String, Path, description = "Tenant id"), ("If-Match" = Option<String>, Header, description = "ETag the tenant must still have")),
    responses((status = 200, body = Tenant, headers(("ETag" = String)))))]
pub async fn patch_tenant(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
    IfMatch(if_match): IfMatch,
    Json(patch): Json<TenantPatch>,
) -> ApiResult<impl IntoResponse> {
    record_tenant(&id);
    let t = s.app.tenant_patch(&ctx, &id, patch, if_match).await?;
    Ok(([etag(t.version)], axum::Json(t)))
}

/// Suspend an active tenant.
///
/// The status changes within the request; `execution_id` is the `tenancy.tenant.notify`
/// execution that then calls the hooks subscribed to `suspend` (a failing hook fails that
/// execution, not the status change).
#[utoipa::path(post, path = "/v1/tenants/{id}/suspend", tag = "tenants",
    params(("id" = String, Path, description = "Tenant id"), ("If-Match" = Option<String>, Header, description = "ETag the tenant must still have")),
    responses((status = 200, description = "Suspended; hooks are notified in the background", body = TenantOperation, headers(("ETag" = String)))))]
pub async fn suspend_tenant(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
    IfMatch(if_match): IfMatch,
) -> ApiResult<impl IntoResponse> {
    record_tenant(&id);
    let op = s.app.tenant_suspend(&ctx, &id, if_match).await?;
    Ok(([etag(op.tenant.version)], axum::Json(op)))
}

/// Resume a suspended tenant.
///
/// The status changes within the request; `execution_id` is the `tenancy.tenant.notify`
/// execution that then calls the hooks subscribed to `resume` (a failing hook fails that
/// execution, not the status change).
#[utoipa::path(post, path = "/v1/tenants/{id}/resume", tag = "tenants",
    params(("id" = String, Path, description = "Tenant id"), ("If-Match" = Option<String>, Header, description = "ETag the tenant must still have")),
    responses((status = 200, description = "Resumed; hooks are notified in the background", body = TenantOperation, headers(("ETag" = String)))))]
pub async fn resume_tenant(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
    IfMatch(if_match): IfMatch,
) -> ApiResult<impl IntoResponse> {
    record_tenant(&id);
    let op = s.app.tenant_resume(&ctx, &id, if_match).await?;
    Ok(([etag(op.tenant.version)], axum::Json(op)))
}

/// Provision a failed tenant again; runs in the background (`status: provisioning`).
///
/// Only a `failed` tenant (else 409 `invalid-transition`): a new provisioning execution
/// (`execution_id`) runs every step again, finding what exists and creating what is
/// missing, so the tenant ends `active` once what failed (e.g. a hook) is fixed.
/// Emits `TenantProvisioningRetried`.
#[utoipa::path(post, path = "/v1/tenants/{id}/retry", tag = "tenants",
    params(("id" = String, Path, description = "Tenant id"), ("If-Match" = Option<String>, Header, description = "ETag the tenant must still have")),
    responses((status = 202, description = "Provisioning started again", body = TenantOperation)))]
pub async fn retry_tenant(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
    IfMatch(if_match): IfMatch,
) -> ApiResult<impl IntoResponse> {
    record_tenant(&id);
    Ok(accepted(s.app.tenant_retry(&ctx, &id, if_match).await?))
}

/// Move a tenant to another plan; runs in the background (`status: updating`).
#[utoipa::path(post, path = "/v1/tenants/{id}/plan", tag = "tenants", request_body = PlanChange,
    params(("id" = String, Path, description = "Tenant id"), ("If-Match" = Option<String>, Header, description = "ETag the tenant must still have")),
    responses((status = 202, body = TenantOperation)))]
pub async fn change_plan(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
    IfMatch(if_match): IfMatch,
    Json(body): Json<PlanChange>,
) -> ApiResult<impl IntoResponse> {
    record_tenant(&id);
    Ok(accepted(s.app.tenant_change_plan(&ctx, &id, &body.plan, body.force, if_match).await?))
}

/// Offboard a tenant; runs in the background (`status: offboarding`) and leaves a
/// tombstone (`status: offboarded`). With `?purge=true`, release an offboarded
/// tenant's id instead.
///
/// The offboarding exports the tenant's data to the blob store before it deletes
/// anything; the export's location is the tombstone's `export` resource and is named in
/// `TenantOffboarded`. A tenant still `offboarding` whose offboarding execution ended
/// without finishing (failed, timed out, stopped) is offboarded again: a new execution
/// starts; while one runs, 409 `invalid-transition`.
///
/// A purge (admins only) deletes the tombstone and its resource records once the
/// export retention (`serve --export-retention-days`) has passed since the offboarding
/// ended (204; else 409 `retention-not-passed` saying from when; 409
/// `invalid-transition` for a tenant that is not offboarded), writes `TenantPurged`
/// and the audit entry `tenant.purge`, and lets `POST /v1/tenants` take the id again.
/// Events, audit records and the export stay.
#[utoipa::path(delete, path = "/v1/tenants/{id}", tag = "tenants",
    params(("id" = String, Path, description = "Tenant id"), DeleteTenantQuery, ("If-Match" = Option<String>, Header, description = "ETag the tenant must still have")),
    responses((status = 202, body = TenantOperation),
        (status = 204, description = "Purged: the id is free again")))]
pub async fn delete_tenant(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
    Query(q): Query<DeleteTenantQuery>,
    IfMatch(if_match): IfMatch,
) -> ApiResult<axum::response::Response> {
    record_tenant(&id);
    if q.purge == Some(true) {
        s.app.tenant_purge(&ctx, &id, if_match).await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let format = q.format.unwrap_or_default();
    Ok(accepted(s.app.tenant_offboard_as(&ctx, &id, if_match, format).await?).into_response())
}
