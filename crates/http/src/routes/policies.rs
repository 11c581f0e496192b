//! `/v1/policies`: operators' Cedar authorization policies (docs/policies.md).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use tenancy_domain::policy::{Policy, PolicyCheck, PolicyDecision, PolicyList, PolicySpec};

use crate::extract::{Caller, Json, Path};
use crate::problem::ApiResult;
use crate::server::ServerState;

/// Create (201) or replace (200) a policy: Cedar text validated against the schema
/// (400 `invalid-policy` naming the line and column otherwise); in force at once.
#[utoipa::path(put, path = "/v1/policies/{name}", tag = "policies", request_body = PolicySpec,
    params(("name" = String, Path, description = "Policy name: 1-64 of a-z, 0-9, '.', '_', '-'")),
    responses((status = 201, description = "Created", body = Policy),
        (status = 200, description = "Replaced", body = Policy)))]
pub async fn put_policy(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
    Json(spec): Json<PolicySpec>,
) -> ApiResult<impl IntoResponse> {
    let (policy, created) = s.app.policy_put(&ctx, &name, spec).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let headers = [(header::LOCATION, format!("/v1/policies/{name}"))];
    Ok((status, headers, axum::Json(policy)))
}

/// One policy.
#[utoipa::path(get, path = "/v1/policies/{name}", tag = "policies",
    params(("name" = String, Path, description = "Policy name")),
    responses((status = 200, body = Policy)))]
pub async fn get_policy(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Policy>> {
    Ok(axum::Json(s.app.policy_get(&ctx, &name).await?))
}

/// Every operator policy, by name (the built-in ones are not stored: docs/policies.md).
#[utoipa::path(get, path = "/v1/policies", tag = "policies",
    responses((status = 200, body = PolicyList)))]
pub async fn list_policies(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
) -> ApiResult<axum::Json<PolicyList>> {
    Ok(axum::Json(PolicyList { items: s.app.policy_list(&ctx).await? }))
}

/// Delete a policy; out of force at once.
#[utoipa::path(delete, path = "/v1/policies/{name}", tag = "policies",
    params(("name" = String, Path, description = "Policy name")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_policy(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.app.policy_delete(&ctx, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Evaluate a principal (an API key's id), an action (an operation id) and a resource
/// (a Cedar entity id) with the policies in force: the decision and the policies that
/// decided it.
#[utoipa::path(post, path = "/v1/policies/check", tag = "policies", request_body = PolicyCheck,
    responses((status = 200, body = PolicyDecision)))]
pub async fn check_policy(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Json(check): Json<PolicyCheck>,
) -> ApiResult<axum::Json<PolicyDecision>> {
    Ok(axum::Json(s.app.policy_check(&ctx, check).await?))
}
