//! The releases API: put, get, list. Every change commits its audit entry and event
//! with it; `default: true` moves the fleet's default in the same transaction.

use serde_json::json;
use tenancy_domain::event::{names, Event};
use tenancy_domain::release::{self, Release, ReleaseSpec};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_store::Effects;

use crate::context::Permission as P;
use crate::tenants::lifecycle::LIFECYCLE_MACHINE_PREFIX;
use crate::{App, OpContext};

/// The event of a change to a release.
pub(crate) fn release_event(detail_type: &str, r: &Release, extra: serde_json::Value) -> Event {
    let mut detail = json!({
        "version": r.version,
        "default": r.default,
        "upgrade_workflow": r.upgrade_workflow,
        "bundle": r.bundle.as_ref().map(|b| json!({"sha256": b.sha256, "size": b.size})),
    });
    if let (Some(d), serde_json::Value::Object(extra)) = (detail.as_object_mut(), extra) {
        d.extend(extra);
    }
    Event::new(detail_type, None, vec![format!("release/{}", r.version)], detail)
}

impl App {
    /// Creates a release or replaces its description and upgrade workflow; whether it
    /// was created. An `upgrade_workflow` must be a lifecycle state machine
    /// (`tenancy.lifecycle.*`, 400 `invalid-release`) that exists (400
    /// `unknown-state-machine`): it runs the reserved steps that finish the upgrade.
    pub async fn release_put(&self, ctx: &OpContext, version: &str, spec: ReleaseSpec) -> Result<(Release, bool)> {
        ctx.authorize(P::ReleaseAdmin)?;
        let r = spec.into_release(version, Timestamp::now())?;
        if let Some(name) = &r.upgrade_workflow {
            if !name.starts_with(LIFECYCLE_MACHINE_PREFIX) {
                return Err(Error::InvalidRequest {
                    code: ErrorCode::InvalidRelease,
                    message: format!(
                        "upgrade_workflow {name:?} must be a lifecycle state machine named \
                         {LIFECYCLE_MACHINE_PREFIX}* (it finishes the upgrade with the reserved tenancy:tenant steps)"
                    ),
                });
            }
            match self.engine.workflows().state_machine_get(name, None).await {
                Ok(_) => {}
                Err(Error::NotFound { .. }) => {
                    return Err(Error::InvalidRequest {
                        code: ErrorCode::UnknownStateMachine,
                        message: format!(
                            "upgrade_workflow {name:?} does not exist: PUT /v1/state-machines/{name} first"
                        ),
                    })
                }
                Err(e) => return Err(e),
            }
        }
        let audit = ctx.audit(
            "release.put",
            format!("release/{version}"),
            None,
            json!({"description": r.description, "upgrade_workflow": r.upgrade_workflow, "default": r.default}),
        );
        // The event's name follows the release as read just before (two concurrent
        // first puts of one version may both say `ReleaseCreated`); it commits with
        // the write either way.
        let before = match self.store.releases().release_get(version).await {
            Ok(b) => Some(b),
            Err(Error::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let mut shown = r.clone();
        if let Some(b) = &before {
            shown.bundle = b.bundle.clone();
            shown.default = r.default || b.default;
        }
        let event = match &before {
            None => release_event(names::RELEASE_CREATED, &shown, json!({})),
            Some(b) => release_event(names::RELEASE_UPDATED, &shown, json!({"previous_default": b.default})),
        };
        let fx = Effects::none().with_audit(audit).with_event(event);
        self.store.releases().release_put(&r, &fx).await
    }

    pub async fn release_get(&self, ctx: &OpContext, version: &str) -> Result<Release> {
        ctx.authorize(P::ReleaseRead)?;
        release::validate_version(version)?;
        self.store.releases().release_get(version).await
    }

    pub async fn release_list(&self, ctx: &OpContext) -> Result<Vec<Release>> {
        ctx.authorize(P::ReleaseRead)?;
        self.store.releases().release_list().await
    }
}
