//! Error types: definition (validation) errors and run-time failures.

use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

/// A definition that is not a valid state machine.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct DefinitionError {
    pub state: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl DefinitionError {
    pub fn new(state: Option<&str>, field: Option<&str>, message: impl Into<String>) -> Self {
        DefinitionError { state: state.map(str::to_string), field: field.map(str::to_string), message: message.into() }
    }

    /// An error inside a branch or processor, reported with the enclosing state.
    pub(crate) fn nested(self, outer: &str, field: &str) -> Self {
        let inner = match (&self.state, &self.field) {
            (Some(s), Some(f)) => format!("state {s:?}, field {f:?}: "),
            (Some(s), None) => format!("state {s:?}: "),
            (None, Some(f)) => format!("field {f:?}: "),
            (None, None) => String::new(),
        };
        DefinitionError {
            state: Some(outer.to_string()),
            field: Some(field.to_string()),
            message: format!("{inner}{}", self.message),
        }
    }
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.state, &self.field) {
            (Some(s), Some(fl)) => write!(f, "state {s:?}, field {fl:?}: {}", self.message),
            (Some(s), None) => write!(f, "state {s:?}: {}", self.message),
            (None, Some(fl)) => write!(f, "field {fl:?}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

/// An ASL error raised while running a state (`States.Runtime`, a task's error ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub error: Option<String>,
    pub cause: Option<String>,
}

impl Failure {
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        Failure { error: Some(error.into()), cause: Some(cause.into()) }
    }
}

/// Well-known error names.
pub mod names {
    pub const ALL: &str = "States.ALL";
    pub const RUNTIME: &str = "States.Runtime";
    pub const TASK_FAILED: &str = "States.TaskFailed";
    pub const TIMEOUT: &str = "States.Timeout";
    pub const HEARTBEAT_TIMEOUT: &str = "States.HeartbeatTimeout";
    pub const DATA_LIMIT: &str = "States.DataLimitExceeded";
    pub const NO_CHOICE: &str = "States.NoChoiceMatched";
    pub const INTRINSIC: &str = "States.IntrinsicFailure";
    pub const RESULT_PATH: &str = "States.ResultPathMatchFailure";
    pub const PARAMETER_PATH: &str = "States.ParameterPathFailure";
    pub const BRANCH_FAILED: &str = "States.BranchFailed";
    pub const PERMISSIONS: &str = "States.Permissions";
    pub const QUERY_EVALUATION: &str = "States.QueryEvaluationError";
    pub const TOLERATED: &str = "States.ExceedToleratedFailureThreshold";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_state_and_field() {
        let e = DefinitionError::new(Some("Foo"), Some("Next"), "unknown state \"Bar\"");
        assert_eq!(e.to_string(), "state \"Foo\", field \"Next\": unknown state \"Bar\"");
        let e = DefinitionError::new(None, Some("StartAt"), "missing required field");
        assert_eq!(e.to_string(), "field \"StartAt\": missing required field");
    }
}
