//! Test helpers for code that registers task handlers, in the manner of Oxide's steno:
//! instead of a hand-kept list of a workflow's steps, read the steps from the
//! definition, fail each in turn and check that the compensation ran.
//!
//! ```ignore
//! let forward = testing::forward_task_states(&definition);
//! for state in forward {
//!     let fired = testing::fail_state(engine.handlers(), &state, "Test.Injected");
//!     // start the workflow, wait until it ends, assert that it left nothing behind
//!     assert!(fired.load(Ordering::SeqCst), "{} never ran", state.name);
//! }
//! ```

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::registry::{failure, Registry, TaskCall, TaskHandler, TaskResult};

/// A Task state of a definition and the resource it runs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TaskState {
    pub name: String,
    pub resource: String,
    /// Whether the state has a `Catch`: a failure there leads to compensation, where
    /// a failure in a state without one fails the execution as it stands.
    pub caught: bool,
}

/// The Task states on the forward paths of `definition`: reachable from `StartAt`
/// through `Next`, `Default` and Choice rules, not through `Catch` (what a Catch leads
/// to is compensation), in the order they are first reached. Parallel branches and Map
/// item processors are walked the same way; their Task states are forward states too.
pub fn forward_task_states(definition: &Value) -> Vec<TaskState> {
    let mut out = Vec::new();
    walk(definition, false, &mut out);
    out
}

/// Every Task state of `definition`, forward or compensation, in the same order:
/// the forward ones, then what only a `Catch` reaches.
pub fn task_states(definition: &Value) -> Vec<TaskState> {
    let mut out = Vec::new();
    walk(definition, true, &mut out);
    out
}

fn walk(machine: &Value, with_catches: bool, out: &mut Vec<TaskState>) {
    let states = &machine["States"];
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<String> = machine["StartAt"].as_str().map(str::to_owned).into_iter().collect();
    // What only a Catch reaches, walked once the forward paths are done.
    let mut caught_targets = Vec::new();
    while let Some(name) = queue.pop_front() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let state = &states[&name];
        match state["Type"].as_str() {
            Some("Task") => {
                let resource = state["Resource"].as_str().unwrap_or_default().to_owned();
                let caught = state["Catch"].as_array().is_some_and(|c| !c.is_empty());
                out.push(TaskState { name: name.clone(), resource, caught });
            }
            Some("Parallel") => {
                state["Branches"].as_array().into_iter().flatten().for_each(|b| walk(b, with_catches, out))
            }
            Some("Map") => {
                let processor = if state["ItemProcessor"].is_object() { "ItemProcessor" } else { "Iterator" };
                walk(&state[processor], with_catches, out);
            }
            _ => {}
        }
        let choices = state["Choices"].as_array().into_iter().flatten().filter_map(|c| c["Next"].as_str());
        let next = [state["Next"].as_str(), state["Default"].as_str()].into_iter().flatten();
        queue.extend(choices.chain(next).map(str::to_owned));
        if with_catches {
            let catches = state["Catch"].as_array().into_iter().flatten().filter_map(|c| c["Next"].as_str());
            caught_targets.extend(catches.map(str::to_owned));
        }
        if queue.is_empty() {
            queue.extend(std::mem::take(&mut caught_targets));
        }
    }
}

/// Replaces the handler of `state`'s resource with one that fails every call made from
/// that state with `error` (other states keep the handler they had). The flag tells
/// whether the failure was injected: a state the run never reached did not fail.
pub fn fail_state(registry: &Registry, state: &TaskState, error: &str) -> Arc<AtomicBool> {
    let base = state.resource.strip_suffix(crate::WAIT_FOR_TASK_TOKEN).unwrap_or(&state.resource);
    let inner = registry.get(base);
    let fired = Arc::new(AtomicBool::new(false));
    let handler = FailState { state: state.name.clone(), error: error.to_owned(), inner, fired: fired.clone() };
    registry.register(base, handler);
    fired
}

struct FailState {
    state: String,
    error: String,
    inner: Option<Arc<dyn TaskHandler>>,
    fired: Arc<AtomicBool>,
}

#[async_trait]
impl TaskHandler for FailState {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        if call.state == self.state {
            self.fired.store(true, Ordering::SeqCst);
            return Err(failure(&self.error, format!("injected failure in state {}", self.state)));
        }
        match &self.inner {
            Some(h) => h.call(call).await,
            None => Err(failure("States.Runtime", format!("no task handler for resource {:?}", call.resource))),
        }
    }

    fn inline(&self) -> bool {
        self.inner.as_ref().is_some_and(|h| h.inline())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn forward_states_skip_what_only_a_catch_reaches() {
        let def = json!({
            "StartAt": "A",
            "States": {
                "A": {"Type": "Task", "Resource": "r:a", "Next": "Pick",
                      "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "UndoA"}]},
                "Pick": {"Type": "Choice", "Choices": [{"Variable": "$.x", "BooleanEquals": true, "Next": "B"}],
                         "Default": "Fan"},
                "B": {"Type": "Task", "Resource": "r:b", "End": true},
                "Fan": {"Type": "Parallel", "End": true, "Branches": [
                    {"StartAt": "C", "States": {"C": {"Type": "Task", "Resource": "r:c", "End": true}}}
                ]},
                "UndoA": {"Type": "Task", "Resource": "r:undo", "Next": "Failed"},
                "Failed": {"Type": "Fail"}
            }
        });
        let names: Vec<String> = forward_task_states(&def).into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["A", "B", "C"]);
        let all: Vec<(String, bool)> = task_states(&def).into_iter().map(|s| (s.name, s.caught)).collect();
        let all: Vec<(&str, bool)> = all.iter().map(|(n, c)| (n.as_str(), *c)).collect();
        assert_eq!(all, [("A", true), ("B", false), ("C", false), ("UndoA", false)]);
    }
}
