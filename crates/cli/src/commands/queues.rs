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
        /// The queue's name (1-80 letters, digits, '-' and '_').
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
    /// List queues with their depth.
    List {
        /// Items per page, 1-1000 [default: 100].
        #[arg(long)]
        limit: Option<u32>,
        /// The cursor printed after the previous page ("more: --cursor ...").
        #[arg(long)]
        cursor: Option<String>,
    },
    /// A queue's settings and depth (visible, in flight, delayed, dead-lettered, oldest age).
    Get {
        /// The queue's name.
        name: String,
    },
    /// Delete a queue and its messages (asks first).
    Delete {
        /// The queue's name.
        name: String,
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Send one message.
    Send {
        /// The queue's name.
        name: String,
        /// The body, as JSON.
        body: String,
        /// Seconds before the message is visible (0-900) [default: the queue's].
        #[arg(long)]
        delay_s: Option<u64>,
        /// Messages of one group are received in order, one at a time.
        #[arg(long)]
        group_id: Option<String>,
        /// A repeat within 5 minutes is not sent again.
        #[arg(long)]
        dedup_id: Option<String>,
        /// A string attribute NAME=VALUE (repeatable, at most 10; names of letters,
        /// digits, '-', '_' and '.'). `traceparent` carries a W3C trace context.
        #[arg(long = "attribute", value_name = "NAME=VALUE")]
        attributes: Vec<String>,
    },
    /// Show the first messages of a queue (or dead-letter queue) without receiving
    /// them: state, receive count, attributes, body. Nothing changes.
    Peek {
        /// The queue's name.
        name: String,
        /// Messages to show (1-100).
        #[arg(long, default_value_t = 10)]
        limit: u32,
    },
    /// Receive messages (they stay invisible for the visibility timeout).
    Receive {
        /// The queue's name.
        name: String,
        /// Most messages to return (1-100).
        #[arg(long, default_value_t = 1)]
        max: u32,
        /// Seconds to wait when none is visible (0-20).
        #[arg(long, default_value_t = 0)]
        wait_s: u64,
    },
    /// Delete a received message by its receipt (the message was handled).
    Ack {
        /// The queue's name.
        name: String,
        /// The receipt of the receive that returned the message.
        receipt: String,
    },
    /// Change how long a received message stays invisible (0: visible again at once).
    Visibility {
        /// The queue's name.
        name: String,
        /// The receipt of the receive that returned the message.
        receipt: String,
        /// Seconds from now until the message is visible again (0-43200).
        #[arg(long)]
        timeout_s: u64,
    },
    /// Move a dead-letter queue's messages back to their source queues.
    Redrive {
        /// The dead-letter queue's name.
        name: String,
    },
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
pub const MESSAGE_COLUMNS: &[&str] =
    &["id", "receive_count", "group_id", "attributes", "body", "receipt", "message_id", "moved"];
pub const PEEK_COLUMNS: &[&str] =
    &["id", "state", "receive_count", "group_id", "source_queue", "sent_at", "attributes", "body"];

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
        QueueCmd::Delete { name, confirm: yes } => {
            confirm(yes, &format!("delete queue {name} and its messages"))?;
            c.queue_delete(&name).await?;
            (json!({"name": name, "deleted": true}), &["name", "deleted"])
        }
        QueueCmd::Send { name, body, delay_s, group_id, dedup_id, attributes } => {
            // The body is the user's own JSON, sent as it is.
            let body: Value =
                serde_json::from_str(&body).map_err(|e| CliError::Usage(format!("the body is not JSON: {e}")))?;
            let attributes = attributes
                .iter()
                .map(|a| {
                    a.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .ok_or_else(|| CliError::Usage(format!("--attribute {a:?}: expected NAME=VALUE")))
                })
                .collect::<Result<_, _>>()?;
            let msg = SendMessage { body, delay_s, group_id, dedup_id, attributes };
            (to_json(c.queue_send(&name, &msg).await?), MESSAGE_COLUMNS)
        }
        QueueCmd::Receive { name, max, wait_s } => {
            let got = c.queue_receive(&name, &ReceiveRequest { max: Some(max), wait_s: Some(wait_s) }).await?;
            // A list for the table; `-o json` prints it as the API returns it.
            let messages = to_json(&got.messages);
            (json!({"items": messages, "messages": messages}), MESSAGE_COLUMNS)
        }
        QueueCmd::Peek { name, limit } => {
            let got = c.queue_peek(&name, Some(limit)).await?;
            let messages = to_json(&got.messages);
            (json!({"items": messages, "messages": messages}), PEEK_COLUMNS)
        }
        QueueCmd::Ack { name, receipt } => {
            c.queue_ack(&name, &receipt).await?;
            (json!({"receipt": receipt, "deleted": true}), &["receipt", "deleted"])
        }
        QueueCmd::Visibility { name, receipt, timeout_s } => {
            let change = tenancy_domain::api::VisibilityChange { visibility_timeout_s: timeout_s };
            c.queue_change_visibility(&name, &receipt, &change).await?;
            (json!({"receipt": receipt, "visibility_timeout_s": timeout_s}), &["receipt", "visibility_timeout_s"])
        }
        QueueCmd::Redrive { name } => (to_json(c.queue_redrive(&name).await?), &["moved"]),
    })
}
