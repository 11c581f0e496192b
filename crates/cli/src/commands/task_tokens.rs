//! `tenancy task-tokens ...`: answer a waiting task (a `.waitForTaskToken` state, a
//! callback hook) through its task token, as a worker would.
//!
//! The task token's argument is not named `token`: that is the id of the global
//! `--token` (the API key), which a positional of the same id would overwrite.

use clap::Subcommand;
use serde_json::{json, Value};
use tenancy_client::Client;
use tenancy_domain::api::{TaskFailure, TaskSuccess};

use crate::support::*;

#[derive(Debug, Subcommand)]
pub enum TaskTokenCmd {
    /// The task succeeded: its execution goes on with --result as the task's output.
    Success {
        /// The task token ($$.Task.Token, or a hook message's task_token).
        #[arg(value_name = "TOKEN")]
        task_token: String,
        /// The task's output as JSON [default: {}] (`--output` is the CLI's own flag).
        #[arg(long, value_name = "JSON")]
        result: Option<String>,
    },
    /// The task failed: its state's Retry and Catch apply to the error.
    Failure {
        /// The task token ($$.Task.Token, or a hook message's task_token).
        #[arg(value_name = "TOKEN")]
        task_token: String,
        /// The error name (matched by Retry/Catch ErrorEquals), e.g. Worker.Failed.
        #[arg(long)]
        error: Option<String>,
        /// A human-readable cause.
        #[arg(long)]
        cause: Option<String>,
    },
    /// The task is still being worked on: pushes back its HeartbeatSeconds deadline.
    Heartbeat {
        /// The task token ($$.Task.Token, or a hook message's task_token).
        #[arg(value_name = "TOKEN")]
        task_token: String,
    },
}

pub const TASK_TOKEN_COLUMNS: &[&str] = &["result"];

pub async fn task_tokens(c: &Client, cmd: TaskTokenCmd) -> Result<Value, CliError> {
    Ok(match cmd {
        TaskTokenCmd::Success { task_token: token, result } => {
            let output: Value = match result {
                Some(s) => {
                    serde_json::from_str(&s).map_err(|e| CliError::Usage(format!("--result is not JSON: {e}")))?
                }
                None => json!({}),
            };
            c.task_success(&token, &TaskSuccess { output }).await?;
            json!({"result": "success recorded"})
        }
        TaskTokenCmd::Failure { task_token: token, error, cause } => {
            c.task_failure(&token, &TaskFailure { error, cause }).await?;
            json!({"result": "failure recorded"})
        }
        TaskTokenCmd::Heartbeat { task_token: token } => {
            c.task_heartbeat(&token).await?;
            json!({"result": "heartbeat recorded"})
        }
    })
}
