//! Health, readiness and metrics: unauthenticated, for load balancers and scrapers.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::json;

use crate::problem::ApiResult;
use crate::server::ServerState;

/// Liveness: the process answers.
pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

/// Readiness: the store answers and every migration is applied.
pub async fn readyz(State(s): State<Arc<ServerState>>) -> ApiResult<impl IntoResponse> {
    s.app.store().ready().await?;
    Ok(axum::Json(json!({"status": "ready", "store": s.app.store().backend().as_str()})))
}

/// Prometheus metrics.
pub async fn metrics(State(s): State<Arc<ServerState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render())
}
