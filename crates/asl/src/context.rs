//! The execution context: what the engine knows about a run, exposed to the
//! definition as the context object `$$` (JSONPath) or `$states.context` (JSONata).

use crate::timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Facts about one execution, fixed when it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionContext {
    /// Execution id (AWS: the execution ARN).
    pub execution_id: String,
    pub execution_name: String,
    /// State machine id (AWS: the state machine ARN).
    pub state_machine_id: String,
    pub state_machine_name: String,
    pub role_arn: String,
    /// Start time, unix milliseconds.
    pub start_time_ms: i64,
    /// The execution's input.
    pub input: Value,
    /// `$$.Execution.RedriveCount`: `Some(0)` for standard workflows, `None` for express
    /// ones (which AWS does not redrive and which lack the field).
    pub redrive_count: Option<u32>,
    /// Random bytes the `$$.Task.Token` of callback tasks (`.waitForTaskToken`) is
    /// derived from during this step (see [`crate::step::task_token`]); a durable
    /// engine draws fresh ones from the OS for every step. `None`: the token is the
    /// attempt's idempotency key (deterministic, for tests and the in-memory runner).
    #[serde(skip)]
    pub task_token_seed: Option<[u8; 32]>,
}

impl ExecutionContext {
    /// A context with ids derived from a name (handy for tests and the in-memory runner).
    pub fn new(state_machine_name: &str, execution_name: &str, input: Value, start_time_ms: i64) -> Self {
        ExecutionContext {
            execution_id: format!("execution:{state_machine_name}:{execution_name}"),
            execution_name: execution_name.to_string(),
            state_machine_id: format!("stateMachine:{state_machine_name}"),
            state_machine_name: state_machine_name.to_string(),
            role_arn: String::new(),
            start_time_ms,
            input,
            redrive_count: Some(0),
            task_token_seed: None,
        }
    }
}

/// The state-specific part of the context object.
pub(crate) struct StateFacts<'a> {
    pub name: &'a str,
    pub entered_ms: i64,
    pub retry_count: Option<u32>,
    pub map_item: Option<&'a MapItem>,
    pub task_token: Option<&'a str>,
}

/// `$$.Map.Item` of a Map iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapItem {
    pub index: usize,
    pub value: Value,
}

/// Builds the context object.
pub(crate) fn context_object(ctx: &ExecutionContext, s: &StateFacts<'_>) -> Value {
    let mut state = Map::new();
    state.insert("Name".into(), json!(s.name));
    state.insert("EnteredTime".into(), json!(timestamp::format_ms(s.entered_ms)));
    if let Some(n) = s.retry_count {
        state.insert("RetryCount".into(), json!(n));
    }
    let mut obj = Map::new();
    let mut execution = json!({
        "Id": ctx.execution_id,
        "Input": ctx.input,
        "StartTime": timestamp::format_ms(ctx.start_time_ms),
        "Name": ctx.execution_name,
        "RoleArn": ctx.role_arn,
    });
    if let (Some(n), Some(m)) = (ctx.redrive_count, execution.as_object_mut()) {
        m.insert("RedriveCount".into(), json!(n));
    }
    obj.insert("Execution".into(), execution);
    obj.insert("StateMachine".into(), json!({"Id": ctx.state_machine_id, "Name": ctx.state_machine_name}));
    obj.insert("State".into(), Value::Object(state));
    if let Some(token) = s.task_token {
        obj.insert("Task".into(), json!({ "Token": token }));
    }
    if let Some(item) = s.map_item {
        obj.insert("Map".into(), json!({"Item": {"Index": item.index, "Value": item.value}}));
    }
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_context_object() {
        let ctx = ExecutionContext::new("sm", "ex", json!({"a": 1}), 0);
        let item = MapItem { index: 2, value: json!("v") };
        let v = context_object(
            &ctx,
            &StateFacts { name: "S", entered_ms: 1000, retry_count: Some(1), map_item: Some(&item), task_token: None },
        );
        assert_eq!(v["Execution"]["Input"], json!({"a": 1}));
        assert_eq!(v["State"]["EnteredTime"], json!("1970-01-01T00:00:01.000Z"));
        assert_eq!(v["State"]["RetryCount"], json!(1));
        assert_eq!(v["Map"]["Item"]["Index"], json!(2));
    }
}
