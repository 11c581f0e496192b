//! Queues (the SQS role): settings, messages, receipts and depth figures.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::time::Timestamp;
use crate::{Error, ErrorCode, Result};

pub const MAX_VISIBILITY_TIMEOUT_S: u64 = 12 * 60 * 60;
pub const MAX_DELAY_S: u64 = 15 * 60;
pub const MIN_RETENTION_S: u64 = 60;
pub const MAX_RETENTION_S: u64 = 14 * 24 * 60 * 60;
pub const DEFAULT_RETENTION_S: u64 = 4 * 24 * 60 * 60;
/// SQS's default visibility timeout.
pub const DEFAULT_VISIBILITY_TIMEOUT_S: u64 = 30;
pub const MAX_RECEIVE_COUNT: u32 = 1000;
/// Messages per batch send, batch delete and receive.
pub const MAX_BATCH: usize = 100;
/// The longest long poll.
pub const MAX_WAIT_S: u64 = 20;
/// The largest message body, as JSON text.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// A repeated dedup id within this window is accepted but not enqueued again.
pub const DEDUP_WINDOW_MS: i64 = 5 * 60 * 1000;
/// Attributes per message (SQS's limit).
pub const MAX_ATTRIBUTES: usize = 10;
/// The longest attribute name, in bytes.
pub const MAX_ATTRIBUTE_NAME_BYTES: usize = 128;
/// The longest attribute value, in bytes.
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1024;
/// Messages a peek shows at most.
pub const MAX_PEEK: u32 = 100;
/// The attribute carrying the trace context of the span that sent a message (W3C
/// `traceparent`); set by the server when the sender gave none.
pub const TRACEPARENT_ATTRIBUTE: &str = "traceparent";

/// The body of `PUT /v1/queues/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueSpec {
    /// How long a received message stays invisible to other receivers (0-43200,
    /// default 30 as in SQS).
    #[serde(default = "default_visibility_timeout_s")]
    pub visibility_timeout_s: u64,
    /// Receives after which a message moves to `dead_letter_queue` (1-1000); set both or neither.
    #[serde(default)]
    pub max_receive_count: Option<u32>,
    /// The queue that takes messages received `max_receive_count` times; it must exist.
    #[serde(default)]
    pub dead_letter_queue: Option<String>,
    /// Default delay of new messages (0-900).
    #[serde(default)]
    pub delay_s: Option<u64>,
    /// How long a message is kept (60-1209600, default 345600: 4 days).
    #[serde(default)]
    pub retention_s: Option<u64>,
}

fn default_visibility_timeout_s() -> u64 {
    DEFAULT_VISIBILITY_TIMEOUT_S
}

/// A queue's settings as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Queue {
    pub name: String,
    pub visibility_timeout_s: u64,
    pub max_receive_count: Option<u32>,
    pub dead_letter_queue: Option<String>,
    pub delay_s: u64,
    pub retention_s: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Queue names: 1-80 characters of letters, digits, `-` and `_` (as SQS).
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 80
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidRequest {
            code: ErrorCode::InvalidQueueName,
            message: format!("queue name {name:?} is invalid: use 1-80 letters, digits, '-' and '_'"),
        })
    }
}

fn invalid_settings(message: String) -> Error {
    Error::InvalidRequest { code: ErrorCode::InvalidQueueSettings, message }
}

impl QueueSpec {
    /// Validates the settings (not that the dead-letter queue exists: the store checks).
    pub fn into_queue(self, name: &str, now: Timestamp) -> Result<Queue> {
        validate_name(name)?;
        if self.visibility_timeout_s > MAX_VISIBILITY_TIMEOUT_S {
            return Err(invalid_settings(format!(
                "visibility_timeout_s must be between 0 and {MAX_VISIBILITY_TIMEOUT_S}, got {}",
                self.visibility_timeout_s
            )));
        }
        match (self.max_receive_count, &self.dead_letter_queue) {
            (Some(n), Some(dlq)) => {
                if n == 0 || n > MAX_RECEIVE_COUNT {
                    return Err(invalid_settings(format!(
                        "max_receive_count must be between 1 and {MAX_RECEIVE_COUNT}, got {n}"
                    )));
                }
                validate_name(dlq)?;
                if dlq == name {
                    return Err(invalid_settings("a queue cannot be its own dead_letter_queue".into()));
                }
            }
            (None, None) => {}
            _ => {
                return Err(invalid_settings(
                    "max_receive_count and dead_letter_queue go together: set both or neither".into(),
                ))
            }
        }
        let delay_s = self.delay_s.unwrap_or(0);
        if delay_s > MAX_DELAY_S {
            return Err(invalid_settings(format!("delay_s must be between 0 and {MAX_DELAY_S}, got {delay_s}")));
        }
        let retention_s = self.retention_s.unwrap_or(DEFAULT_RETENTION_S);
        if !(MIN_RETENTION_S..=MAX_RETENTION_S).contains(&retention_s) {
            return Err(invalid_settings(format!(
                "retention_s must be between {MIN_RETENTION_S} and {MAX_RETENTION_S}, got {retention_s}"
            )));
        }
        Ok(Queue {
            name: name.to_owned(),
            visibility_timeout_s: self.visibility_timeout_s,
            max_receive_count: self.max_receive_count,
            dead_letter_queue: self.dead_letter_queue,
            delay_s,
            retention_s,
            created_at: now,
            updated_at: now,
        })
    }
}

/// One message to send (`POST /v1/queues/{name}/messages`, and each batch entry).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// Any JSON value; received as sent.
    #[schema(value_type = Object)]
    pub body: Value,
    /// Seconds before the message can be received (0-900; default the queue's delay).
    #[serde(default)]
    pub delay_s: Option<u64>,
    /// Messages of one group are received in order, one at a time.
    #[serde(default)]
    pub group_id: Option<String>,
    /// A repeat within 5 minutes is accepted but not enqueued again.
    #[serde(default)]
    pub dedup_id: Option<String>,
    /// String attributes returned with the message (as SQS's message attributes): at
    /// most 10, names of 1-128 letters, digits, `-`, `_` and `.`, values of 0-1024
    /// printable characters. `traceparent` carries a W3C trace context; the server
    /// sets it to the sending span's when tracing is on and the sender gave none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

fn invalid_attributes(message: String) -> Error {
    Error::InvalidRequest { code: ErrorCode::InvalidMessageAttributes, message }
}

/// Checks a message's attributes against the limits above.
pub fn validate_attributes(attributes: &BTreeMap<String, String>) -> Result<()> {
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(invalid_attributes(format!(
            "a message has at most {MAX_ATTRIBUTES} attributes, got {}",
            attributes.len()
        )));
    }
    for (name, value) in attributes {
        let ok = !name.is_empty()
            && name.len() <= MAX_ATTRIBUTE_NAME_BYTES
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            return Err(invalid_attributes(format!(
                "attribute name {name:?} is invalid: use 1-{MAX_ATTRIBUTE_NAME_BYTES} letters, digits, '-', '_' and '.'"
            )));
        }
        if value.len() > MAX_ATTRIBUTE_VALUE_BYTES || value.chars().any(char::is_control) {
            return Err(invalid_attributes(format!(
                "attribute {name:?}: the value must be at most {MAX_ATTRIBUTE_VALUE_BYTES} bytes of printable characters"
            )));
        }
    }
    Ok(())
}

fn validate_token(field: &str, v: &str) -> Result<()> {
    if v.is_empty() || v.len() > 128 || v.chars().any(|c| c.is_control()) {
        return Err(Error::invalid(format!("{field} must be 1 to 128 printable characters")));
    }
    Ok(())
}

/// A validated message, ready for the store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub id: String,
    /// The body as JSON text.
    pub body: String,
    /// `None`: the queue's default delay.
    pub delay_ms: Option<i64>,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
    pub attributes: BTreeMap<String, String>,
}

impl NewMessage {
    /// Stamps the `traceparent` attribute with `traceparent` (the sending span's) unless
    /// the sender set one, and unless the message is at the attribute limit already.
    pub fn with_traceparent(mut self, traceparent: Option<String>) -> Self {
        if let Some(tp) = traceparent {
            if !self.attributes.contains_key(TRACEPARENT_ATTRIBUTE) && self.attributes.len() < MAX_ATTRIBUTES {
                self.attributes.insert(TRACEPARENT_ATTRIBUTE.to_owned(), tp);
            }
        }
        self
    }
}

impl SendMessage {
    pub fn into_new(self) -> Result<NewMessage> {
        let body = serde_json::to_string(&self.body).map_err(Error::internal)?;
        if body.len() > MAX_BODY_BYTES {
            return Err(Error::InvalidRequest {
                code: ErrorCode::MessageTooLarge,
                message: format!("the message body is {} bytes of JSON; at most {MAX_BODY_BYTES}", body.len()),
            });
        }
        if let Some(d) = self.delay_s.filter(|d| *d > MAX_DELAY_S) {
            return Err(Error::invalid(format!("delay_s must be between 0 and {MAX_DELAY_S}, got {d}")));
        }
        if let Some(g) = &self.group_id {
            validate_token("group_id", g)?;
        }
        if let Some(d) = &self.dedup_id {
            validate_token("dedup_id", d)?;
        }
        validate_attributes(&self.attributes)?;
        Ok(NewMessage {
            id: crate::ids::new_id("msg"),
            body,
            delay_ms: self.delay_s.map(|d| d as i64 * 1000),
            group_id: self.group_id,
            dedup_id: self.dedup_id,
            attributes: self.attributes,
        })
    }
}

/// The result of a send: the message id, and whether it was a duplicate (then the id
/// is the first message's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Sent {
    pub id: String,
    pub deduplicated: bool,
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Message {
    pub id: String,
    /// Deletes the message or changes its visibility; valid until it is received again.
    pub receipt: String,
    #[schema(value_type = Object)]
    pub body: Value,
    /// How many times it was received, this time included.
    pub receive_count: i64,
    pub group_id: Option<String>,
    pub sent_at: Timestamp,
    /// For a message in a dead-letter queue: the queue it came from.
    pub source_queue: Option<String>,
    /// The attributes it was sent with (`traceparent`: the sender's trace context).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// Where a peeked message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    /// Receivable now.
    Visible,
    /// Received, within its visibility timeout.
    InFlight,
    /// Not receivable yet (its delay, or a visibility change).
    Delayed,
}

/// A message as a peek shows it (`GET /v1/queues/{name}/messages`): no receipt, and
/// nothing about it changed by looking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PeekedMessage {
    pub id: String,
    #[schema(value_type = Object)]
    pub body: Value,
    pub attributes: BTreeMap<String, String>,
    pub state: MessageState,
    /// How many times it was received so far.
    pub receive_count: i64,
    pub group_id: Option<String>,
    pub sent_at: Timestamp,
    /// When it is (or was) receivable.
    pub visible_at: Timestamp,
    /// For a message in a dead-letter queue: the queue it came from.
    pub source_queue: Option<String>,
}

/// How much a queue holds, for autoscaling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueDepth {
    /// Receivable now.
    pub visible: u64,
    /// Received and not deleted, within their visibility timeout.
    pub in_flight: u64,
    /// Not receivable yet (delay).
    pub delayed: u64,
    /// Messages of this queue now in a dead-letter queue (waiting for a redrive).
    pub dead_lettered: u64,
    /// Age of the oldest message in the queue, in seconds (0 when empty).
    pub oldest_age_s: u64,
}

/// A queue with its depth (`GET /v1/queues/{name}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueInfo {
    #[serde(flatten)]
    pub queue: Queue,
    #[serde(flatten)]
    pub depth: QueueDepth,
}

/// The receipt handle: the message's position and a nonce of the receive.
pub fn receipt(seq: i64, nonce: &str) -> String {
    format!("{seq}-{nonce}")
}

/// Splits a receipt into (seq, nonce); `None` when malformed.
pub fn parse_receipt(r: &str) -> Option<(i64, &str)> {
    let (seq, nonce) = r.split_once('-')?;
    let seq = seq.parse().ok()?;
    (!nonce.is_empty() && nonce.len() <= 64 && nonce.bytes().all(|b| b.is_ascii_alphanumeric())).then_some((seq, nonce))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: Value) -> Result<Queue> {
        serde_json::from_value::<QueueSpec>(v).unwrap().into_queue("q", Timestamp(0))
    }

    #[test]
    fn settings() {
        use serde_json::json;
        assert_eq!(spec(json!({"visibility_timeout_s": 30})).unwrap().retention_s, DEFAULT_RETENTION_S);
        let defaults = spec(json!({})).unwrap();
        assert_eq!((defaults.visibility_timeout_s, defaults.retention_s, defaults.delay_s), (30, 345_600, 0));
        assert!(spec(json!({"visibility_timeout_s": 50000})).is_err());
        assert!(spec(json!({"visibility_timeout_s": 1, "max_receive_count": 3})).is_err());
        assert!(spec(json!({"visibility_timeout_s": 1, "max_receive_count": 0, "dead_letter_queue": "d"})).is_err());
        assert!(spec(json!({"visibility_timeout_s": 1, "max_receive_count": 2, "dead_letter_queue": "q"})).is_err());
        spec(json!({"visibility_timeout_s": 1, "max_receive_count": 2, "dead_letter_queue": "d"})).unwrap();
        assert!(spec(json!({"visibility_timeout_s": 1, "delay_s": 901})).is_err());
        assert!(spec(json!({"visibility_timeout_s": 1, "retention_s": 10})).is_err());
        assert!(validate_name("a b").is_err());
    }

    #[test]
    fn attributes_are_bounded() {
        use serde_json::json;
        let send =
            |a: Value| serde_json::from_value::<SendMessage>(json!({"body": 1, "attributes": a})).unwrap().into_new();
        let m = send(json!({"traceparent": "00-x", "a.b_c-d": ""})).unwrap();
        assert_eq!(m.attributes.len(), 2);
        let code = |r: Result<NewMessage>| match r {
            Err(Error::InvalidRequest { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        let many: serde_json::Map<String, Value> = (0..11).map(|i| (format!("a{i}"), json!("v"))).collect();
        assert_eq!(code(send(Value::Object(many))), ErrorCode::InvalidMessageAttributes);
        assert_eq!(code(send(json!({"a b": "v"}))), ErrorCode::InvalidMessageAttributes);
        assert_eq!(code(send(json!({"": "v"}))), ErrorCode::InvalidMessageAttributes);
        assert_eq!(code(send(json!({"a": "x".repeat(1025)}))), ErrorCode::InvalidMessageAttributes);
        assert_eq!(code(send(json!({"a": "line\nbreak"}))), ErrorCode::InvalidMessageAttributes);
        assert!(serde_json::from_value::<SendMessage>(json!({"body": 1, "attributes": {"a": 1}})).is_err());
        // The server's trace context goes in unless the sender set one.
        let stamped = send(json!({})).unwrap().with_traceparent(Some("00-t".into()));
        assert_eq!(stamped.attributes[TRACEPARENT_ATTRIBUTE], "00-t");
        let kept = send(json!({"traceparent": "mine"})).unwrap().with_traceparent(Some("00-t".into()));
        assert_eq!(kept.attributes[TRACEPARENT_ATTRIBUTE], "mine");
        assert!(send(json!({})).unwrap().with_traceparent(None).attributes.is_empty());
    }

    #[test]
    fn receipts() {
        assert_eq!(parse_receipt(&receipt(42, "abc")), Some((42, "abc")));
        assert_eq!(parse_receipt("x-abc"), None);
        assert_eq!(parse_receipt("42-"), None);
        assert_eq!(parse_receipt("42-a/b"), None);
    }
}
