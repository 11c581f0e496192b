//! What the store counts for the `/metrics` gauges ([`crate::Store::metrics_gauges`]).
//!
//! One call reads a handful of aggregate queries (`COUNT(*) ... GROUP BY`), cheap
//! enough for a collector every 15 s: the server's metrics collector
//! (`tenancy_app::metrics`) turns the result into Prometheus gauges.

use tenancy_domain::time::Timestamp;

/// The store's state as gauges, at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreGauges {
    /// Tenants by (status, plan).
    pub tenants: Vec<(String, String, u64)>,
    /// RUNNING executions by state machine.
    pub running_executions: Vec<(String, u64)>,
    /// RUNNING executions due before `stuck_before` and not moved since (what
    /// `GET /v1/executions?stuck=true` lists), by state machine.
    pub stuck_executions: Vec<(String, u64)>,
    /// Every queue with its messages (queues without any count zero).
    pub queues: Vec<QueueGauge>,
    /// Webhook deliveries by status (`pending`, `dead`; delivered ones are history).
    pub deliveries: Vec<(String, u64)>,
    /// Rollouts by status.
    pub rollouts: Vec<(String, u64)>,
}

/// One queue's depth.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueGauge {
    pub queue: String,
    /// Some queue names this one as its dead-letter queue.
    pub dead_letter: bool,
    /// Messages not received (visible now or delayed).
    pub waiting: u64,
    /// Messages received and not deleted (invisible until their timeout).
    pub in_flight: u64,
    /// When its oldest unexpired message was sent.
    pub oldest_sent_at: Option<Timestamp>,
}
