//! `tenancy quotas ...`: a tenant's quotas, consumed and released exactly, over the v1
//! API.

use clap::Subcommand;
use serde_json::Value;
use tenancy_client::Client;
use tenancy_domain::api::{QuotaConsume, QuotaRelease};

use crate::support::*;

#[derive(Debug, Subcommand)]
pub enum QuotaCmd {
    /// Every quota of the tenant's plan with its usage in the current period.
    List {
        /// The tenant's id.
        tenant: String,
    },
    /// Consume from a quota (a hard quota over its limit refuses: quota-exceeded, exit 1).
    Consume {
        /// The tenant's id.
        tenant: String,
        /// The quota's name (as the plan names it).
        name: String,
        /// How much to consume, at least 1.
        #[arg(long, default_value_t = 1)]
        amount: u64,
        /// Idempotency key: a repeat with the same key counts once.
        #[arg(long)]
        key: Option<String>,
    },
    /// Give back usage of a quota (never below 0).
    Release {
        /// The tenant's id.
        tenant: String,
        /// The quota's name (as the plan names it).
        name: String,
        /// How much to give back, at least 1.
        #[arg(long, default_value_t = 1)]
        amount: u64,
    },
}

pub const QUOTA_COLUMNS: &[&str] = &["name", "used", "limit", "remaining", "soft", "period", "resets_at"];

pub async fn quotas(c: &Client, cmd: QuotaCmd) -> Result<Value, CliError> {
    Ok(match cmd {
        QuotaCmd::List { tenant } => to_json(c.quota_list(&tenant).await?),
        QuotaCmd::Consume { tenant, name, amount, key } => {
            to_json(c.quota_consume(&tenant, &name, &QuotaConsume { amount, idempotency_key: key }).await?)
        }
        QuotaCmd::Release { tenant, name, amount } => {
            to_json(c.quota_release(&tenant, &name, &QuotaRelease { amount }).await?)
        }
    })
}
