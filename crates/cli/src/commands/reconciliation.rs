//! `tenancy reconciliation ...`: the reconciler's last pass, a pass now, repairs.

use clap::Subcommand;
use serde_json::{json, Value};
use tenancy_client::Client;

use crate::support::*;

#[derive(Debug, Subcommand)]
pub enum ReconciliationCmd {
    /// The last pass, whichever replica made it.
    Show,
    /// Run a pass now: recreate what is missing of the kinds repaired automatically,
    /// report the rest and extras.
    Run,
    /// Recreate a missing resource of the last pass by its drift id (`drift_...`).
    Repair {
        /// The drift's id (drift_..., from `reconciliation show`).
        id: String,
    },
}

pub const DRIFT_COLUMNS: &[&str] =
    &["id", "tenant_id", "resource", "problem", "repaired", "key", "reason", "restore_from", "error"];

/// The last or a new pass; in a table, a summary line (on stderr) and the drift.
pub async fn reconciliation(c: &Client, cmd: ReconciliationCmd, json_output: bool) -> Result<Value, CliError> {
    let report = match cmd {
        ReconciliationCmd::Show => c.reconciliation_get().await?,
        ReconciliationCmd::Run => Some(c.reconciliation_run().await?),
        ReconciliationCmd::Repair { id } => {
            let drift = to_json(c.reconciliation_repair(&id).await?);
            return Ok(if json_output { drift } else { json!({"items": [drift]}) });
        }
    };
    if json_output {
        return Ok(to_json(report));
    }
    let Some(report) = report else {
        eprintln!("no reconciliation pass yet");
        return Ok(json!({"items": []}));
    };
    eprintln!(
        "pass by {} finished {}: {} tenants checked, {} drift",
        report.node,
        report.finished_at.to_rfc3339(),
        report.tenants_checked,
        report.drift.len()
    );
    Ok(json!({"items": to_json(&report.drift)}))
}
