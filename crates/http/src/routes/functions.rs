//! `/v1/functions`: functions (the Lambda role) that Task states invoke.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use tenancy_app::functions::ops::FunctionWithSecret;
use tenancy_domain::function::{Function, FunctionSpec};

use crate::extract::{Caller, Json, Path};
use crate::problem::ApiResult;
use crate::server::ServerState;

pub use tenancy_domain::api::FunctionList;

/// Create a function (201, with its `whsec_` signing secret, shown this once) or
/// replace its url and timeout (200, the secret unchanged and not shown). `connection`
/// is refused (400 `unsupported-connection`) until connections exist.
#[utoipa::path(put, path = "/v1/functions/{name}", tag = "functions", request_body = FunctionSpec,
    params(("name" = String, Path, description = "Function name: 1-64 letters, digits, '-' and '_'")),
    responses((status = 201, description = "Created (with `secret`)", body = FunctionWithSecret),
        (status = 200, description = "Replaced", body = Function)))]
pub async fn put_function(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
    Json(spec): Json<FunctionSpec>,
) -> ApiResult<impl IntoResponse> {
    let (function, created) = s.app.function_put(&ctx, &name, spec).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let headers = [(header::LOCATION, format!("/v1/functions/{name}")), (header::CACHE_CONTROL, "no-store".into())];
    Ok((status, headers, axum::Json(function)))
}

/// A function (never its secret).
#[utoipa::path(get, path = "/v1/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "Function name")),
    responses((status = 200, body = Function)))]
pub async fn get_function(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Function>> {
    Ok(axum::Json(s.app.function_get(&ctx, &name).await?))
}

/// List functions by name.
#[utoipa::path(get, path = "/v1/functions", tag = "functions",
    responses((status = 200, body = FunctionList)))]
pub async fn list_functions(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
) -> ApiResult<axum::Json<FunctionList>> {
    Ok(axum::Json(FunctionList { items: s.app.function_list(&ctx).await? }))
}

/// Delete a function. State machines naming it stay as they are; their tasks then
/// fail with `Lambda.ResourceNotFoundException`.
#[utoipa::path(delete, path = "/v1/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "Function name")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_function(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.app.function_delete(&ctx, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
