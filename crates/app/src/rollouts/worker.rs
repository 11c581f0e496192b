//! [`RolloutWorker`]: the loop that drives rollouts (see the module docs of
//! [`crate::rollouts`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use tenancy_domain::event::names;
use tenancy_domain::page::PageRequest;
use tenancy_domain::rollout::{status, tenant_state as S, Rollout, RolloutTenant, SkippedTenant, Target};
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
        // While this replica drives a rollout, an execution finishing on it (one of the
        // rollout's upgrades, likely) starts the next pass at once instead of after
        // `interval`: the upgrades' pace, not the poll's, sets the rollout's.
        let mut finished = self.app.engine.subscribe_finished();
        loop {
            let driving = match self.app.rollouts_pass(&self.owner).await {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::warn!(error = %e, "rollout pass failed");
                    false
                }
            };
            let sleep = tokio::time::sleep(self.interval);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = notify.notified() => break,
                    _ = &mut sleep => break,
                    got = finished.recv() => match got {
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) if driving => break,
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            finished = self.app.engine.subscribe_finished();
                            sleep.as_mut().await;
                            break;
                        }
                    },
                }
            }
        }
    }
}

fn now_ms() -> i64 {
    Timestamp::now().millis()
}

impl App {
    /// One pass: lease the active rollouts and advance each; how many it leased.
    pub async fn rollouts_pass(&self, owner: &str) -> Result<usize> {
        let now = now_ms();
        let ids = self.store.rollouts().rollout_lease(owner, now, now + LEASE.as_millis() as i64).await?;
        let leased = ids.len();
        for id in ids {
            match self.rollout_advance(&id).await {
                Ok(()) | Err(Error::PreconditionFailed { .. }) => {}
                Err(e) => tracing::warn!(rollout = %id, error = %e, "failed to advance a rollout"),
            }
        }
        Ok(leased)
    }

    /// Saves `r` as the next revision of `saved` (the record as stored) with `fx`:
    /// only its tenants that differ from `saved`'s are written. `saved` is then `r`.
    async fn rollout_commit(&self, saved: &mut Rollout, r: &mut Rollout, fx: Effects) -> Result<()> {
        r.rev = saved.rev + 1;
        r.updated_at = Timestamp::now();
        r.refresh();
        let changed = r.changed_tenants(saved);
        self.store.rollouts().rollout_save(r, &changed, &fx).await?;
        // `saved` becomes `r` without cloning the tenants that did not change.
        let mut next = r.without_tenants();
        for (w, old) in next.waves.iter_mut().zip(saved.waves.iter_mut()) {
            w.tenants = std::mem::take(&mut old.tenants);
        }
        for &(wi, ti) in &changed {
            next.waves[wi].tenants[ti] = r.waves[wi].tenants[ti].clone();
        }
        *saved = next;
        Ok(())
    }

    /// Advances one rollout: polls its upgrades, ends or halts its wave, starts the
    /// next upgrades. Every change is saved with a compare-and-set (a lost race is 412:
    /// the next pass starts over from the stored record).
    ///
    /// The record is kept in memory between passes (`App::rollouts_kept`): a pass reads
    /// the stored revision only, and the whole record when another writer (an
    /// operator's pause, another replica) moved it, or after a failed pass.
    pub async fn rollout_advance(&self, id: &str) -> Result<()> {
        let kept = self.rollouts_kept.lock().expect("rollouts_kept lock").remove(id);
        let mut saved = match kept {
            Some(k) => match self.store.rollouts().rollout_get_changed(id, k.rev).await? {
                Some(fresh) => fresh,
                None => k,
            },
            None => self.store.rollouts().rollout_get(id).await?,
        };
        if !status::is_active(&saved.status) {
            return Ok(());
        }
        self.rollout_advance_from(&mut saved).await?;
        if status::is_active(&saved.status) {
            self.rollouts_kept.lock().expect("rollouts_kept lock").insert(id.to_owned(), saved);
        }
        Ok(())
    }

    /// [`App::rollout_advance`] of the rollout stored as `saved` (kept up to date).
    async fn rollout_advance_from(&self, saved: &mut Rollout) -> Result<()> {
        let mut r = saved.clone();
        // 1. What became of the upgrades and rollbacks in flight, in every wave.
        // Read side by side: a 10,000-tenant rollout has hundreds in flight.
        let target = Goal::of(&r);
        let in_flight: Vec<(usize, usize)> = r
            .waves
            .iter()
            .enumerate()
            .flat_map(|(wi, w)| w.tenants.iter().enumerate().map(move |(ti, t)| (wi, ti, t)))
            .filter(|(_, _, t)| {
                matches!(t.state.as_str(), S::STARTING | S::UPGRADING | S::ROLLBACK_STARTING | S::ROLLING_BACK)
            })
            .map(|(wi, ti, _)| (wi, ti))
            .collect();
        // The upgrades and rollbacks under way: their executions' statuses in one read;
        // only those that did not simply succeed or run on are looked at one by one.
        let ids: Vec<String> = in_flight
            .iter()
            .filter_map(|&(wi, ti)| {
                let t = &r.waves[wi].tenants[ti];
                match t.state.as_str() {
                    S::UPGRADING => t.execution_id.clone(),
                    S::ROLLING_BACK => t.rollback_execution_id.clone(),
                    _ => None,
                }
            })
            .collect();
        let statuses: HashMap<String, String> = if ids.is_empty() {
            HashMap::new()
        } else {
            self.engine.workflows().execution_statuses(&ids).await?.into_iter().collect()
        };
        let mut one_by_one = Vec::new();
        for (wi, ti) in in_flight {
            let t = &mut r.waves[wi].tenants[ti];
            let (eid, done) = match t.state.as_str() {
                S::UPGRADING => (&t.execution_id, S::SUCCEEDED),
                S::ROLLING_BACK => (&t.rollback_execution_id, S::ROLLED_BACK),
                _ => {
                    one_by_one.push((wi, ti));
                    continue;
                }
            };
            match eid.as_ref().and_then(|e| statuses.get(e)).map(String::as_str) {
                Some(exec_status::RUNNING) => {}
                Some(exec_status::SUCCEEDED) => t.state = done.into(),
                _ => one_by_one.push((wi, ti)),
            }
        }
        let polled: Vec<(usize, usize, RolloutTenant, Result<()>)> = {
            let (r, target) = (&r, &target);
            futures::stream::iter(one_by_one)
                .map(|(wi, ti)| async move {
                    let mut t = r.waves[wi].tenants[ti].clone();
                    let res = self.rollout_poll(target, &mut t).await;
                    (wi, ti, t, res)
                })
                .buffer_unordered(32)
                .collect()
                .await
        };
        for (wi, ti, t, res) in polled {
            res?;
            r.waves[wi].tenants[ti] = t;
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
                            if target.back_to(t).is_some() {
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
        if r != *saved {
            self.rollout_commit(saved, &mut r, fx).await?;
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
        let mut outside: Vec<(usize, usize)> = Vec::new();
        let now = self.clock.now();
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
                    // A tenant whose turn comes outside its maintenance window is skipped.
                    if t.maintenance_window.as_ref().is_some_and(|mw| !mw.contains(now)) {
                        outside.push((wi, ti));
                    } else {
                        picked.push((wi, ti, false));
                    }
                }
            }
        }
        for &(wi, ti) in &outside {
            let t = &mut r.waves[wi].tenants[ti];
            t.state = S::SKIPPED.into();
            t.reason = Some(format!("its turn came at {} outside its maintenance window", now.to_rfc3339()));
            r.skipped
                .push(SkippedTenant { tenant_id: t.tenant_id.clone(), reason: "outside-maintenance-window".into() });
        }
        if picked.is_empty() {
            if !outside.is_empty() {
                // Saved now; the next pass ends the wave if that was its last tenants.
                self.rollout_commit(saved, &mut r, Effects::none()).await?;
                self.rollouts_notify.notify_one();
            }
            return Ok(());
        }
        // Recorded before the starts (see "No tenant upgraded twice").
        let target = Goal::of(&r);
        let started_at = Timestamp::now();
        for &(wi, ti, back) in &picked {
            let t = &mut r.waves[wi].tenants[ti];
            t.state = if back { S::ROLLBACK_STARTING } else { S::STARTING }.into();
            t.started_at = Some(started_at);
        }
        self.rollout_commit(saved, &mut r, Effects::none()).await?;
        let ctx = OpContext::system();
        // Started side by side (their transactions group-commit), at most `room` at once.
        let starts: Vec<(usize, usize, bool, Result<crate::TenantOperation>)> = {
            let r = &r;
            let ctx = &ctx;
            let target = &target;
            futures::stream::iter(picked.iter().copied())
                .map(|(wi, ti, back)| async move {
                    let t = &r.waves[wi].tenants[ti];
                    (wi, ti, back, self.rollout_start_one(ctx, target, t, back).await)
                })
                .buffer_unordered(room.clamp(1, 64))
                .collect()
                .await
        };
        for (wi, ti, back, res) in starts {
            let t = &mut r.waves[wi].tenants[ti];
            let tenant_id = t.tenant_id.clone();
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
        self.rollout_commit(saved, &mut r, Effects::none()).await
    }

    /// Starts one tenant's move (`back`: its rollback) through the per-tenant operation:
    /// the upgrade of one tenant, or its plan change.
    async fn rollout_start_one(
        &self,
        ctx: &OpContext,
        target: &Goal,
        t: &RolloutTenant,
        back: bool,
    ) -> Result<crate::TenantOperation> {
        let to = if back { target.back_to(t).unwrap_or_default() } else { target.to().to_owned() };
        match target {
            Goal::Release(_) => self.start_tenant_upgrade(ctx, &t.tenant_id, &to, back).await,
            // A rollback returns the tenant to its plan even over that plan's quotas.
            Goal::Plan(_) => self.tenant_change_plan(ctx, &t.tenant_id, &to, back, None).await,
        }
    }

    /// Updates `t` from its upgrade's (or rollback's) execution.
    async fn rollout_poll(&self, target: &Goal, t: &mut RolloutTenant) -> Result<()> {
        match t.state.as_str() {
            S::STARTING => match self.rollout_adopt(&t.tenant_id, target, target.to(), t.started_at).await? {
                Some(eid) => {
                    t.state = S::UPGRADING.into();
                    t.execution_id = Some(eid);
                }
                None => t.state = S::PENDING.into(),
            },
            S::ROLLBACK_STARTING => {
                let prev = target.back_to(t).unwrap_or_default();
                match self.rollout_adopt(&t.tenant_id, target, &prev, t.started_at).await? {
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
                        let (step, reason) = match target {
                            Goal::Release(_) => self.upgrade_failure(&t.tenant_id, &eid).await,
                            Goal::Plan(_) => (e.output.as_ref().and_then(failed_step), None),
                        };
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
                        let reason = match target {
                            Goal::Release(_) => self.upgrade_failure(&t.tenant_id, &eid).await.1,
                            Goal::Plan(_) => None,
                        };
                        let reason = reason.unwrap_or_else(|| {
                            format!("{}: {}", e.error.unwrap_or_default(), e.cause.unwrap_or_default())
                        });
                        t.reason = Some(format!("the rollback failed: {reason}"));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The move of `tenant_id` to `to` (a release or a plan, as `target` says) started
    /// since `since`, if one did: the tenant's current lifecycle execution, when it is that.
    async fn rollout_adopt(
        &self,
        tenant_id: &str,
        target: &Goal,
        to: &str,
        since: Option<Timestamp>,
    ) -> Result<Option<String>> {
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
        let moved_to = match target {
            Goal::Release(_) => e.input["upgrade"]["release"].as_str(),
            Goal::Plan(_) => e.input["plan"].as_str().filter(|_| e.input.get("previous_plan").is_some()),
        };
        let same = moved_to == Some(to) && since.is_none_or(|s| e.started_at.millis() >= s.millis());
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
/// (plan) already, gone; for a plan change also what the one tenant's plan change
/// refuses (the plan not offered in its region or full, its usage over the plan's
/// quotas, a validate hook's no).
fn skip_reason(e: &Error) -> Option<&'static str> {
    match e {
        Error::Conflict { code: ErrorCode::TenantPinned, .. } => Some("pinned"),
        Error::Conflict { code: ErrorCode::InvalidTransition, .. } => Some("not-upgradable"),
        // The reason is the refusal's own problem code.
        Error::Conflict { code: ErrorCode::PlanUnavailable, .. } => Some(ErrorCode::PlanUnavailable.as_str()),
        Error::EntitlementViolation { .. } => Some(ErrorCode::EntitlementViolation.as_str()),
        Error::Forbidden(_) => Some("refused"),
        Error::InvalidRequest { .. } => Some("refused"),
        Error::NotFound { .. } => Some("gone"),
        _ => None,
    }
}

/// The failed step a plan change's output names (`failed_step`).
fn failed_step(output: &serde_json::Value) -> Option<String> {
    output["failed_step"].as_str().map(str::to_owned)
}

/// What a rollout moves its tenants to, owned (the record changes while it is used).
#[derive(Debug, Clone)]
pub(crate) enum Goal {
    Release(String),
    Plan(String),
}

impl Goal {
    pub(crate) fn of(r: &Rollout) -> Goal {
        match r.target() {
            Target::Release(v) => Goal::Release(v.to_owned()),
            Target::Plan(p) => Goal::Plan(p.to_owned()),
        }
    }

    fn to(&self) -> &str {
        match self {
            Goal::Release(v) | Goal::Plan(v) => v,
        }
    }

    /// Where a rollback takes `t`: the release or plan it was on, if it had one.
    fn back_to(&self, t: &RolloutTenant) -> Option<String> {
        match self {
            Goal::Release(_) => t.previous_release.clone(),
            Goal::Plan(_) => t.previous_plan.clone(),
        }
    }
}
