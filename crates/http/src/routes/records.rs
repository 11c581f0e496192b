//! `/v1/events` (the archive) and `/v1/audit`.

use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;
use tenancy_domain::event::Event;
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::time::Timestamp;
use tenancy_domain::Error;
use tenancy_store::{AuditFilter, EventFilter};

use crate::extract::{Caller, Query};
use crate::problem::ApiResult;
use crate::server::ServerState;

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
pub struct EventQuery {
    pub detail_type: Option<String>,
    pub tenant_id: Option<String>,
    /// Only events at or after this time (RFC 3339).
    pub after: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// List archived events, oldest first.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventQuery),
    responses((status = 200, body = Page<Event>)))]
pub async fn list_events(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Query(q): Query<EventQuery>,
) -> ApiResult<axum::Json<Page<Event>>> {
    let page = PageRequest::new(q.limit, q.cursor)?;
    let filter =
        EventFilter { detail_type: q.detail_type, tenant_id: q.tenant_id, after: parse_time("after", q.after)? };
    let events = s.app.event_list(&ctx, filter, &page).await?;
    Ok(axum::Json(events.map(|e| e.event)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub tenant_id: Option<String>,
    /// The actor's API key id.
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Only records at or after this time (RFC 3339).
    pub after: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

pub use tenancy_audit::AuditRecordView;

/// List audit records, oldest first.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Page<AuditRecordView>)))]
pub async fn list_audit(
    State(s): State<Arc<ServerState>>,
    Caller(ctx): Caller,
    Query(q): Query<AuditQuery>,
) -> ApiResult<axum::Json<Page<AuditRecordView>>> {
    let page = PageRequest::new(q.limit, q.cursor)?;
    let filter =
        AuditFilter { tenant_id: q.tenant_id, actor: q.actor, action: q.action, after: parse_time("after", q.after)? };
    let records = s.app.audit_list(&ctx, filter, &page).await?;
    Ok(axum::Json(records.map(AuditRecordView)))
}
