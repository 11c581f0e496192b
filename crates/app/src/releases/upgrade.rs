//! Tenants on releases: pin and unpin, and the per-tenant upgrade.
//!
//! `POST /v1/tenants/{id}/upgrade` `{version, force?}` checks, in this order: the
//! release exists (400 `invalid-release`), the tenant is not pinned (409
//! `tenant-pinned` unless `force`), is `active` (409 `invalid-transition`: an upgrade
//! already running leaves it `updating`) and not already on the release (409
//! `invalid-transition`). Then, in one transaction, the tenant goes `updating`, its
//! lifecycle execution becomes the upgrade's, and `TenantUpgradeStarted` and the audit
//! entry `tenant.upgrade` commit with the execution's start.
//!
//! # The hook for rollouts
//!
//! [`App::start_tenant_upgrade`] is what a rollout (issue 16, items 3-5) calls for each
//! tenant: it starts one tenant's upgrade as its own lifecycle execution and returns the
//! tenant with the execution's id. The rollout waits for it by the execution's status
//! (`SUCCEEDED`: the tenant is on the release; `FAILED` with `Tenancy.UpgradeFailed`:
//! rolled back, `TenantUpgradeFailed` names the step), e.g. through
//! [`tenancy_engine::Engine::subscribe_finished`] or a Wait/poll loop. The refusals
//! above are the rollout's "skipped" reasons (`tenant-pinned`, `invalid-transition`).

use serde_json::json;
use tenancy_domain::api::TenantOperation;
use tenancy_domain::event::names;
use tenancy_domain::release::{self, PinRequest, Release, UpgradeRequest};
use tenancy_domain::tenant::{Tenant, Transition};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_store::{Effects, StateMachineRecord};

use crate::context::Permission as P;
use crate::tenants::lifecycle::{self, tenant_event};
use crate::{App, OpContext};

impl App {
    /// The release a new tenant starts on: the fleet's default, if there is one.
    pub(crate) async fn default_release(&self) -> Result<Option<String>> {
        Ok(self.store.releases().release_default().await?.map(|r| r.version))
    }

    /// Pins a tenant to its release (a repeated pin replaces the reason).
    pub async fn tenant_pin(&self, ctx: &OpContext, id: &str, req: PinRequest) -> Result<Tenant> {
        ctx.authorize_tenant(P::TenantAdmin, id)?;
        let pin = req.into_pin(Timestamp::now())?;
        self.tenant_modify(id, None, |t| {
            t.pinned = Some(pin.clone());
            let mut next = t.clone();
            next.version += 1;
            let extra = json!({"reason": pin.reason});
            Ok(Effects::none()
                .with_event(tenant_event(names::TENANT_PINNED, &next, &["pinned"], extra.clone()))
                .with_audit(ctx.audit("tenant.pin", format!("tenant/{}", t.id), Some(&t.id), extra)))
        })
        .await
    }

    /// Unpins a tenant (unpinning one that is not pinned changes nothing).
    pub async fn tenant_unpin(&self, ctx: &OpContext, id: &str) -> Result<Tenant> {
        ctx.authorize_tenant(P::TenantAdmin, id)?;
        let current = self.store.tenant_get(id).await?;
        if current.pinned.is_none() {
            return Ok(current);
        }
        self.tenant_modify(id, None, |t| {
            let was = t.pinned.take();
            let mut next = t.clone();
            next.version += 1;
            let extra = json!({"previous_reason": was.map(|p| p.reason)});
            Ok(Effects::none()
                .with_event(tenant_event(names::TENANT_UNPINNED, &next, &["pinned"], extra.clone()))
                .with_audit(ctx.audit("tenant.unpin", format!("tenant/{}", t.id), Some(&t.id), extra)))
        })
        .await
    }

    /// `POST /v1/tenants/{id}/upgrade`: [`App::start_tenant_upgrade`].
    pub async fn tenant_upgrade(&self, ctx: &OpContext, id: &str, req: UpgradeRequest) -> Result<TenantOperation> {
        self.start_tenant_upgrade(ctx, id, &req.version, req.force).await
    }

    /// Starts upgrading tenant `id` to release `version` (see the module docs): the
    /// tenant, now `updating`, and the upgrade's execution id.
    pub async fn start_tenant_upgrade(
        &self,
        ctx: &OpContext,
        id: &str,
        version: &str,
        force: bool,
    ) -> Result<TenantOperation> {
        ctx.authorize_tenant(P::TenantAdmin, id)?;
        release::validate_version(version)?;
        let target = match self.store.releases().release_get(version).await {
            Ok(r) => r,
            Err(Error::NotFound { .. }) => {
                return Err(Error::InvalidRequest {
                    code: ErrorCode::InvalidRelease,
                    message: format!("release {version:?} does not exist: PUT /v1/releases/{version} first"),
                })
            }
            Err(e) => return Err(e),
        };
        let current = self.store.tenant_get(id).await?;
        check_upgradable(&current, &target, force)?;
        let machine = self.upgrade_machine(&target).await?;
        let input = json!({
            "tenant_id": id,
            "upgrade": {
                "release": target.version,
                "previous_release": current.release,
                "bundle": target.bundle,
            },
            "force": force,
            "rollback_error": null,
            "started_by": lifecycle::started_by(ctx),
        });
        let job = self.engine.prepare_start(&machine, None, input, Some(id.to_owned())).await?;
        lifecycle::refuse_ended_at_start(&job)?;
        let tenant = self
            .tenant_modify(id, None, |tenant| {
                // Checked again on the tenant as read for this attempt.
                check_upgradable(tenant, &target, force)?;
                let from = tenant.transition(Transition::Upgrade)?;
                tenant.lifecycle_execution_id = Some(job.id.clone());
                let mut next = tenant.clone();
                next.version += 1;
                let extra = json!({
                    "previous_status": from,
                    "execution_id": job.id,
                    "target_release": target.version,
                    "state_machine": machine.name,
                });
                let detail = json!({
                    "from": tenant.release,
                    "to": target.version,
                    "force": force,
                    "pinned": tenant.pinned.as_ref().map(|p| &p.reason),
                    "execution_id": job.id,
                });
                Ok(Effects::none()
                    .with_event(tenant_event(names::TENANT_UPGRADE_STARTED, &next, &["status"], extra))
                    .with_audit(ctx.audit("tenant.upgrade", format!("tenant/{}", tenant.id), Some(&tenant.id), detail))
                    .with_execution(job.clone()))
            })
            .await?;
        self.engine.notify();
        Ok(TenantOperation { tenant, execution_id: Some(job.id) })
    }

    /// The state machine that upgrades a tenant to `target`: its own, or the built-in.
    async fn upgrade_machine(&self, target: &Release) -> Result<StateMachineRecord> {
        match &target.upgrade_workflow {
            Some(name) => match self.engine.workflows().state_machine_get(name, None).await {
                Ok(m) => Ok(m),
                Err(Error::NotFound { .. }) => Err(Error::InvalidRequest {
                    code: ErrorCode::UnknownStateMachine,
                    message: format!(
                        "release {:?} names upgrade_workflow {name:?}, which no longer exists",
                        target.version
                    ),
                }),
                Err(e) => Err(e),
            },
            None => self.builtin_machine(lifecycle::UPGRADE_MACHINE).await,
        }
    }
}

/// The refusals of an upgrade that depend on the tenant.
fn check_upgradable(t: &Tenant, target: &Release, force: bool) -> Result<()> {
    if let (Some(pin), false) = (&t.pinned, force) {
        return Err(Error::Conflict {
            code: ErrorCode::TenantPinned,
            message: format!(
                "tenant {:?} is pinned to its release ({:?}); send force: true to upgrade it anyway",
                t.id, pin.reason
            ),
        });
    }
    t.ensure_mutable()?;
    t.status.apply(Transition::Upgrade)?;
    if t.release.as_deref() == Some(target.version.as_str()) {
        return Err(Error::Conflict {
            code: ErrorCode::InvalidTransition,
            message: format!("tenant {:?} is already on release {:?}", t.id, target.version),
        });
    }
    Ok(())
}
