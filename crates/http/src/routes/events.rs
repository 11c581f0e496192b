//! `POST /v1/events` (publish custom events, as EventBridge's PutEvents) and
//! `POST /v1/events/test-pattern` (as TestEventPattern).

use std::sync::Arc;

use axum::extract::State;
use tenancy_app::events::ops::{PutEventsRequest, PutEventsResponse, TestPatternRequest, TestPatternResponse};

use crate::extract::{Caller, Json, PatternJson};
use crate::problem::ApiResult;
use crate::server::ServerState;

/// Publish up to 10 custom events. Each entry succeeds (`EventId`) or fails on its own
/// (`ErrorCode`, `ErrorMessage`); the sources `tenancy` and `tenancy.*` are reserved; a
/// tenant key's events carry its own tenant id.
#[utoipa::path(post, path = "/v1/events", tag = "events", request_body = PutEventsRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 200, body = PutEventsResponse)))]
pub async fn put_events(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Json(req): Json<PutEventsRequest>,
) -> ApiResult<axum::Json<PutEventsResponse>> {
    Ok(axum::Json(s.app.events_put(&ctx, req).await?))
}

/// Whether an event matches a pattern; an invalid pattern is 400 `invalid-pattern`.
#[utoipa::path(post, path = "/v1/events/test-pattern", tag = "events", request_body = TestPatternRequest,
    responses((status = 200, body = TestPatternResponse)))]
pub async fn test_pattern(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    PatternJson(req): PatternJson<TestPatternRequest>,
) -> ApiResult<axum::Json<TestPatternResponse>> {
    Ok(axum::Json(s.app.events_test_pattern(&ctx, &req)?))
}
