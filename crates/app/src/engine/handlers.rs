//! Task handlers: what a Task state's `Resource` runs.
//!
//! A handler gets the task's parameters and its stable idempotency key and returns the
//! task's result plus the [`Effects`] (events, audit, executions) that commit in the
//! same transaction as the step that records the result. Handlers must be idempotent:
//! after a crash the same attempt runs again with the same key. See
//! `docs/task-handlers.md` for the built-in ones.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use serde_json::{json, Value};
use tenancy_asl::Failure;
use tenancy_domain::event::Event;
use tenancy_store::{Effects, Store};

/// What a handler is called with.
#[derive(Clone, Copy)]
pub struct TaskCall<'a> {
    pub resource: &'a str,
    pub parameters: &'a Value,
    /// Stable across restarts for one attempt of one task (`$$.Task.Token` of callbacks).
    pub idempotency_key: &'a str,
    pub execution_id: &'a str,
    pub tenant_id: Option<&'a str>,
    pub store: &'a Arc<dyn Store>,
}

/// A handler's success: the task result and the effects to commit with the step.
#[derive(Debug, Default)]
pub struct TaskOutput {
    pub result: Value,
    pub effects: Effects,
}

impl TaskOutput {
    pub fn new(result: Value) -> Self {
        TaskOutput { result, effects: Effects::none() }
    }
}

pub type TaskResult = Result<TaskOutput, Failure>;

#[async_trait]
pub trait TaskHandler: Send + Sync + 'static {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult;

    /// Whether the engine may run this task straight after the step before it, without
    /// committing that step first: the handler is quick and local (no remote call) and
    /// its own writes, if any, are idempotent, so after a crash running it again from
    /// the last commit is harmless. Consecutive inline tasks then share one commit (a
    /// provisioning's resource steps cost one write instead of one each).
    fn inline(&self) -> bool {
        false
    }
}

/// A failure with an error name and a cause.
pub fn failure(error: &str, cause: impl Into<String>) -> Failure {
    Failure { error: Some(error.to_owned()), cause: Some(cause.into()) }
}

/// A failure from the application error (a store error is worth a retry: `States.TaskFailed`
/// is what `Retry` with `States.ALL` or `States.TaskFailed` catches).
pub fn app_failure(e: tenancy_domain::Error) -> Failure {
    failure(&format!("Tenancy.{}", e.code()), e.to_string())
}

/// The registry of handlers by resource name. Entries can be replaced at run time
/// (tests inject failures this way).
///
/// Lookups are by exact name, with one pattern: any function ARN
/// (`arn:<partition>:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`) that has no
/// entry of its own is served by the entry [`crate::functions::ARN_RESOURCE`], which
/// invokes the function `NAME` (see [`Registry::get`]).
#[derive(Default)]
pub struct Registry {
    handlers: RwLock<HashMap<String, Arc<dyn TaskHandler>>>,
    /// The master key's box, for handlers that open stored secrets (functions and
    /// hooks sign their calls with theirs); set once by [`Registry::use_secret_box`].
    secrets: Arc<std::sync::OnceLock<Arc<crate::secretbox::SecretBox>>>,
}

impl Registry {
    /// The registry with every built-in handler.
    pub fn builtin() -> Self {
        let r = Registry::default();
        r.register("tenancy:noop", Noop);
        r.register("tenancy:fail", Fail);
        r.register("tenancy:events.put", PutEvents);
        r.register("arn:aws:states:::events:putEvents", PutEvents);
        crate::lifecycle::register_handlers(&r);
        // http:invoke, hooks and functions, under the default outbound policy.
        r.use_outbound_policy(Arc::default());
        r.register(crate::hooks::LIST_RESOURCE, crate::hooks::ListCallbackHooks);
        crate::queues::SEND_RESOURCES.iter().for_each(|res| r.register(res, crate::queues::SendMessageTask));
        r
    }

    /// Re-registers the handlers that call out (`http:invoke`, provisioning hooks,
    /// functions) with clients under `policy`.
    pub fn use_outbound_policy(&self, policy: Arc<crate::outbound::OutboundPolicy>) {
        use crate::hooks::{CallHooks, NotifyCallbackHook, CALL_RESOURCE, NOTIFY_RESOURCE};
        self.register(super::http_invoke::RESOURCE, super::http_invoke::HttpInvoke::with_policy(policy.clone()));
        self.register(CALL_RESOURCE, CallHooks::new(policy.clone(), self.secrets.clone()));
        self.register(NOTIFY_RESOURCE, NotifyCallbackHook::new(policy.clone(), self.secrets.clone()));
        crate::functions::register(self, policy);
    }

    /// Gives the handlers that open stored secrets the master key's box (the first
    /// call wins).
    pub fn use_secret_box(&self, secrets: Arc<crate::secretbox::SecretBox>) {
        let _ = self.secrets.set(secrets);
    }

    /// The cell [`Registry::use_secret_box`] fills, for handlers registered before it.
    pub fn secret_box_cell(&self) -> Arc<std::sync::OnceLock<Arc<crate::secretbox::SecretBox>>> {
        self.secrets.clone()
    }

    pub fn register(&self, resource: &str, handler: impl TaskHandler) {
        self.register_arc(resource, Arc::new(handler));
    }

    pub fn register_arc(&self, resource: &str, handler: Arc<dyn TaskHandler>) {
        self.handlers.write().expect("registry lock").insert(resource.to_owned(), handler);
    }

    /// The handler of `resource`: its own entry, else, for a function ARN, the entry
    /// [`crate::functions::ARN_RESOURCE`].
    pub fn get(&self, resource: &str) -> Option<Arc<dyn TaskHandler>> {
        let handlers = self.handlers.read().expect("registry lock");
        match handlers.get(resource) {
            Some(h) => Some(h.clone()),
            None if tenancy_domain::function::name_of_arn(resource).is_some() => {
                handlers.get(crate::functions::ARN_RESOURCE).cloned()
            }
            None => None,
        }
    }

    pub fn resources(&self) -> Vec<String> {
        let mut v: Vec<String> = self.handlers.read().expect("registry lock").keys().cloned().collect();
        v.sort();
        v
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

#[async_trait]
impl TaskHandler for Fail {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        let p = call.parameters;
        Err(Failure {
            error: Some(p["Error"].as_str().unwrap_or("Tenancy.Failed").to_owned()),
            cause: p["Cause"].as_str().map(str::to_owned),
        })
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
/// refused before the handler runs (`crate::lifecycle::check_task`).
struct PutEvents;

#[async_trait]
impl TaskHandler for PutEvents {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        let entries = call.parameters["Entries"]
            .as_array()
            .ok_or_else(|| failure("States.Runtime", "putEvents needs an Entries array"))?;
        let mut fx = Effects::none();
        let mut ids = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let detail_type = e["DetailType"]
                .as_str()
                .ok_or_else(|| failure("States.Runtime", format!("Entries[{i}].DetailType must be a string")))?;
            let detail = match &e["Detail"] {
                Value::String(s) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
                Value::Null => json!({}),
                v => v.clone(),
            };
            let resources = e["Resources"]
                .as_array()
                .map(|a| a.iter().filter_map(|r| r.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            let tenant = e["TenantId"].as_str().or(call.tenant_id);
            let mut event = Event::new(detail_type, tenant, resources, detail);
            event.source = e["Source"].as_str().unwrap_or(WORKFLOW_SOURCE).to_owned();
            event.id = format!("evt_{}_{i}", call.idempotency_key);
            ids.push(json!({"EventId": event.id}));
            fx = fx.with_event(event);
        }
        Ok(TaskOutput { result: json!({"Entries": ids, "FailedEntryCount": 0}), effects: fx })
    }
}
