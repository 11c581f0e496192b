//! [`RolloutWorker`]: the loop that drives rollouts (see the module docs of
//! [`crate::rollouts`]).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tenancy_domain::event::names;
use tenancy_domain::page::PageRequest;
use tenancy_domain::rollout::{status, tenant_state as S, Rollout, RolloutTenant, SkippedTenant};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_store::status as exec_status;
use tenancy_store::{Effects, EventFilter};
use tokio_util::sync::CancellationToken;

use super::{rollout_event, settled};
use crate::{App, OpContext};

/// How long a replica holds the rollouts it drives without renewing.
pub const LEASE: Duration = Duration::from_secs(30);

/// Drives the active rollouts this replica leases, a pass every `interval` (or sooner
/// after a rollout's change on this replica).
pub struct RolloutWorker {
    app: Arc<App>,
    owner: String,
    interval: Duration,
}

impl RolloutWorker {
    pub fn new(app: Arc<App>, owner: String, interval: Duration) -> Self {
        RolloutWorker { app, owner, interval }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let notify = self.app.rollouts_notify.clone();
        loop {
            if let Err(e) = self.app.rollouts_pass(&self.owner).await {
                tracing::warn!(error = %e, "rollout pass failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = notify.notified() => {}
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }
}

fn now_ms() -> i64 {
    Timestamp::now().millis()
}

impl App {
    /// One pass: lease the active rollouts and advance each.
    pub async fn rollouts_pass(&self, owner: &str) -> Result<()> {
        let now = now_ms();
        let ids = self.store.rollouts().rollout_lease(owner, now, now + LEASE.as_millis() as i64).await?;
        for id in ids {
            match self.rollout_advance(&id).await {
                Ok(()) | Err(Error::PreconditionFailed { .. }) => {}
                Err(e) => tracing::warn!(rollout = %id, error = %e, "failed to advance a rollout"),
            }
        }
        Ok(())
    }

    /// Saves `r` as the next revision with `fx`.
    async fn rollout_commit(&self, r: &mut Rollout, fx: Effects) -> Result<()> {
        r.rev += 1;
        r.updated_at = Timestamp::now();
        r.refresh();
        self.store.rollouts().rollout_save(r, &fx).await
    }

    /// Advances one rollout: polls its upgrades, ends or halts its wave, starts the
    /// next upgrades. Every change is saved with a compare-and-set (a lost race is 412:
    /// the next pass starts over from the stored record).
    pub async fn rollout_advance(&self, id: &str) -> Result<()> {
        let mut r = self.store.rollouts().rollout_get(id).await?;
        if !status::is_active(&r.status) {
            return Ok(());
        }
        let before = r.clone();
        // 1. What became of the upgrades and rollbacks in flight, in every wave.
        let release = r.release.clone();
        for w in &mut r.waves {
            for t in &mut w.tenants {
                self.rollout_poll(&release, t).await?;
            }
        }
        // 2. The current wave's end.
        let mut fx = Effects::none();
        let cw = r.current_wave;
        let over = r.waves.get(cw).is_some_and(|w| over_threshold(w, r.strategy.tolerated()));
        let wave_ended = r.waves.get(cw).is_some_and(|w| {
            w.tenants.iter().all(settled)
                || (over && !w.tenants.iter().any(|t| matches!(t.state.as_str(), S::STARTING | S::UPGRADING)))
        });
        if r.status == status::RUNNING && wave_ended {
            let w = &r.waves[cw];
            let failed = w.tenants.iter().filter(|t| t.state == S::FAILED).count();
            let attempted = w.tenants.iter().filter(|t| t.state != S::SKIPPED).count();
            let pct = if attempted == 0 { 0.0 } else { failed as f64 * 100.0 / attempted as f64 };
            let wave_name = w.name.clone();
            if over {
                r.status = status::HALTED.into();
                r.halted_reason = Some(format!(
                    "{failed} of {attempted} upgrades of {wave_name} failed ({pct:.1}%, tolerated {}%)",
                    r.strategy.tolerated()
                ));
                let rollback = r.strategy.rollback();
                let w = &mut r.waves[cw];
                w.status = "halted".into();
                if rollback {
                    for t in &mut w.tenants {
                        if t.state == S::SUCCEEDED {
                            if t.previous_release.is_some() {
                                t.state = S::ROLLBACK_PENDING.into();
                            } else {
                                t.state = S::NOT_ROLLED_BACK.into();
                                t.reason = Some("no previous release to go back to".into());
                            }
                        }
                    }
                }
                r.refresh();
                fx = fx.with_event(rollout_event(
                    names::ROLLOUT_HALTED,
                    &r,
                    json!({"wave": wave_name, "failed": failed, "attempted": attempted,
                           "reason": r.halted_reason, "rollback": rollback}),
                ));
            } else {
                r.waves[cw].status = "completed".into();
                r.refresh();
                fx = fx.with_event(rollout_event(
                    names::WAVE_COMPLETED,
                    &r,
                    json!({"wave": wave_name, "index": cw, "counts": r.waves[cw].counts}),
                ));
                if cw + 1 < r.waves.len() {
                    r.current_wave += 1;
                    r.waves[cw + 1].status = "running".into();
                    let bake = r.strategy.bake_s.unwrap_or(0);
                    r.bake_until = (bake > 0).then(|| Timestamp(now_ms() + bake as i64 * 1000));
                } else {
                    r.status = status::COMPLETED.into();
                    fx = fx.with_event(rollout_event(
                        names::ROLLOUT_COMPLETED,
                        &r,
                        json!({"tenants": r.tenant_ids().len(), "failed": r.failed.len()}),
                    ));
                }
            }
        }
        if r != before {
            self.rollout_commit(&mut r, fx).await?;
        }
        if r.bake_until.is_some_and(|b| b.millis() > now_ms()) {
            return Ok(());
        }
        // 3. Start what may start: rollbacks of halted waves, upgrades of the current one.
        if r.status == status::ABORTED || r.status == status::COMPLETED {
            return Ok(());
        }
        let in_flight = r
            .waves
            .iter()
            .flat_map(|w| &w.tenants)
            .filter(|t| matches!(t.state.as_str(), S::STARTING | S::UPGRADING | S::ROLLBACK_STARTING | S::ROLLING_BACK))
            .count();
        let room = r.strategy.concurrency().saturating_sub(in_flight);
        if room == 0 {
            return Ok(());
        }
        let mut picked: Vec<(usize, usize, bool)> = Vec::new();
        for (wi, w) in r.waves.iter().enumerate() {
            for (ti, t) in w.tenants.iter().enumerate() {
                if picked.len() >= room {
                    break;
                }
                if t.state == S::ROLLBACK_PENDING && w.status == "halted" {
                    picked.push((wi, ti, true));
                } else if t.state == S::PENDING
                    && wi == r.current_wave
                    && r.status == status::RUNNING
                    && !over_threshold(w, r.strategy.tolerated())
                {
                    picked.push((wi, ti, false));
                }
            }
        }
        if picked.is_empty() {
            return Ok(());
        }
        // Recorded before the starts (see "No tenant upgraded twice").
        let started_at = Timestamp::now();
        for &(wi, ti, back) in &picked {
            let t = &mut r.waves[wi].tenants[ti];
            t.state = if back { S::ROLLBACK_STARTING } else { S::STARTING }.into();
            t.started_at = Some(started_at);
        }
        self.rollout_commit(&mut r, Effects::none()).await?;
        let ctx = OpContext::system();
        for &(wi, ti, back) in &picked {
            let (tenant_id, version, force) = {
                let t = &r.waves[wi].tenants[ti];
                let v = if back { t.previous_release.clone().unwrap_or_default() } else { r.release.clone() };
                (t.tenant_id.clone(), v, back)
            };
            let res = self.start_tenant_upgrade(&ctx, &tenant_id, &version, force).await;
            let t = &mut r.waves[wi].tenants[ti];
            match (res, back) {
                (Ok(op), false) => {
                    t.state = S::UPGRADING.into();
                    t.execution_id = op.execution_id;
                }
                (Ok(op), true) => {
                    t.state = S::ROLLING_BACK.into();
                    t.rollback_execution_id = op.execution_id;
                }
                (Err(e), false) => match skip_reason(&e) {
                    Some(reason) => {
                        t.state = S::SKIPPED.into();
                        t.reason = Some(e.to_string());
                        r.skipped.push(SkippedTenant { tenant_id, reason: reason.into() });
                    }
                    None => {
                        tracing::warn!(tenant = %tenant_id, error = %e, "a rollout's upgrade did not start; retrying");
                        t.state = S::PENDING.into();
                    }
                },
                (Err(e), true) => match skip_reason(&e) {
                    Some(_) => {
                        t.state = S::NOT_ROLLED_BACK.into();
                        t.reason = Some(format!("the rollback did not start: {e}"));
                    }
                    None => {
                        tracing::warn!(tenant = %tenant_id, error = %e, "a rollout's rollback did not start; retrying");
                        t.state = S::ROLLBACK_PENDING.into();
                    }
                },
            }
        }
        self.rollout_commit(&mut r, Effects::none()).await
    }

    /// Updates `t` from its upgrade's (or rollback's) execution.
    async fn rollout_poll(&self, release: &str, t: &mut RolloutTenant) -> Result<()> {
        match t.state.as_str() {
            S::STARTING => match self.rollout_adopt(&t.tenant_id, release, t.started_at).await? {
                Some(eid) => {
                    t.state = S::UPGRADING.into();
                    t.execution_id = Some(eid);
                }
                None => t.state = S::PENDING.into(),
            },
            S::ROLLBACK_STARTING => {
                let prev = t.previous_release.clone().unwrap_or_default();
                match self.rollout_adopt(&t.tenant_id, &prev, t.started_at).await? {
                    Some(eid) => {
                        t.state = S::ROLLING_BACK.into();
                        t.rollback_execution_id = Some(eid);
                    }
                    None => t.state = S::ROLLBACK_PENDING.into(),
                }
            }
            S::UPGRADING => {
                let Some(eid) = t.execution_id.clone() else {
                    t.state = S::PENDING.into();
                    return Ok(());
                };
                let e = self.engine.workflows().execution_get(&eid).await?;
                match e.status.as_str() {
                    exec_status::RUNNING => {}
                    exec_status::SUCCEEDED => t.state = S::SUCCEEDED.into(),
                    _ => {
                        t.state = S::FAILED.into();
                        let (step, reason) = self.upgrade_failure(&t.tenant_id, &eid).await;
                        t.step = step;
                        t.reason = reason.or_else(|| {
                            Some(format!("{}: {}", e.error.unwrap_or_default(), e.cause.unwrap_or_default()))
                        });
                    }
                }
            }
            S::ROLLING_BACK => {
                let Some(eid) = t.rollback_execution_id.clone() else {
                    t.state = S::ROLLBACK_PENDING.into();
                    return Ok(());
                };
                let e = self.engine.workflows().execution_get(&eid).await?;
                match e.status.as_str() {
                    exec_status::RUNNING => {}
                    exec_status::SUCCEEDED => t.state = S::ROLLED_BACK.into(),
                    _ => {
                        t.state = S::NOT_ROLLED_BACK.into();
                        let (_, reason) = self.upgrade_failure(&t.tenant_id, &eid).await;
                        t.reason = Some(format!("the rollback failed: {}", reason.unwrap_or_default()));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The upgrade of `tenant_id` to `release` started since `since`, if one did: the
    /// tenant's current lifecycle execution, when it is that.
    async fn rollout_adopt(&self, tenant_id: &str, release: &str, since: Option<Timestamp>) -> Result<Option<String>> {
        let tenant = match self.store.tenant_get(tenant_id).await {
            Ok(t) => t,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(eid) = tenant.lifecycle_execution_id else { return Ok(None) };
        let e = match self.engine.workflows().execution_get(&eid).await {
            Ok(e) => e,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let same = e.input["upgrade"]["release"].as_str() == Some(release)
            && since.is_none_or(|s| e.started_at.millis() >= s.millis());
        Ok(same.then_some(eid))
    }

    /// The failed step and reason of `execution_id`, from its `TenantUpgradeFailed`.
    async fn upgrade_failure(&self, tenant_id: &str, execution_id: &str) -> (Option<String>, Option<String>) {
        let filter = EventFilter {
            detail_type: Some(names::TENANT_UPGRADE_FAILED.into()),
            tenant_id: Some(tenant_id.into()),
            after: None,
        };
        let Ok(page) = PageRequest::new(Some(100), None) else { return (None, None) };
        let Ok(events) = self.store.event_list(&filter, &page).await else { return (None, None) };
        let ev = events
            .items
            .iter()
            .rev()
            .find(|e| e.event.detail["execution_id"].as_str() == Some(execution_id))
            .or_else(|| events.items.last());
        match ev {
            Some(e) => {
                let d = &e.event.detail;
                (d["step"].as_str().map(str::to_owned), d["reason"].as_str().map(str::to_owned))
            }
            None => (None, None),
        }
    }
}

/// Whether a wave's failures are over the tolerated share of its tenants (those not
/// skipped): it starts no more upgrades and halts once those in flight have ended.
fn over_threshold(w: &tenancy_domain::rollout::Wave, tolerated: f64) -> bool {
    let size = w.tenants.iter().filter(|t| t.state != S::SKIPPED).count();
    let failed = w.tenants.iter().filter(|t| t.state == S::FAILED).count();
    size > 0 && failed as f64 * 100.0 / size as f64 > tolerated
}

/// A start refusal that means "leave this tenant": pinned, not active, on the release
/// already, gone.
fn skip_reason(e: &Error) -> Option<&'static str> {
    match e {
        Error::Conflict { code: ErrorCode::TenantPinned, .. } => Some("pinned"),
        Error::Conflict { code: ErrorCode::InvalidTransition, .. } => Some("not-upgradable"),
        Error::NotFound { .. } => Some("gone"),
        _ => None,
    }
}
