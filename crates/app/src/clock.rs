//! [`Clock`]: the time of day decisions that depend on it read (a rollout's maintenance
//! windows), replaceable so tests can put the app at a chosen moment.
//!
//! Only what compares the time with a calendar reads it; timeouts, leases and the
//! stored timestamps keep the system clock (a test's clock must not stall the worker).

use std::sync::Arc;

use tenancy_domain::time::Timestamp;

/// The app's clock: the system's by default ([`App::set_clock`](crate::App::set_clock)).
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<dyn Fn() -> Timestamp + Send + Sync>>);

impl Clock {
    /// A clock reading `now` (a test's: e.g. a fixed instant, or one moved by the test).
    pub fn from_fn(now: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        Clock(Some(Arc::new(now)))
    }

    pub fn now(&self) -> Timestamp {
        match &self.0 {
            Some(f) => f(),
            None => Timestamp::now(),
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Clock(injected)" } else { "Clock(system)" })
    }
}
