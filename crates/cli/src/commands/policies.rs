//! `tenancy policies ...`: operators' Cedar authorization policies over the v1 API
//! (docs/policies.md). `put` reads the Cedar text from `--file` or standard input;
//! `check` prints the decision and the policies that decided it.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{json, Value};
use tenancy_client::Client;
use tenancy_domain::policy::{PolicyCheck, PolicySpec};

use crate::support::*;

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Create or replace a policy; its Cedar text comes from --file or standard input.
    Put {
        /// The policy's name (letters, digits, `-`, `_`, `.`; `builtin.*` is reserved).
        name: String,
        /// Read the Cedar text from this file instead of standard input (`-`: stdin).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// List the operators' policies (the built-in role policies are not listed).
    List,
    /// A policy: its Cedar text and when it changed.
    Get {
        /// The policy's name.
        name: String,
    },
    /// Delete a policy: it stops deciding at once.
    Delete {
        /// The policy's name.
        name: String,
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Evaluate a request with the policies in force: prints the decision and the
    /// policies that decided it.
    Check {
        /// The API key's id (key_...), or admin-token.
        #[arg(long)]
        principal: String,
        /// The operation id, e.g. get_tenant, suspend_tenant.
        #[arg(long)]
        action: String,
        /// The resource as a Cedar entity id, e.g. 'Tenancy::Tenant::"acme"'.
        #[arg(long)]
        resource: String,
    },
}

pub const POLICY_COLUMNS: &[&str] = &["name", "decision", "policies", "errors", "updated_at", "deleted"];

pub async fn policies(c: &Client, cmd: PolicyCmd) -> Result<Value, CliError> {
    Ok(match cmd {
        PolicyCmd::Put { name, file } => {
            let cedar = read_secret_input(file.as_ref(), "the policy's Cedar text")?;
            to_json(c.policy_put(&name, &PolicySpec { cedar }).await?)
        }
        PolicyCmd::List => to_json(c.policy_list().await?),
        PolicyCmd::Get { name } => to_json(c.policy_get(&name).await?),
        PolicyCmd::Delete { name, confirm: yes } => {
            confirm(yes, &format!("delete policy {name}"))?;
            c.policy_delete(&name).await?;
            json!({"name": name, "deleted": true})
        }
        PolicyCmd::Check { principal, action, resource } => {
            to_json(c.policy_check(&PolicyCheck { principal, action, resource }).await?)
        }
    })
}
