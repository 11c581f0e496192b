//! `tenancy audit ...`: list, export and verify the audit log offline.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;
use tenancy_client::{AuditExportParams, Client};

use crate::support::*;

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Verify an NDJSON audit export offline: rejects changed, dropped or reordered records.
    Verify { file: PathBuf },
    /// Write sealed audit records as NDJSON to stdout (`> file`, then `audit verify file`).
    Export {
        /// RFC 3339: from the first record at or after this time.
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339: to the last record before this time.
        #[arg(long)]
        to: Option<String>,
    },
}

/// Streams `GET /v1/audit/export` to stdout as it arrives.
pub async fn export_audit(c: &Client, from: Option<String>, to: Option<String>) -> Result<(), CliError> {
    use std::io::Write;
    let mut export = c.audit_export(&AuditExportParams { from, to }).await?;
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = export.chunk().await? {
        out.write_all(&chunk).map_err(|e| CliError::Other(anyhow::anyhow!("failed to write the export: {e}")))?;
    }
    out.flush().map_err(|e| CliError::Other(anyhow::anyhow!("failed to write the export: {e}")))?;
    Ok(())
}

pub fn verify_audit(file: &std::path::Path, output: Output) -> Result<(), CliError> {
    let f = std::fs::File::open(file).map_err(|e| CliError::Usage(format!("cannot open {}: {e}", file.display())))?;
    match tenancy_audit::verify_ndjson(std::io::BufReader::new(f)) {
        Ok(summary) => {
            let v = json!({"ok": true, "records": summary.records, "first_seq": summary.first_seq, "last_seq": summary.last_seq, "head": summary.head});
            match output {
                Output::Json => println!("{v}"),
                Output::Table => println!("ok: {} records verified, head {}", summary.records, summary.head),
            }
            Ok(())
        }
        Err(e) => Err(CliError::Other(anyhow::anyhow!("audit export {} failed verification: {e}", file.display()))),
    }
}
