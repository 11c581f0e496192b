//! `/v1/api-keys`.

use std::sync::Arc;

use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use tenancy_domain::apikey::{ApiKey, NewApiKey, RotateKey};
use tenancy_domain::page::Page;

use super::plans::PageQuery;
use crate::extract::{parse_json, Caller, Json, Path, Query, RawBody};
use crate::problem::ApiResult;
use crate::server::ServerState;

pub use tenancy_domain::api::CreatedKey;

/// The answer showing a key's plaintext this once.
fn created(k: ApiKey, plaintext: String) -> CreatedKey {
    CreatedKey {
        id: k.id,
        name: k.name,
        role: k.role,
        tenant_id: k.tenant_id,
        created_at: k.created_at,
        expires_at: k.expires_at,
        rate_limit: k.rate_limit,
        labels: k.labels,
        region: k.region,
        previous_secret_expires_at: k.previous_secret_expires_at,
        key: plaintext,
    }
}

/// Create an API key: admins any; a tenant key a key of role `tenant` for its own
/// tenant (403 for a wider role).
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", request_body = NewApiKey,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 201, body = CreatedKey)))]
pub async fn create_key(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Json(new): Json<NewApiKey>,
) -> ApiResult<impl IntoResponse> {
    let (k, plaintext) = s.app.api_key_create(&ctx, new).await?;
    Ok((StatusCode::CREATED, axum::Json(created(k, plaintext))))
}

/// Rotate an API key: a new secret for the same key (shown once); the old secret keeps
/// working for `grace_s` seconds (default 3600, at most 604800).
#[utoipa::path(post, path = "/v1/api-keys/{id}/rotate", tag = "api-keys", request_body = Option<RotateKey>,
    params(("id" = String, Path, description = "Key id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 200, body = CreatedKey)))]
pub async fn rotate_key(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult<axum::Json<CreatedKey>> {
    // Authorized on the key before the body is read (a key the caller may not manage
    // is 404 whatever the body).
    s.app.managed_key(&ctx, &id).await?;
    let RawBody(body) = RawBody::from_request(req, &()).await?;
    let req: RotateKey =
        if body.iter().all(u8::is_ascii_whitespace) { RotateKey::default() } else { parse_json(&body)? };
    let (k, plaintext) = s.app.api_key_rotate(&ctx, &id, req).await?;
    Ok(axum::Json(created(k, plaintext)))
}

/// List API keys (never the keys themselves): admins all; a tenant key its tenant's.
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", params(PageQuery),
    responses((status = 200, body = Page<ApiKey>)))]
pub async fn list_keys(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<ApiKey>>> {
    Ok(axum::Json(s.app.api_key_list(&ctx, &q.page()?).await?))
}

/// Revoke an API key.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys",
    params(("id" = String, Path, description = "Key id")),
    responses((status = 204, description = "Revoked")))]
pub async fn delete_key(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.app.api_key_delete(&ctx, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
