//! `/v1/events` (the archive) and `/v1/audit`.

use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use tenancy_audit::AuditEntry;
use tenancy_domain::event::Event;
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::time::Timestamp;
use tenancy_domain::Error;
use tenancy_store::{AuditFilter, EventFilter, StoredAudit};
use utoipa::openapi::{RefOr, Schema};

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

/// One audit record; `seq`, `prev_hash` and `hash` are set once the record is sealed
/// into the hash chain.
///
/// The stored entry as it is (`StoredAudit` serializes as the entry's members and the
/// three seal members). Its schema is the entry's (`tenancy_audit::AuditEntry`) with
/// those three added, as one object: a derived schema of a flattened entry would be an
/// `allOf`, another document.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct AuditRecordView(pub StoredAudit);

/// The members [`AuditRecordView`] adds to the entry's.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // A schema only.
struct Seal {
    seq: Option<i64>,
    prev_hash: Option<String>,
    hash: Option<String>,
}

impl utoipa::PartialSchema for AuditRecordView {
    fn schema() -> RefOr<Schema> {
        let (RefOr::T(Schema::Object(mut view)), RefOr::T(Schema::Object(seal))) =
            (AuditEntry::schema(), <Seal as utoipa::PartialSchema>::schema())
        else {
            unreachable!("derived schemas of structs are objects")
        };
        view.properties.extend(seal.properties);
        view.required.extend(seal.required);
        view.description = Some(
            "One audit record; `seq`, `prev_hash` and `hash` are set once the record is sealed\ninto the hash chain."
                .to_owned(),
        );
        RefOr::T(Schema::Object(view))
    }
}

impl utoipa::ToSchema for AuditRecordView {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <AuditEntry as utoipa::ToSchema>::schemas(schemas);
    }
}

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
