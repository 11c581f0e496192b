//! `tenancy hooks ...`: provisioning hooks.

use clap::Subcommand;
use serde_json::{json, Value};
use tenancy_client::Client;
use tenancy_domain::hook::{HookEvent, HookMode, HookSpec};

use crate::support::*;

#[derive(Debug, Subcommand)]
pub enum HookCmd {
    /// Create or replace a provisioning hook: an HTTP hook (--url) or a queue hook
    /// (--queue). A new HTTP hook's signing secret (whsec_...) is printed once.
    Put {
        /// The hook's name (1-64 letters, digits, '-' and '_').
        name: String,
        /// Absolute http:// or https:// URL receiving signed POSTs (Standard Webhooks).
        #[arg(long, required_unless_present = "queue", conflicts_with = "queue")]
        url: Option<String>,
        /// A queue (it must exist) receiving {event, tenant, execution_id,
        /// idempotency_key, task_token}; its worker answers through the task token.
        #[arg(long)]
        queue: Option<String>,
        /// provision, offboard, plan_change, suspend, resume or validate (asked before a
        /// tenant create or plan change commits; sync only); repeat for several.
        #[arg(long = "event", required = true)]
        events: Vec<String>,
        /// sync (a 2xx is success) or callback (202, then the task-token endpoint)
        /// [default: sync].
        #[arg(long, value_parser = ["sync", "callback"])]
        mode: Option<String>,
        /// How long a call (sync) or the callback (callback) may take, in seconds.
        #[arg(long)]
        timeout_s: Option<u64>,
        /// Attempts before the hook's step fails.
        #[arg(long)]
        max_attempts: Option<u32>,
        /// Replace the signing secret; the new one is printed once (the old one signs
        /// too for 24 hours).
        #[arg(long)]
        rotate_secret: bool,
        /// A connection (tenancy connections put) whose credential every request of
        /// the hook carries besides the signature.
        #[arg(long)]
        connection: Option<String>,
    },
    /// List provisioning hooks.
    List,
    /// A hook's settings (never its secret).
    Get {
        /// The hook's name.
        name: String,
    },
    /// Delete a hook: lifecycle workflows stop calling it (asks first).
    Delete {
        /// The hook's name.
        name: String,
        #[command(flatten)]
        confirm: Confirm,
    },
}

pub const HOOK_COLUMNS: &[&str] =
    &["name", "url", "queue", "events", "mode", "timeout_s", "max_attempts", "connection", "secret", "deleted"];

pub async fn hooks(c: &Client, cmd: HookCmd) -> Result<Value, CliError> {
    Ok(match cmd {
        HookCmd::Put { name, url, queue, events, mode, timeout_s, max_attempts, rotate_secret, connection } => {
            let events = events
                .iter()
                .map(|e| parse_wire("--event", e, "provision, offboard, plan_change, suspend, resume or validate"))
                .collect::<Result<Vec<HookEvent>, _>>()?;
            let mode: Option<HookMode> = mode.map(|m| parse_wire("--mode", &m, "sync or callback")).transpose()?;
            let spec = HookSpec { url, queue, events, mode, timeout_s, max_attempts, rotate_secret, connection };
            to_json(c.hook_put(&name, &spec).await?)
        }
        HookCmd::List => to_json(c.hook_list().await?),
        HookCmd::Get { name } => to_json(c.hook_get(&name).await?),
        HookCmd::Delete { name, confirm: yes } => {
            confirm(yes, &format!("delete hook {name}"))?;
            c.hook_delete(&name).await?;
            json!({"name": name, "deleted": true})
        }
    })
}
