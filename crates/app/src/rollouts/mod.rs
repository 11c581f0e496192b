//! Rollouts (issue 16 items 3-4, docs/releases.md "Rollouts"): one release across a set
//! of tenants, in waves, driven by a store-backed worker.
//!
//! # Why a worker loop and not an ASL workflow
//!
//! A rollout is a long, operator-steered loop over hundreds of child executions
//! (pause, resume, abort at any time; per-tenant progress shown while it runs). The
//! engine has no child-execution (`.sync`) resource and its Map state has no
//! "pause"; so a rollout is a record ([`Rollout`]: its waves and each tenant's state)
//! advanced by [`RolloutWorker`]. Each pass of the worker reads the record, polls the
//! upgrades it started, starts the next ones and saves the record with a
//! compare-and-set on its revision (`rev`); the operator's pause/resume/abort use the
//! same compare-and-set, so neither loses the other's change. Replicas lease the
//! rollouts they drive (`rollout_lease`, 30 s, renewed every pass), so one replica
//! drives a rollout at a time, and another takes over when its lease runs out.
//!
//! # No tenant upgraded twice
//!
//! Before a tenant's upgrade is started the tenant is saved `starting` (with the time);
//! only then is [`App::start_tenant_upgrade`] called, and its execution id saved
//! (`upgrading`). A worker that finds a tenant `starting` (the process died between
//! the two saves, or the second save lost a race) does not start another upgrade: it
//! looks at the tenant's current lifecycle execution, and adopts it when it is an
//! upgrade to the rollout's release started since; otherwise the start never happened
//! (the upgrade's own transaction commits the tenant's execution id with its start)
//! and the tenant is pending again. The same holds for rollbacks.
//!
//! # Waves
//!
//! The canary first, then the `waves` in order, then the tenants left over. At most
//! `max_concurrency` upgrades run at once; a wave starts after the previous one ended
//! and `bake_s` passed. Once a wave's failures are over `tolerated_failure_percent` of
//! its tenants it starts no more upgrades and, those in flight ended, the rollout
//! halts (`RolloutHalted`); with
//! `rollback_failed_wave` (the default) the wave's succeeded tenants are upgraded back
//! (with force) to their previous release; a tenant without one is left and listed
//! (`not_rolled_back`). A halted rollout waits for the operator: resume goes on with
//! the next wave, abort ends it.

pub mod worker;

use std::collections::HashSet;

use serde_json::json;
use tenancy_domain::event::{names, Event};
use tenancy_domain::page::PageRequest;
use tenancy_domain::rollout::{
    plan_waves, status, tenant_state as S, MaintenanceWindow, Rollout, RolloutRequest, RolloutTenant, SkippedTenant,
    Target, Wave, WaveCounts, MAINTENANCE_WINDOW_KEY,
};
use tenancy_domain::tenant::{Tenant, TenantFilter, TenantStatus};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_store::Effects;

use crate::context::Permission as P;
use crate::{App, OpContext};

pub use worker::RolloutWorker;

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidRequest { code: ErrorCode::InvalidRollout, message: message.into() }
}

/// The event of a change to a rollout.
pub(crate) fn rollout_event(detail_type: &str, r: &Rollout, extra: serde_json::Value) -> Event {
    let mut detail = json!({"rollout_id": r.id, "status": r.status});
    match r.target() {
        Target::Release(v) => detail["release"] = json!(v),
        Target::Plan(p) => detail["plan"] = json!(p),
    }
    if let (Some(d), serde_json::Value::Object(extra)) = (detail.as_object_mut(), extra) {
        d.extend(extra);
    }
    Event::new(detail_type, None, vec![format!("rollout/{}", r.id)], detail)
}

fn status_name(s: TenantStatus) -> String {
    serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

impl App {
    /// `POST /v1/rollouts`: resolves the tenants, plans the waves and records the
    /// rollout (running) holding its tenants, with `RolloutStarted` and the audit entry.
    pub async fn rollout_start(&self, ctx: &OpContext, req: RolloutRequest) -> Result<Rollout> {
        ctx.authorize(P::ReleaseAdmin)?;
        let target = req.target()?;
        let sizes = req.strategy.validate()?;
        req.selector.validate()?;
        match target {
            Target::Release(release) => {
                tenancy_domain::release::validate_version(release)?;
                match self.store.releases().release_get(release).await {
                    Ok(_) => {}
                    Err(Error::NotFound { .. }) => {
                        return Err(Error::InvalidRequest {
                            code: ErrorCode::InvalidRelease,
                            message: format!("release {release:?} does not exist"),
                        })
                    }
                    Err(e) => return Err(e),
                }
            }
            Target::Plan(plan) => {
                // Moving tenants between plans is also each tenant's plan change.
                ctx.authorize(P::PlanChange)?;
                match self.store.plan_get(plan).await {
                    Ok(_) => {}
                    Err(Error::NotFound { .. }) => {
                        return Err(Error::InvalidRequest {
                            code: ErrorCode::UnknownPlan,
                            message: format!("plan {plan:?} does not exist"),
                        })
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let (chosen, skipped) = self.rollout_resolve(&req).await?;
        let tenants: Vec<RolloutTenant> = chosen
            .into_iter()
            .map(|(t, window)| RolloutTenant {
                previous_plan: matches!(target, Target::Plan(_)).then(|| t.plan.clone()),
                maintenance_window: window,
                tenant_id: t.id,
                previous_release: t.release,
                state: S::PENDING.into(),
                execution_id: None,
                started_at: None,
                rollback_execution_id: None,
                step: None,
                reason: None,
            })
            .collect();
        let count = tenants.len();
        let waves: Vec<Wave> = plan_waves(tenants, req.strategy.canary, &sizes)
            .into_iter()
            .enumerate()
            .map(|(i, (name, tenants))| Wave {
                name,
                status: if i == 0 { "running".into() } else { "pending".into() },
                counts: WaveCounts::default(),
                tenants,
            })
            .collect();
        let now = Timestamp::now();
        let mut r = Rollout {
            id: tenancy_domain::ids::new_id("rol"),
            release: req.release.clone(),
            plan: req.plan.clone(),
            // A rollout without a tenant to upgrade has nothing to do: it completes at once.
            status: if waves.is_empty() { status::COMPLETED } else { status::RUNNING }.into(),
            selector: req.selector.clone(),
            strategy: req.strategy.clone(),
            current_wave: 0,
            bake_until: None,
            halted_reason: None,
            waves,
            failed: Vec::new(),
            skipped,
            not_rolled_back: Vec::new(),
            started_by: ctx.principal.key_id.clone(),
            created_at: now,
            updated_at: now,
            rev: 1,
        };
        r.refresh();
        let sizes: Vec<usize> = r.waves.iter().map(|w| w.tenants.len()).collect();
        let detail = json!({
            "release": r.release,
            "plan": r.plan,
            "selector": r.selector,
            "strategy": r.strategy,
            "tenants": count,
            "waves": sizes,
            "skipped": r.skipped.len(),
        });
        let mut fx = Effects::none()
            .with_event(rollout_event(names::ROLLOUT_STARTED, &r, json!({"tenants": count, "waves": sizes})))
            .with_audit(ctx.audit("rollout.start", format!("rollout/{}", r.id), None, detail));
        if r.status == status::COMPLETED {
            fx = fx.with_event(rollout_event(names::ROLLOUT_COMPLETED, &r, json!({"tenants": 0, "failed": 0})));
        }
        self.store.rollouts().rollout_insert(&r, &fx).await?;
        self.rollouts_notify.notify_one();
        Ok(r)
    }

    /// The tenants a rollout moves (in id order, each with its maintenance window) and
    /// those it skips.
    async fn rollout_resolve(
        &self,
        req: &RolloutRequest,
    ) -> Result<(Vec<(Tenant, Option<MaintenanceWindow>)>, Vec<SkippedTenant>)> {
        let target = req.target()?;
        let sel = &req.selector;
        let mut all = Vec::new();
        if sel.tenant_ids.is_empty() {
            let mut after = None;
            loop {
                let page = PageRequest::new(Some(tenancy_domain::page::MAX_LIMIT), after)?;
                let got = self.store.tenant_list(&TenantFilter::default(), &page).await?;
                all.extend(got.items);
                match got.next_cursor {
                    Some(c) => after = Some(c),
                    None => break,
                }
            }
        } else {
            let mut seen = HashSet::new();
            for id in &sel.tenant_ids {
                if !seen.insert(id.clone()) {
                    continue;
                }
                match self.store.tenant_get(id).await {
                    Ok(t) => all.push(t),
                    Err(Error::NotFound { .. }) => return Err(invalid(format!("tenant {id:?} does not exist"))),
                    Err(e) => return Err(e),
                }
            }
        }
        all.sort_by(|a, b| a.id.cmp(&b.id));
        let (mut chosen, mut skipped) = (Vec::new(), Vec::new());
        for t in all {
            let st = status_name(t.status);
            let selected = (sel.plans.is_empty() || sel.plans.contains(&t.plan))
                && (sel.regions.is_empty() || sel.regions.contains(&t.region))
                && (if sel.statuses.is_empty() {
                    !matches!(t.status, TenantStatus::Offboarded | TenantStatus::Offboarding)
                } else {
                    sel.statuses.contains(&st)
                });
            let there = match target {
                Target::Release(release) => t.release.as_deref() == Some(release),
                Target::Plan(plan) => t.plan == plan,
            };
            if !selected || there {
                continue;
            }
            // A tenant's own window (its metadata's), else the strategy's.
            let window = match t.metadata.get(MAINTENANCE_WINDOW_KEY) {
                Some(v) => match serde_json::from_value::<MaintenanceWindow>(v.clone()) {
                    Ok(w) if w.validate().is_ok() => Some(w),
                    _ => {
                        skipped.push(SkippedTenant { tenant_id: t.id, reason: "invalid-maintenance-window".into() });
                        continue;
                    }
                },
                None => req.strategy.maintenance_window.clone(),
            };
            // A pinned tenant is left alone by every rollout, of a release or a plan.
            if t.pinned.is_some() {
                skipped.push(SkippedTenant { tenant_id: t.id, reason: "pinned".into() });
            } else if t.status != TenantStatus::Active {
                skipped.push(SkippedTenant { tenant_id: t.id, reason: format!("not-active ({st})") });
            } else {
                chosen.push((t, window));
            }
        }
        Ok((chosen, skipped))
    }

    pub async fn rollout_get(&self, ctx: &OpContext, id: &str) -> Result<Rollout> {
        ctx.authorize(P::ReleaseRead)?;
        self.store.rollouts().rollout_get(id).await
    }

    pub async fn rollout_list(&self, ctx: &OpContext) -> Result<Vec<Rollout>> {
        ctx.authorize(P::ReleaseRead)?;
        self.store.rollouts().rollout_list().await
    }

    /// Pause (`running` to `paused`): no new upgrades start; running ones finish.
    pub async fn rollout_pause(&self, ctx: &OpContext, id: &str) -> Result<Rollout> {
        self.rollout_operate(ctx, id, "pause").await
    }

    /// Resume (`paused` or `halted` to `running`); a halted rollout goes on with the
    /// wave after the one that halted it.
    pub async fn rollout_resume(&self, ctx: &OpContext, id: &str) -> Result<Rollout> {
        self.rollout_operate(ctx, id, "resume").await
    }

    /// Abort: terminal, no new upgrades (running ones finish); its tenants are free for
    /// another rollout.
    pub async fn rollout_abort(&self, ctx: &OpContext, id: &str) -> Result<Rollout> {
        self.rollout_operate(ctx, id, "abort").await
    }

    async fn rollout_operate(&self, ctx: &OpContext, id: &str, op: &str) -> Result<Rollout> {
        ctx.authorize(P::ReleaseAdmin)?;
        for _ in 0..20 {
            let stored = self.store.rollouts().rollout_get(id).await?;
            let mut r = stored.clone();
            let from = r.status.clone();
            let refuse = || Error::Conflict {
                code: ErrorCode::InvalidTransition,
                message: format!("rollout {id:?} is {from}: it cannot {op}"),
            };
            let mut events = Vec::new();
            match op {
                "pause" if from == status::RUNNING => {
                    r.status = status::PAUSED.into();
                    events.push(names::ROLLOUT_PAUSED);
                }
                "resume" if from == status::PAUSED => {
                    r.status = status::RUNNING.into();
                    events.push(names::ROLLOUT_RESUMED);
                }
                "resume" if from == status::HALTED => {
                    r.status = status::RUNNING.into();
                    r.halted_reason = None;
                    events.push(names::ROLLOUT_RESUMED);
                    // The halted wave's tenants that never started stay where they are.
                    if let Some(w) = r.waves.get_mut(r.current_wave) {
                        for t in w.tenants.iter_mut().filter(|t| t.state == S::PENDING) {
                            t.state = S::SKIPPED.into();
                            t.reason = Some("its wave halted before its turn".into());
                            r.skipped
                                .push(SkippedTenant { tenant_id: t.tenant_id.clone(), reason: "halted-wave".into() });
                        }
                    }
                    r.current_wave += 1;
                    if r.current_wave >= r.waves.len() {
                        r.status = status::COMPLETED.into();
                        events.push(names::ROLLOUT_COMPLETED);
                    } else {
                        let bake = r.strategy.bake_s.unwrap_or(0);
                        r.bake_until = (bake > 0).then(|| Timestamp(Timestamp::now().millis() + bake as i64 * 1000));
                        r.waves[r.current_wave].status = "running".into();
                    }
                }
                "abort" if status::is_active(&from) => {
                    r.status = status::ABORTED.into();
                    events.push(names::ROLLOUT_ABORTED);
                }
                _ => return Err(refuse()),
            }
            r.rev += 1;
            r.updated_at = Timestamp::now();
            r.refresh();
            let mut fx = Effects::none().with_audit(ctx.audit(
                &format!("rollout.{op}"),
                format!("rollout/{id}"),
                None,
                json!({"from": from, "to": r.status}),
            ));
            for e in events {
                fx = fx.with_event(rollout_event(e, &r, json!({"previous_status": from})));
            }
            let changed = r.changed_tenants(&stored);
            match self.store.rollouts().rollout_save(&r, &changed, &fx).await {
                Ok(()) => {
                    self.rollouts_notify.notify_one();
                    return Ok(r);
                }
                Err(Error::PreconditionFailed { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Unavailable(format!("rollout {id:?} kept changing; try again")))
    }
}

/// Whether a wave's tenant is done (nothing more will happen to it in this wave).
fn settled(t: &RolloutTenant) -> bool {
    matches!(t.state.as_str(), S::SUCCEEDED | S::FAILED | S::SKIPPED)
}
