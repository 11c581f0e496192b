//! `/v1/connections`: named credentials for `http:invoke`, hooks and webhook
//! subscriptions (docs/connections.md). Answers carry metadata only, never the
//! credential.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use tenancy_domain::connection::{Connection, ConnectionSpec};

use crate::extract::{Caller, Json, Path};
use crate::problem::ApiResult;
use crate::server::ServerState;

pub use tenancy_domain::api::ConnectionList;

/// Create (201) or replace (200) a connection; its credential (`value`, `password` or
/// `client_secret`) is sealed as a new version of the platform secret
/// `connection.<name>` and never shown again.
#[utoipa::path(put, path = "/v1/connections/{name}", tag = "connections", request_body = ConnectionSpec,
    params(("name" = String, Path, description = "Connection name: 1-64 letters, digits, '.', '-' and '_'")),
    responses((status = 201, description = "Created", body = Connection),
        (status = 200, description = "Replaced", body = Connection)))]
pub async fn put_connection(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
    Json(spec): Json<ConnectionSpec>,
) -> ApiResult<impl IntoResponse> {
    let (conn, created) = s.app.connection_put(&ctx, &name, spec).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let headers = [(header::LOCATION, format!("/v1/connections/{name}"))];
    Ok((status, headers, axum::Json(conn)))
}

/// A connection's metadata (never its credential).
#[utoipa::path(get, path = "/v1/connections/{name}", tag = "connections",
    params(("name" = String, Path, description = "Connection name")),
    responses((status = 200, body = Connection)))]
pub async fn get_connection(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Connection>> {
    Ok(axum::Json(s.app.connection_get(&ctx, &name).await?))
}

/// Every connection's metadata, by name.
#[utoipa::path(get, path = "/v1/connections", tag = "connections",
    responses((status = 200, body = ConnectionList)))]
pub async fn list_connections(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
) -> ApiResult<axum::Json<ConnectionList>> {
    Ok(axum::Json(ConnectionList { items: s.app.connection_list(&ctx).await? }))
}

/// Delete a connection and its credential; 409 `connection-in-use` while hooks or
/// webhook subscriptions name it (state machines naming it then fail at run time).
#[utoipa::path(delete, path = "/v1/connections/{name}", tag = "connections",
    params(("name" = String, Path, description = "Connection name")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_connection(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.app.connection_delete(&ctx, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
