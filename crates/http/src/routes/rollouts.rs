//! `/v1/rollouts`: one release across a set of tenants, in waves (docs/releases.md
//! "Rollouts").

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use tenancy_domain::rollout::{Rollout, RolloutList, RolloutRequest, RolloutStarted};

use crate::extract::{Caller, Json, Path};
use crate::problem::ApiResult;
use crate::server::ServerState;

/// Start a rollout of a release, or a bulk plan change (`plan` instead of `release`).
///
/// The tenants are resolved now: those the selector matches that are not on the
/// release (plan) already; pinned (and not active) ones are skipped and listed, as are,
/// when their turn comes, those outside their maintenance window. They are
/// upgraded in waves (the canary, the `waves`, the rest), at most `max_concurrency`
/// at a time, `bake_s` apart; a wave failing more than `tolerated_failure_percent`
/// halts the rollout and (by default) rolls its succeeded tenants back. 400
/// `invalid-rollout` (bad strategy or selector, no tenant to upgrade), 400
/// `invalid-release` (no such release), 400 `unknown-plan` (no such plan), 409 `rollout-conflict` (a tenant is held by a
/// running, paused or halted rollout). Emits `RolloutStarted`.
#[utoipa::path(post, path = "/v1/rollouts", tag = "releases", request_body = RolloutRequest,
    responses((status = 202, description = "Started", body = RolloutStarted)))]
pub async fn start_rollout(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Json(req): Json<RolloutRequest>,
) -> ApiResult<impl IntoResponse> {
    let r = s.app.rollout_start(&ctx, req).await?;
    let body = RolloutStarted {
        id: r.id.clone(),
        status: r.status.clone(),
        tenants: r.tenant_ids().len(),
        waves: r.waves.len(),
        skipped: r.skipped.clone(),
    };
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, format!("/v1/rollouts/{}", r.id))], axum::Json(body)))
}

/// A rollout: its status, each wave's counts and tenants, failed tenants with the
/// step and reason, skipped tenants.
#[utoipa::path(get, path = "/v1/rollouts/{id}", tag = "releases",
    params(("id" = String, Path, description = "Rollout id")),
    responses((status = 200, body = Rollout)))]
pub async fn get_rollout(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Rollout>> {
    Ok(axum::Json(s.app.rollout_get(&ctx, &id).await?))
}

/// Every rollout, newest first.
#[utoipa::path(get, path = "/v1/rollouts", tag = "releases", responses((status = 200, body = RolloutList)))]
pub async fn list_rollouts(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
) -> ApiResult<axum::Json<RolloutList>> {
    Ok(axum::Json(RolloutList { items: s.app.rollout_list(&ctx).await? }))
}

/// Pause a running rollout: no new upgrades start, running ones finish. 409
/// `invalid-transition` unless running. Emits `RolloutPaused`.
#[utoipa::path(post, path = "/v1/rollouts/{id}/pause", tag = "releases",
    params(("id" = String, Path, description = "Rollout id")),
    responses((status = 200, body = Rollout)))]
pub async fn pause_rollout(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Rollout>> {
    Ok(axum::Json(s.app.rollout_pause(&ctx, &id).await?))
}

/// Resume a paused or halted rollout (a halted one goes on with the next wave). 409
/// `invalid-transition` otherwise. Emits `RolloutResumed`.
#[utoipa::path(post, path = "/v1/rollouts/{id}/resume", tag = "releases",
    params(("id" = String, Path, description = "Rollout id")),
    responses((status = 200, body = Rollout)))]
pub async fn resume_rollout(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Rollout>> {
    Ok(axum::Json(s.app.rollout_resume(&ctx, &id).await?))
}

/// Abort a rollout: terminal, no new upgrades (running ones finish), its tenants free
/// for another rollout. 409 `invalid-transition` when it has ended. Emits
/// `RolloutAborted`.
#[utoipa::path(post, path = "/v1/rollouts/{id}/abort", tag = "releases",
    params(("id" = String, Path, description = "Rollout id")),
    responses((status = 200, body = Rollout)))]
pub async fn abort_rollout(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Rollout>> {
    Ok(axum::Json(s.app.rollout_abort(&ctx, &id).await?))
}
