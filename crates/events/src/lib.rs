//! Events of the Tenancy control plane, the pure part: which subscriptions an event
//! matches ([`pattern`], EventBridge syntax), how deliveries are signed and verified
//! ([`webhook`], Standard Webhooks) and when failed deliveries are retried
//! ([`backoff`]). No IO: the delivery worker lives elsewhere.

pub mod backoff;
pub mod pattern;
pub mod webhook;

pub use pattern::{Pattern, PatternError, PatternErrorKind};
pub use webhook::{WebhookError, WebhookHeaders, WebhookSecret};
