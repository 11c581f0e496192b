//! `tenancy subscriptions ...`: event subscriptions (a webhook or a queue), their
//! deliveries, retries of dead ones and replays of the archive, over the v1 API.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use tenancy_client::{Client, DeliveryListParams, PageParams};
use tenancy_domain::subscription::{NewSubscription, SubscriptionPatch, Target};

use crate::support::*;

/// Where the events go: `--url` (a webhook) or `--queue`, with the webhook's settings.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// A webhook: the absolute http:// or https:// URL receiving signed POSTs
    /// (Standard Webhooks).
    #[arg(long, conflicts_with = "queue")]
    pub url: Option<String>,
    /// A built-in queue (it must exist): each matching event becomes a message of it.
    #[arg(long)]
    pub queue: Option<String>,
    /// Webhook deliveries in flight at once, per replica, 1-256 [default: 10].
    #[arg(long, requires = "url")]
    pub max_concurrency: Option<u32>,
    /// A webhook attempt fails without a 2xx within this time, 100-60000 ms [default: 10000].
    #[arg(long, requires = "url")]
    pub timeout_ms: Option<u64>,
    /// Attempts before a delivery is dead, 1-50 [default: 12].
    #[arg(long, requires = "url")]
    pub max_attempts: Option<u32>,
    /// A connection (tenancy connections put) whose credential every delivery carries.
    #[arg(long, requires = "url")]
    pub connection: Option<String>,
}

impl TargetArgs {
    fn target(self) -> Option<Target> {
        match (self.url, self.queue) {
            (Some(url), _) => Some(Target::Webhook {
                url,
                max_concurrency: self.max_concurrency,
                timeout_ms: self.timeout_ms,
                max_attempts: self.max_attempts,
                connection: self.connection,
            }),
            (None, Some(queue)) => Some(Target::Queue { queue }),
            (None, None) => None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum SubscriptionCmd {
    /// Create a subscription; a webhook's signing secret (whsec_...) is printed once.
    Create {
        /// A name for people, 1-200 characters.
        #[arg(long)]
        name: String,
        /// The event pattern as JSON (EventBridge syntax, docs/event-patterns.md), e.g.
        /// '{"detail-type": ["TenantCreated"]}'.
        #[arg(long, required_unless_present = "pattern_file", conflicts_with = "pattern_file")]
        pattern: Option<String>,
        /// Read the event pattern from this JSON file.
        #[arg(long)]
        pattern_file: Option<PathBuf>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// List subscriptions.
    List {
        /// Items per page, 1-1000 [default: 100].
        #[arg(long)]
        limit: Option<u32>,
        /// The cursor printed after the previous page ("more: --cursor ...").
        #[arg(long)]
        cursor: Option<String>,
    },
    /// A subscription: its pattern and target (never its secret).
    Get {
        /// The subscription's id (sub_...).
        id: String,
    },
    /// Change a subscription's name, pattern or target (those given).
    Update {
        /// The subscription's id (sub_...).
        id: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// A new event pattern as JSON.
        #[arg(long, conflicts_with = "pattern_file")]
        pattern: Option<String>,
        /// Read a new event pattern from this JSON file.
        #[arg(long)]
        pattern_file: Option<PathBuf>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Delete a subscription with its deliveries.
    Delete {
        /// The subscription's id (sub_...).
        id: String,
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Replace a webhook's signing secret (printed once); the old one signs beside it
    /// for 24 hours.
    RotateSecret {
        /// The subscription's id (sub_...).
        id: String,
    },
    /// A subscription's deliveries, oldest first, with their attempts and last error.
    Deliveries {
        /// The subscription's id (sub_...).
        id: String,
        /// Only deliveries in this state: pending, delivered or dead.
        #[arg(long, value_parser = ["pending", "delivered", "dead"])]
        status: Option<String>,
        /// Items per page, 1-1000 [default: 100].
        #[arg(long)]
        limit: Option<u32>,
        /// The cursor printed after the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Queue a dead delivery again with a fresh budget of attempts.
    Retry {
        /// The subscription's id (sub_...).
        id: String,
        /// The delivery's id (dlv_...).
        delivery: String,
    },
    /// Deliver again the archived events of a time range that match the subscription.
    Replay {
        /// The subscription's id (sub_...).
        id: String,
        /// RFC 3339: events at or after this time.
        #[arg(long)]
        from: String,
        /// RFC 3339: events before this time.
        #[arg(long)]
        to: String,
    },
}

pub const SUBSCRIPTION_COLUMNS: &[&str] = &["id", "name", "target", "pattern", "secret", "count", "deleted"];
pub const DELIVERY_COLUMNS: &[&str] =
    &["id", "event_id", "status", "attempts", "next_attempt_at", "last_error", "updated_at"];

fn pattern(flag: Option<String>, file: Option<PathBuf>) -> Result<Option<Value>, CliError> {
    let (what, text) = match (flag, file) {
        (Some(p), _) => ("--pattern".to_owned(), p),
        (None, Some(f)) => (
            f.display().to_string(),
            std::fs::read_to_string(&f).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", f.display())))?,
        ),
        (None, None) => return Ok(None),
    };
    // The pattern is the user's own JSON, sent as it is: the server says why a bad one
    // is bad.
    serde_json::from_str(&text).map(Some).map_err(|e| CliError::Usage(format!("{what} is not JSON: {e}")))
}

/// A subscription flattened for the table: its target as `webhook URL` or `queue NAME`.
fn row(v: Value) -> Value {
    let mut v = v;
    let target = match v.get("target") {
        Some(t) if t.get("type").and_then(Value::as_str) == Some("queue") => {
            format!("queue {}", cell(t.get("queue")))
        }
        Some(t) => format!("webhook {}", cell(t.get("url"))),
        None => return v,
    };
    v["target"] = target.into();
    if let Some(p) = v.get("pattern").filter(|p| !p.is_string()) {
        v["pattern"] = p.to_string().into();
    }
    v
}

/// Runs a `subscriptions` command; returns the value and its table's columns.
pub async fn subscriptions(
    c: &Client,
    cmd: SubscriptionCmd,
    raw: bool,
) -> Result<(Value, &'static [&'static str]), CliError> {
    let table = |v: Value| if raw { v } else { row(v) };
    Ok(match cmd {
        SubscriptionCmd::Create { name, pattern: p, pattern_file, target } => {
            let pattern = pattern(p, pattern_file)?.unwrap_or(Value::Null);
            let target =
                target.target().ok_or_else(|| CliError::Usage("give the target: --url URL or --queue NAME".into()))?;
            let created = c.subscription_create(&NewSubscription { name, pattern, target }).await?;
            if created.secret.is_some() {
                eprintln!("the subscription's signing secret is shown this once: keep it to verify its deliveries");
            }
            (table(to_json(created)), SUBSCRIPTION_COLUMNS)
        }
        SubscriptionCmd::List { limit, cursor } => {
            let mut page = to_json(c.subscription_list(&PageParams { limit, cursor }).await?);
            if !raw {
                if let Some(items) = page.get_mut("items").and_then(Value::as_array_mut) {
                    for item in items.iter_mut() {
                        *item = row(item.take());
                    }
                }
            }
            (page, SUBSCRIPTION_COLUMNS)
        }
        SubscriptionCmd::Get { id } => (table(to_json(c.subscription_get(&id).await?)), SUBSCRIPTION_COLUMNS),
        SubscriptionCmd::Update { id, name, pattern: p, pattern_file, target } => {
            let patch = SubscriptionPatch { name, pattern: pattern(p, pattern_file)?, target: target.target() };
            (table(to_json(c.subscription_patch(&id, &patch).await?)), SUBSCRIPTION_COLUMNS)
        }
        SubscriptionCmd::Delete { id, confirm: yes } => {
            confirm(yes, &format!("delete subscription {id} and its deliveries"))?;
            c.subscription_delete(&id).await?;
            (json!({"id": id, "deleted": true}), SUBSCRIPTION_COLUMNS)
        }
        SubscriptionCmd::RotateSecret { id } => {
            let got = c.subscription_rotate_secret(&id).await?;
            eprintln!("the new signing secret is shown this once; the old one signs beside it for 24 hours");
            (table(to_json(got)), SUBSCRIPTION_COLUMNS)
        }
        SubscriptionCmd::Deliveries { id, status, limit, cursor } => {
            (to_json(c.delivery_list(&id, &DeliveryListParams { status, limit, cursor }).await?), DELIVERY_COLUMNS)
        }
        SubscriptionCmd::Retry { id, delivery } => (to_json(c.delivery_retry(&id, &delivery).await?), DELIVERY_COLUMNS),
        SubscriptionCmd::Replay { id, from, to } => {
            let got = c.subscription_replay(&id, &from, &to).await?;
            (json!({"id": id, "count": got.get("count")}), SUBSCRIPTION_COLUMNS)
        }
    })
}
