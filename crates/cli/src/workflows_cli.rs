//! `tenancy state-machines ...` and `tenancy executions ...`.

use std::path::PathBuf;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::CliError;
use crate::client::Client;

#[derive(Debug, Subcommand)]
pub enum StateMachineCmd {
    /// Create a state machine or add a version from an ASL definition file.
    Put {
        name: String,
        /// The ASL definition (JSON).
        #[arg(long)]
        file: PathBuf,
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
        StateMachineCmd::Put { name, file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
            let definition: Value = serde_json::from_str(&text)
                .map_err(|e| CliError::Usage(format!("{} is not JSON: {e}", file.display())))?;
            c.call(Method::PUT, &format!("/v1/state-machines/{name}"), &[], Some(&json!({"definition": definition})))
                .await?
        }
        StateMachineCmd::List => c.get("/v1/state-machines", &[]).await?,
        StateMachineCmd::Get { name } => c.get(&format!("/v1/state-machines/{name}"), &[]).await?,
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
            let mut body = json!({"state_machine": state_machine, "input": input});
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            if let Some(t) = tenant {
                body["tenant_id"] = json!(t);
            }
            (c.call(Method::POST, "/v1/executions", &[], Some(&body)).await?, EXECUTION_COLUMNS)
        }
        ExecutionCmd::List { status, state_machine, tenant, stuck, limit, cursor } => {
            let mut q: Vec<(&str, String)> = Vec::new();
            for (k, v) in
                [("status", status), ("state_machine", state_machine), ("tenant_id", tenant), ("cursor", cursor)]
            {
                if let Some(v) = v {
                    q.push((k, v));
                }
            }
            if stuck {
                q.push(("stuck", "true".into()));
            }
            if let Some(l) = limit {
                q.push(("limit", l.to_string()));
            }
            (c.get("/v1/executions", &q).await?, EXECUTION_COLUMNS)
        }
        ExecutionCmd::Show { id } => (c.get(&format!("/v1/executions/{id}"), &[]).await?, EXECUTION_COLUMNS),
        ExecutionCmd::History { id, limit } => {
            let q: Vec<(&str, String)> = limit.map(|l| ("limit", l.to_string())).into_iter().collect();
            (c.get(&format!("/v1/executions/{id}/history"), &q).await?, HISTORY_COLUMNS)
        }
        ExecutionCmd::Stop { id, error, cause } => {
            let body = json!({"error": error, "cause": cause});
            (c.call(Method::POST, &format!("/v1/executions/{id}/stop"), &[], Some(&body)).await?, EXECUTION_COLUMNS)
        }
        ExecutionCmd::Redrive { id } => {
            (c.call(Method::POST, &format!("/v1/executions/{id}/redrive"), &[], None).await?, EXECUTION_COLUMNS)
        }
    })
}
