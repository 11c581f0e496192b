//! Task handlers and their registry: what a Task state's `Resource` runs.
//!
//! A handler gets the task's parameters and its stable idempotency key and returns the
//! task's result plus the [`Effects`] (events, audit, executions) that commit in the
//! same transaction as the step that records the result. Handlers must be idempotent:
//! after a crash the same attempt runs again with the same key. See
//! `docs/task-handlers.md` for the built-in ones.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use serde_json::Value;
use tenancy_asl::Failure;
use tenancy_store::{Effects, Store};

/// What a handler is called with.
#[derive(Clone, Copy)]
pub struct TaskCall<'a> {
    pub resource: &'a str,
    /// The Task state that runs it (failure injection in tests picks by it).
    pub state: &'a str,
    pub parameters: &'a Value,
    /// Stable across restarts for one attempt of one task (`$$.Task.Token` of callbacks).
    pub idempotency_key: &'a str,
    /// Stable across restarts and across the retries (`Retry` attempts) of one task of
    /// one execution: the key of what the task does outside, for callees that must see
    /// one request however often the task is tried (provisioning hooks).
    pub task_key: &'a str,
    pub execution_id: &'a str,
    pub tenant_id: Option<&'a str>,
    pub store: &'a Arc<dyn Store>,
}

impl TaskCall<'_> {
    /// The task's parameters as the handler's own `Parameters` type: a parameter that
    /// is missing or of the wrong type fails the task with `States.Runtime` naming the
    /// resource and serde's account of the field (`missing field `tenant_id``).
    pub fn params<T: serde::de::DeserializeOwned>(&self) -> Result<T, Failure> {
        T::deserialize(self.parameters)
            .map_err(|e| failure("States.Runtime", format!("{}: invalid parameters: {e}", self.resource)))
    }
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

    /// Whether this one call (its `parameters`) is local, as [`TaskHandler::inline`]
    /// says of every call of an inline handler: a handler that is remote only some of
    /// the time (a hook step with no hook subscribed to its event calls nobody) says so
    /// here, and the engine then runs it without a commit of its own. Asked before the
    /// call; by default [`TaskHandler::inline`].
    async fn local_call(&self, _store: &Arc<dyn Store>, _parameters: &Value) -> bool {
        self.inline()
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
/// Lookups are by exact name, then by the routes of [`Registry::route`] in the order
/// they were added: a route serves a family of names that has no entry of its own (the
/// functions area routes every Lambda function ARN to its invoker).
/// A family of resource names (the predicate) and the handler serving it.
type Route = (fn(&str) -> bool, Arc<dyn TaskHandler>);

#[derive(Default)]
pub struct Registry {
    handlers: RwLock<HashMap<String, Arc<dyn TaskHandler>>>,
    routes: RwLock<Vec<Route>>,
}

impl Registry {
    /// An empty registry (see [`crate::register_builtin`] for the engine's own handlers).
    pub fn new() -> Self {
        Registry::default()
    }

    pub fn register(&self, resource: &str, handler: impl TaskHandler) {
        self.register_arc(resource, Arc::new(handler));
    }

    pub fn register_arc(&self, resource: &str, handler: Arc<dyn TaskHandler>) {
        self.handlers.write().expect("registry lock").insert(resource.to_owned(), handler);
    }

    /// Serves every resource name `matches` accepts that has no entry of its own.
    pub fn route(&self, matches: fn(&str) -> bool, handler: impl TaskHandler) {
        self.routes.write().expect("registry lock").push((matches, Arc::new(handler)));
    }

    /// The handler of `resource`: its own entry, else the first route that matches it.
    pub fn get(&self, resource: &str) -> Option<Arc<dyn TaskHandler>> {
        if let Some(h) = self.handlers.read().expect("registry lock").get(resource) {
            return Some(h.clone());
        }
        self.routes.read().expect("registry lock").iter().find(|(m, _)| m(resource)).map(|(_, h)| h.clone())
    }

    /// The names with an entry of their own, sorted.
    pub fn resources(&self) -> Vec<String> {
        let mut v: Vec<String> = self.handlers.read().expect("registry lock").keys().cloned().collect();
        v.sort();
        v
    }
}
