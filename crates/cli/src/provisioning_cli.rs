//! `tenancy queues ...`, `tenancy hooks ...` and `tenancy reconciliation ...`: the
//! operator side of queues, provisioning hooks and the reconciler, over the v1 API.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::CliError;
use crate::client::Client;

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

/// A name or receipt as one path segment: anything but unreserved characters is
/// percent-encoded (receipts are opaque; bad names still reach the server, which says
/// why they are bad).
pub(crate) fn path(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn queues(c: &Client, cmd: QueueCmd) -> Result<(Value, &'static [&'static str]), CliError> {
    Ok(match cmd {
        QueueCmd::Put { name, visibility_timeout_s, max_receive_count, dead_letter_queue, delay_s, retention_s } => {
            let body = json!({"visibility_timeout_s": visibility_timeout_s, "max_receive_count": max_receive_count,
                "dead_letter_queue": dead_letter_queue, "delay_s": delay_s, "retention_s": retention_s});
            (c.call(Method::PUT, &format!("/v1/queues/{}", path(&name)), &[], Some(&body)).await?, QUEUE_COLUMNS)
        }
        QueueCmd::List { limit, cursor } => {
            let mut q: Vec<(&str, String)> = limit.map(|l| ("limit", l.to_string())).into_iter().collect();
            q.extend(cursor.map(|c| ("cursor", c)));
            (c.get("/v1/queues", &q).await?, QUEUE_COLUMNS)
        }
        QueueCmd::Get { name } => (c.get(&format!("/v1/queues/{}", path(&name)), &[]).await?, QUEUE_COLUMNS),
        QueueCmd::Delete { name } => {
            c.call(Method::DELETE, &format!("/v1/queues/{}", path(&name)), &[], None).await?;
            (json!({"name": name, "deleted": true}), &["name", "deleted"])
        }
        QueueCmd::Send { name, body, delay_s, group_id, dedup_id } => {
            let body: Value =
                serde_json::from_str(&body).map_err(|e| CliError::Usage(format!("the body is not JSON: {e}")))?;
            let msg = json!({"body": body, "delay_s": delay_s, "group_id": group_id, "dedup_id": dedup_id});
            let path = format!("/v1/queues/{}/messages", path(&name));
            (c.call(Method::POST, &path, &[], Some(&msg)).await?, MESSAGE_COLUMNS)
        }
        QueueCmd::Receive { name, max, wait_s } => {
            let path = format!("/v1/queues/{}/receive", path(&name));
            let got = c.call(Method::POST, &path, &[], Some(&json!({"max": max, "wait_s": wait_s}))).await?;
            // A list for the table; `-o json` prints it as the API returns it.
            (json!({"items": got["messages"], "messages": got["messages"]}), MESSAGE_COLUMNS)
        }
        QueueCmd::Ack { name, receipt } => {
            let path = format!("/v1/queues/{}/messages/{}", path(&name), path(&receipt));
            c.call(Method::DELETE, &path, &[], None).await?;
            (json!({"receipt": receipt, "deleted": true}), &["receipt", "deleted"])
        }
        QueueCmd::Redrive { name } => {
            let path = format!("/v1/queues/{}/redrive", path(&name));
            (c.call(Method::POST, &path, &[], None).await?, &["moved"])
        }
    })
}

pub async fn hooks(c: &Client, cmd: HookCmd) -> Result<Value, CliError> {
    Ok(match cmd {
        HookCmd::Put { name, url, queue, events, mode, timeout_s, max_attempts, rotate_secret } => {
            let mut body = json!({"events": events});
            if let Some(u) = url {
                body["url"] = json!(u);
            }
            if let Some(q) = queue {
                body["queue"] = json!(q);
            }
            if rotate_secret {
                body["rotate_secret"] = json!(true);
            }
            if let Some(m) = mode {
                body["mode"] = json!(m);
            }
            if let Some(t) = timeout_s {
                body["timeout_s"] = json!(t);
            }
            if let Some(n) = max_attempts {
                body["max_attempts"] = json!(n);
            }
            c.call(Method::PUT, &format!("/v1/hooks/{}", path(&name)), &[], Some(&body)).await?
        }
        HookCmd::List => c.get("/v1/hooks", &[]).await?,
        HookCmd::Get { name } => c.get(&format!("/v1/hooks/{}", path(&name)), &[]).await?,
        HookCmd::Delete { name } => {
            c.call(Method::DELETE, &format!("/v1/hooks/{}", path(&name)), &[], None).await?;
            json!({"name": name, "deleted": true})
        }
    })
}

/// A tenant's resources, flattened for the table: a database's key, location and
/// whether the provisioner sees it now.
pub async fn tenant_resources(c: &Client, id: &str, json_output: bool) -> Result<Value, CliError> {
    let got = c.get(&format!("/v1/tenants/{}/resources", path(id)), &[]).await?;
    if json_output {
        return Ok(got);
    }
    let items: Vec<Value> = got["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let detail = &r["detail"];
            let observed = &r["observed"];
            json!({
                "kind": r["kind"],
                "isolation": detail.get("isolation"),
                "location": observed.get("location").or(detail.get("location")),
                "exists": observed.get("exists"),
                "created_at": r["created_at"],
            })
        })
        .collect();
    Ok(json!({"items": items}))
}

/// The last or a new pass; in a table, a summary line (on stderr) and the drift.
pub async fn reconciliation(c: &Client, cmd: ReconciliationCmd, json_output: bool) -> Result<Value, CliError> {
    let report = match cmd {
        ReconciliationCmd::Show => c.get("/v1/reconciliation", &[]).await?,
        ReconciliationCmd::Run => c.call(Method::POST, "/v1/reconciliation", &[], None).await?,
        ReconciliationCmd::Repair { id } => {
            let drift = c.call(Method::POST, &format!("/v1/reconciliation/{}/repair", path(&id)), &[], None).await?;
            return Ok(if json_output { drift } else { json!({"items": [drift]}) });
        }
    };
    if json_output {
        return Ok(report);
    }
    if report.is_null() {
        eprintln!("no reconciliation pass yet");
        return Ok(json!({"items": []}));
    }
    let drift = report["drift"].as_array().cloned().unwrap_or_default();
    eprintln!(
        "pass by {} finished {}: {} tenants checked, {} drift",
        report["node"].as_str().unwrap_or("?"),
        report["finished_at"].as_str().unwrap_or("?"),
        report["tenants_checked"],
        drift.len()
    );
    Ok(json!({"items": drift}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_are_escaped_for_the_path() {
        assert_eq!(path("abc-DEF_1.2~"), "abc-DEF_1.2~");
        assert_eq!(path("a/b+c="), "a%2Fb%2Bc%3D");
    }
}
