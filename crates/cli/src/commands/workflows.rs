//! `tenancy state-machines ...` and `tenancy executions ...`.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{json, Value};
use tenancy_client::{Client, ExecutionListParams, PageParams};
use tenancy_domain::api::{StartExecution, StateMachineSpec, StopExecution};

use crate::support::*;

#[derive(Debug, Subcommand)]
pub enum StateMachineCmd {
    /// Create a state machine or add a version from an ASL definition file.
    Put {
        name: String,
        /// The ASL definition (JSON).
        #[arg(long)]
        file: PathBuf,
        /// Days its finished executions are kept, instead of the server's
        /// `--execution-retention-days` (absent: the server's).
        #[arg(long)]
        retention_days: Option<u32>,
    },
    List,
    Get {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExecutionCmd {
    /// Start an execution.
    Start {
        state_machine: String,
        /// Input as JSON (default `{}`).
        #[arg(long)]
        input: Option<String>,
        /// Unique per state machine: starting a name again returns that execution.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
    },
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        state_machine: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        /// Only RUNNING executions without progress for a while.
        #[arg(long)]
        stuck: bool,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
    },
    Show {
        id: String,
    },
    History {
        id: String,
        #[arg(long)]
        limit: Option<u32>,
    },
    Stop {
        id: String,
        #[arg(long)]
        error: Option<String>,
        #[arg(long)]
        cause: Option<String>,
    },
    /// Resume a FAILED execution from the step that failed it.
    Redrive {
        id: String,
    },
}

pub const STATE_MACHINE_COLUMNS: &[&str] = &["name", "version", "created_at"];
pub const EXECUTION_COLUMNS: &[&str] =
    &["id", "name", "state_machine", "tenant_id", "status", "error", "started_at", "stopped_at"];
pub const HISTORY_COLUMNS: &[&str] = &["id", "type", "state", "timestamp"];

pub async fn state_machines(c: &Client, cmd: StateMachineCmd) -> Result<Value, CliError> {
    Ok(match cmd {
        StateMachineCmd::Put { name, file, retention_days } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
            // The ASL definition is the user's own JSON, sent as it is.
            let definition: Value = serde_json::from_str(&text)
                .map_err(|e| CliError::Usage(format!("{} is not JSON: {e}", file.display())))?;
            to_json(c.state_machine_put(&name, &StateMachineSpec { definition, retention_days }).await?)
        }
        StateMachineCmd::List => to_json(c.state_machine_list(&PageParams::default()).await?),
        StateMachineCmd::Get { name } => to_json(c.state_machine_get(&name).await?),
    })
}

/// Runs an executions command; returns the value and the table columns.
pub async fn executions(c: &Client, cmd: ExecutionCmd) -> Result<(Value, &'static [&'static str]), CliError> {
    Ok(match cmd {
        ExecutionCmd::Start { state_machine, input, name, tenant } => {
            let input: Value = match input {
                Some(s) => {
                    serde_json::from_str(&s).map_err(|e| CliError::Usage(format!("--input is not JSON: {e}")))?
                }
                None => json!({}),
            };
            let start = StartExecution { state_machine, input: Some(input), name, tenant_id: tenant };
            (to_json(c.execution_start(&start).await?), EXECUTION_COLUMNS)
        }
        ExecutionCmd::List { status, state_machine, tenant, stuck, limit, cursor } => {
            let params = ExecutionListParams {
                status,
                state_machine,
                tenant_id: tenant,
                stuck: stuck.then_some(true),
                limit,
                cursor,
            };
            (to_json(c.execution_list(&params).await?), EXECUTION_COLUMNS)
        }
        ExecutionCmd::Show { id } => (to_json(c.execution_get(&id).await?), EXECUTION_COLUMNS),
        ExecutionCmd::History { id, limit } => {
            (to_json(c.execution_history(&id, &PageParams { limit, cursor: None }).await?), HISTORY_COLUMNS)
        }
        ExecutionCmd::Stop { id, error, cause } => {
            (to_json(c.execution_stop(&id, &StopExecution { error, cause }).await?), EXECUTION_COLUMNS)
        }
        ExecutionCmd::Redrive { id } => (to_json(c.execution_redrive(&id).await?), EXECUTION_COLUMNS),
    })
}
