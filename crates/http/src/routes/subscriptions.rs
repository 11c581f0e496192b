//! `/v1/subscriptions`: event subscriptions, their deliveries, retries and replay.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use tenancy_app::subscriptions::ops::SubscriptionWithSecret;
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::subscription::{Delivery, DeliveryStatus, NewSubscription, Subscription, SubscriptionPatch};
use tenancy_domain::time::Timestamp;

use super::plans::PageQuery;
use crate::extract::{etag, Caller, IfMatch, Json, Path, PatternJson, Query};
use crate::problem::ApiResult;
use crate::server::ServerState;

/// Create a subscription; a webhook subscription's `secret` is shown this once.
#[utoipa::path(post, path = "/v1/subscriptions", tag = "subscriptions", request_body = NewSubscription,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 201, body = SubscriptionWithSecret, headers(("ETag" = String)))))]
pub async fn create_subscription(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    PatternJson(new): PatternJson<NewSubscription>,
) -> ApiResult<impl IntoResponse> {
    let created = s.app.subscription_create(&ctx, new).await?;
    let location = format!("/v1/subscriptions/{}", created.subscription.id);
    Ok((StatusCode::CREATED, [etag(created.subscription.version), (header::LOCATION, location)], axum::Json(created)))
}

/// List subscriptions.
#[utoipa::path(get, path = "/v1/subscriptions", tag = "subscriptions", params(PageQuery),
    responses((status = 200, body = Page<Subscription>)))]
pub async fn list_subscriptions(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<Subscription>>> {
    Ok(axum::Json(s.app.subscription_list(&ctx, &q.page()?).await?))
}

/// Get a subscription (never its secret).
#[utoipa::path(get, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 200, body = Subscription, headers(("ETag" = String)))))]
pub async fn get_subscription(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let sub = s.app.subscription_get(&ctx, &id).await?;
    Ok(([etag(sub.version)], axum::Json(sub)))
}

/// Change a subscription's name, pattern or target.
#[utoipa::path(patch, path = "/v1/subscriptions/{id}", tag = "subscriptions", request_body = SubscriptionPatch,
    params(("id" = String, Path, description = "Subscription id"),
        ("If-Match" = Option<String>, Header, description = "ETag the subscription must still have")),
    responses((status = 200, body = Subscription, headers(("ETag" = String)))))]
pub async fn patch_subscription(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
    IfMatch(if_match): IfMatch,
    PatternJson(patch): PatternJson<SubscriptionPatch>,
) -> ApiResult<impl IntoResponse> {
    let sub = s.app.subscription_patch(&ctx, &id, patch, if_match).await?;
    Ok(([etag(sub.version)], axum::Json(sub)))
}

/// Delete a subscription with its deliveries.
#[utoipa::path(delete, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_subscription(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.app.subscription_delete(&ctx, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replace the signing secret; the previous one keeps signing beside it for 24 hours.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/rotate-secret", tag = "subscriptions",
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 200, body = SubscriptionWithSecret)))]
pub async fn rotate_secret(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<SubscriptionWithSecret>> {
    Ok(axum::Json(s.app.subscription_rotate_secret(&ctx, &id).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    pub status: Option<DeliveryStatus>,
    /// Items per page, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// List a subscription's deliveries with every attempt, oldest first.
#[utoipa::path(get, path = "/v1/subscriptions/{id}/deliveries", tag = "subscriptions",
    params(("id" = String, Path, description = "Subscription id"), DeliveryQuery),
    responses((status = 200, body = Page<Delivery>)))]
pub async fn list_deliveries(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
    Query(q): Query<DeliveryQuery>,
) -> ApiResult<axum::Json<Page<Delivery>>> {
    let page = PageRequest::new(q.limit, q.cursor)?;
    Ok(axum::Json(s.app.delivery_list(&ctx, &id, q.status, &page).await?))
}

/// Queue a dead delivery again with a fresh attempt budget.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/deliveries/{delivery_id}/retry", tag = "subscriptions",
    params(("id" = String, Path, description = "Subscription id"), ("delivery_id" = String, Path, description = "Delivery id")),
    responses((status = 200, body = Delivery)))]
pub async fn retry_delivery(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path((id, delivery_id)): Path<(String, String)>,
) -> ApiResult<axum::Json<Delivery>> {
    Ok(axum::Json(s.app.delivery_retry(&ctx, &id, &delivery_id).await?))
}

/// The body of `POST /v1/subscriptions/{id}/replay`: archived events with
/// `from <= time < to`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    pub from: Timestamp,
    pub to: Timestamp,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReplayResult {
    /// Deliveries created.
    pub count: u64,
}

/// Deliver the archived events in a time range that match the subscription again.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/replay", tag = "subscriptions", request_body = ReplayRequest,
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 202, body = ReplayResult)))]
pub async fn replay(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
    Json(r): Json<ReplayRequest>,
) -> ApiResult<impl IntoResponse> {
    let count = s.app.subscription_replay(&ctx, &id, r.from, r.to).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(ReplayResult { count })))
}
