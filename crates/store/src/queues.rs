//! Storage of queues (the SQS role): settings, messages, receipts, dead-lettering.

use async_trait::async_trait;
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::queue::{Message, NewMessage, PeekedMessage, Queue, QueueDepth, Sent};
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;

use crate::store::Effects;

/// What one receive did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Received {
    /// Oldest first (by send order); at most one per group.
    pub messages: Vec<Message>,
    /// Messages moved to the dead-letter queue instead of being received.
    pub dead_lettered: u64,
    /// When nothing was received: the earliest time a message of the queue becomes
    /// visible (delay or visibility timeout), if any is waiting.
    pub next_visible_at: Option<Timestamp>,
}

/// Object safe: held as `Arc<dyn QueueStore>` (see [`crate::Store::queues`]).
#[async_trait]
pub trait QueueStore: Send + Sync {
    /// Creates or replaces a queue's settings (its messages stay); returns the stored
    /// queue and whether it was created. The dead-letter queue must exist
    /// (`unknown-queue` otherwise).
    async fn queue_put(&self, q: &Queue, fx: &Effects) -> Result<(Queue, bool)>;
    async fn queue_get(&self, name: &str) -> Result<Queue>;
    async fn queue_list(&self, page: &PageRequest) -> Result<Page<Queue>>;
    /// Deletes a queue with its messages; `queue-in-use` while it is another queue's
    /// dead-letter queue.
    async fn queue_delete(&self, name: &str, fx: &Effects) -> Result<()>;
    async fn queue_depth(&self, name: &str, now: Timestamp) -> Result<QueueDepth>;

    /// Enqueues messages in one transaction, in order. A message whose dedup id was
    /// used on this queue within the dedup window is not enqueued again: its result
    /// carries the first message's id and `deduplicated`.
    async fn message_send(&self, queue: &str, messages: &[NewMessage], now: Timestamp) -> Result<Vec<Sent>>;
    /// Receives up to `max` visible messages: oldest first, one per group at most and
    /// none of a group with a message in flight. Each becomes invisible for the queue's
    /// visibility timeout with a new receipt; one already received `max_receive_count`
    /// times moves to the dead-letter queue instead. Concurrent receivers never get the
    /// same message while it is in flight.
    async fn message_receive(&self, queue: &str, max: u32, now: Timestamp) -> Result<Received>;
    /// The first `limit` messages of the queue in send order, whatever their state
    /// (visible, in flight, delayed; not past retention), without receiving them:
    /// nothing about them changes.
    async fn message_peek(&self, queue: &str, limit: u32, now: Timestamp) -> Result<Vec<PeekedMessage>>;
    /// Deletes messages by receipt; per receipt, whether it named a message (a receipt
    /// is stale once its message was received again).
    async fn message_delete(&self, queue: &str, receipts: &[String]) -> Result<Vec<bool>>;
    /// Makes a received message visible again `visibility_ms` after `now`.
    async fn message_visibility(&self, queue: &str, receipt: &str, visibility_ms: i64, now: Timestamp) -> Result<()>;
    /// Moves a dead-letter queue's messages (not in flight) back to the queues they came
    /// from, when those still exist; returns how many.
    async fn queue_redrive(&self, dlq: &str, now: Timestamp, fx: &Effects) -> Result<u64>;
    /// Deletes up to `limit` messages past retention and expired dedup ids; returns
    /// how many messages.
    async fn queue_prune(&self, now: Timestamp, limit: u32) -> Result<u64>;

    /// A receiver that changes when messages may have become visible on `queue`
    /// (sends, redrives, visibility changes): in this process, and on PostgreSQL in
    /// any replica (LISTEN/NOTIFY). Long polls wait on it instead of polling.
    fn queue_wakeups(&self, queue: &str) -> tokio::sync::watch::Receiver<u64>;
}
