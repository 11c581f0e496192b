//! Rollouts (issue 16, docs/releases.md "Rollouts"): one release across a set of
//! tenants, in waves (a canary first), at most so many upgrades at a time, a bake time
//! between waves, halting when a wave fails more than tolerated.
//!
//! A rollout is stored as one record ([`Rollout`]) with each tenant's state in its
//! wave; the worker that drives it (`tenancy_app::rollouts`) changes it with a
//! compare-and-set on `rev`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::time::Timestamp;
use crate::{Error, ErrorCode, Result};

/// The most tenants a selector may name by id.
pub const MAX_TENANT_IDS: usize = 10_000;
/// The most waves.
pub const MAX_WAVES: usize = 100;
/// The longest bake time: a day.
pub const MAX_BAKE_S: u64 = 86_400;

/// Which tenants a rollout upgrades: every condition given must hold (each list is
/// "any of"); nothing given is every tenant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutSelector {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plans: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// Tenant statuses (`active`, `suspended`, ...): tenants that are not `active`
    /// when their turn comes are skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenant_ids: Vec<String>,
}

/// How a rollout proceeds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutStrategy {
    /// Tenants in the first wave (the canary), before the `waves`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<u64>,
    /// Wave sizes, in order: a number of tenants or a percentage of the rollout's
    /// tenants (`"10%"`). Tenants the sizes leave over make a last wave.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub waves: Vec<Value>,
    /// Upgrades running at once (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u64>,
    /// The share of a wave's upgrades that may fail before the rollout halts (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerated_failure_percent: Option<f64>,
    /// Seconds between a wave's end and the next wave's start (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_s: Option<u64>,
    /// Whether a halting wave's succeeded tenants go back to their previous release
    /// (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_failed_wave: Option<bool>,
    /// The maintenance window of the tenants that give none of their own (their
    /// metadata's `maintenance_window`): a tenant whose turn comes outside its window is
    /// skipped and listed. Without either, a tenant may be moved at any time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_window: Option<MaintenanceWindow>,
}

/// When a tenant may be moved: from `start` (UTC, `HH:MM`) for `duration_m` minutes
/// on each of `days` (`mon` ... `sun`; none given: every day). A window may run past
/// midnight into the next day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<String>,
    pub start: String,
    pub duration_m: u32,
}

/// The metadata key of a tenant's own maintenance window.
pub const MAINTENANCE_WINDOW_KEY: &str = "maintenance_window";

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const DAY_MS: i64 = 86_400_000;

impl MaintenanceWindow {
    /// Checks the window: known days, `start` as `HH:MM`, a duration of 1 minute to a week.
    pub fn validate(&self) -> Result<()> {
        for d in &self.days {
            if !DAYS.contains(&d.as_str()) {
                return Err(invalid(format!("unknown maintenance window day {d:?} (mon ... sun)")));
            }
        }
        self.start_minute()?;
        if self.duration_m == 0 || self.duration_m > 7 * 24 * 60 {
            return Err(invalid("a maintenance window's duration_m must be 1 to 10080 minutes"));
        }
        Ok(())
    }

    fn start_minute(&self) -> Result<i64> {
        let bad = || invalid(format!("a maintenance window's start must be HH:MM (UTC), not {:?}", self.start));
        let (h, m) = self.start.split_once(':').ok_or_else(bad)?;
        let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if (0..24).contains(&h) && (0..60).contains(&m) {
            Ok(h * 60 + m)
        } else {
            Err(bad())
        }
    }

    /// Whether `at` falls within the window.
    pub fn contains(&self, at: Timestamp) -> bool {
        let Ok(start) = self.start_minute() else { return false };
        let day = at.millis().div_euclid(DAY_MS);
        let duration = i64::from(self.duration_m) * 60_000;
        // Every opening that may still be open at `at`: today's and those of the days before.
        let back = duration / DAY_MS + 1;
        (0..=back).any(|k| {
            let d = day - k;
            // 1970-01-01 was a Thursday (index 3 from Monday).
            let weekday = DAYS[(d + 3).rem_euclid(7) as usize];
            let opens = d * DAY_MS + start * 60_000;
            (self.days.is_empty() || self.days.iter().any(|x| x == weekday))
                && at.millis() >= opens
                && at.millis() < opens + duration
        })
    }
}

/// The body of `POST /v1/rollouts`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutRequest {
    /// The release to move the tenants to; or
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// the plan to move them to (a bulk plan change): exactly one of the two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    #[serde(default)]
    pub selector: RolloutSelector,
    #[serde(default)]
    pub strategy: RolloutStrategy,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidRequest { code: ErrorCode::InvalidRollout, message: message.into() }
}

/// A wave size as given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WaveSize {
    Count(u64),
    Percent(f64),
}

impl WaveSize {
    fn parse(v: &Value) -> Result<Self> {
        match v {
            Value::Number(n) => match n.as_u64() {
                Some(c) if c > 0 => Ok(WaveSize::Count(c)),
                _ => Err(invalid(format!("a wave size must be a positive whole number or \"N%\", not {v}"))),
            },
            Value::String(s) => {
                let p = s.strip_suffix('%').and_then(|p| p.trim().parse::<f64>().ok());
                match p {
                    Some(p) if p > 0.0 && p <= 100.0 => Ok(WaveSize::Percent(p)),
                    _ => Err(invalid(format!(
                        "a wave size must be a positive whole number or \"N%\" (0-100], not {s:?}"
                    ))),
                }
            }
            _ => Err(invalid(format!("a wave size must be a positive whole number or \"N%\", not {v}"))),
        }
    }

    /// Tenants of a wave of this size out of `total` (a percentage rounds up: at least one).
    pub fn of(self, total: usize) -> usize {
        match self {
            WaveSize::Count(c) => usize::try_from(c).unwrap_or(usize::MAX),
            WaveSize::Percent(p) => ((total as f64) * p / 100.0).ceil().max(1.0) as usize,
        }
    }
}

impl RolloutStrategy {
    /// Checks the strategy; the parsed wave sizes.
    pub fn validate(&self) -> Result<Vec<WaveSize>> {
        if self.waves.len() > MAX_WAVES {
            return Err(invalid(format!("at most {MAX_WAVES} waves")));
        }
        let sizes = self.waves.iter().map(WaveSize::parse).collect::<Result<Vec<_>>>()?;
        if self.max_concurrency == Some(0) {
            return Err(invalid("max_concurrency must be at least 1"));
        }
        if let Some(p) = self.tolerated_failure_percent {
            if !(0.0..=100.0).contains(&p) || p.is_nan() {
                return Err(invalid("tolerated_failure_percent must be within 0-100"));
            }
        }
        if self.bake_s.is_some_and(|b| b > MAX_BAKE_S) {
            return Err(invalid(format!("bake_s must be at most {MAX_BAKE_S}")));
        }
        if let Some(w) = &self.maintenance_window {
            w.validate()?;
        }
        Ok(sizes)
    }

    pub fn concurrency(&self) -> usize {
        self.max_concurrency.map_or(10, |c| usize::try_from(c).unwrap_or(usize::MAX))
    }

    pub fn tolerated(&self) -> f64 {
        self.tolerated_failure_percent.unwrap_or(0.0)
    }

    pub fn rollback(&self) -> bool {
        self.rollback_failed_wave.unwrap_or(true)
    }
}

impl RolloutSelector {
    pub fn validate(&self) -> Result<()> {
        if self.tenant_ids.len() > MAX_TENANT_IDS {
            return Err(invalid(format!("a selector names at most {MAX_TENANT_IDS} tenant ids")));
        }
        for s in &self.statuses {
            if serde_json::from_value::<crate::tenant::TenantStatus>(Value::String(s.clone())).is_err() {
                return Err(invalid(format!("unknown tenant status {s:?}")));
            }
        }
        Ok(())
    }
}

/// Splits `tenants` into waves: the canary, then `sizes` in order, the rest last.
pub fn plan_waves<T>(tenants: Vec<T>, canary: Option<u64>, sizes: &[WaveSize]) -> Vec<(String, Vec<T>)> {
    let total = tenants.len();
    let mut rest = tenants.into_iter();
    let mut waves = Vec::new();
    let mut take = |name: String, n: usize, waves: &mut Vec<(String, Vec<T>)>| {
        let got: Vec<T> = rest.by_ref().take(n).collect();
        if !got.is_empty() {
            waves.push((name, got));
        }
    };
    if let Some(c) = canary.filter(|c| *c > 0) {
        take("canary".into(), usize::try_from(c).unwrap_or(usize::MAX), &mut waves);
    }
    for (i, s) in sizes.iter().enumerate() {
        take(format!("wave {}", i + 1), s.of(total), &mut waves);
    }
    take("rest".into(), usize::MAX, &mut waves);
    waves
}

/// A rollout's status.
pub mod status {
    pub const RUNNING: &str = "running";
    pub const PAUSED: &str = "paused";
    pub const HALTED: &str = "halted";
    pub const COMPLETED: &str = "completed";
    pub const ABORTED: &str = "aborted";

    /// Whether the rollout still holds its tenants (no other rollout may take them).
    pub fn is_active(s: &str) -> bool {
        matches!(s, RUNNING | PAUSED | HALTED)
    }
}

/// A tenant's state in its wave.
pub mod tenant_state {
    pub const PENDING: &str = "pending";
    /// Its upgrade is being started (recorded before the start: see the worker).
    pub const STARTING: &str = "starting";
    pub const UPGRADING: &str = "upgrading";
    pub const SUCCEEDED: &str = "succeeded";
    pub const FAILED: &str = "failed";
    /// Not upgradable when its turn came (pinned meanwhile, not active, on the release).
    pub const SKIPPED: &str = "skipped";
    /// A halting wave's succeeded tenant waiting to go back to its previous release.
    pub const ROLLBACK_PENDING: &str = "rollback_pending";
    pub const ROLLBACK_STARTING: &str = "rollback_starting";
    pub const ROLLING_BACK: &str = "rolling_back";
    pub const ROLLED_BACK: &str = "rolled_back";
    /// Its rollback failed, or it had no previous release: left on the new release.
    pub const NOT_ROLLED_BACK: &str = "not_rolled_back";
}

/// One tenant of a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RolloutTenant {
    pub tenant_id: String,
    /// The release it was on when the rollout started.
    pub previous_release: Option<String>,
    /// The plan it was on when the rollout started (a plan rollout's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_plan: Option<String>,
    /// Its maintenance window (its own, else the strategy's), as resolved at the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_window: Option<MaintenanceWindow>,
    pub state: String,
    /// The upgrade's execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    /// When its (rollback) upgrade was being started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// The rollback's execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_execution_id: Option<String>,
    /// The failed step (`pre_check`, `apply`, `verify`, `upgraded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Tenants of a wave by state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WaveCounts {
    pub pending: u64,
    pub upgrading: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub skipped: u64,
    pub rolled_back: u64,
}

/// One wave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Wave {
    /// `canary`, `wave 1`, ..., `rest`.
    pub name: String,
    /// `pending`, `running`, `completed`, `halted`.
    pub status: String,
    pub counts: WaveCounts,
    pub tenants: Vec<RolloutTenant>,
}

/// A tenant left out of a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SkippedTenant {
    pub tenant_id: String,
    /// `pinned`, `not-active`, `already-on-release`.
    pub reason: String,
}

/// A failed tenant, as listed by `GET /v1/rollouts/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FailedTenant {
    pub tenant_id: String,
    pub wave: String,
    pub step: Option<String>,
    pub reason: Option<String>,
    pub execution_id: Option<String>,
}

/// A rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rollout {
    pub id: String,
    /// The release the tenants move to (a release rollout), or
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// the plan they move to (a bulk plan change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// `running`, `paused`, `halted`, `completed`, `aborted`.
    pub status: String,
    pub selector: RolloutSelector,
    pub strategy: RolloutStrategy,
    /// The wave being run (an index into `waves`).
    pub current_wave: usize,
    /// The next wave waits until then (the bake time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_until: Option<Timestamp>,
    /// Why the rollout halted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted_reason: Option<String>,
    pub waves: Vec<Wave>,
    pub failed: Vec<FailedTenant>,
    pub skipped: Vec<SkippedTenant>,
    /// Succeeded tenants of a halted wave that stayed on the new release: no previous
    /// release to go back to, or a failed rollback (`reason`).
    #[serde(default)]
    pub not_rolled_back: Vec<SkippedTenant>,
    /// Who started it (key id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The record's revision (bumped by every change).
    pub rev: i64,
}

impl Rollout {
    /// Recomputes each wave's counts and the failed list from the tenants' states.
    pub fn refresh(&mut self) {
        use tenant_state as S;
        self.failed.clear();
        self.not_rolled_back.clear();
        for w in &mut self.waves {
            let mut c = WaveCounts::default();
            for t in &w.tenants {
                match t.state.as_str() {
                    S::PENDING => c.pending += 1,
                    S::STARTING | S::UPGRADING => c.upgrading += 1,
                    S::SUCCEEDED
                    | S::ROLLBACK_PENDING
                    | S::ROLLBACK_STARTING
                    | S::ROLLING_BACK
                    | S::NOT_ROLLED_BACK => c.succeeded += 1,
                    S::FAILED => c.failed += 1,
                    S::SKIPPED => c.skipped += 1,
                    S::ROLLED_BACK => c.rolled_back += 1,
                    _ => {}
                }
                if t.state == S::NOT_ROLLED_BACK {
                    self.not_rolled_back.push(SkippedTenant {
                        tenant_id: t.tenant_id.clone(),
                        reason: t.reason.clone().unwrap_or_default(),
                    });
                }
                if t.state == S::FAILED {
                    self.failed.push(FailedTenant {
                        tenant_id: t.tenant_id.clone(),
                        wave: w.name.clone(),
                        step: t.step.clone(),
                        reason: t.reason.clone(),
                        execution_id: t.execution_id.clone(),
                    });
                }
            }
            w.counts = c;
        }
    }

    /// What the rollout moves its tenants to.
    pub fn target(&self) -> Target<'_> {
        match (&self.plan, &self.release) {
            (Some(p), _) => Target::Plan(p),
            (None, r) => Target::Release(r.as_deref().unwrap_or_default()),
        }
    }

    /// The rollout without its tenants (its waves' `tenants` empty): what a store keeps
    /// beside the tenants' own rows.
    pub fn without_tenants(&self) -> Rollout {
        Rollout {
            id: self.id.clone(),
            release: self.release.clone(),
            plan: self.plan.clone(),
            status: self.status.clone(),
            selector: self.selector.clone(),
            strategy: self.strategy.clone(),
            current_wave: self.current_wave,
            bake_until: self.bake_until,
            halted_reason: self.halted_reason.clone(),
            waves: self
                .waves
                .iter()
                .map(|w| Wave {
                    name: w.name.clone(),
                    status: w.status.clone(),
                    counts: w.counts.clone(),
                    tenants: Vec::new(),
                })
                .collect(),
            failed: self.failed.clone(),
            skipped: self.skipped.clone(),
            not_rolled_back: self.not_rolled_back.clone(),
            started_by: self.started_by.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            rev: self.rev,
        }
    }

    /// The positions (`(wave, index)`) of the tenants whose state differs from
    /// `before`'s, the same rollout at an earlier revision (same waves, same tenants).
    pub fn changed_tenants(&self, before: &Rollout) -> Vec<(usize, usize)> {
        let mut changed = Vec::new();
        for (wi, w) in self.waves.iter().enumerate() {
            let old = before.waves.get(wi).map(|w| &w.tenants[..]).unwrap_or(&[]);
            for (ti, t) in w.tenants.iter().enumerate() {
                if old.get(ti) != Some(t) {
                    changed.push((wi, ti));
                }
            }
        }
        changed
    }

    /// Every tenant id of the rollout (those in waves).
    pub fn tenant_ids(&self) -> Vec<String> {
        self.waves.iter().flat_map(|w| w.tenants.iter().map(|t| t.tenant_id.clone())).collect()
    }
}

/// What a rollout moves its tenants to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Release(&'a str),
    Plan(&'a str),
}

impl RolloutRequest {
    /// The target: exactly one of `release` and `plan` (400 `invalid-rollout`).
    pub fn target(&self) -> Result<Target<'_>> {
        match (&self.release, &self.plan) {
            (Some(r), None) => Ok(Target::Release(r)),
            (None, Some(p)) => Ok(Target::Plan(p)),
            _ => {
                Err(invalid("a rollout moves tenants to a release or to a plan: give exactly one of release and plan"))
            }
        }
    }
}

/// `GET /v1/rollouts`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RolloutList {
    pub items: Vec<Rollout>,
}

/// The answer of `POST /v1/rollouts`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RolloutStarted {
    pub id: String,
    pub status: String,
    pub tenants: usize,
    pub waves: usize,
    pub skipped: Vec<SkippedTenant>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn waves_are_the_canary_the_sizes_and_the_rest() {
        let sizes = RolloutStrategy { waves: vec![json!("10%"), json!(5)], ..Default::default() }.validate().unwrap();
        let waves = plan_waves((0..40).collect(), Some(2), &sizes);
        let shape: Vec<(&str, usize)> = waves.iter().map(|(n, t)| (n.as_str(), t.len())).collect();
        assert_eq!(shape, [("canary", 2), ("wave 1", 4), ("wave 2", 5), ("rest", 29)]);
        let waves = plan_waves((0..3).collect(), Some(5), &sizes);
        assert_eq!(waves.len(), 1, "sizes past the tenants make no empty waves");
    }

    #[test]
    fn maintenance_windows_open_on_their_days_and_cross_midnight() {
        let w = |days: &[&str], start: &str, d| MaintenanceWindow {
            days: days.iter().map(|s| s.to_string()).collect(),
            start: start.into(),
            duration_m: d,
        };
        let at = |s: &str| Timestamp::parse_rfc3339(s).unwrap();
        // 2026-12-05 is a Saturday.
        let sat = w(&["sat"], "22:00", 180);
        assert!(sat.contains(at("2026-12-05T22:00:00Z")));
        assert!(sat.contains(at("2026-12-06T00:59:59Z")), "past midnight, into Sunday");
        assert!(!sat.contains(at("2026-12-06T01:00:00Z")));
        assert!(!sat.contains(at("2026-12-05T21:59:59Z")));
        assert!(!sat.contains(at("2026-12-12T21:00:00Z")));
        assert!(sat.contains(at("2026-12-12T23:00:00Z")), "the next Saturday");
        assert!(!sat.contains(at("2026-12-07T23:00:00Z")), "Monday");
        let daily = w(&[], "02:30", 60);
        assert!(daily.contains(at("2026-12-07T03:00:00Z")) && !daily.contains(at("2026-12-07T03:30:00Z")));
        for bad in [w(&["someday"], "01:00", 10), w(&[], "25:00", 10), w(&[], "1am", 10), w(&[], "01:00", 0)] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(sat.validate().is_ok());
    }

    #[test]
    fn bad_strategies_are_invalid_rollout() {
        for s in [
            json!({"waves": ["0%"]}),
            json!({"waves": [0]}),
            json!({"waves": ["abc"]}),
            json!({"max_concurrency": 0}),
            json!({"tolerated_failure_percent": 101}),
        ] {
            let s: RolloutStrategy = serde_json::from_value(s).unwrap();
            assert!(matches!(s.validate(), Err(Error::InvalidRequest { code: ErrorCode::InvalidRollout, .. })));
        }
    }
}
