//! API rate limits (the API Gateway usage-plan role): token buckets per API key and
//! per tenant, checked right after authentication (docs/rate-limits.md).
//!
//! Every authenticated `/v1` request takes one token from its key's bucket (sized by the
//! key's own limit, else its role's) and, for a tenant-scoped key, one from its
//! tenant's bucket too (sized by its plan's limit, else the server's). Over either: 429
//! `rate-limited` with `Retry-After`; every answer to a limited caller carries
//! `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-09), naming
//! the policy applied (`"key"`, `"key:own"`, `"tenant"`, `"plan:<id>"`).
//!
//! The buckets are governor's GCRA, in this process's memory: exact on one replica; N
//! replicas each keep their own, so a caller spread over them gets at most N times the
//! limit (no shared state on the hot path). Buckets untouched for a full refill are
//! dropped every [`SWEEP_EVERY`], so memory follows the keys recently seen.
//!
//! A governor limiter has one quota for all its keys, so the server's sizes have one
//! limiter each, and the plans' and keys' own sizes one limiter per distinct size (and
//! kind of bucket), made on first use and dropped by the sweep once all its buckets
//! have refilled. A plan or key whose limit changes finds its bucket in the limiter of
//! the new size: a bucket of that size, starting full (the old one refills and goes).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use tenancy_app::Principal;
use tenancy_domain::apikey::Role;
use tenancy_domain::ratelimit::RateLimit;

/// One bucket's size: `per_second` tokens refill each second, up to `burst`. Either
/// 0: no bucket (unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limit {
    pub per_second: u32,
    pub burst: u32,
}

impl Limit {
    pub const fn new(per_second: u32, burst: u32) -> Limit {
        Limit { per_second, burst }
    }

    /// The bucket of a plan's or a key's own limit.
    pub const fn of(r: RateLimit) -> Limit {
        Limit { per_second: r.per_second, burst: r.burst }
    }

    fn quota(self) -> Option<Quota> {
        let rate = NonZeroU32::new(self.per_second)?;
        let burst = NonZeroU32::new(self.burst)?;
        Some(Quota::per_second(rate).allow_burst(burst))
    }

    /// The policy's window: the seconds an empty bucket takes to refill (at least 1).
    fn window_s(self) -> u64 {
        u64::from(self.burst).div_ceil(u64::from(self.per_second.max(1))).max(1)
    }
}

/// The buckets' sizes: one per role for keys, and one per tenant shared by all of a
/// tenant's keys (`--rate-limit-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub admin: Limit,
    pub operator: Limit,
    pub viewer: Limit,
    pub service: Limit,
    pub tenant_key: Limit,
    pub tenant: Limit,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            admin: Limit::new(10_000, 20_000),
            operator: Limit::new(10_000, 20_000),
            viewer: Limit::new(100, 200),
            service: Limit::new(10_000, 20_000),
            tenant_key: Limit::new(100, 200),
            tenant: Limit::new(1_000, 2_000),
        }
    }
}

impl RateLimits {
    /// No bucket at all.
    pub const OFF: RateLimits = RateLimits {
        admin: Limit::new(0, 0),
        operator: Limit::new(0, 0),
        viewer: Limit::new(0, 0),
        service: Limit::new(0, 0),
        tenant_key: Limit::new(0, 0),
        tenant: Limit::new(0, 0),
    };
}

type Keyed = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// A keyed limiter and the limit it enforces.
struct Buckets {
    limit: Limit,
    limiter: Keyed,
    /// The time one token takes to come back.
    interval: Duration,
    /// The policy's window (`w` of `RateLimit-Policy`): the seconds an empty bucket
    /// takes to refill.
    window_s: u64,
}

impl Buckets {
    fn new(limit: Limit) -> Option<Buckets> {
        let quota = limit.quota()?;
        Some(Buckets {
            limit,
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            interval: Duration::from_secs(1) / limit.per_second.max(1),
            window_s: limit.window_s(),
        })
    }

    /// `n` requests an hour, all of them at once at most (`n` 0: no bucket). Its
    /// [`Limit`] has `per_second` 0: only `burst` (= `n`) means something.
    fn hourly(n: u32) -> Option<Buckets> {
        let burst = NonZeroU32::new(n)?;
        let interval = Duration::from_secs(3600) / n;
        let quota = Quota::with_period(interval)?.allow_burst(burst);
        Some(Buckets {
            limit: Limit::new(0, n),
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            interval,
            window_s: 3600,
        })
    }

    /// Takes a token from `key`'s bucket.
    fn check(&self, policy: Policy, key: &str) -> Result<Verdict, Refusal> {
        let interval = self.limiter_interval();
        match self.limiter.check_key(&key.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let missing = self.limit.burst.saturating_sub(remaining);
                let reset = interval.saturating_mul(missing);
                Ok(Verdict { policy, limit: self.limit, window_s: self.window_s, remaining, reset_s: ceil_s(reset) })
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                Err(Refusal {
                    verdict: Verdict {
                        policy,
                        limit: self.limit,
                        window_s: self.window_s,
                        remaining: 0,
                        reset_s: ceil_s(wait).max(1),
                    },
                })
            }
        }
    }

    fn limiter_interval(&self) -> Duration {
        self.interval
    }

    fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

fn ceil_s(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// How often buckets that have refilled completely are dropped.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The policy a bucket follows, as the RateLimit headers name it: the key's bucket at
/// its role's size (`"key"`) or its own (`"key:own"`), the tenant's bucket at the
/// server's size (`"tenant"`) or its plan's (`"plan:<plan id>"`; plan ids are slugs, so
/// the name is a plain structured-field string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    Key,
    KeyOwn,
    Tenant,
    Plan(String),
    /// Sign-ups and activations from one client address (`"signup:address"`).
    SignupAddress,
    /// Sign-ups for addresses of one email domain (`"signup:domain"`).
    SignupDomain,
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Policy::Key => f.write_str("key"),
            Policy::KeyOwn => f.write_str("key:own"),
            Policy::Tenant => f.write_str("tenant"),
            Policy::Plan(id) => write!(f, "plan:{id}"),
            Policy::SignupAddress => f.write_str("signup:address"),
            Policy::SignupDomain => f.write_str("signup:domain"),
        }
    }
}

/// The state of one bucket after a request: what the RateLimit headers report.
#[derive(Debug, Clone)]
pub struct Verdict {
    policy: Policy,
    limit: Limit,
    window_s: u64,
    remaining: u32,
    /// Seconds until the bucket is full again (refused: until a token is back).
    reset_s: u64,
}

/// A request over a bucket's limit.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub verdict: Verdict,
}

impl Refusal {
    /// Whole seconds to wait (`Retry-After`), at least 1.
    pub fn retry_after_s(&self) -> u64 {
        self.verdict.reset_s
    }

    /// The problem's detail.
    pub fn detail(&self) -> String {
        let hourly = |whose: &str| {
            format!(
                "{whose} are over their limit of {} per hour; retry after {} s",
                self.verdict.limit.burst,
                self.retry_after_s()
            )
        };
        let whose = match &self.verdict.policy {
            Policy::SignupAddress => return hourly("sign-up requests from this client address"),
            Policy::SignupDomain => return hourly("sign-ups for addresses of this email domain"),
            Policy::Key => "this API key".to_owned(),
            Policy::KeyOwn => "this API key (its own limit)".to_owned(),
            Policy::Tenant => "this key's tenant".to_owned(),
            Policy::Plan(id) => format!("this key's tenant (its plan {id:?})"),
        };
        let l = self.verdict.limit;
        format!(
            "the request rate of {whose} is over its limit of {} requests per second (burst {}); retry after {} s",
            l.per_second,
            l.burst,
            self.retry_after_s()
        )
    }
}

/// Every bucket of this process.
pub struct RateLimiters {
    admin: Option<Buckets>,
    operator: Option<Buckets>,
    viewer: Option<Buckets>,
    service: Option<Buckets>,
    tenant_key: Option<Buckets>,
    tenant: Option<Buckets>,
    /// The limiters of plans' and keys' own limits, by kind and size. A check holds the
    /// read lock while it takes its token, so the sweep (the write lock) never drops a
    /// limiter between a lookup and the token taken from it.
    own: RwLock<HashMap<(Kind, Limit), Buckets>>,
    started: Instant,
    /// Milliseconds since `started` of the last sweep.
    swept_ms: AtomicU64,
}

/// Which bucket of a caller a limiter of [`RateLimiters::own`] holds (a tenant's id and
/// a key's never share one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Key,
    Tenant,
}

/// The rate limit of a tenant's plan, when the plan sets one (from the tenant's terms).
#[derive(Debug, Clone, Copy)]
pub struct PlanLimit<'a> {
    pub plan: &'a str,
    pub limit: RateLimit,
}

/// What a request's buckets said: the headers of the answer, or a refusal.
pub struct Checked {
    pub verdicts: Vec<Verdict>,
    pub refusal: Option<Refusal>,
}

impl Checked {
    /// Records what one bucket said; false when it refused.
    fn take(&mut self, taken: Option<Result<Verdict, Refusal>>) -> bool {
        match taken {
            None => true,
            Some(Ok(v)) => {
                self.verdicts.push(v);
                true
            }
            Some(Err(r)) => {
                self.verdicts.push(r.verdict.clone());
                self.refusal = Some(r);
                false
            }
        }
    }
}

impl RateLimiters {
    pub fn new(limits: RateLimits) -> RateLimiters {
        RateLimiters {
            admin: Buckets::new(limits.admin),
            operator: Buckets::new(limits.operator),
            viewer: Buckets::new(limits.viewer),
            service: Buckets::new(limits.service),
            tenant_key: Buckets::new(limits.tenant_key),
            tenant: Buckets::new(limits.tenant),
            own: RwLock::new(HashMap::new()),
            started: Instant::now(),
            swept_ms: AtomicU64::new(0),
        }
    }

    fn of_role(&self, role: Role) -> Option<&Buckets> {
        match role {
            Role::Admin => self.admin.as_ref(),
            Role::Operator => self.operator.as_ref(),
            Role::Viewer => self.viewer.as_ref(),
            Role::Service => self.service.as_ref(),
            Role::Tenant => self.tenant_key.as_ref(),
        }
    }

    /// Takes a token from the caller's key bucket and then, for a tenant-scoped key,
    /// from its tenant's (a request the key's bucket refuses takes none from the
    /// tenant's). The key's bucket has the key's own size when it has one, else its
    /// role's; the tenant's has its plan's (`plan`) when the plan sets one, else the
    /// server's. An own size applies even where the server's bucket of its kind is off.
    pub fn check(&self, principal: &Principal, plan: Option<PlanLimit<'_>>) -> Checked {
        self.maybe_sweep();
        let mut out = Checked { verdicts: Vec::with_capacity(2), refusal: None };
        // The bootstrap admin token has no key id: one bucket of its own.
        let key = principal.key_id.as_deref().unwrap_or("(admin token)");
        let taken = match principal.rate_limit {
            Some(own) => self.check_own(Kind::Key, Limit::of(own), Policy::KeyOwn, key),
            None => self.of_role(principal.role).map(|b| b.check(Policy::Key, key)),
        };
        if !out.take(taken) {
            return out;
        }
        if let Some(tenant) = &principal.tenant_id {
            let taken = match plan {
                Some(p) => self.check_own(Kind::Tenant, Limit::of(p.limit), Policy::Plan(p.plan.to_owned()), tenant),
                None => self.tenant.as_ref().map(|b| b.check(Policy::Tenant, tenant)),
            };
            out.take(taken);
        }
        out
    }

    /// Takes a token from `key`'s bucket in the limiter of `limit` (made on first use).
    fn check_own(&self, kind: Kind, limit: Limit, policy: Policy, key: &str) -> Option<Result<Verdict, Refusal>> {
        {
            let own = self.own.read().expect("rate limiters poisoned");
            if let Some(b) = own.get(&(kind, limit)) {
                return Some(b.check(policy, key));
            }
        }
        let mut own = self.own.write().expect("rate limiters poisoned");
        let b = match own.entry((kind, limit)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(Buckets::new(limit)?),
        };
        Some(b.check(policy, key))
    }

    /// Drops full buckets once per [`SWEEP_EVERY`] (one caller does it; the others go on).
    fn maybe_sweep(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.swept_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SWEEP_EVERY.as_millis() as u64 {
            return;
        }
        if self.swept_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            return;
        }
        self.sweep();
    }

    /// Drops every bucket that has refilled completely (it holds nothing a new one
    /// would not), and the limiters of own sizes left without buckets.
    pub fn sweep(&self) {
        for b in [&self.admin, &self.operator, &self.viewer, &self.service, &self.tenant_key, &self.tenant]
            .into_iter()
            .flatten()
        {
            b.sweep();
        }
        // The buckets under the read lock (checks go on meanwhile); then the empty
        // limiters under the write lock, where no check is half-way.
        let empty = {
            let own = self.own.read().expect("rate limiters poisoned");
            own.values().for_each(Buckets::sweep);
            own.values().any(|b| b.limiter.is_empty())
        };
        if empty {
            self.own.write().expect("rate limiters poisoned").retain(|_, b| !b.limiter.is_empty());
        }
    }

    /// Buckets held (all kinds).
    pub fn len(&self) -> usize {
        let own: usize = self.own.read().expect("rate limiters poisoned").values().map(|b| b.limiter.len()).sum();
        [&self.admin, &self.operator, &self.viewer, &self.service, &self.tenant_key, &self.tenant]
            .into_iter()
            .flatten()
            .map(|b| b.limiter.len())
            .sum::<usize>()
            + own
    }

    /// Limiters of plans' and keys' own sizes held.
    pub fn own_limiters(&self) -> usize {
        self.own.read().expect("rate limiters poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for RateLimiters {
    fn default() -> Self {
        RateLimiters::new(RateLimits::default())
    }
}

/// The sign-up buckets' sizes (`--signup-rate-per-address`, `--signup-rate-per-domain`):
/// requests an hour per client address (sign-ups and activations alike) and sign-ups an
/// hour per email domain; 0: no bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignupLimits {
    pub per_address_per_hour: u32,
    pub per_domain_per_hour: u32,
}

impl Default for SignupLimits {
    fn default() -> Self {
        SignupLimits { per_address_per_hour: 20, per_domain_per_hour: 50 }
    }
}

/// The buckets of the unauthenticated sign-up routes: one per client address, one per
/// email domain (lower case), each `n` an hour with a burst of `n`.
pub struct SignupLimiters {
    address: Option<Buckets>,
    domain: Option<Buckets>,
    started: Instant,
    swept_ms: AtomicU64,
}

impl SignupLimiters {
    pub fn new(limits: SignupLimits) -> SignupLimiters {
        SignupLimiters {
            address: Buckets::hourly(limits.per_address_per_hour),
            domain: Buckets::hourly(limits.per_domain_per_hour),
            started: Instant::now(),
            swept_ms: AtomicU64::new(0),
        }
    }

    /// Takes a token from the client address's bucket.
    pub fn check_address(&self, address: &str) -> Checked {
        self.maybe_sweep();
        let mut out = Checked { verdicts: Vec::with_capacity(2), refusal: None };
        out.take(self.address.as_ref().map(|b| b.check(Policy::SignupAddress, address)));
        out
    }

    /// Takes a token from the email domain's bucket, adding its verdict to `checked`.
    pub fn check_domain(&self, checked: &mut Checked, domain: &str) {
        checked.take(self.domain.as_ref().map(|b| b.check(Policy::SignupDomain, domain)));
    }

    fn maybe_sweep(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.swept_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SWEEP_EVERY.as_millis() as u64 {
            return;
        }
        if self.swept_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            [&self.address, &self.domain].into_iter().flatten().for_each(Buckets::sweep);
        }
    }
}

/// Sets `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-09,
/// structured-field lists: `"key";q=200;w=2` and `"key";r=150;t=1`).
pub fn set_headers(headers: &mut HeaderMap, verdicts: &[Verdict]) {
    if verdicts.is_empty() {
        return;
    }
    let policy: Vec<String> =
        verdicts.iter().map(|v| format!("\"{}\";q={};w={}", v.policy, v.limit.burst, v.window_s)).collect();
    let state: Vec<String> =
        verdicts.iter().map(|v| format!("\"{}\";r={};t={}", v.policy, v.remaining, v.reset_s)).collect();
    if let Ok(v) = HeaderValue::from_str(&policy.join(", ")) {
        headers.insert(HeaderName::from_static("ratelimit-policy"), v);
    }
    if let Ok(v) = HeaderValue::from_str(&state.join(", ")) {
        headers.insert(HeaderName::from_static("ratelimit"), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, key: &str, tenant: Option<&str>) -> Principal {
        Principal {
            key_id: Some(key.into()),
            role,
            tenant_id: tenant.map(Into::into),
            rate_limit: None,
            labels: vec![],
            region: None,
        }
    }

    #[test]
    fn a_burst_then_refusal_and_the_tenant_bucket_is_shared() {
        let limits = RateLimits { tenant_key: Limit::new(1, 3), tenant: Limit::new(1, 4), ..RateLimits::default() };
        let l = RateLimiters::new(limits);
        let a = principal(Role::Tenant, "a", Some("t1"));
        for i in 0..3 {
            let c = l.check(&a, None);
            assert!(c.refusal.is_none(), "request {i}");
            assert_eq!(c.verdicts[0].remaining, 2 - i);
        }
        let c = l.check(&a, None);
        let r = c.refusal.expect("the fourth is over the key's burst");
        assert_eq!(r.verdict.policy, Policy::Key);
        assert!(r.retry_after_s() >= 1);
        // Another key of t1: its own bucket is full, the tenant's has one token left.
        let b = principal(Role::Tenant, "b", Some("t1"));
        assert!(l.check(&b, None).refusal.is_none());
        assert_eq!(l.check(&b, None).refusal.expect("t1's bucket is empty").verdict.policy, Policy::Tenant);
        // Another tenant is not affected.
        assert!(l.check(&principal(Role::Tenant, "c", Some("t2")), None).refusal.is_none());
        // A service key has no tenant bucket.
        let s = principal(Role::Service, "s", None);
        assert_eq!(l.check(&s, None).verdicts.len(), 1);
    }

    #[test]
    fn zero_disables_and_headers_follow_the_draft() {
        let l = RateLimiters::new(RateLimits::OFF);
        let c = l.check(&principal(Role::Tenant, "a", Some("t")), None);
        assert!(c.verdicts.is_empty() && c.refusal.is_none());
        assert!(l.is_empty());

        let l = RateLimiters::new(RateLimits { tenant_key: Limit::new(100, 200), ..RateLimits::OFF });
        let c = l.check(&principal(Role::Tenant, "a", Some("t")), None);
        let mut h = HeaderMap::new();
        set_headers(&mut h, &c.verdicts);
        assert_eq!(h["ratelimit-policy"], "\"key\";q=200;w=2");
        assert_eq!(h["ratelimit"], "\"key\";r=199;t=1");
    }

    /// Buckets that have refilled are dropped by a sweep; busy ones stay.
    #[test]
    fn a_sweep_drops_full_buckets() {
        let l = RateLimiters::new(RateLimits {
            tenant_key: Limit::new(1000, 1),
            tenant: Limit::new(1, 5),
            ..RateLimits::OFF
        });
        for i in 0..100 {
            l.check(&principal(Role::Tenant, &format!("k{i}"), Some("t")), None);
        }
        assert_eq!(l.len(), 101, "a bucket per key and the tenant's");
        std::thread::sleep(Duration::from_millis(20));
        l.sweep();
        assert_eq!(l.len(), 1, "the keys' buckets refilled in 1 ms; the tenant's (1/s) is still draining");
    }

    fn own(role: Role, key: &str, tenant: Option<&str>, limit: RateLimit) -> Principal {
        Principal { rate_limit: Some(limit), ..principal(role, key, tenant) }
    }

    /// A key's own size replaces its role's, a plan's the server's tenant size; each
    /// is named in the headers; siblings keep the defaults.
    #[test]
    fn own_sizes_replace_the_defaults_and_are_named() {
        let l = RateLimiters::new(RateLimits {
            tenant_key: Limit::new(100, 100),
            tenant: Limit::new(100, 100),
            ..RateLimits::OFF
        });
        let small = own(Role::Tenant, "a", Some("t1"), RateLimit::new(1, 2));
        let plan = PlanLimit { plan: "tiny", limit: RateLimit::new(1, 50) };
        for _ in 0..2 {
            assert!(l.check(&small, Some(plan)).refusal.is_none());
        }
        let c = l.check(&small, Some(plan));
        assert_eq!(c.refusal.expect("the key's own burst is 2").verdict.policy, Policy::KeyOwn);
        let mut h = HeaderMap::new();
        set_headers(&mut h, &c.verdicts);
        assert_eq!(h["ratelimit-policy"], "\"key:own\";q=2;w=2");
        // A sibling key of the same role: its role's size, and the plan's tenant bucket.
        let c = l.check(&principal(Role::Tenant, "b", Some("t1")), Some(plan));
        assert!(c.refusal.is_none());
        set_headers(&mut h, &c.verdicts);
        assert_eq!(h["ratelimit-policy"], "\"key\";q=100;w=1, \"plan:tiny\";q=50;w=50");
        assert_eq!(h["ratelimit"], "\"key\";r=99;t=1, \"plan:tiny\";r=47;t=3");
        // An own size applies where the server's bucket of its kind is off.
        let off = RateLimiters::new(RateLimits::OFF);
        let c = off.check(&own(Role::Service, "s", None, RateLimit::new(1, 1)), None);
        assert_eq!(c.verdicts.len(), 1);
        assert!(off.check(&own(Role::Service, "s", None, RateLimit::new(1, 1)), None).refusal.is_some());
    }

    /// A plan whose limit changes: the tenant's bucket is the new size's (full), and the
    /// old size's limiter goes once its buckets have refilled.
    #[test]
    fn a_changed_size_takes_effect_and_old_limiters_go() {
        let l = RateLimiters::new(RateLimits { tenant_key: Limit::new(1000, 1000), ..RateLimits::OFF });
        let p = principal(Role::Tenant, "a", Some("t1"));
        let before = PlanLimit { plan: "pro", limit: RateLimit::new(1000, 3) };
        for _ in 0..3 {
            assert!(l.check(&p, Some(before)).refusal.is_none());
        }
        assert!(l.check(&p, Some(before)).refusal.is_some());
        let after = PlanLimit { plan: "pro", limit: RateLimit::new(1, 5) };
        for i in 0..5 {
            assert!(l.check(&p, Some(after)).refusal.is_none(), "request {i} on the new size");
        }
        assert_eq!(l.check(&p, Some(after)).refusal.expect("the new burst is 5").verdict.limit, Limit::new(1, 5));
        assert_eq!(l.own_limiters(), 2);
        std::thread::sleep(Duration::from_millis(20));
        l.sweep();
        assert_eq!(l.own_limiters(), 1, "the old size's bucket refilled in 3 ms: its limiter is gone");
    }
}
