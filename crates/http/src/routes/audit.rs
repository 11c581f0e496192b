//! `/v1/audit/verify` and audit exports.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use futures::StreamExt;
use serde::Deserialize;
use tenancy_app::audit::ops::{AuditExport, AuditVerification};
use tenancy_domain::time::Timestamp;
use tenancy_domain::Error;

use crate::extract::{Caller, Json, Query};
use crate::problem::ApiResult;
use crate::server::ServerState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    /// Also verify the Parquet archive in the blob store against the chain (every file
    /// against its manifest, the audit records from seq 1 without gap or repeat, each
    /// equal to the database's).
    pub archive: Option<bool>,
}

/// Verify the hash chain of the sealed audit records and the latest Merkle checkpoint.
/// Entries not sealed yet (sealing runs within about a second) are counted in `pending`.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", params(VerifyQuery),
    responses((status = 200, body = AuditVerification)))]
pub async fn verify_audit(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Query(q): Query<VerifyQuery>,
) -> ApiResult<axum::Json<AuditVerification>> {
    if q.archive == Some(true) {
        return Ok(axum::Json(s.app.audit_verify_archive(&ctx).await?));
    }
    Ok(axum::Json(s.app.audit_verify(&ctx).await?))
}

fn parse_time(field: &str, v: Option<String>) -> Result<Option<Timestamp>, Error> {
    v.map(|s| {
        Timestamp::parse_rfc3339(&s)
            .ok_or_else(|| Error::invalid(format!("{field} must be an RFC 3339 time, got {s:?}")))
    })
    .transpose()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// From the first sealed record at or after this time (RFC 3339).
    pub from: Option<String>,
    /// To the last sealed record before this time (RFC 3339).
    pub to: Option<String>,
}

/// Stream sealed audit records as NDJSON (one `AuditRecord` per line), a contiguous
/// `seq` range that `tenancy audit verify FILE` checks offline.
#[utoipa::path(get, path = "/v1/audit/export", tag = "audit", params(ExportQuery),
    responses((status = 200, description = "NDJSON, one record per line", content_type = "application/x-ndjson", body = String)))]
pub async fn export_audit(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Query(q): Query<ExportQuery>,
) -> ApiResult<impl IntoResponse> {
    let stream = s.app.audit_export(&ctx, parse_time("from", q.from)?, parse_time("to", q.to)?).await?;
    let body = Body::from_stream(stream.map(|chunk| chunk.map(axum::body::Bytes::from)));
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body))
}

/// The body of `POST /v1/audit/exports`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

/// Write an NDJSON export of sealed audit records to the blob store.
#[utoipa::path(post, path = "/v1/audit/exports", tag = "audit", request_body = ExportRequest,
    responses((status = 201, body = AuditExport)))]
pub async fn create_export(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Json(r): Json<ExportRequest>,
) -> ApiResult<impl IntoResponse> {
    let export = s.app.audit_export_to_blob(&ctx, r.from, r.to).await?;
    Ok((StatusCode::CREATED, axum::Json(export)))
}
