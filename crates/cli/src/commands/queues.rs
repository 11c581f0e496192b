//! `tenancy queues ...`: the operator side of the built-in queues.

use clap::Subcommand;
use serde_json::{json, Value};
use tenancy_client::{Client, PageParams};
use tenancy_domain::api::ReceiveRequest;
use tenancy_domain::queue::{QueueSpec, SendMessage};

use crate::support::*;

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
