//! Custom events: product services publish their own events (`POST /v1/events`, as
//! EventBridge's PutEvents) and anyone may try a pattern against an event
//! (`POST /v1/events/test-pattern`, as TestEventPattern).
//!
//! Published events go to the same outbox and archive as Tenancy's own, in one
//! transaction through the store's [`Effects`], so subscriptions see them like any other.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tenancy_domain::event::Event;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};
use tenancy_store::Effects;

use crate::context::Permission as P;
use crate::subscriptions::ops::parse_pattern;
use crate::tenants::lifecycle::is_reserved_source;
use crate::{App, OpContext};
use tenancy_domain::page::{Page, PageRequest};
use tenancy_store::{EventFilter, StoredEvent};

/// At most this many entries per request (EventBridge's PutEvents limit).
pub const MAX_ENTRIES: usize = 10;
/// Longest `Source` and `DetailType`, in characters (EventBridge: 256 and 128).
pub const MAX_SOURCE_LEN: usize = 256;
pub const MAX_DETAIL_TYPE_LEN: usize = 128;
/// At most this many `Resources` per entry.
pub const MAX_RESOURCES: usize = 20;

/// `POST /v1/events`: `{"Entries": [...]}`, 1 to [`MAX_ENTRIES`] entries.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutEventsRequest {
    #[serde(rename = "Entries")]
    #[schema(value_type = Vec<PutEventsEntry>)]
    pub entries: Vec<Value>,
}

/// One event to publish. Each entry is checked on its own: a bad one fails with an
/// `ErrorCode` in the response and the others are still published. (This type only
/// documents the entry for OpenAPI: entries are read one by one from their JSON, so
/// that a bad entry fails alone.)
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct PutEventsEntry {
    /// The event's `source`; `tenancy` and `tenancy.*` are reserved.
    #[serde(rename = "Source")]
    pub source: String,
    /// The event's `detail-type`.
    #[serde(rename = "DetailType")]
    pub detail_type: String,
    /// The event's `detail`: a JSON object, as a string (as EventBridge).
    #[serde(rename = "Detail")]
    pub detail: String,
    #[serde(rename = "Resources")]
    pub resources: Option<Vec<String>>,
    /// RFC 3339; now when absent.
    #[serde(rename = "Time")]
    pub time: Option<String>,
    /// The tenant the event is about (a Tenancy extension). A tenant key's events
    /// carry its own tenant, whatever is sent here.
    #[serde(rename = "TenantId")]
    pub tenant_id: Option<String>,
}

/// The outcome of one entry: `EventId`, or `ErrorCode` and `ErrorMessage`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PutEventsResultEntry {
    #[serde(rename = "EventId", skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(rename = "ErrorCode", skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(rename = "ErrorMessage", skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// The response of `POST /v1/events`, one result per entry, in order.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PutEventsResponse {
    #[serde(rename = "FailedEntryCount")]
    pub failed_entry_count: usize,
    #[serde(rename = "Entries")]
    pub entries: Vec<PutEventsResultEntry>,
}

/// `POST /v1/events/test-pattern`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestPatternRequest {
    #[schema(value_type = Object)]
    pub pattern: Value,
    #[schema(value_type = Object)]
    pub event: Value,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TestPatternResponse {
    pub result: bool,
}

fn failed(code: &str, message: impl Into<String>) -> PutEventsResultEntry {
    PutEventsResultEntry { event_id: None, error_code: Some(code.into()), error_message: Some(message.into()) }
}

/// Builds the event of one entry, or the entry's error.
fn entry_event(ctx: &OpContext, entry: &Value) -> std::result::Result<Event, PutEventsResultEntry> {
    let Value::Object(fields) = entry else {
        return Err(failed("InvalidArgument", "an entry must be a JSON object"));
    };
    const KNOWN: [&str; 6] = ["Source", "DetailType", "Detail", "Resources", "Time", "TenantId"];
    if let Some(unknown) = fields.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(failed("InvalidArgument", format!("unknown field {unknown:?}")));
    }
    let text = |name: &str, max: usize| -> std::result::Result<String, PutEventsResultEntry> {
        match fields.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= max => Ok(s.clone()),
            Some(Value::String(_)) => {
                Err(failed("InvalidArgument", format!("{name} must be 1 to {max} characters, not blank")))
            }
            Some(_) => Err(failed("InvalidArgument", format!("{name} must be a string"))),
            None => Err(failed("InvalidArgument", format!("{name} is required"))),
        }
    };
    let source = text("Source", MAX_SOURCE_LEN)?;
    if is_reserved_source(&source) {
        return Err(failed(
            "NotAuthorizedForSourceException",
            format!("the source {source:?} is reserved to Tenancy's own events"),
        ));
    }
    let detail_type = text("DetailType", MAX_DETAIL_TYPE_LEN)?;
    let detail = match fields.get("Detail") {
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => v,
            _ => return Err(failed("MalformedDetail", "Detail must be a JSON object, as a string")),
        },
        Some(_) => return Err(failed("MalformedDetail", "Detail must be a JSON object, as a string")),
        None => return Err(failed("InvalidArgument", "Detail is required")),
    };
    let resources = match fields.get("Resources") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.len() <= MAX_RESOURCES => items
            .iter()
            .map(|r| r.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| failed("InvalidArgument", "Resources must be strings"))?,
        Some(_) => {
            return Err(failed(
                "InvalidArgument",
                format!("Resources must be an array of at most {MAX_RESOURCES} strings"),
            ))
        }
    };
    let time = match fields.get("Time") {
        None | Some(Value::Null) => Timestamp::now(),
        Some(Value::String(s)) => Timestamp::parse_rfc3339(s)
            .ok_or_else(|| failed("InvalidArgument", format!("Time must be an RFC 3339 time, got {s:?}")))?,
        Some(_) => return Err(failed("InvalidArgument", "Time must be an RFC 3339 time")),
    };
    let sent_tenant = match fields.get("TenantId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(failed("InvalidArgument", "TenantId must be a string")),
    };
    // A tenant key publishes for its own tenant only, whatever it sends.
    let tenant = ctx.principal.tenant_id.clone().or(sent_tenant);
    let mut event = Event::new(&detail_type, tenant.as_deref(), resources, detail);
    event.source = source;
    event.time = time;
    Ok(event)
}

impl App {
    /// Publishes custom events: every valid entry commits in one transaction; each
    /// entry's outcome is reported in order.
    pub async fn events_put(&self, ctx: &OpContext, req: PutEventsRequest) -> Result<PutEventsResponse> {
        ctx.authorize(P::EventPut)?;
        if req.entries.is_empty() || req.entries.len() > MAX_ENTRIES {
            return Err(Error::invalid(format!(
                "Entries must hold 1 to {MAX_ENTRIES} entries, got {}",
                req.entries.len()
            )));
        }
        let mut fx = Effects::none();
        let mut results = Vec::with_capacity(req.entries.len());
        for entry in &req.entries {
            match entry_event(ctx, entry) {
                Ok(event) => {
                    results.push(PutEventsResultEntry {
                        event_id: Some(event.id.clone()),
                        error_code: None,
                        error_message: None,
                    });
                    fx = fx.with_event(event);
                }
                Err(failure) => results.push(failure),
            }
        }
        let failed_entry_count = results.iter().filter(|r| r.error_code.is_some()).count();
        if failed_entry_count < results.len() {
            self.store().commit_effects(&fx).await?;
        }
        Ok(PutEventsResponse { failed_entry_count, entries: results })
    }

    /// Whether `event` matches `pattern` (an invalid pattern is `invalid-pattern`).
    pub fn events_test_pattern(&self, ctx: &OpContext, req: &TestPatternRequest) -> Result<TestPatternResponse> {
        ctx.authorize(P::PatternTest)?;
        let pattern = parse_pattern(&req.pattern)?;
        Ok(TestPatternResponse { result: pattern.matches(&req.event) })
    }
}

impl App {
    pub async fn event_list(
        &self,
        ctx: &OpContext,
        filter: EventFilter,
        page: &PageRequest,
    ) -> Result<Page<StoredEvent>> {
        ctx.authorize(P::RecordsRead)?;
        let mut page = self.store.event_list(&filter, page).await?;
        // A `SignupRequested` event's activation token is a credential for a new
        // tenant: in the archive only callers who may create tenants (admins,
        // operators, who may also subscribe to the event) see it; viewers read it
        // redacted (docs/self-service.md).
        if ctx.authorize(P::TenantAdmin).is_err() {
            for e in &mut page.items {
                if e.event.detail_type == tenancy_domain::event::names::SIGNUP_REQUESTED {
                    if let Some(t) = e.event.detail.get_mut("activation_token") {
                        *t = serde_json::Value::String("[redacted]".into());
                    }
                }
            }
        }
        Ok(page)
    }
}
