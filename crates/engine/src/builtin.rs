//! The engine's own handlers: `tenancy:noop`, `tenancy:fail` and EventBridge's
//! `putEvents` (events go to the outbox in the step's transaction).

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use tenancy_asl::Failure;
use tenancy_domain::event::Event;
use tenancy_store::Effects;

use crate::registry::{failure, Registry, TaskCall, TaskHandler, TaskOutput, TaskResult};

/// The resources of [`PutEvents`] (Step Functions' optimized integration and ours).
pub const PUT_EVENTS_RESOURCES: [&str; 2] = ["arn:aws:states:::events:putEvents", "tenancy:events.put"];

/// Registers the engine's own handlers.
pub fn register_builtin(r: &Registry) {
    r.register("tenancy:noop", Noop);
    r.register("tenancy:fail", Fail);
    for resource in PUT_EVENTS_RESOURCES {
        r.register(resource, PutEvents);
    }
}

/// `tenancy:noop`: returns its parameters.
struct Noop;

#[async_trait]
impl TaskHandler for Noop {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        Ok(TaskOutput::new(call.parameters.clone()))
    }

    fn inline(&self) -> bool {
        true
    }
}

/// `tenancy:fail`: fails with `Error` and `Cause` of its parameters (testing, drills).
struct Fail;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FailParams {
    error: Option<String>,
    cause: Option<String>,
}

/// The parameters of `putEvents`, named as EventBridge names them.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutEventsParams {
    entries: Option<Vec<Entry>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    detail_type: Option<String>,
    /// An object, or a JSON string (as EventBridge takes it).
    #[serde(default)]
    detail: Value,
    #[serde(default)]
    resources: Vec<String>,
    source: Option<String>,
    tenant_id: Option<String>,
}

#[async_trait]
impl TaskHandler for Fail {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        let p: FailParams = call.params()?;
        Err(Failure { error: Some(p.error.unwrap_or_else(|| "Tenancy.Failed".to_owned())), cause: p.cause })
    }
}

/// The source of events a workflow puts without one (`tenancy` and `tenancy.*` are
/// reserved to Tenancy's own events).
pub const WORKFLOW_SOURCE: &str = "workflow";

/// `arn:aws:states:::events:putEvents` and `tenancy:events.put`: writes events to the
/// outbox in the step's transaction. Parameters `{"Entries": [{"DetailType", "Detail",
/// "Source"?, "Resources"?, "TenantId"?}]}`; result `{"Entries": [{"EventId"}],
/// "FailedEntryCount": 0}`. Event ids derive from the idempotency key, so a re-run
/// writes nothing new. `Source` defaults to [`WORKFLOW_SOURCE`]; a reserved one is
/// refused before the handler runs (the app's [`crate::TaskGuard`]).
struct PutEvents;

#[async_trait]
impl TaskHandler for PutEvents {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        let entries = call
            .params::<PutEventsParams>()?
            .entries
            .ok_or_else(|| failure("States.Runtime", "putEvents needs an Entries array"))?;
        let mut fx = Effects::none();
        let mut ids = Vec::new();
        for (i, e) in entries.into_iter().enumerate() {
            let detail_type = e
                .detail_type
                .ok_or_else(|| failure("States.Runtime", format!("Entries[{i}].DetailType must be a string")))?;
            let detail = match e.detail {
                Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
                Value::Null => json!({}),
                v => v,
            };
            let tenant = e.tenant_id.as_deref().or(call.tenant_id);
            let mut event = Event::new(&detail_type, tenant, e.resources, detail);
            event.source = e.source.unwrap_or_else(|| WORKFLOW_SOURCE.to_owned());
            event.id = format!("evt_{}_{i}", call.idempotency_key);
            ids.push(json!({"EventId": event.id}));
            fx = fx.with_event(event);
        }
        Ok(TaskOutput { result: json!({"Entries": ids, "FailedEntryCount": 0}), effects: fx })
    }
}
