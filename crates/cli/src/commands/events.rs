//! `tenancy events ...`: the event archive (paged with a cursor, or followed as new
//! events arrive), publishing custom events and testing patterns.

use std::collections::HashSet;
use std::time::Duration;

use clap::Subcommand;
use serde_json::{json, Value};
use tenancy_client::{Client, EventListParams};

use crate::support::*;

#[derive(Debug, Subcommand)]
pub enum EventCmd {
    /// Archived events, oldest first; `--cursor` pages on, `--follow` keeps printing new
    /// ones until interrupted.
    List {
        /// Only events of this detail-type (e.g. TenantCreated).
        #[arg(long)]
        detail_type: Option<String>,
        /// Only events about this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// RFC 3339: only events at or after this time.
        #[arg(long)]
        after: Option<String>,
        /// Items per page, 1-1000 [default: 100].
        #[arg(long)]
        limit: Option<u32>,
        /// Start after this cursor (printed after a page as "more: --cursor ...").
        #[arg(long)]
        cursor: Option<String>,
        /// Keep polling for new events (every second) and print them as they arrive.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Publish a custom event (EventBridge's PutEvents); its subscriptions get it.
    Put {
        /// The event's source; `tenancy` and `tenancy.*` are reserved.
        #[arg(long)]
        source: String,
        /// The event's detail-type.
        #[arg(long)]
        detail_type: String,
        /// The event's detail, a JSON object [default: {}].
        #[arg(long)]
        detail: Option<String>,
        /// The tenant the event is about.
        #[arg(long)]
        tenant: Option<String>,
        /// A resource (ARN or id) the event is about; repeat for several.
        #[arg(long = "resource")]
        resources: Vec<String>,
    },
    /// Whether an event matches a pattern (without publishing anything).
    TestPattern {
        /// The event pattern as JSON, e.g. '{"detail-type": ["TenantCreated"]}'.
        #[arg(long)]
        pattern: String,
        /// The event as JSON (an envelope: source, detail-type, detail, ...).
        #[arg(long)]
        event: String,
    },
}

pub const EVENT_COLUMNS: &[&str] = &["id", "time", "source", "detail-type", "tenant_id"];

fn json_arg(flag: &str, s: &str) -> Result<Value, CliError> {
    serde_json::from_str(s).map_err(|e| CliError::Usage(format!("{flag} is not JSON: {e}")))
}

/// Runs an `events` command; `Ok(None)` when it printed its answer itself (`--follow`).
pub async fn events(
    c: &Client,
    cmd: EventCmd,
    output: Output,
) -> Result<Option<(Value, &'static [&'static str])>, CliError> {
    Ok(Some(match cmd {
        EventCmd::List { detail_type, tenant, after, limit, cursor, follow } => {
            let params = EventListParams { detail_type, tenant_id: tenant, after, limit, cursor };
            if follow {
                self::follow(c, params, output).await?;
                return Ok(None);
            }
            (to_json(c.event_list(&params).await?), EVENT_COLUMNS)
        }
        EventCmd::Put { source, detail_type, detail, tenant, resources } => {
            let detail = match detail {
                Some(d) => match json_arg("--detail", &d)? {
                    Value::Object(m) => Value::Object(m),
                    _ => return Err(CliError::Usage("--detail must be a JSON object".into())),
                },
                None => json!({}),
            };
            let mut entry = json!({"Source": source, "DetailType": detail_type, "Detail": detail.to_string()});
            if let Some(t) = tenant {
                entry["TenantId"] = t.into();
            }
            if !resources.is_empty() {
                entry["Resources"] = json!(resources);
            }
            let got = c.events_put(&json!({"Entries": [entry]})).await?;
            let first = got.get("Entries").and_then(|e| e.get(0)).cloned().unwrap_or(Value::Null);
            if let Some(code) = first.get("ErrorCode").and_then(Value::as_str) {
                let message = first.get("ErrorMessage").and_then(Value::as_str).unwrap_or("");
                return Err(CliError::Other(anyhow::anyhow!("the event was not published: {message} ({code})")));
            }
            if output.raw() {
                (got, &[])
            } else {
                (json!({"id": first.get("EventId")}), &["id"])
            }
        }
        EventCmd::TestPattern { pattern, event } => {
            let got = c.events_test_pattern(&json_arg("--pattern", &pattern)?, &json_arg("--event", &event)?).await?;
            (got, &["result"])
        }
    }))
}

/// Prints the events after `params` and then every new one, polling every second. The
/// archive's cursor is only handed out when a page is full, so between full pages the
/// same cursor is asked again and the events already printed are skipped by id.
async fn follow(c: &Client, mut params: EventListParams, output: Output) -> Result<(), CliError> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut header = output == Output::Table;
    loop {
        let page = c.event_list(&params).await?;
        for e in &page.items {
            if !seen.insert(e.id.clone()) {
                continue;
            }
            match output {
                Output::Json => println!("{}", serde_json::to_string(e).expect("events serialize")),
                Output::Yaml => print!("---\n{}", serde_norway::to_string(e).expect("events serialize")),
                Output::Table => {
                    if std::mem::take(&mut header) {
                        println!("{:<30} {:<25} {:<16} {:<28} TENANT_ID", "ID", "TIME", "SOURCE", "DETAIL-TYPE");
                    }
                    println!(
                        "{:<30} {:<25} {:<16} {:<28} {}",
                        e.id,
                        e.time.to_rfc3339(),
                        e.source,
                        e.detail_type,
                        e.tenant_id.as_deref().unwrap_or("")
                    );
                }
            }
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        match page.next_cursor {
            Some(next) => {
                params.cursor = Some(next);
                seen.clear();
            }
            None => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}
