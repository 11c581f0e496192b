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

/// Prometheus metrics (docs/operations.md lists them). The stored-state gauges are
/// collected first (at most once a second, see `tenancy_app::metrics`); when the store
/// does not answer, the rest is served and the failure is counted.
pub async fn metrics(State(s): State<Arc<ServerState>>) -> impl IntoResponse {
    if let Err(e) = s.app.collect_metrics().await {
        tracing::warn!(error = %e, "failed to collect the stored-state gauges");
        ::metrics::counter!("tenancy_metrics_collection_errors_total").increment(1);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render())
}
