//! Storage of event delivery: subscriptions, the outbox dispatch, deliveries and
//! their attempts, retention.

use async_trait::async_trait;
use tenancy_domain::event::Event;
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::subscription::{Delivery, DeliveryStatus, Subscription};
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;

use crate::store::{Effects, StoredEvent};

/// A subscription with its signing secrets (`whsec_...`), as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSubscription {
    pub subscription: Subscription,
    pub secret: Option<String>,
    /// The secret before the last rotation, still signing until `previous_expires_at`.
    pub previous_secret: Option<String>,
    pub previous_expires_at: Option<Timestamp>,
}

impl StoredSubscription {
    /// The secrets that sign a delivery at `now`: the current one first.
    pub fn active_secrets(&self, now: Timestamp) -> Vec<&str> {
        let mut out: Vec<&str> = self.secret.iter().map(String::as_str).collect();
        if let (Some(prev), Some(until)) = (&self.previous_secret, self.previous_expires_at) {
            if now < until {
                out.push(prev);
            }
        }
        out
    }
}

/// A delivery to create (by the dispatcher or a replay).
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub id: String,
    pub subscription_id: String,
    pub event_id: String,
    pub due: Timestamp,
}

impl NewDelivery {
    pub fn new(subscription_id: &str, event_id: &str, due: Timestamp) -> Self {
        NewDelivery {
            id: tenancy_domain::ids::new_id("dlv"),
            subscription_id: subscription_id.to_owned(),
            event_id: event_id.to_owned(),
            due,
        }
    }
}

/// A delivery leased to a worker, with the event to send.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedDelivery {
    pub id: String,
    pub subscription_id: String,
    /// The subscription's version at the claim (0 if it is gone): a worker's cached
    /// copy of an older version is stale (a PATCH takes effect at the next attempt).
    pub subscription_version: i64,
    pub event: Event,
    /// Attempts made before this one (numbering).
    pub attempts: i64,
    /// Attempts since the delivery was last queued (backoff and the attempt limit).
    pub tries: i64,
    /// The `traceparent` of the span that emitted the event (see `Effects::traces`).
    pub trace_context: Option<String>,
}

/// What happened to a leased delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryNext {
    Delivered,
    RetryAt(Timestamp),
    Dead,
}

/// The result of one attempt, recorded by [`EventStore::delivery_record`].
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptResult {
    pub delivery_id: String,
    /// 1-based attempt number.
    pub attempt: i64,
    pub time: Timestamp,
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub next: DeliveryNext,
}

/// What one dispatch pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchOutcome {
    pub events: u64,
    pub deliveries: u64,
}

/// Decides whether a subscription wants an event; evaluated inside the dispatch
/// transaction against the subscriptions that exist then.
pub type Matcher<'a> = &'a (dyn Fn(&StoredSubscription, &Event) -> bool + Send + Sync);

/// Object safe: every `Store` is one.
#[async_trait]
pub trait EventStore: Send + Sync {
    async fn subscription_create(&self, s: &StoredSubscription, fx: &Effects) -> Result<()>;
    async fn subscription_get(&self, id: &str) -> Result<StoredSubscription>;
    async fn subscription_list(&self, page: &PageRequest) -> Result<Page<StoredSubscription>>;
    /// Writes `s` if the stored version is still `expected_version` (else
    /// `PreconditionFailed`); returns it with its new version.
    async fn subscription_update(
        &self,
        s: &StoredSubscription,
        expected_version: i64,
        fx: &Effects,
    ) -> Result<StoredSubscription>;
    /// Deletes the subscription with its deliveries and their attempts.
    async fn subscription_delete(&self, id: &str, fx: &Effects) -> Result<()>;

    /// Fans out up to `limit` events not dispatched yet, oldest first: one pending
    /// delivery (due `now`) per subscription `matches` accepts, and the events marked
    /// dispatched, in one transaction. Concurrent dispatchers never take the same event.
    async fn outbox_dispatch(&self, limit: u32, matches: Matcher<'_>, now: Timestamp) -> Result<DispatchOutcome>;

    /// Creates deliveries (replay) with effects.
    async fn delivery_create(&self, deliveries: &[NewDelivery], fx: &Effects) -> Result<()>;
    /// Leases up to `limit` due pending deliveries to `owner` until `now + lease_ms`,
    /// skipping the subscriptions in `skip` (their queue in this worker is full).
    async fn delivery_claim(
        &self,
        owner: &str,
        lease_ms: i64,
        limit: u32,
        now: Timestamp,
        skip: &[String],
    ) -> Result<Vec<ClaimedDelivery>>;
    /// Gives up leases without an attempt (the worker claimed more than it will hold).
    async fn delivery_release(&self, owner: &str, ids: &[String]) -> Result<()>;
    /// Records attempts and moves their deliveries on; a delivery whose lease `owner`
    /// lost is left alone (its attempt is still recorded).
    async fn delivery_record(&self, owner: &str, results: &[AttemptResult]) -> Result<()>;
    /// Deliveries of a subscription with their attempts, oldest first.
    async fn delivery_list(
        &self,
        subscription_id: &str,
        status: Option<DeliveryStatus>,
        page: &PageRequest,
    ) -> Result<Page<Delivery>>;
    async fn delivery_get(&self, subscription_id: &str, delivery_id: &str) -> Result<Delivery>;
    /// Queues a dead delivery again (due `now`, a fresh attempt budget); a conflict
    /// unless it is dead.
    async fn delivery_retry(
        &self,
        subscription_id: &str,
        delivery_id: &str,
        now: Timestamp,
        fx: &Effects,
    ) -> Result<()>;

    /// Archived events with `from <= time < to`, after archive position `after_seq`.
    async fn event_range(&self, from: Timestamp, to: Timestamp, after_seq: i64, limit: u32)
        -> Result<Vec<StoredEvent>>;
    /// Deletes dispatched events older than `before` that no pending delivery needs
    /// (with `archived_only`, only those the archiver has written to the blob store),
    /// and finished deliveries (with their attempts) last updated before it.
    /// Returns (events, deliveries) deleted.
    async fn events_prune(&self, before: Timestamp, archived_only: bool) -> Result<(u64, u64)>;

    /// Up to `limit` events the archiver has not written yet with `seq > after_seq`, in
    /// `seq` order (the archiver reads a pass page by page).
    async fn events_unarchived(&self, after_seq: i64, limit: u32) -> Result<Vec<StoredEvent>>;
    /// Marks events (by `seq`) as written to the archive.
    async fn events_mark_archived(&self, seqs: &[i64]) -> Result<()>;
    /// Puts events read back from the archive into the table, dispatched and archived
    /// (so neither the dispatcher nor the archiver takes them again), for a replay's
    /// deliveries to name; an event still present is left as it is.
    async fn events_restore(&self, events: &[Event]) -> Result<()>;
    /// The time of the oldest event the database holds.
    async fn events_oldest(&self) -> Result<Option<Timestamp>>;

    /// A receiver that changes whenever the outbox, deliveries or the audit log may
    /// have new work: in-process commits, and on PostgreSQL any replica's (LISTEN/NOTIFY).
    /// Consumers still poll as a fallback.
    fn subscribe_wakeups(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Wakes this process's subscribers (and, on PostgreSQL, the other replicas').
    async fn notify_wakeup(&self);
}
