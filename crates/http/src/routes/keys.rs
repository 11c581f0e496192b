//! `/v1/api-keys`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use tenancy_domain::apikey::{ApiKey, NewApiKey};
use tenancy_domain::page::Page;

use super::plans::PageQuery;
use crate::extract::{Caller, Json, Path, Query};
use crate::problem::ApiResult;
use crate::server::ServerState;

pub use tenancy_domain::api::CreatedKey;

/// Create an API key (admin only).
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", request_body = NewApiKey,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 201, body = CreatedKey)))]
pub async fn create_key(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Json(new): Json<NewApiKey>,
) -> ApiResult<impl IntoResponse> {
    let (k, plaintext) = s.app.api_key_create(&ctx, new).await?;
    let body = CreatedKey {
        id: k.id,
        name: k.name,
        role: k.role,
        tenant_id: k.tenant_id,
        created_at: k.created_at,
        expires_at: k.expires_at,
        rate_limit: k.rate_limit,
        key: plaintext,
    };
    Ok((StatusCode::CREATED, axum::Json(body)))
}

/// List API keys (never the keys themselves).
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
