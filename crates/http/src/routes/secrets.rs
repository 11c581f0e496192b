//! `/v1/tenants/{id}/secrets` and `/v1/secrets`: the secret store (docs/secrets.md).
//! Values travel only in the body of a `GET` of one secret (with `Cache-Control:
//! no-store`) and of a `PUT`'s request; lists and every other answer carry metadata.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tenancy_app::secrets::ops::Selector;
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::secret::{RotationStarted, SecretMeta, SecretPut, SecretValue, Stage};

use crate::extract::{record_tenant, Caller, Json, Path, Query};
use crate::problem::ApiResult;
use crate::server::ServerState;

/// The query of a secret's read.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SecretGetQuery {
    /// `current` (the default), `previous` or `pending`.
    pub stage: Option<String>,
    /// A version number (with `stage`: the version must carry that stage).
    pub version: Option<i64>,
}

/// The query of a secret's deletion.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SecretDeleteQuery {
    /// Days before the secret is purged, 1 to 30 (default 7); it can be restored until then.
    pub recovery_days: Option<u32>,
    /// `true`: delete at once, with no recovery window.
    pub force: Option<bool>,
}

/// The query of a list of secrets.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SecretListQuery {
    /// Items per page, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn selector(q: SecretGetQuery) -> ApiResult<Selector> {
    Ok(Selector { stage: q.stage.as_deref().map(Stage::parse).transpose()?, version: q.version })
}

fn put_answer(scope: Option<&str>, name: &str, created: bool, meta: SecretMeta) -> Response {
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let location = match scope {
        Some(t) => format!("/v1/tenants/{t}/secrets/{name}"),
        None => format!("/v1/secrets/{name}"),
    };
    (status, [(header::LOCATION, location)], axum::Json(meta)).into_response()
}

fn value_answer(v: SecretValue) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(v)).into_response()
}

fn delete_answer(meta: Option<SecretMeta>) -> Response {
    match meta {
        Some(m) => axum::Json(m).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// Put a new version of a tenant's secret: `{value}` or `{generate: {...}}`. It becomes
/// `current`, the old current `previous`. 201 when the secret is new, else 200.
#[utoipa::path(put, path = "/v1/tenants/{id}/secrets/{name}", tag = "secrets", request_body = SecretPut,
    params(("id" = String, Path, description = "Tenant id"), ("name" = String, Path, description = "Secret name")),
    responses((status = 201, description = "Created", body = SecretMeta), (status = 200, description = "A new version", body = SecretMeta)))]
pub async fn put_tenant_secret(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path((id, name)): Path<(String, String)>,
    Json(body): Json<SecretPut>,
) -> ApiResult<Response> {
    record_tenant(&id);
    let out = s.app.secret_put(&ctx, Some(&id), &name, body).await?;
    Ok(put_answer(Some(&id), &name, out.created, out.secret))
}

/// Read a tenant's secret's value: the `current` version, or the one of `stage` or
/// `version`. Audited (`secret.read`, without the value). Viewers: 403.
#[utoipa::path(get, path = "/v1/tenants/{id}/secrets/{name}", tag = "secrets", params(("id" = String, Path, description = "Tenant id"), ("name" = String, Path, description = "Secret name"), SecretGetQuery),
    responses((status = 200, body = SecretValue)))]
pub async fn get_tenant_secret(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path((id, name)): Path<(String, String)>,
    Query(q): Query<SecretGetQuery>,
) -> ApiResult<Response> {
    record_tenant(&id);
    Ok(value_answer(s.app.secret_get(&ctx, Some(&id), &name, selector(q)?).await?))
}

/// Schedule a tenant's secret's deletion (200, with `purge_at`), or delete it at once
/// with `force=true` (204). Until purged, reads and puts are 409 `secret-deleted`.
#[utoipa::path(delete, path = "/v1/tenants/{id}/secrets/{name}", tag = "secrets", params(("id" = String, Path, description = "Tenant id"), ("name" = String, Path, description = "Secret name"), SecretDeleteQuery),
    responses((status = 200, description = "Scheduled", body = SecretMeta), (status = 204, description = "Deleted")))]
pub async fn delete_tenant_secret(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path((id, name)): Path<(String, String)>,
    Query(q): Query<SecretDeleteQuery>,
) -> ApiResult<Response> {
    record_tenant(&id);
    let meta = s.app.secret_delete(&ctx, Some(&id), &name, q.recovery_days, q.force.unwrap_or(false)).await?;
    Ok(delete_answer(meta))
}

/// Cancel a tenant's secret's scheduled deletion.
#[utoipa::path(post, path = "/v1/tenants/{id}/secrets/{name}/restore", tag = "secrets",
    params(("id" = String, Path, description = "Tenant id"), ("name" = String, Path, description = "Secret name")),
    responses((status = 200, body = SecretMeta)))]
pub async fn restore_tenant_secret(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<axum::Json<SecretMeta>> {
    record_tenant(&id);
    Ok(axum::Json(s.app.secret_restore(&ctx, Some(&id), &name).await?))
}

/// A tenant's secrets' metadata (versions and stages, never values), by name.
#[utoipa::path(get, path = "/v1/tenants/{id}/secrets", tag = "secrets",
    params(("id" = String, Path, description = "Tenant id"), SecretListQuery),
    responses((status = 200, body = Page<SecretMeta>)))]
pub async fn list_tenant_secrets(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
    Query(q): Query<SecretListQuery>,
) -> ApiResult<axum::Json<Page<SecretMeta>>> {
    record_tenant(&id);
    let page = PageRequest::new(q.limit, q.cursor)?;
    Ok(axum::Json(s.app.secret_list(&ctx, Some(&id), &page).await?))
}

/// Put a new version of a platform secret (admins and operators).
#[utoipa::path(put, path = "/v1/secrets/{name}", tag = "secrets", request_body = SecretPut,
    params(("name" = String, Path, description = "Secret name")),
    responses((status = 201, description = "Created", body = SecretMeta), (status = 200, description = "A new version", body = SecretMeta)))]
pub async fn put_platform_secret(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
    Json(body): Json<SecretPut>,
) -> ApiResult<Response> {
    let out = s.app.secret_put(&ctx, None, &name, body).await?;
    Ok(put_answer(None, &name, out.created, out.secret))
}

/// Read a platform secret's value (admins and operators; audited).
#[utoipa::path(get, path = "/v1/secrets/{name}", tag = "secrets", params(("name" = String, Path, description = "Secret name"), SecretGetQuery),
    responses((status = 200, body = SecretValue)))]
pub async fn get_platform_secret(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
    Query(q): Query<SecretGetQuery>,
) -> ApiResult<Response> {
    Ok(value_answer(s.app.secret_get(&ctx, None, &name, selector(q)?).await?))
}

/// Schedule a platform secret's deletion, or delete it at once with `force=true`.
#[utoipa::path(delete, path = "/v1/secrets/{name}", tag = "secrets", params(("name" = String, Path, description = "Secret name"), SecretDeleteQuery),
    responses((status = 200, description = "Scheduled", body = SecretMeta), (status = 204, description = "Deleted")))]
pub async fn delete_platform_secret(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
    Query(q): Query<SecretDeleteQuery>,
) -> ApiResult<Response> {
    let meta = s.app.secret_delete(&ctx, None, &name, q.recovery_days, q.force.unwrap_or(false)).await?;
    Ok(delete_answer(meta))
}

/// Cancel a platform secret's scheduled deletion.
#[utoipa::path(post, path = "/v1/secrets/{name}/restore", tag = "secrets",
    params(("name" = String, Path, description = "Secret name")),
    responses((status = 200, body = SecretMeta)))]
pub async fn restore_platform_secret(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<SecretMeta>> {
    Ok(axum::Json(s.app.secret_restore(&ctx, None, &name).await?))
}

/// Platform secrets' metadata (never values), by name.
#[utoipa::path(get, path = "/v1/secrets", tag = "secrets", params(SecretListQuery),
    responses((status = 200, body = Page<SecretMeta>)))]
pub async fn list_platform_secrets(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Query(q): Query<SecretListQuery>,
) -> ApiResult<axum::Json<Page<SecretMeta>>> {
    let page = PageRequest::new(q.limit, q.cursor)?;
    Ok(axum::Json(s.app.secret_list(&ctx, None, &page).await?))
}

fn rotate_answer(r: RotationStarted) -> Response {
    (StatusCode::ACCEPTED, axum::Json(r)).into_response()
}

/// Rotate a tenant's secret (docs/secrets.md, "Rotation"): starts the built-in
/// `tenancy.secret.rotate` execution (create, set, test, finish) and answers 202 with
/// its id. 409 `rotation-in-progress` while one runs; 400 `invalid-rotation` for a
/// secret without a generator. Audited (`secret.rotate`).
#[utoipa::path(post, path = "/v1/tenants/{id}/secrets/{name}/rotate", tag = "secrets",
    params(("id" = String, Path, description = "Tenant id"), ("name" = String, Path, description = "Secret name")),
    responses((status = 202, description = "Rotation started", body = RotationStarted)))]
pub async fn rotate_tenant_secret(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    record_tenant(&id);
    Ok(rotate_answer(s.app.secret_rotate(&ctx, Some(&id), &name).await?))
}

/// Rotate a platform secret (admins and operators); as for a tenant's.
#[utoipa::path(post, path = "/v1/secrets/{name}/rotate", tag = "secrets",
    params(("name" = String, Path, description = "Secret name")),
    responses((status = 202, description = "Rotation started", body = RotationStarted)))]
pub async fn rotate_platform_secret(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(rotate_answer(s.app.secret_rotate(&ctx, None, &name).await?))
}
