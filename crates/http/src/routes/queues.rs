//! `/v1/queues`: queues, messages, receipts, dead-letter redrive.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use tenancy_app::queues::ops::{
    DeleteBatch, DeletedBatch, PeekedMessages, ReceiveRequest, ReceivedMessages, Redriven, SendBatch, SentBatch,
    VisibilityChange,
};
use tenancy_domain::page::Page;
use tenancy_domain::queue::{Queue, QueueInfo, QueueSpec, SendMessage, Sent};

use super::plans::PageQuery;
use crate::extract::{Caller, Json, Path, Query};
use crate::problem::ApiResult;
use crate::server::ServerState;

/// Create a queue or replace its settings (its messages stay).
#[utoipa::path(put, path = "/v1/queues/{name}", tag = "queues", request_body = QueueSpec,
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 201, description = "Created", body = Queue), (status = 200, description = "Replaced", body = Queue)))]
pub async fn put_queue(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
    Json(spec): Json<QueueSpec>,
) -> ApiResult<impl IntoResponse> {
    let (q, created) = s.app.queue_put(&ctx, &name, spec).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, [(header::LOCATION, format!("/v1/queues/{name}"))], axum::Json(q)))
}

/// A queue's settings and depth: `visible`, `in_flight`, `delayed`, `dead_lettered`, `oldest_age_s`.
#[utoipa::path(get, path = "/v1/queues/{name}", tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 200, body = QueueInfo)))]
pub async fn get_queue(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<QueueInfo>> {
    Ok(axum::Json(s.app.queue_get(&ctx, &name).await?))
}

/// List queues by name.
#[utoipa::path(get, path = "/v1/queues", tag = "queues", params(PageQuery),
    responses((status = 200, body = Page<Queue>)))]
pub async fn list_queues(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<Queue>>> {
    Ok(axum::Json(s.app.queue_list(&ctx, &q.page()?).await?))
}

/// Delete a queue with its messages (409 `queue-in-use` while another queue uses it as its dead-letter queue).
#[utoipa::path(delete, path = "/v1/queues/{name}", tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_queue(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.app.queue_delete(&ctx, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Send a message. A repeated `dedup_id` within 5 minutes is accepted (`deduplicated: true`) but not enqueued again.
#[utoipa::path(post, path = "/v1/queues/{name}/messages", tag = "queues", request_body = SendMessage,
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 201, body = Sent)))]
pub async fn send_message(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
    Json(m): Json<SendMessage>,
) -> ApiResult<impl IntoResponse> {
    Ok((StatusCode::CREATED, axum::Json(s.app.message_send(&ctx, &name, m).await?)))
}

/// The query of `GET /v1/queues/{name}/messages`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PeekQuery {
    /// Messages to show, 1-100 [default: 10].
    pub limit: Option<u32>,
}

/// Peek: the first `limit` messages (1-100, default 10) in send order with their state, attributes and receive counts, without receiving them (nothing changes; no receipts).
#[utoipa::path(get, path = "/v1/queues/{name}/messages", tag = "queues",
    params(("name" = String, Path, description = "Queue name"), PeekQuery),
    responses((status = 200, body = PeekedMessages)))]
pub async fn peek_messages(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
    Query(q): Query<PeekQuery>,
) -> ApiResult<axum::Json<PeekedMessages>> {
    Ok(axum::Json(PeekedMessages { messages: s.app.message_peek(&ctx, &name, q.limit).await? }))
}

/// Send up to 100 messages in one transaction, in order.
#[utoipa::path(post, path = "/v1/queues/{name}/messages/batch", tag = "queues", request_body = SendBatch,
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 201, body = SentBatch)))]
pub async fn send_batch(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
    Json(b): Json<SendBatch>,
) -> ApiResult<impl IntoResponse> {
    let messages = s.app.message_send_batch(&ctx, &name, b.entries).await?;
    Ok((StatusCode::CREATED, axum::Json(SentBatch { messages })))
}

/// Receive up to `max` messages (1-100), long-polling up to `wait_s` seconds (0-20) when none is visible.
#[utoipa::path(post, path = "/v1/queues/{name}/receive", tag = "queues", request_body = ReceiveRequest,
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 200, body = ReceivedMessages)))]
pub async fn receive(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
    Json(r): Json<ReceiveRequest>,
) -> ApiResult<axum::Json<ReceivedMessages>> {
    let messages = s.app.message_receive(&ctx, &name, r).await?;
    Ok(axum::Json(ReceivedMessages { messages }))
}

/// Delete a received message by its receipt (404 when the receipt is stale: received again since).
#[utoipa::path(delete, path = "/v1/queues/{name}/messages/{receipt}", tag = "queues",
    params(("name" = String, Path, description = "Queue name"), ("receipt" = String, Path, description = "Receipt")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_message(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path((name, receipt)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.app.message_delete(&ctx, &name, &receipt).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete up to 100 received messages by receipt.
#[utoipa::path(post, path = "/v1/queues/{name}/messages/delete", tag = "queues", request_body = DeleteBatch,
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 200, body = DeletedBatch)))]
pub async fn delete_batch(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
    Json(b): Json<DeleteBatch>,
) -> ApiResult<axum::Json<DeletedBatch>> {
    Ok(axum::Json(s.app.message_delete_batch(&ctx, &name, b.receipts).await?))
}

/// Change a received message's visibility timeout (0: visible at once).
#[utoipa::path(post, path = "/v1/queues/{name}/messages/{receipt}/visibility", tag = "queues",
    request_body = VisibilityChange,
    params(("name" = String, Path, description = "Queue name"), ("receipt" = String, Path, description = "Receipt")),
    responses((status = 204, description = "Changed")))]
pub async fn change_visibility(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path((name, receipt)): Path<(String, String)>,
    Json(c): Json<VisibilityChange>,
) -> ApiResult<StatusCode> {
    s.app.message_visibility(&ctx, &name, &receipt, c).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Move a dead-letter queue's messages back to the queues they came from.
#[utoipa::path(post, path = "/v1/queues/{name}/redrive", tag = "queues",
    params(("name" = String, Path, description = "Dead-letter queue name")),
    responses((status = 200, body = Redriven)))]
pub async fn redrive(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Redriven>> {
    Ok(axum::Json(s.app.queue_redrive(&ctx, &name).await?))
}
