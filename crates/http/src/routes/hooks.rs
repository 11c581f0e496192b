//! `/v1/hooks` (provisioning hooks), `/v1/tenants/{id}/resources` and
//! `/v1/tenants/{id}/database-credentials`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use tenancy_app::dataplane::plane::DatabaseCredentials;
use tenancy_app::hooks::ops::HookWithSecret;
use tenancy_app::tenants::ops::TenantResources;
use tenancy_domain::hook::{Hook, HookSpec};

use crate::extract::{Caller, Json, Path};
use crate::problem::ApiResult;
use crate::server::ServerState;

pub use tenancy_domain::api::HookList;

/// Create or replace a provisioning hook: an HTTP hook (`url`) or a queue hook (`queue`).
///
/// A new HTTP hook's `whsec_` signing secret is in the response that created it, and
/// never again (a replace keeps it; `rotate_secret: true` replaces it and returns the
/// new one). 400 `unknown-queue` when the queue does not exist.
#[utoipa::path(put, path = "/v1/hooks/{name}", tag = "hooks", request_body = HookSpec,
    params(("name" = String, Path, description = "Hook name")),
    responses((status = 201, description = "Created", body = HookWithSecret),
        (status = 200, description = "Replaced", body = HookWithSecret)))]
pub async fn put_hook(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
    Json(spec): Json<HookSpec>,
) -> ApiResult<impl IntoResponse> {
    let (hook, created) = s.app.hook_put(&ctx, &name, spec).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, [(header::LOCATION, format!("/v1/hooks/{name}"))], axum::Json(hook)))
}

/// A hook.
#[utoipa::path(get, path = "/v1/hooks/{name}", tag = "hooks",
    params(("name" = String, Path, description = "Hook name")),
    responses((status = 200, body = Hook)))]
pub async fn get_hook(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Hook>> {
    Ok(axum::Json(s.app.hook_get(&ctx, &name).await?))
}

/// List hooks by name.
#[utoipa::path(get, path = "/v1/hooks", tag = "hooks",
    responses((status = 200, body = HookList)))]
pub async fn list_hooks(State(s): State<Arc<ServerState>>, Caller(ctx): Caller) -> ApiResult<axum::Json<HookList>> {
    Ok(axum::Json(HookList { items: s.app.hook_list(&ctx).await? }))
}

/// Delete a hook.
#[utoipa::path(delete, path = "/v1/hooks/{name}", tag = "hooks",
    params(("name" = String, Path, description = "Hook name")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_hook(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.app.hook_delete(&ctx, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The resources the lifecycle workflows created for a tenant.
#[utoipa::path(get, path = "/v1/tenants/{id}/resources", tag = "tenants",
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = TenantResources)))]
pub async fn tenant_resources(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<TenantResources>> {
    Ok(axum::Json(s.app.tenant_resources(&ctx, &id).await?))
}

/// How the tenant's service connects to its database: host, database, schema, user and
/// password (admins, operators and the tenant's own key; every read is audited, the
/// password is never logged). 409 `no-database-credentials` on the SQLite data plane
/// (files without logins); 404 when the tenant has no database (yet).
#[utoipa::path(get, path = "/v1/tenants/{id}/database-credentials", tag = "tenants",
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = DatabaseCredentials)))]
pub async fn tenant_database_credentials(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let creds = s.app.tenant_database_credentials(&ctx, &id).await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(creds)))
}
