//! A rate limit of the API (docs/rate-limits.md): the size of a token bucket that a
//! plan gives its tenants or an API key has of its own, instead of the server-wide
//! `--rate-limit-*` sizes.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The most a plan's or a key's limit may set either member to. A bucket larger than
/// this is no limit at all, and GCRA's refill interval (one second divided by
/// `per_second`) must stay well above a nanosecond.
pub const MAX_RATE_LIMIT: u32 = 1_000_000;

/// One token bucket: `per_second` tokens refill each second, up to `burst` (how many
/// requests a full bucket admits at once). Both at least 1 and at most
/// [`MAX_RATE_LIMIT`]: a plan or a key without a limit of its own leaves the member out
/// (`null`), and gets the server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests per second the bucket refills (1 to 1,000,000).
    pub per_second: u32,
    /// The bucket's size: requests a full bucket admits at once (1 to 1,000,000).
    pub burst: u32,
}

impl RateLimit {
    pub const fn new(per_second: u32, burst: u32) -> RateLimit {
        RateLimit { per_second, burst }
    }

    /// Both members within 1 and [`MAX_RATE_LIMIT`]; `what` names the member in the error
    /// (`rate_limit`).
    pub fn validate(&self, what: &str) -> Result<()> {
        for (member, value) in [("per_second", self.per_second), ("burst", self.burst)] {
            if !(1..=MAX_RATE_LIMIT).contains(&value) {
                return Err(Error::invalid(format!(
                    "{what}.{member} is {value}: a rate limit's per_second and burst are 1 to {MAX_RATE_LIMIT} \
                     (leave {what} out for the server's default)"
                )));
            }
        }
        Ok(())
    }

    /// Parses `PER_SECOND/BURST` (`100/200`), as the CLI takes it; not validated.
    pub fn parse(s: &str) -> Option<RateLimit> {
        let (rate, burst) = s.split_once('/')?;
        Some(RateLimit { per_second: rate.trim().parse().ok()?, burst: burst.trim().parse().ok()? })
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.per_second, self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_parsing() {
        RateLimit::new(1, 1).validate("rate_limit").unwrap();
        RateLimit::new(MAX_RATE_LIMIT, MAX_RATE_LIMIT).validate("rate_limit").unwrap();
        for bad in [RateLimit::new(0, 5), RateLimit::new(5, 0), RateLimit::new(MAX_RATE_LIMIT + 1, 5)] {
            let e = bad.validate("rate_limit").unwrap_err().to_string();
            assert!(e.contains("rate_limit."), "{e}");
        }
        assert_eq!(RateLimit::parse("100/200"), Some(RateLimit::new(100, 200)));
        assert_eq!(RateLimit::parse("100"), None);
        assert_eq!(RateLimit::parse("a/2"), None);
        assert_eq!(RateLimit::new(3, 4).to_string(), "3/4");
        assert!(serde_json::from_value::<RateLimit>(serde_json::json!({"per_second": 1})).is_err());
        assert!(serde_json::from_value::<RateLimit>(serde_json::json!({"per_second": -1, "burst": 1})).is_err());
    }
}
