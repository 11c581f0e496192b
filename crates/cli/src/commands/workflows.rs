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
        /// The state machine's name (tenancy.lifecycle.* names a lifecycle workflow).
        name: String,
        /// The ASL definition (JSON).
        #[arg(long)]
        file: PathBuf,
        /// Days its finished executions are kept, instead of the server's
        /// `--execution-retention-days` (absent: the server's).
        #[arg(long)]
        retention_days: Option<u32>,
    },
    /// List state machines (their latest versions).
    List,
    /// A state machine's latest version with its definition.
    Get {
        /// The state machine's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExecutionCmd {
    /// Start an execution.
    Start {
        /// The state machine's name.
        state_machine: String,
        /// Input as JSON (default `{}`).
        #[arg(long)]
        input: Option<String>,
        /// Unique per state machine: starting a name again returns that execution.
        #[arg(long)]
        name: Option<String>,
        /// The tenant the execution works for.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List executions, newest first.
    List {
        /// Only executions in this status.
        #[arg(long, value_parser = ["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"])]
        status: Option<String>,
        /// Only executions of this state machine.
        #[arg(long)]
        state_machine: Option<String>,
        /// Only executions for this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Only RUNNING executions without progress for a while.
        #[arg(long)]
        stuck: bool,
        /// Items per page, 1-1000 [default: 100].
        #[arg(long)]
        limit: Option<u32>,
        /// The cursor printed after the previous page ("more: --cursor ...").
        #[arg(long)]
        cursor: Option<String>,
    },
    /// An execution: status, error and cause, input and output (one field a row).
    Show {
        /// The execution's id.
        id: String,
        /// Print each step as it happens until the execution ends (exit 1 unless it
        /// succeeded).
        #[arg(long, short = 'w')]
        watch: bool,
    },
    /// An execution's history: every step's events, oldest first.
    History {
        /// The execution's id.
        id: String,
        /// Items per page, 1-1000 [default: 100].
        #[arg(long)]
        limit: Option<u32>,
        /// The cursor printed after the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Stop a RUNNING execution: it ends ABORTED (asks first).
    Stop {
        /// The execution's id.
        id: String,
        /// The error recorded (e.g. Operator.Stopped).
        #[arg(long)]
        error: Option<String>,
        /// Why, for people.
        #[arg(long)]
        cause: Option<String>,
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Resume a FAILED execution from the step that failed it.
    Redrive {
        /// The execution's id.
        id: String,
        /// Wait until it ends again (a spinner on a terminal); exit 1 with the cause
        /// unless it succeeded.
        #[arg(long)]
        wait: bool,
    },
}

pub const STATE_MACHINE_COLUMNS: &[&str] = &["name", "version", "created_at"];
pub const EXECUTION_COLUMNS: &[&str] =
    &["id", "name", "state_machine", "tenant_id", "status", "error", "started_at", "stopped_at"];
pub const HISTORY_COLUMNS: &[&str] = &["id", "type", "state", "timestamp"];
/// The fields `executions show` prints as a table, one a row.
const EXECUTION_FIELDS: &[&str] = &[
    "id",
    "name",
    "state_machine",
    "version",
    "tenant_id",
    "status",
    "error",
    "cause",
    "redrive_count",
    "started_at",
    "stopped_at",
    "input",
    "output",
];

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
pub async fn executions(
    c: &Client,
    cmd: ExecutionCmd,
    output: Output,
) -> Result<(Value, &'static [&'static str]), CliError> {
    let show =
        |v: Value| if output.raw() { (v, EXECUTION_COLUMNS) } else { (fields(&v, EXECUTION_FIELDS), FIELD_COLUMNS) };
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
        ExecutionCmd::Show { id, watch: false } => show(to_json(c.execution_get(&id).await?)),
        ExecutionCmd::Show { id, watch: true } => show(self::watch(c, &id, output).await?),
        ExecutionCmd::History { id, limit, cursor } => {
            (to_json(c.execution_history(&id, &PageParams { limit, cursor }).await?), HISTORY_COLUMNS)
        }
        ExecutionCmd::Stop { id, error, cause, confirm: yes } => {
            confirm(yes, &format!("stop execution {id}"))?;
            show(to_json(c.execution_stop(&id, &StopExecution { error, cause }).await?))
        }
        ExecutionCmd::Redrive { id, wait } => {
            let e = c.execution_redrive(&id).await?;
            if wait {
                show(to_json(wait_execution(c, &id, &format!("the redriven execution {id}")).await?))
            } else {
                show(to_json(e))
            }
        }
    })
}

/// Prints each history event of the execution as it appears (time, type and state, on
/// stderr: stdout gets the execution at its end, as any `show`) until the execution
/// ends; fails unless it succeeded, after printing it.
async fn watch(c: &Client, id: &str, output: Output) -> Result<Value, CliError> {
    let mut last_event: i64 = 0;
    let mut cursor: Option<String> = None;
    loop {
        // Read the execution first: history read after it holds every step up to its end.
        let e = c.execution_get(id).await?;
        loop {
            let page = c.execution_history(id, &PageParams { limit: Some(1000), cursor: cursor.clone() }).await?;
            for h in &page.items {
                if h.id <= last_event {
                    continue;
                }
                last_event = h.id;
                eprintln!("{} {:<32} {}", h.timestamp.to_rfc3339(), h.kind, h.state.as_deref().unwrap_or(""));
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        if e.status != "RUNNING" {
            if e.status != "SUCCEEDED" {
                print_value(&show_value(&e, output), FIELD_COLUMNS, output);
                return Err(CliError::Other(anyhow::anyhow!(
                    "execution {id} ended {}: {}{}",
                    e.status,
                    e.error.as_deref().unwrap_or("no error"),
                    e.cause.as_deref().map(|c| format!(": {c}")).unwrap_or_default()
                )));
            }
            return Ok(to_json(e));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

fn show_value(e: &tenancy_domain::api::ExecutionView, output: Output) -> Value {
    if output.raw() {
        to_json(e)
    } else {
        fields(&to_json(e), EXECUTION_FIELDS)
    }
}
