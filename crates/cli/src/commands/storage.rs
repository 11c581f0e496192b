//! `tenancy storage stats`: the control plane's tables (rows, bytes) and what the next
//! prune removes (`GET /v1/storage`, docs/storage.md "Retention").

use clap::Subcommand;
use serde_json::{json, Value};
use tenancy_client::Client;

use crate::support::*;

#[derive(Debug, Subcommand)]
pub enum StorageCmd {
    /// Rows and bytes per table, and the rows the next prune would delete.
    Stats,
}

pub const TABLE_COLUMNS: &[&str] = &["table", "rows", "bytes", "next_prune_rows"];

/// The report; in a table, the retention on stderr and a row per table.
pub async fn storage(c: &Client, cmd: StorageCmd, json_output: bool) -> Result<Value, CliError> {
    let StorageCmd::Stats = cmd;
    let report = c.storage_report().await?;
    if json_output {
        return Ok(to_json(report));
    }
    eprintln!(
        "retention: executions {} days, events {} days{}",
        report.execution_retention_days,
        report.event_retention_days,
        if report.state_machine_retention.is_empty() {
            String::new()
        } else {
            let own: Vec<String> =
                report.state_machine_retention.iter().map(|(n, d)| format!("{n} {d} days")).collect();
            format!(" (own: {})", own.join(", "))
        }
    );
    Ok(json!({"items": to_json(&report.tables)}))
}
