//! Event delivery's background loops: the [`Dispatcher`] fans events out of the
//! outbox into deliveries, the [`DeliveryWorker`] sends them as Standard Webhooks
//! with retries, and the [`Pruner`] enforces retention.
//!
//! All of them run in any number of replicas: the dispatcher locks the events it fans
//! out (`FOR UPDATE SKIP LOCKED` on PostgreSQL), deliveries are leased, and results
//! are recorded only while the lease is held. Delivery is at least once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tenancy_domain::event::Event;
use tenancy_domain::subscription::WebhookSettings;
use tenancy_domain::time::Timestamp;
use tenancy_domain::Error;
use tenancy_events::backoff::Schedule;
use tenancy_events::webhook::{self, WebhookSecret};
use tenancy_events::Pattern;
use tenancy_store::{AttemptResult, ClaimedDelivery, DeliveryNext, Store, StoredSubscription};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio_util::sync::CancellationToken;

/// Waits for a wake-up, a poll interval or shutdown; false on shutdown.
async fn idle(wake: &mut watch::Receiver<u64>, poll: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = wake.changed() => true,
        _ = tokio::time::sleep(poll) => true,
    }
}

// The dispatcher.

/// How long the dispatcher lets commits gather after a wake-up (a few milliseconds of
/// the commit-to-delivery latency, whose target is a p50 of 20 ms).
const DISPATCH_GATHER: Duration = Duration::from_millis(5);

#[derive(Debug, Clone)]
pub struct DispatcherOptions {
    /// Events fanned out per transaction.
    pub batch: u32,
    pub poll_interval: Duration,
}

impl Default for DispatcherOptions {
    fn default() -> Self {
        DispatcherOptions { batch: 500, poll_interval: Duration::from_secs(1) }
    }
}

/// Parsed patterns by subscription, re-parsed when a subscription's version changes.
#[derive(Default)]
struct PatternCache {
    patterns: HashMap<String, (i64, Option<Pattern>)>,
    /// The envelope of the event matched last (the matcher sees one event at a time).
    event: Option<(String, serde_json::Value)>,
}

impl PatternCache {
    fn matches(&mut self, s: &StoredSubscription, e: &Event) -> bool {
        let sub = &s.subscription;
        let entry = self.patterns.entry(sub.id.clone()).or_insert((0, None));
        if entry.0 != sub.version {
            // Leniently: a pattern stored before a validation rule was added keeps matching.
            let parsed = Pattern::parse_lenient(&sub.pattern)
                .inspect_err(|e| tracing::warn!(subscription = %sub.id, error = %e, "stored pattern does not parse; it matches nothing"))
                .ok();
            *entry = (sub.version, parsed);
        }
        let Some(pattern) = &entry.1 else { return false };
        if self.event.as_ref().is_none_or(|(id, _)| *id != e.id) {
            self.event = Some((e.id.clone(), serde_json::to_value(e).unwrap_or_default()));
        }
        self.event.as_ref().is_some_and(|(_, v)| pattern.matches(v))
    }
}

pub struct Dispatcher {
    store: Arc<dyn Store>,
    opts: DispatcherOptions,
    cache: Mutex<PatternCache>,
}

impl Dispatcher {
    pub fn new(store: Arc<dyn Store>, opts: DispatcherOptions) -> Self {
        Dispatcher { store, opts, cache: Mutex::default() }
    }

    /// Fans out one batch; returns the number of events taken.
    pub async fn run_once(&self) -> Result<u64, Error> {
        let matcher = |s: &StoredSubscription, e: &Event| self.cache.lock().expect("pattern cache").matches(s, e);
        let out = self.store.outbox_dispatch(self.opts.batch, &matcher, Timestamp::now()).await?;
        if out.events > 0 {
            tracing::debug!(events = out.events, deliveries = out.deliveries, "dispatched");
        }
        Ok(out.events)
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let mut wake = self.store.subscribe_wakeups();
        tracing::info!("event dispatcher started");
        loop {
            match self.run_once().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "failed to dispatch events"),
            }
            if !idle(&mut wake, self.opts.poll_interval, &shutdown).await {
                break;
            }
            // Let a burst of commits gather: one dispatch transaction for all of them
            // instead of one per commit (on SQLite each takes the one write connection
            // from the writer).
            tokio::time::sleep(DISPATCH_GATHER).await;
        }
        tracing::info!("event dispatcher stopped");
    }
}

// The delivery worker.

#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// Names this worker in leases; unique per process.
    pub owner: String,
    /// How long a claimed delivery stays leased: longer than the worst wait in this
    /// worker (`QUEUE_DEPTH` deliveries ahead, each up to the longest timeout, 60 s).
    pub lease: Duration,
    pub poll_interval: Duration,
    /// Deliveries claimed at once.
    pub batch: u32,
    /// Deliveries in flight in this worker at once, over all subscriptions.
    pub max_in_flight: usize,
    /// Retries of a delivery are spread over at most this window (24 hours).
    pub retry_window: Duration,
    /// Opens the stored signing secrets; `None` when they are stored in plaintext.
    pub secrets: Option<Arc<tenancy_adapters::keys::SecretBox>>,
    /// Where webhooks may go (internal addresses refused by default).
    pub outbound: Arc<tenancy_adapters::outbound::OutboundPolicy>,
    /// Resolves the targets' connections (none: a delivery naming one fails its attempt).
    pub connector: Option<Arc<crate::connections::auth::Connector>>,
}

impl DeliveryOptions {
    pub fn new(owner: impl Into<String>) -> Self {
        DeliveryOptions {
            owner: owner.into(),
            lease: Duration::from_secs(300),
            poll_interval: Duration::from_secs(1),
            batch: 500,
            max_in_flight: 2048,
            retry_window: Schedule::DEFAULT_WINDOW,
            secrets: None,
            outbound: Arc::default(),
            connector: None,
        }
    }
}

/// What the worker keeps about a subscription while delivering to it.
struct Endpoint {
    /// A queue target: events are sent to this queue instead of an HTTP endpoint.
    queue: Option<String>,
    version: i64,
    loaded: Instant,
    settings: WebhookSettings,
    secrets: Vec<WebhookSecret>,
    /// `max_concurrency` permits: bounds this endpoint without holding up others.
    permits: Arc<Semaphore>,
}

const ENDPOINT_TTL: Duration = Duration::from_secs(2);
/// A worker holds at most this many times a subscription's `max_concurrency`
/// deliveries of it (in flight plus queued).
const QUEUE_DEPTH: usize = 4;

struct Shared {
    store: Arc<dyn Store>,
    client: reqwest::Client,
    opts: DeliveryOptions,
    endpoints: Mutex<HashMap<String, Arc<Endpoint>>>,
    /// Deliveries of each subscription held by this worker (queued or in flight).
    held: Mutex<HashMap<String, usize>>,
    in_flight: AtomicUsize,
    done: Notify,
}

pub struct DeliveryWorker {
    shared: Arc<Shared>,
}

/// The HTTP client deliveries and hooks go out with: the outbound policy (no
/// redirects, internal addresses refused unless allowed), pooled connections.
pub fn http_client(policy: &Arc<tenancy_adapters::outbound::OutboundPolicy>) -> reqwest::Client {
    policy
        .client_builder()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .user_agent(concat!("tenancy-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client builds")
}

impl DeliveryWorker {
    pub fn new(store: Arc<dyn Store>, opts: DeliveryOptions) -> Self {
        let shared = Shared {
            store,
            client: http_client(&opts.outbound),
            opts,
            endpoints: Mutex::default(),
            held: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            done: Notify::new(),
        };
        DeliveryWorker { shared: Arc::new(shared) }
    }

    /// Runs until `shutdown`; deliveries in flight finish (within their timeout) and
    /// their results are recorded before it returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let s = self.shared;
        tracing::info!(owner = %s.opts.owner, "delivery worker started");
        let (results, rx) = mpsc::unbounded_channel();
        let recorder = tokio::spawn(record_results(s.store.clone(), s.opts.owner.clone(), rx));
        let mut wake = s.store.subscribe_wakeups();
        while !shutdown.is_cancelled() {
            let room = s.opts.max_in_flight.saturating_sub(s.in_flight.load(Ordering::Acquire));
            if room == 0 {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = s.done.notified() => continue,
                }
            }
            let full = s.full_endpoints();
            let limit = (room as u32).min(s.opts.batch);
            let lease_ms = s.opts.lease.as_millis() as i64;
            let claimed = match s.store.delivery_claim(&s.opts.owner, lease_ms, limit, Timestamp::now(), &full).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "failed to claim deliveries");
                    Vec::new()
                }
            };
            if claimed.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = wake.changed() => {}
                    _ = s.done.notified(), if !full.is_empty() => {}
                    _ = tokio::time::sleep(s.opts.poll_interval) => {}
                }
                continue;
            }
            let mut release = Vec::new();
            let mut room_of: HashMap<String, usize> = HashMap::new();
            for c in claimed {
                let endpoint = match s.endpoint(&c.subscription_id, c.subscription_version).await {
                    Ok(e) => e,
                    Err(e) => {
                        // Deleted meanwhile (its deliveries went with it) or unreadable:
                        // the lease expires and the delivery is tried again.
                        tracing::warn!(error = %e, subscription = %c.subscription_id, "no endpoint for delivery");
                        continue;
                    }
                };
                // Hold no more of one subscription than its queue depth: the rest goes
                // back at once, for this or another worker to take when there is room.
                let room = room_of.entry(c.subscription_id.clone()).or_insert_with(|| {
                    let held = s.held.lock().expect("held").get(&c.subscription_id).copied().unwrap_or(0);
                    (endpoint.settings.max_concurrency as usize * QUEUE_DEPTH).saturating_sub(held)
                });
                if *room == 0 {
                    release.push(c.id);
                    continue;
                }
                *room -= 1;
                *s.held.lock().expect("held").entry(c.subscription_id.clone()).or_default() += 1;
                s.in_flight.fetch_add(1, Ordering::AcqRel);
                let s2 = s.clone();
                let results = results.clone();
                tokio::spawn(async move {
                    let result = match endpoint.permits.clone().acquire_owned().await {
                        Ok(_permit) => s2.attempt(&endpoint, &c).await,
                        Err(_) => return,
                    };
                    let _ = results.send(result);
                    if let Some(n) = s2.held.lock().expect("held").get_mut(&c.subscription_id) {
                        *n = n.saturating_sub(1);
                    }
                    s2.in_flight.fetch_sub(1, Ordering::AcqRel);
                    s2.done.notify_one();
                });
            }
            if !release.is_empty() {
                if let Err(e) = s.store.delivery_release(&s.opts.owner, &release).await {
                    tracing::warn!(error = %e, "failed to release deliveries; their leases will expire");
                }
            }
        }
        while s.in_flight.load(Ordering::Acquire) > 0 {
            s.done.notified().await;
        }
        drop(results);
        let _ = recorder.await;
        tracing::info!(owner = %s.opts.owner, "delivery worker stopped");
    }
}

impl Shared {
    /// Subscriptions with their queue depth already held: not claimed for now, so a
    /// slow endpoint's backlog never fills the worker.
    fn full_endpoints(&self) -> Vec<String> {
        let endpoints = self.endpoints.lock().expect("endpoints");
        let held = self.held.lock().expect("held");
        held.iter()
            .filter(|(id, n)| {
                let limit = endpoints.get(*id).map_or(1, |e| e.settings.max_concurrency as usize);
                **n >= limit * QUEUE_DEPTH
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The endpoint of a subscription at `version` (its version at the claim): a cached
    /// copy of another version is reloaded at once, so a PATCH (or a rotation) applies
    /// to the next attempt; the TTL still bounds how long a copy lives (secrets expire).
    async fn endpoint(&self, id: &str, version: i64) -> Result<Arc<Endpoint>, Error> {
        let cached = self.endpoints.lock().expect("endpoints").get(id).cloned();
        if let Some(e) = &cached {
            if e.version == version && e.loaded.elapsed() < ENDPOINT_TTL {
                return Ok(e.clone());
            }
        }
        let sub = self.store.subscription_get(id).await?;
        let queue = match &sub.subscription.target {
            tenancy_domain::subscription::Target::Queue { queue } => Some(queue.clone()),
            tenancy_domain::subscription::Target::Webhook { .. } => None,
        };
        let settings = match &queue {
            // A queue is local: the same retry schedule, modest concurrency.
            Some(_) => WebhookSettings {
                url: String::new(),
                max_concurrency: tenancy_domain::subscription::DEFAULT_MAX_CONCURRENCY,
                timeout_ms: tenancy_domain::subscription::DEFAULT_TIMEOUT_MS,
                max_attempts: tenancy_domain::subscription::DEFAULT_MAX_ATTEMPTS,
                connection: None,
            },
            None => sub
                .subscription
                .target
                .webhook()
                .ok_or_else(|| Error::internal(format!("subscription {id:?} has no webhook target")))?,
        };
        let mut secrets = Vec::new();
        for stored in sub.active_secrets(Timestamp::now()) {
            let plain = match &self.opts.secrets {
                Some(b) => b.open(id, stored)?,
                None => stored.to_owned(),
            };
            let secret = WebhookSecret::parse(&plain)
                .map_err(|e| Error::internal(format!("corrupt secret of subscription {id:?}: {e}")))?;
            secrets.push(secret);
        }
        let permits = match &cached {
            Some(c) if c.version == sub.subscription.version => c.permits.clone(),
            _ => Arc::new(Semaphore::new(settings.max_concurrency as usize)),
        };
        let e = Arc::new(Endpoint {
            queue,
            version: sub.subscription.version,
            loaded: Instant::now(),
            settings,
            secrets,
            permits,
        });
        self.endpoints.lock().expect("endpoints").insert(id.to_owned(), e.clone());
        Ok(e)
    }

    /// Sends the envelope to a queue target as a message, deduplicated on the delivery
    /// id (so a retry after a lost result is not enqueued twice within the window).
    async fn send_to_queue(&self, queue: &str, c: &ClaimedDelivery) -> Option<String> {
        let body = serde_json::to_string(&c.event).expect("events serialize");
        let message = tenancy_domain::queue::NewMessage {
            id: tenancy_domain::ids::new_id("msg"),
            body,
            delay_ms: None,
            group_id: None,
            dedup_id: Some(c.id.clone()),
            attributes: Default::default(),
        }
        .with_traceparent(tenancy_trace::traceparent());
        match self.store.queues().message_send(queue, &[message], Timestamp::now()).await {
            Ok(_) => None,
            Err(e) => Some(format!("failed to send to queue {queue:?}: {e}")),
        }
    }

    /// One attempt: POST the envelope, signed; 2xx within the timeout is success. For a
    /// queue target: the envelope enqueued.
    /// [`Self::attempt_in_span`] in a `delivery` span continuing the trace of the span
    /// that emitted the event (docs/operations.md "Traces"): the POST's `traceparent`
    /// header names it.
    async fn attempt(&self, endpoint: &Endpoint, c: &ClaimedDelivery) -> AttemptResult {
        use tracing::Instrument;
        let span = tracing::info_span!(
            parent: None,
            "delivery",
            delivery_id = %c.id,
            subscription_id = %c.subscription_id,
            event_id = %c.event.id,
            detail_type = %c.event.detail_type,
        );
        if let Some(tp) = &c.trace_context {
            tenancy_trace::continue_from(&span, tp);
        }
        self.attempt_in_span(endpoint, c).instrument(span).await
    }

    async fn attempt_in_span(&self, endpoint: &Endpoint, c: &ClaimedDelivery) -> AttemptResult {
        if let Some(queue) = &endpoint.queue {
            let now = Timestamp::now();
            let started = Instant::now();
            let error = self.send_to_queue(queue, c).await;
            return self.result(endpoint, c, now, started, None, error);
        }
        let now = Timestamp::now();
        let started = Instant::now();
        let refused =
            || self.result(endpoint, c, now, started, None, Some(tenancy_adapters::outbound::REFUSED.to_owned()));
        let Ok(url) = reqwest::Url::parse(&endpoint.settings.url) else { return refused() };
        if self.opts.outbound.check_url(&url).is_err() {
            return refused();
        }
        let body = serde_json::to_vec(&c.event).expect("events serialize");
        let ts = now.millis() / 1000;
        let signature = webhook::sign_all(&endpoint.secrets[..], &c.event.id, ts, &body);
        let cred = match &endpoint.settings.connection {
            None => None,
            Some(name) => {
                let Some(connector) = &self.opts.connector else {
                    let e = format!("connection {name:?} does not exist");
                    return self.result(endpoint, c, now, started, None, Some(e));
                };
                match connector.credential(name).await {
                    Ok(cred) => Some(cred),
                    Err(e) => return self.result(endpoint, c, now, started, None, Some(e.to_string())),
                }
            }
        };
        let mut req = tenancy_adapters::outbound::traced(self.client.post(url));
        if let Some(cred) = &cred {
            req = req.header(cred.header.clone(), cred.value.clone());
        }
        let res = req
            .timeout(Duration::from_millis(endpoint.settings.timeout_ms))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(webhook::HEADER_ID, &c.event.id)
            .header(webhook::HEADER_TIMESTAMP, ts.to_string())
            .header(webhook::HEADER_SIGNATURE, signature)
            .body(body)
            .send()
            .await;
        let (status_code, error) = match res {
            Ok(r) => {
                let status = r.status();
                // A cached OAuth token refused: the next attempt goes with a new one.
                if let (reqwest::StatusCode::UNAUTHORIZED, Some(stale), Some(name), Some(connector)) = (
                    status,
                    cred.as_ref().filter(|c| c.cached_token),
                    &endpoint.settings.connection,
                    &self.opts.connector,
                ) {
                    let _ = connector.refresh(name, stale).await;
                }
                // Read a small body so the connection goes back to the pool; a large
                // one is not read (its connection is closed).
                tenancy_adapters::outbound::drain(r, 64 * 1024).await;
                if status.is_success() {
                    (Some(status.as_u16()), None)
                } else {
                    (Some(status.as_u16()), Some(format!("HTTP {}", status.as_u16())))
                }
            }
            // A coarse category, never the network's detail (no port-scan oracle).
            Err(e) => (None, Some(tenancy_adapters::outbound::describe(&e).to_owned())),
        };
        self.result(endpoint, c, now, started, status_code, error)
    }

    fn result(
        &self,
        endpoint: &Endpoint,
        c: &ClaimedDelivery,
        now: Timestamp,
        started: Instant,
        status_code: Option<u16>,
        error: Option<String>,
    ) -> AttemptResult {
        let latency_ms = started.elapsed().as_millis() as i64;
        let tries = c.tries + 1;
        let next = if error.is_none() {
            DeliveryNext::Delivered
        } else {
            let max = endpoint.settings.max_attempts.max(1);
            let schedule = Schedule::covering(self.opts.retry_window, max - 1);
            match schedule.next_delay((tries - 1) as u32, &mut rand::thread_rng()) {
                Some(d) => DeliveryNext::RetryAt(Timestamp::now().plus_millis(d.as_millis() as i64)),
                None => DeliveryNext::Dead,
            }
        };
        if let Some(e) = &error {
            tracing::debug!(delivery = %c.id, attempt = c.attempts + 1, error = %e, "delivery attempt failed");
        }
        // `delivered`, `retry` (failed, tried again later) or `dead` (failed, no more tries).
        let outcome = match next {
            DeliveryNext::Delivered => "delivered",
            DeliveryNext::RetryAt(_) => "retry",
            DeliveryNext::Dead => "dead",
        };
        let target = if endpoint.queue.is_some() { "queue" } else { "http" };
        metrics::counter!("tenancy_webhook_deliveries_total", "outcome" => outcome, "target" => target).increment(1);
        metrics::histogram!("tenancy_webhook_delivery_duration_seconds", "outcome" => outcome, "target" => target)
            .record(started.elapsed().as_secs_f64());
        AttemptResult {
            delivery_id: c.id.clone(),
            attempt: c.attempts + 1,
            time: now,
            status_code,
            latency_ms,
            error,
            next,
        }
    }
}

/// Writes attempt results in batches: whatever arrived while the last batch was written.
async fn record_results(store: Arc<dyn Store>, owner: String, mut rx: mpsc::UnboundedReceiver<AttemptResult>) {
    const MAX_BATCH: usize = 2000;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut delay = Duration::from_millis(100);
        loop {
            match store.delivery_record(&owner, &batch).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, results = batch.len(), "failed to record delivery results; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    if delay >= Duration::from_secs(5) && rx.is_closed() {
                        tracing::error!("giving up on delivery results: their leases expire and they are retried");
                        break;
                    }
                }
            }
        }
        batch.clear();
    }
}

// Retention.

#[derive(Debug, Clone)]
pub struct PrunerOptions {
    /// Events and finished deliveries older than this are deleted.
    pub retention: Duration,
    pub interval: Duration,
}

pub struct Pruner {
    store: Arc<dyn Store>,
    opts: PrunerOptions,
}

/// How long a repeated `Idempotency-Key` replays its first response (as Stripe: 24 h).
pub const IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(24 * 3600);

impl Pruner {
    pub fn new(store: Arc<dyn Store>, opts: PrunerOptions) -> Self {
        Pruner { store, opts }
    }

    /// Deletes everything past retention, in batches; returns (events, deliveries).
    /// Idempotency keys are kept for [`IDEMPOTENCY_RETENTION`] and pruned here too.
    pub async fn run_once(&self) -> Result<(u64, u64), Error> {
        let keys_before = Timestamp::now().plus_millis(-(IDEMPOTENCY_RETENTION.as_millis() as i64));
        let keys = self.store.idempotency_prune(keys_before).await?;
        if keys > 0 {
            tracing::info!(keys, "pruned idempotency keys past retention");
        }
        let before = Timestamp::now().plus_millis(-(self.opts.retention.as_millis() as i64));
        let mut total = (0, 0);
        loop {
            let (e, d) = self.store.events_prune(before, false).await?;
            total = (total.0 + e, total.1 + d);
            if e == 0 && d == 0 {
                return Ok(total);
            }
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.run_once().await {
                Ok((e, d)) if e + d > 0 => tracing::info!(events = e, deliveries = d, "pruned past retention"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "failed to prune events"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.opts.interval) => {}
            }
        }
    }
}
