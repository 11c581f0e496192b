//! `/v1/plans`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::plan::{Plan, PlanPatch, PlanSpec};

use crate::extract::{etag, Caller, IfMatch, Json, Path, Query};
use crate::problem::ApiResult;
use crate::server::ServerState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn page(self) -> Result<PageRequest, tenancy_domain::Error> {
        PageRequest::new(self.limit, self.cursor)
    }
}

/// Create or replace a plan.
///
/// A full replacement: members left out take their defaults (no features, no quotas),
/// they do not keep their current values; `PATCH` changes only the members it gives.
/// The isolation of a plan that tenants use cannot change (409 `plan-in-use`).
#[utoipa::path(put, path = "/v1/plans/{id}", tag = "plans",
    params(("id" = String, Path, description = "Plan id"), ("If-Match" = Option<String>, Header, description = "ETag the plan must still have")),
    request_body = PlanSpec,
    responses(
        (status = 201, description = "Created", body = Plan, headers(("ETag" = String))),
        (status = 200, description = "Replaced", body = Plan, headers(("ETag" = String)))))]
pub async fn put_plan(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
    IfMatch(if_match): IfMatch,
    Json(spec): Json<PlanSpec>,
) -> ApiResult<impl IntoResponse> {
    let (plan, created) = s.app.plan_put(&ctx, &id, spec, if_match).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, [etag(plan.version)], axum::Json(plan)))
}

/// Change some of a plan's members (JSON merge patch, RFC 7386).
///
/// Absent members stay; `features` replaces the list; `quotas` is merged by name and a
/// quota set to `null` is removed. The isolation of a plan that tenants use cannot
/// change (409 `plan-in-use`).
#[utoipa::path(patch, path = "/v1/plans/{id}", tag = "plans",
    params(("id" = String, Path, description = "Plan id"), ("If-Match" = Option<String>, Header, description = "ETag the plan must still have")),
    request_body = PlanPatch,
    responses(
        (status = 200, description = "Changed", body = Plan, headers(("ETag" = String)))))]
pub async fn patch_plan(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
    IfMatch(if_match): IfMatch,
    Json(patch): Json<PlanPatch>,
) -> ApiResult<impl IntoResponse> {
    let plan = s.app.plan_patch(&ctx, &id, patch, if_match).await?;
    Ok(([etag(plan.version)], axum::Json(plan)))
}

/// Get a plan.
#[utoipa::path(get, path = "/v1/plans/{id}", tag = "plans",
    params(("id" = String, Path, description = "Plan id")),
    responses((status = 200, body = Plan, headers(("ETag" = String)))))]
pub async fn get_plan(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let plan = s.app.plan_get(&ctx, &id).await?;
    Ok(([etag(plan.version)], axum::Json(plan)))
}

/// List plans.
#[utoipa::path(get, path = "/v1/plans", tag = "plans", params(PageQuery),
    responses((status = 200, body = Page<Plan>)))]
pub async fn list_plans(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<Plan>>> {
    Ok(axum::Json(s.app.plan_list(&ctx, &q.page()?).await?))
}

/// Delete a plan; 409 while a tenant uses it.
#[utoipa::path(delete, path = "/v1/plans/{id}", tag = "plans",
    params(("id" = String, Path, description = "Plan id")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_plan(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.app.plan_delete(&ctx, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
