//! Quotas: what a tenant has used of its plan's quotas, and the periods usage belongs to.
//!
//! A quota without a period counts something held (seats, projects): consumed and
//! released. A quota with a period counts something done in that period (API calls a
//! day): usage belongs to the current period, which starts at the UTC boundary, and a
//! new period starts at 0.

use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime, Time};

use crate::plan::QuotaPeriod;
use crate::time::Timestamp;

const DAY_MS: i64 = 86_400_000;

/// The events of quotas (`detail`: `tenant_id, quota, used, limit, period, resets_at`).
pub mod events {
    /// Usage crossed 80% of the limit (once per crossing, per period).
    pub const QUOTA_THRESHOLD_REACHED: &str = "QuotaThresholdReached";
    /// A soft quota went over its limit, or a hard quota refused (once per crossing).
    pub const QUOTA_EXCEEDED: &str = "QuotaExceeded";
}

impl QuotaPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaPeriod::Day => "day",
            QuotaPeriod::Month => "month",
        }
    }

    /// The start of the period `at` is in (a UTC boundary).
    pub fn start(self, at: Timestamp) -> Timestamp {
        match self {
            QuotaPeriod::Day => Timestamp(at.0.div_euclid(DAY_MS) * DAY_MS),
            QuotaPeriod::Month => {
                let dt = datetime(at);
                month_start(dt.year(), dt.month())
            }
        }
    }

    /// The start of the next period after the one `at` is in: when usage resets.
    pub fn next(self, at: Timestamp) -> Timestamp {
        match self {
            QuotaPeriod::Day => Timestamp(self.start(at).0 + DAY_MS),
            QuotaPeriod::Month => {
                let dt = datetime(at);
                match dt.month() {
                    Month::December => month_start(dt.year() + 1, Month::January),
                    m => month_start(dt.year(), m.next()),
                }
            }
        }
    }
}

fn datetime(at: Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(at.0 as i128 * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn month_start(year: i32, month: Month) -> Timestamp {
    let date = Date::from_calendar_date(year, month, 1).unwrap_or(Date::MIN);
    Timestamp((date.with_time(Time::MIDNIGHT).assume_utc().unix_timestamp_nanos() / 1_000_000) as i64)
}

/// One quota of a tenant as it stands: its plan's limit and the current usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QuotaUsage {
    pub name: String,
    pub limit: u64,
    /// Usage in the current period (all time for a quota without one).
    pub used: u64,
    /// `limit - used`, or 0 when a soft quota is over.
    pub remaining: u64,
    pub soft: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<QuotaPeriod>,
    /// When the current period ends and usage starts again at 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<Timestamp>,
}

impl QuotaUsage {
    pub fn new(name: &str, quota: &crate::plan::Quota, used: u64, now: Timestamp) -> Self {
        QuotaUsage {
            name: name.to_owned(),
            limit: quota.limit,
            used,
            remaining: quota.limit.saturating_sub(used),
            soft: quota.soft,
            period: quota.period,
            resets_at: quota.period.map(|p| p.next(now)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn a_day_starts_and_ends_at_utc_midnight() {
        let now = at("2026-12-06T14:31:07.250Z");
        assert_eq!(QuotaPeriod::Day.start(now), at("2026-12-06T00:00:00Z"));
        assert_eq!(QuotaPeriod::Day.next(now), at("2026-12-07T00:00:00Z"));
        // The boundary itself belongs to the new period.
        assert_eq!(QuotaPeriod::Day.start(at("2026-12-07T00:00:00Z")), at("2026-12-07T00:00:00Z"));
        assert_eq!(QuotaPeriod::Day.start(at("2026-12-06T23:59:59.999Z")), at("2026-12-06T00:00:00Z"));
    }

    #[test]
    fn a_month_starts_on_the_first_and_rolls_over_the_year() {
        assert_eq!(QuotaPeriod::Month.start(at("2026-02-28T23:00:00Z")), at("2026-02-01T00:00:00Z"));
        assert_eq!(QuotaPeriod::Month.next(at("2026-02-28T23:00:00Z")), at("2026-03-01T00:00:00Z"));
        assert_eq!(QuotaPeriod::Month.start(at("2026-12-31T23:59:59.999Z")), at("2026-12-01T00:00:00Z"));
        assert_eq!(QuotaPeriod::Month.next(at("2026-12-31T23:59:59.999Z")), at("2027-01-01T00:00:00Z"));
        assert_eq!(QuotaPeriod::Month.next(at("2028-02-29T12:00:00Z")), at("2028-03-01T00:00:00Z"));
    }

    #[test]
    fn usage_reports_the_next_boundary() {
        let q = crate::plan::Quota { limit: 10, period: Some(QuotaPeriod::Day), soft: false };
        let u = QuotaUsage::new("calls", &q, 4, at("2026-12-06T10:00:00Z"));
        assert_eq!((u.remaining, u.resets_at), (6, Some(at("2026-12-07T00:00:00Z"))));
        let q = crate::plan::Quota { limit: 3, period: None, soft: true };
        let u = QuotaUsage::new("seats", &q, 5, at("2026-12-06T10:00:00Z"));
        assert_eq!((u.remaining, u.resets_at), (0, None));
    }
}
