//! Event subscriptions, their targets and the deliveries they cause.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::time::Timestamp;
use crate::{Error, ErrorCode, Result};

pub const DEFAULT_MAX_CONCURRENCY: u32 = 10;
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 12;
const MAX_MAX_ATTEMPTS: u32 = 50;
const MAX_TIMEOUT_MS: u64 = 60_000;
const MAX_CONCURRENCY: u32 = 256;

/// Where a subscription sends the events it matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Target {
    /// An HTTP endpoint receiving Standard Webhooks deliveries.
    Webhook {
        url: String,
        /// Deliveries in flight to this endpoint at once (per replica).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_concurrency: Option<u32>,
        /// A delivery attempt fails when no 2xx arrives within this time.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
        /// Attempts before a delivery is dead (retries span at most 24 hours).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_attempts: Option<u32>,
        /// A connection (it must exist) whose credential every delivery carries
        /// besides the signature.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        connection: Option<String>,
    },
    /// A built-in queue: each matching event's envelope becomes a message of it.
    Queue { queue: String },
}

/// The delivery settings of a webhook target with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    pub url: String,
    pub max_concurrency: u32,
    pub timeout_ms: u64,
    pub max_attempts: u32,
    pub connection: Option<String>,
}

impl Target {
    /// Checks the target's shape (that a queue exists is the application's check).
    pub fn validate(&self) -> Result<()> {
        match self {
            Target::Queue { queue } => crate::queue::validate_name(queue),
            Target::Webhook { url, max_concurrency, timeout_ms, max_attempts, connection } => {
                validate_url(url)?;
                if let Some(c) = connection {
                    crate::connection::validate_name(c)?;
                }
                if max_concurrency.is_some_and(|c| c == 0 || c > MAX_CONCURRENCY) {
                    return Err(Error::invalid(format!("max_concurrency must be between 1 and {MAX_CONCURRENCY}")));
                }
                if timeout_ms.is_some_and(|t| !(100..=MAX_TIMEOUT_MS).contains(&t)) {
                    return Err(Error::invalid(format!("timeout_ms must be between 100 and {MAX_TIMEOUT_MS}")));
                }
                if max_attempts.is_some_and(|a| a == 0 || a > MAX_MAX_ATTEMPTS) {
                    return Err(Error::invalid(format!("max_attempts must be between 1 and {MAX_MAX_ATTEMPTS}")));
                }
                Ok(())
            }
        }
    }

    pub fn webhook(&self) -> Option<WebhookSettings> {
        match self {
            Target::Webhook { url, max_concurrency, timeout_ms, max_attempts, connection } => Some(WebhookSettings {
                url: url.clone(),
                max_concurrency: max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY),
                timeout_ms: timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
                max_attempts: max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
                connection: connection.clone(),
            }),
            Target::Queue { .. } => None,
        }
    }
}

/// An absolute `http://` or `https://` URL with a host.
fn validate_url(url: &str) -> Result<()> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    match host {
        Some(h) if !h.is_empty() && !h.starts_with(':') && !url.contains(char::is_whitespace) => Ok(()),
        _ => Err(Error::InvalidRequest {
            code: ErrorCode::InvalidUrl,
            message: format!("webhook url must be an absolute http or https URL, got {url:?}"),
        }),
    }
}

/// The body of `POST /v1/subscriptions`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    pub name: String,
    /// An EventBridge event pattern (see docs/event-patterns.md).
    #[schema(value_type = Object)]
    pub pattern: Value,
    pub target: Target,
}

/// The body of `PATCH /v1/subscriptions/{id}`: fields to replace.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionPatch {
    pub name: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub pattern: Option<Value>,
    pub target: Option<Target>,
}

/// A subscription as the API shows it (never its secrets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Subscription {
    pub id: String,
    pub name: String,
    #[schema(value_type = Object)]
    pub pattern: Value,
    pub target: Target,
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

pub fn validate_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.len() > 200 {
        return Err(Error::invalid("name must be 1 to 200 characters"));
    }
    Ok(())
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// A 2xx response arrived.
    Delivered,
    /// Every attempt failed; `POST .../retry` queues it again.
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "dead" => Some(DeliveryStatus::Dead),
            _ => None,
        }
    }
}

/// One attempt to deliver an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryAttempt {
    /// 1-based, across operator retries.
    pub attempt: i64,
    pub time: Timestamp,
    /// The HTTP status, when a response arrived.
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

/// The delivery of one event to one subscription, with its attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: String,
    pub subscription_id: String,
    pub event_id: String,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: i64,
    /// When the next attempt is due (pending deliveries).
    pub next_attempt_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub attempt_log: Vec<DeliveryAttempt>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn targets() {
        let t: Target = serde_json::from_value(json!({"type": "webhook", "url": "https://example.com/hook"})).unwrap();
        t.validate().unwrap();
        assert_eq!(t.webhook().unwrap().max_attempts, DEFAULT_MAX_ATTEMPTS);
        for bad in ["ftp://x", "https://", "example.com", "http:// x", "https://:80/"] {
            let t = Target::Webhook {
                url: bad.into(),
                max_concurrency: None,
                timeout_ms: None,
                max_attempts: None,
                connection: None,
            };
            assert_eq!(t.validate().unwrap_err().code(), ErrorCode::InvalidUrl, "{bad}");
        }
        let q: Target = serde_json::from_value(json!({"type": "queue", "queue": "q"})).unwrap();
        q.validate().unwrap();
        let q: Target = serde_json::from_value(json!({"type": "queue", "queue": "a b"})).unwrap();
        assert_eq!(q.validate().unwrap_err().code(), ErrorCode::InvalidQueueName);
    }
}
