//! `tenancy keys ...`: API keys.

use clap::Subcommand;
use serde_json::{json, Value};
use tenancy_client::{Client, PageParams};
use tenancy_domain::apikey::{NewApiKey, Role};
use tenancy_domain::time::Timestamp;

use crate::support::*;

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Create an API key; the key is printed once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: String,
        #[arg(long)]
        tenant: Option<String>,
        /// RFC 3339 expiry time.
        #[arg(long)]
        expires_at: Option<String>,
        /// The key's own API rate limit as PER_SECOND/BURST (e.g. 10/20), instead of its
        /// role's default.
        #[arg(long, value_name = "PER_SECOND/BURST")]
        rate_limit: Option<String>,
    },
    List,
    Delete {
        id: String,
    },
}

pub async fn keys(c: &Client, cmd: KeyCmd) -> Result<Value, CliError> {
    Ok(match cmd {
        KeyCmd::Create { name, role, tenant, expires_at, rate_limit } => {
            let role = Role::parse(&role).ok_or_else(|| {
                CliError::Usage(format!("--role {role:?}: use admin, operator, viewer, service or tenant"))
            })?;
            let expires_at = expires_at
                .map(|e| {
                    Timestamp::parse_rfc3339(&e)
                        .ok_or_else(|| CliError::Usage(format!("--expires-at {e:?}: use an RFC 3339 time")))
                })
                .transpose()?;
            let rate_limit = rate_limit.map(|r| parse_rate_limit(&r)).transpose()?;
            to_json(c.key_create(&NewApiKey { name, role, tenant_id: tenant, expires_at, rate_limit }).await?)
        }
        KeyCmd::List => to_json(c.key_list(&PageParams::default()).await?),
        KeyCmd::Delete { id } => {
            c.key_delete(&id).await?;
            json!({"id": id, "deleted": true})
        }
    })
}
