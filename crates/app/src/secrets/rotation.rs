//! Rotation of a secret (docs/secrets.md, "Rotation"): the built-in state machine
//! `tenancy.secret.rotate` (`crates/app/workflows/secret-rotate.json`) runs four
//! idempotent steps, create, set, test and finish ([`super::tasks`]), and on any failure
//! a fail step. This module starts rotations (`POST .../secrets/{name}/rotate`, and the
//! scheduler, [`super::scheduler`]) and checks rotation specs at put time.
//!
//! Decisions:
//! - At most one rotation of a secret runs: the start is a conditional update of the
//!   secret's `rotation_execution_id` in the transaction that starts the execution, so
//!   a second start, concurrent or not, is 409 `rotation-in-progress`. A rotation whose
//!   execution ended without its finish or fail step (stopped through the API, timed
//!   out) does not block the secret: the next start takes it over and drops its pending
//!   label.
//! - A rotation needs the secret's generator (kept from the put that gave one); a
//!   secret without one is 400 `invalid-rotation`.
//! - Schedules: `every` (humantime, `30d`, `12h`; at least 1 hour, at most 1000 days)
//!   or `cron` (5 fields, or 6 with seconds, UTC), not both. `next_rotation_at` is set
//!   at put and moved by each scheduled start (a rotation requested through the API
//!   leaves the schedule as it is). The minimum interval can be lowered by the test
//!   servers only ([`set_min_interval`]; not a flag of `serve`).
//! - Only admins and operators set a `hook`, `queue` or `postgres` target: those are
//!   the platform's; a tenant key may set schedules and the default target (403).
//! - Targets: a hook or a queue named by the spec must exist when the spec is put
//!   (400 `invalid-rotation`), and are looked up again at each step. A hook target
//!   must be a `sync` URL hook subscribed to the `secret_rotation` event: a hook gets
//!   secret values only when it asked for them, never a provisioning hook by mistake.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use tenancy_domain::secret::{LastRotation, PostgresStrategy, RotationSpec, RotationStarted, RotationTarget};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_store::{Effects, RotationStart, SecretRecord, Store};

use super::ops::{deleted_error, target};
use crate::context::Permission as P;
use crate::{App, OpContext};

/// The built-in rotation state machine.
pub const ROTATE_MACHINE: &str = "tenancy.secret.rotate";

/// The shortest schedule interval (1 hour) unless a test lowered it.
pub const MIN_INTERVAL: Duration = Duration::from_secs(3600);
/// The longest schedule interval.
pub const MAX_INTERVAL: Duration = Duration::from_secs(1000 * 86_400);

static MIN_INTERVAL_MS: AtomicU64 = AtomicU64::new(3_600_000);

/// Lowers the shortest schedule interval. For test servers only (the integration
/// tests' `ServeOptions::rotation_min_interval`), so a schedule runs within a test;
/// production servers keep [`MIN_INTERVAL`].
pub fn set_min_interval(d: Duration) {
    MIN_INTERVAL_MS.store(d.as_millis() as u64, Ordering::Relaxed);
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidRequest { code: ErrorCode::InvalidRotation, message: message.into() }
}

fn parse_cron(expr: &str) -> Result<croner::Cron> {
    croner::Cron::new(expr)
        .with_seconds_optional()
        .parse()
        .map_err(|e| invalid(format!("rotation.cron {expr:?} is not a cron expression: {e}")))
}

fn parse_every(every: &str) -> Result<Duration> {
    let d = humantime::parse_duration(every)
        .map_err(|e| invalid(format!("rotation.every {every:?} is not a duration like 30d or 12h: {e}")))?;
    let min = Duration::from_millis(MIN_INTERVAL_MS.load(Ordering::Relaxed));
    if d < min || d > MAX_INTERVAL {
        return Err(invalid(format!("rotation.every must be between 1h and 1000d, got {every:?}")));
    }
    Ok(d)
}

/// A tenant key may give its secrets a schedule and the default target, but not a
/// target outside the tenant (a platform hook or queue, a database): 403.
pub fn check_caller(ctx: &OpContext, spec: &RotationSpec) -> Result<()> {
    let platform_target = !matches!(spec.target(), RotationTarget::Generated {});
    if platform_target && ctx.principal.tenant_id.is_some() {
        return Err(Error::Forbidden(
            "a tenant key cannot set a hook, queue or postgres rotation target: ask an operator".into(),
        ));
    }
    Ok(())
}

/// Checks a rotation spec: its schedule parses and its target exists.
pub async fn check_spec(store: &dyn Store, spec: &RotationSpec) -> Result<()> {
    match (&spec.every, &spec.cron) {
        (Some(_), Some(_)) => return Err(invalid("give rotation.every or rotation.cron, not both")),
        (Some(e), None) => drop(parse_every(e)?),
        (None, Some(c)) => drop(parse_cron(c)?),
        (None, None) => {}
    }
    match spec.target() {
        RotationTarget::Generated {} | RotationTarget::Postgres { .. } => {}
        RotationTarget::Hook { hook } => {
            let h = match store.hooks().hook_get(&hook).await {
                Err(Error::NotFound { .. }) => {
                    return Err(invalid(format!("rotation.target.hook {hook:?} does not exist")))
                }
                r => r?,
            };
            let serves = h.url.is_some()
                && h.mode == tenancy_domain::hook::HookMode::Sync
                && h.events.contains(&tenancy_domain::hook::HookEvent::SecretRotation);
            if !serves {
                return Err(invalid(format!(
                    "rotation.target.hook {hook:?} must be a sync URL hook subscribed to the secret_rotation event"
                )));
            }
        }
        RotationTarget::Queue { queue } => match store.queues().queue_get(&queue).await {
            Err(Error::NotFound { .. }) => {
                return Err(invalid(format!("rotation.target.queue {queue:?} does not exist")))
            }
            r => drop(r?),
        },
    }
    Ok(())
}

/// When a secret with `spec` rotates next after `after` (`None`: not scheduled).
pub fn next_rotation(spec: &RotationSpec, after: Timestamp) -> Result<Option<Timestamp>> {
    if let Some(every) = &spec.every {
        return Ok(Some(after.plus_millis(parse_every(every)?.as_millis() as i64)));
    }
    if let Some(expr) = &spec.cron {
        let cron = parse_cron(expr)?;
        let start = chrono::DateTime::from_timestamp_millis(after.millis())
            .ok_or_else(|| Error::internal("timestamp out of range"))?;
        let next = cron
            .find_next_occurrence(&start, false)
            .map_err(|e| invalid(format!("rotation.cron {expr:?} never fires: {e}")))?;
        return Ok(Some(Timestamp(next.timestamp_millis())));
    }
    Ok(None)
}

/// A secret's rotation spec: its own, or for a silo tenant's database credentials
/// (`tenancy.database`, which no put may configure) the `postgres` target with the
/// `alternating_users` strategy, so that a login stays valid at every instant of a
/// rotation (docs/secrets.md, "Rotating database credentials").
pub(crate) fn spec_of(rec: &SecretRecord) -> RotationSpec {
    match rec.rotation.as_deref().and_then(|r| serde_json::from_str(r).ok()) {
        Some(spec) => spec,
        None if rec.tenant_id.is_some() && rec.name == crate::dataplane::credentials::SECRET_NAME => RotationSpec {
            target: Some(RotationTarget::Postgres { strategy: PostgresStrategy::AlternatingUsers }),
            ..RotationSpec::default()
        },
        None => RotationSpec::default(),
    }
}

impl App {
    /// Starts a rotation of the secret: 202 with the execution; 409
    /// `rotation-in-progress` when one is running.
    pub async fn secret_rotate(&self, ctx: &OpContext, scope: Option<&str>, name: &str) -> Result<RotationStarted> {
        self.secret_scope(ctx, scope, P::SecretWrite, P::PlatformSecretAdmin).await?;
        self.start_rotation(ctx, scope, name, None).await
    }

    /// Starts a rotation; `due`: a scheduled one, due at that `next_rotation_at` (it
    /// moves the schedule on, and is refused when another replica started it first).
    pub(crate) async fn start_rotation(
        &self,
        ctx: &OpContext,
        scope: Option<&str>,
        name: &str,
        due: Option<Timestamp>,
    ) -> Result<RotationStarted> {
        let rec = self.store().secrets().secret_get(scope, name).await?;
        if rec.deleted_at.is_some() {
            return Err(deleted_error(&rec));
        }
        let spec = spec_of(&rec);
        if rec.generator.is_none() && !matches!(spec.target(), RotationTarget::Postgres { .. }) {
            return Err(invalid(format!(
                "secret {name:?} has no generator to make the new value with: put it once with generate"
            )));
        }
        // A rotation whose execution ended without ending the rotation is taken over.
        let takeover = match &rec.rotation_execution_id {
            Some(id) => match self.engine.workflows().execution_get(id).await {
                Ok(e) if e.status == tenancy_store::status::RUNNING => None,
                Ok(_) | Err(Error::NotFound { .. }) => Some(id.clone()),
                Err(e) => return Err(e),
            },
            None => None,
        };
        let now = Timestamp::now();
        let next = match due {
            Some(_) => Some(next_rotation(&spec, now)?),
            None => None,
        };
        let sm = self.builtin_machine(ROTATE_MACHINE).await?;
        let input = json!({
            "tenant_id": scope,
            "name": name,
            "scheduled": due.is_some(),
            "started_by": crate::tenants::lifecycle::started_by(ctx),
        });
        let execution = self.engine.prepare_start(&sm, None, input, scope.map(str::to_owned)).await?;
        let execution_id = execution.id.clone();
        let last = LastRotation {
            status: "running".into(),
            execution_id: execution_id.clone(),
            version: None,
            error: None,
            at: now,
        };
        let audit = ctx.audit(
            "secret.rotate",
            target(scope, name),
            scope,
            json!({"execution_id": execution_id, "scheduled": due.is_some(), "took_over": takeover}),
        );
        let fx = Effects::none().with_audit(audit).with_execution(execution);
        let start = RotationStart {
            execution_id: execution_id.clone(),
            takeover,
            due,
            next_rotation_at: next,
            last_rotation: serde_json::to_string(&last).map_err(Error::internal)?,
        };
        self.store().secrets().secret_rotation_start(scope, name, &start, &fx).await?;
        self.engine.notify();
        Ok(RotationStarted {
            execution_id,
            name: name.to_owned(),
            tenant_id: scope.map(str::to_owned),
            status: "running".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_and_advance() {
        let spec = |every: Option<&str>, cron: Option<&str>| RotationSpec {
            every: every.map(str::to_owned),
            cron: cron.map(str::to_owned),
            target: None,
        };
        let t0 = Timestamp(1_700_000_000_000);
        assert_eq!(next_rotation(&spec(Some("30d"), None), t0).unwrap(), Some(t0.plus_millis(30 * 86_400_000)));
        assert_eq!(next_rotation(&spec(None, None), t0).unwrap(), None);
        // 2023-11-14T22:13:20Z: the next 03:00 is on the 15th.
        let next = next_rotation(&spec(None, Some("0 3 * * *")), t0).unwrap().unwrap();
        assert_eq!(next.to_rfc3339(), "2023-11-15T03:00:00.000Z");
        for bad in ["1m", "59m", "1001d", "soon"] {
            assert_eq!(parse_every(bad).unwrap_err().code(), ErrorCode::InvalidRotation, "{bad}");
        }
        assert_eq!(parse_cron("61 * * * *").unwrap_err().code(), ErrorCode::InvalidRotation);
        parse_every("1h").unwrap();
        parse_every("1000d").unwrap();
    }
}
