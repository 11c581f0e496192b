//! `tenancy queues ...`, `tenancy hooks ...` and `tenancy reconciliation ...`: the
//! operator side of queues, provisioning hooks and the reconciler, over the v1 API.

use clap::Subcommand;
use serde_json::{json, Value};
use tenancy_client::{Client, PageParams};
use tenancy_domain::api::ReceiveRequest;
use tenancy_domain::hook::{HookEvent, HookMode, HookSpec};
use tenancy_domain::queue::{QueueSpec, SendMessage};

use crate::cli::{parse_wire, to_json, CliError};

#[derive(Debug, Subcommand)]
pub enum QueueCmd {
    /// Create a queue or change its settings.
    Put {
        name: String,
        /// How long a received message stays invisible to other receivers (0-43200).
        #[arg(long, default_value_t = 30)]
        visibility_timeout_s: u64,
        /// Receives after which a message moves to --dead-letter-queue (1-1000).
        #[arg(long, requires = "dead_letter_queue")]
        max_receive_count: Option<u32>,
        /// The queue that takes messages received --max-receive-count times.
        #[arg(long, requires = "max_receive_count")]
        dead_letter_queue: Option<String>,
        /// Default delay of new messages (0-900).
        #[arg(long)]
        delay_s: Option<u64>,
        /// How long a message is kept (60-1209600, default 4 days).
        #[arg(long)]
        retention_s: Option<u64>,
    },
    List {
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// A queue's settings and depth (visible, in flight, delayed, dead-lettered, oldest age).
    Get { name: String },
    /// Delete a queue and its messages.
    Delete { name: String },
    /// Send one message.
    Send {
        name: String,
        /// The body, as JSON.
        body: String,
        #[arg(long)]
        delay_s: Option<u64>,
        /// Messages of one group are received in order, one at a time.
        #[arg(long)]
        group_id: Option<String>,
        /// A repeat within 5 minutes is not sent again.
        #[arg(long)]
        dedup_id: Option<String>,
    },
    /// Receive messages (they stay invisible for the visibility timeout).
    Receive {
        name: String,
        /// Most messages to return (1-100).
        #[arg(long, default_value_t = 1)]
        max: u32,
        /// Seconds to wait when none is visible (0-20).
        #[arg(long, default_value_t = 0)]
        wait_s: u64,
    },
    /// Delete a received message by its receipt (the message was handled).
    Ack { name: String, receipt: String },
    /// Move a dead-letter queue's messages back to their source queues.
    Redrive { name: String },
}

#[derive(Debug, Subcommand)]
pub enum HookCmd {
    /// Create or replace a provisioning hook: an HTTP hook (--url) or a queue hook
    /// (--queue). A new HTTP hook's signing secret (whsec_...) is printed once.
    Put {
        name: String,
        /// Absolute http:// or https:// URL receiving signed POSTs (Standard Webhooks).
        #[arg(long, required_unless_present = "queue", conflicts_with = "queue")]
        url: Option<String>,
        /// A queue (it must exist) receiving {event, tenant, execution_id,
        /// idempotency_key, task_token}; its worker answers through the task token.
        #[arg(long)]
        queue: Option<String>,
        /// provision, offboard, plan_change, suspend or resume; repeat for several.
        #[arg(long = "event", required = true)]
        events: Vec<String>,
        /// sync (a 2xx is success) or callback (202, then the task-token endpoint).
        #[arg(long)]
        mode: Option<String>,
        #[arg(long)]
        timeout_s: Option<u64>,
        #[arg(long)]
        max_attempts: Option<u32>,
        /// Replace the signing secret; the new one is printed once (the old one signs
        /// too for 24 hours).
        #[arg(long)]
        rotate_secret: bool,
    },
    List,
    Get {
        name: String,
    },
    Delete {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReconciliationCmd {
    /// The last pass, whichever replica made it.
    Show,
    /// Run a pass now: recreate what is missing of the kinds repaired automatically,
    /// report the rest and extras.
    Run,
    /// Recreate a missing resource of the last pass by its drift id (`drift_...`).
    Repair { id: String },
}

pub const QUEUE_COLUMNS: &[&str] = &[
    "name",
    "visibility_timeout_s",
    "max_receive_count",
    "dead_letter_queue",
    "visible",
    "in_flight",
    "delayed",
    "dead_lettered",
    "oldest_age_s",
];
pub const MESSAGE_COLUMNS: &[&str] = &["id", "receive_count", "group_id", "body", "receipt", "message_id", "moved"];
pub const HOOK_COLUMNS: &[&str] =
    &["name", "url", "queue", "events", "mode", "timeout_s", "max_attempts", "secret", "deleted"];
pub const RESOURCE_COLUMNS: &[&str] = &["kind", "isolation", "location", "exists", "created_at"];
pub const DRIFT_COLUMNS: &[&str] =
    &["id", "tenant_id", "resource", "problem", "repaired", "key", "reason", "restore_from", "error"];

pub async fn queues(c: &Client, cmd: QueueCmd) -> Result<(Value, &'static [&'static str]), CliError> {
    Ok(match cmd {
        QueueCmd::Put { name, visibility_timeout_s, max_receive_count, dead_letter_queue, delay_s, retention_s } => {
            let spec = QueueSpec { visibility_timeout_s, max_receive_count, dead_letter_queue, delay_s, retention_s };
            (to_json(c.queue_put(&name, &spec).await?), QUEUE_COLUMNS)
        }
        QueueCmd::List { limit, cursor } => {
            (to_json(c.queue_list(&PageParams { limit, cursor }).await?), QUEUE_COLUMNS)
        }
        QueueCmd::Get { name } => (to_json(c.queue_get(&name).await?), QUEUE_COLUMNS),
        QueueCmd::Delete { name } => {
            c.queue_delete(&name).await?;
            (json!({"name": name, "deleted": true}), &["name", "deleted"])
        }
        QueueCmd::Send { name, body, delay_s, group_id, dedup_id } => {
            // The body is the user's own JSON, sent as it is.
            let body: Value =
                serde_json::from_str(&body).map_err(|e| CliError::Usage(format!("the body is not JSON: {e}")))?;
            let msg = SendMessage { body, delay_s, group_id, dedup_id };
            (to_json(c.queue_send(&name, &msg).await?), MESSAGE_COLUMNS)
        }
        QueueCmd::Receive { name, max, wait_s } => {
            let got = c.queue_receive(&name, &ReceiveRequest { max: Some(max), wait_s: Some(wait_s) }).await?;
            // A list for the table; `-o json` prints it as the API returns it.
            let messages = to_json(&got.messages);
            (json!({"items": messages, "messages": messages}), MESSAGE_COLUMNS)
        }
        QueueCmd::Ack { name, receipt } => {
            c.queue_ack(&name, &receipt).await?;
            (json!({"receipt": receipt, "deleted": true}), &["receipt", "deleted"])
        }
        QueueCmd::Redrive { name } => (to_json(c.queue_redrive(&name).await?), &["moved"]),
    })
}

pub async fn hooks(c: &Client, cmd: HookCmd) -> Result<Value, CliError> {
    Ok(match cmd {
        HookCmd::Put { name, url, queue, events, mode, timeout_s, max_attempts, rotate_secret } => {
            let events = events
                .iter()
                .map(|e| parse_wire("--event", e, "provision, offboard, plan_change, suspend or resume"))
                .collect::<Result<Vec<HookEvent>, _>>()?;
            let mode: Option<HookMode> = mode.map(|m| parse_wire("--mode", &m, "sync or callback")).transpose()?;
            let spec = HookSpec { url, queue, events, mode, timeout_s, max_attempts, rotate_secret };
            to_json(c.hook_put(&name, &spec).await?)
        }
        HookCmd::List => to_json(c.hook_list().await?),
        HookCmd::Get { name } => to_json(c.hook_get(&name).await?),
        HookCmd::Delete { name } => {
            c.hook_delete(&name).await?;
            json!({"name": name, "deleted": true})
        }
    })
}

/// A tenant's resources, flattened for the table: a database's key, location and
/// whether the provisioner sees it now (from the resources' free-form `detail` and
/// `observed`).
pub async fn tenant_resources(c: &Client, id: &str, json_output: bool) -> Result<Value, CliError> {
    let got = c.tenant_resources(id).await?;
    if json_output {
        return Ok(to_json(got));
    }
    let items: Vec<Value> = got
        .items
        .iter()
        .map(|r| {
            let observed = r.observed.as_ref();
            json!({
                "kind": r.kind,
                "isolation": r.detail.get("isolation"),
                "location": observed.and_then(|o| o.get("location")).or(r.detail.get("location")),
                "exists": observed.and_then(|o| o.get("exists")),
                "created_at": r.created_at,
            })
        })
        .collect();
    Ok(json!({"items": items}))
}

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
