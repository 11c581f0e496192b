//! Exponential backoff with full jitter for delivery retries.
//!
//! Retry `attempt` (0-based: the first retry after the first failed delivery is 0)
//! waits a uniformly random time in `[0, min(max, base * 2^attempt)]` ("full jitter",
//! as in the AWS architecture blog's analysis): retries of many failed deliveries
//! spread out instead of arriving together.

use std::time::Duration;

use rand::Rng;

/// The jitter-free ceiling of retry `attempt`: `min(max, base * 2^attempt)`.
pub fn ceiling(attempt: u32, base: Duration, max: Duration) -> Duration {
    let factor = 1u128.checked_shl(attempt).unwrap_or(u128::MAX);
    let nanos = base.as_nanos().saturating_mul(factor);
    let capped = nanos.min(max.as_nanos());
    duration_from_nanos(capped)
}

/// The delay before retry `attempt`, drawn from the thread's random generator.
pub fn delay(attempt: u32, base: Duration, max: Duration) -> Duration {
    delay_with_rng(attempt, base, max, &mut rand::thread_rng())
}

/// [`delay`] with an injected random generator, for deterministic tests.
pub fn delay_with_rng<R: Rng + ?Sized>(attempt: u32, base: Duration, max: Duration, rng: &mut R) -> Duration {
    let ceiling = ceiling(attempt, base, max).as_nanos();
    if ceiling == 0 {
        return Duration::ZERO;
    }
    duration_from_nanos(rng.gen_range(0..=ceiling))
}

fn duration_from_nanos(nanos: u128) -> Duration {
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    let sub = u32::try_from(nanos % 1_000_000_000).expect("below one second");
    Duration::new(secs, sub)
}

/// A retry schedule: `attempts` retries whose ceilings double from `base` and add up
/// to at most `window`, so that every retry happens within `window` of the first
/// failure however the jitter falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    base: Duration,
    max: Duration,
    attempts: u32,
}

impl Schedule {
    /// The default delivery window: retries stop 24 hours after the first failure.
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

    /// A schedule of `attempts` retries covering `window`: `base = window / (2^attempts - 1)`
    /// so the ceilings `base, 2 base, 4 base, ...` add up to `window`.
    pub fn covering(window: Duration, attempts: u32) -> Schedule {
        let attempts = attempts.min(64);
        let denominator = (1u128 << attempts).saturating_sub(1).max(1);
        let base = duration_from_nanos(window.as_nanos() / denominator);
        let max = ceiling(attempts.saturating_sub(1), base, window);
        Schedule { base, max, attempts }
    }

    /// A schedule from explicit parameters.
    pub fn new(base: Duration, max: Duration, attempts: u32) -> Schedule {
        Schedule { base, max, attempts }
    }

    /// The number of retries.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The ceiling of the first retry.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The largest single delay.
    pub fn max_delay(&self) -> Duration {
        self.max
    }

    /// The delay before retry `attempt`, or `None` once the retries are used up.
    pub fn next_delay<R: Rng + ?Sized>(&self, attempt: u32, rng: &mut R) -> Option<Duration> {
        (attempt < self.attempts).then(|| delay_with_rng(attempt, self.base, self.max, rng))
    }

    /// The ceilings of every retry, in order.
    pub fn ceilings(&self) -> impl Iterator<Item = Duration> + '_ {
        (0..self.attempts).map(|a| ceiling(a, self.base, self.max))
    }

    /// The longest time from the first failure to the last retry.
    pub fn max_total(&self) -> Duration {
        self.ceilings().sum()
    }
}
