//! `/v1/state-machines`, `/v1/executions` and `/v1/task-tokens`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use tenancy_app::{
    ExecutionQuery, ExecutionView, HistoryEventView, StartExecution, StateMachineSpec, StateMachineView, StopExecution,
    TaskFailure, TaskSuccess,
};
use tenancy_domain::page::{Page, PageRequest};

use crate::extract::{Caller, Json, Path, Query};
use crate::problem::{ApiResult, Problem};
use crate::routes::plans::PageQuery;
use crate::server::ServerState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExecutionListQuery {
    /// RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED.
    pub status: Option<String>,
    pub state_machine: Option<String>,
    pub tenant_id: Option<String>,
    /// Only RUNNING executions without progress for the configured time.
    pub stuck: Option<bool>,
    /// Items per page, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Create a state machine or add a version of its definition.
#[utoipa::path(put, path = "/v1/state-machines/{name}", tag = "workflows",
    params(("name" = String, Path, description = "State machine name")),
    request_body = StateMachineSpec,
    responses(
        (status = 201, description = "Created or a new version", body = StateMachineView),
        (status = 200, description = "Unchanged", body = StateMachineView),
        (status = "4XX", description = "Problem (`invalid-definition` names the state and field)", body = Problem, content_type = "application/problem+json")))]
pub async fn put_state_machine(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
    Json(spec): Json<StateMachineSpec>,
) -> ApiResult<impl IntoResponse> {
    let (sm, added) = s.app.state_machine_put(&ctx, &name, spec).await?;
    let status = if added { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(sm)))
}

/// Get the latest version of a state machine.
#[utoipa::path(get, path = "/v1/state-machines/{name}", tag = "workflows",
    params(("name" = String, Path, description = "State machine name")),
    responses((status = 200, body = StateMachineView)))]
pub async fn get_state_machine(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<StateMachineView>> {
    Ok(axum::Json(s.app.state_machine_get(&ctx, &name).await?))
}

/// List state machines (latest versions).
#[utoipa::path(get, path = "/v1/state-machines", tag = "workflows", params(PageQuery),
    responses((status = 200, body = Page<StateMachineView>)))]
pub async fn list_state_machines(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<StateMachineView>>> {
    Ok(axum::Json(s.app.state_machine_list(&ctx, &q.page()?).await?))
}

/// Start an execution; a repeated name returns the existing execution (200).
#[utoipa::path(post, path = "/v1/executions", tag = "workflows", request_body = StartExecution,
    responses(
        (status = 201, description = "Started", body = ExecutionView),
        (status = 200, description = "An execution of that name exists", body = ExecutionView)))]
pub async fn start_execution(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Json(req): Json<StartExecution>,
) -> ApiResult<impl IntoResponse> {
    let (exe, created) = s.app.execution_start(&ctx, req).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let location = format!("/v1/executions/{}", exe.id);
    Ok((status, [(header::LOCATION, location)], axum::Json(exe)))
}

/// List executions, newest last.
#[utoipa::path(get, path = "/v1/executions", tag = "workflows", params(ExecutionListQuery),
    responses((status = 200, body = Page<ExecutionView>)))]
pub async fn list_executions(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Query(q): Query<ExecutionListQuery>,
) -> ApiResult<axum::Json<Page<ExecutionView>>> {
    let page = PageRequest::new(q.limit, q.cursor)?;
    let query = ExecutionQuery {
        status: q.status,
        state_machine: q.state_machine,
        tenant_id: q.tenant_id,
        stuck: q.stuck.unwrap_or(false),
    };
    Ok(axum::Json(s.app.execution_list(&ctx, query, &page).await?))
}

/// Get an execution.
#[utoipa::path(get, path = "/v1/executions/{id}", tag = "workflows",
    params(("id" = String, Path, description = "Execution id")),
    responses((status = 200, body = ExecutionView)))]
pub async fn get_execution(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ExecutionView>> {
    Ok(axum::Json(s.app.execution_get(&ctx, &id).await?))
}

/// An execution's history events, oldest first.
#[utoipa::path(get, path = "/v1/executions/{id}/history", tag = "workflows",
    params(("id" = String, Path, description = "Execution id"), PageQuery),
    responses((status = 200, body = Page<HistoryEventView>)))]
pub async fn execution_history(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<HistoryEventView>>> {
    Ok(axum::Json(s.app.execution_history(&ctx, &id, &q.page()?).await?))
}

/// Stop a running execution (ABORTED). The body is optional.
#[utoipa::path(post, path = "/v1/executions/{id}/stop", tag = "workflows",
    params(("id" = String, Path, description = "Execution id")),
    request_body(content = Option<StopExecution>),
    responses((status = 200, body = ExecutionView)))]
pub async fn stop_execution(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
    crate::extract::RawBody(body): crate::extract::RawBody,
) -> ApiResult<axum::Json<ExecutionView>> {
    let req: StopExecution =
        if body.is_empty() { StopExecution::default() } else { crate::extract::parse_json(&body)? };
    Ok(axum::Json(s.app.execution_stop(&ctx, &id, req).await?))
}

/// Redrive a failed execution from the step that failed it, keeping its history.
#[utoipa::path(post, path = "/v1/executions/{id}/redrive", tag = "workflows",
    params(("id" = String, Path, description = "Execution id")),
    responses((status = 200, body = ExecutionView)))]
pub async fn redrive_execution(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ExecutionView>> {
    Ok(axum::Json(s.app.execution_redrive(&ctx, &id).await?))
}

/// Complete a callback task successfully with its output.
#[utoipa::path(post, path = "/v1/task-tokens/{token}/success", tag = "workflows",
    params(("token" = String, Path, description = "The task token ($$.Task.Token)")),
    request_body = TaskSuccess,
    responses((status = 204, description = "Recorded")))]
pub async fn task_success(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(token): Path<String>,
    Json(req): Json<TaskSuccess>,
) -> ApiResult<StatusCode> {
    s.app.task_success(&ctx, &token, req.output).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Fail a callback task.
#[utoipa::path(post, path = "/v1/task-tokens/{token}/failure", tag = "workflows",
    params(("token" = String, Path, description = "The task token ($$.Task.Token)")),
    request_body = TaskFailure,
    responses((status = 204, description = "Recorded")))]
pub async fn task_failure(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(token): Path<String>,
    Json(req): Json<TaskFailure>,
) -> ApiResult<StatusCode> {
    s.app.task_failure(&ctx, &token, req).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Report that a callback task is still working (pushes its HeartbeatSeconds deadline).
#[utoipa::path(post, path = "/v1/task-tokens/{token}/heartbeat", tag = "workflows",
    params(("token" = String, Path, description = "The task token ($$.Task.Token)")),
    responses((status = 204, description = "Recorded")))]
pub async fn task_heartbeat(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(token): Path<String>,
) -> ApiResult<StatusCode> {
    s.app.task_heartbeat(&ctx, &token).await?;
    Ok(StatusCode::NO_CONTENT)
}
