//! Provisioning hooks: product services the lifecycle workflows call, with the tenant
//! and an idempotency key, before a tenant becomes active.
//!
//! The provisioning workflow runs `tenancy:hooks.call` with `{event: "provision",
//! tenant_id}` after its own resources exist: every `sync` hook subscribed to the event
//! gets `POST <url>` with `{event, tenant, execution_id, idempotency_key}`, an
//! `Idempotency-Key` header (stable across retries and restarts) and Standard Webhooks
//! signature headers (`webhook-id` is the same key; the hook's `whsec_` secret was shown
//! once, when the hook was created), in name order. A 2xx within `timeout_s` is success;
//! anything else is retried (up to `max_attempts`, with a short backoff). A hook that
//! finally fails fails the task: the workflow undoes what it created and marks the
//! tenant `failed` (`TenantProvisioningFailed` with the step and the error).
//!
//! `callback` hooks and queue hooks come next, one by one
//! (`tenancy:hooks.notify.waitForTaskToken`): a callback hook gets the same signed POST
//! plus the task token, a queue hook a message on its queue; either answers through
//! `POST /v1/task-tokens/{token}/success|failure`.

use serde_json::json;
use tenancy_domain::hook::{Hook, HookSpec};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_events::webhook::WebhookSecret;
use tenancy_store::{Effects, HookSecretWrite};

use crate::context::Permission as P;
use crate::hooks::tasks::secret_owner;
use crate::{App, OpContext};

pub use tenancy_domain::api::HookWithSecret;

/// How long the secret before a rotation keeps signing hook calls (as for subscriptions).
pub const ROTATION_OVERLAP_MS: i64 = crate::subscriptions::ops::ROTATION_OVERLAP_MS;

impl App {
    /// Creates or replaces a hook. A new HTTP hook gets a `whsec_` signing secret,
    /// returned this once; a replace keeps it (an HTTP hook created before hooks were
    /// signed gets its first one here), `rotate_secret` replaces it.
    pub async fn hook_put(&self, ctx: &OpContext, name: &str, spec: HookSpec) -> Result<(HookWithSecret, bool)> {
        ctx.authorize(P::HookAdmin)?;
        let rotate = spec.rotate_secret;
        let now = Timestamp::now();
        let hook = spec.into_hook(name, now)?;
        if let Some(queue) = &hook.queue {
            if rotate {
                return Err(Error::InvalidRequest {
                    code: ErrorCode::InvalidHook,
                    message: "a queue hook has no signing secret to rotate (its messages stay inside Tenancy)".into(),
                });
            }
            self.queue_must_exist(queue).await?;
        }
        if let Some(conn) = &hook.connection {
            self.connection_must_exist(conn).await?;
        }
        let secret = WebhookSecret::generate().expose();
        let write = match (&hook.url, rotate) {
            (None, _) => HookSecretWrite::Keep,
            (Some(_), false) => HookSecretWrite::IfNone(self.secret_box()?.seal(&secret_owner(name), &secret)),
            (Some(_), true) => HookSecretWrite::Rotate {
                sealed: self.secret_box()?.seal(&secret_owner(name), &secret),
                previous_until: now.plus_millis(ROTATION_OVERLAP_MS),
            },
        };
        let audit = ctx.audit(
            "hook.put",
            format!("hook/{name}"),
            None,
            json!({"url": hook.url, "queue": hook.queue, "events": hook.events, "mode": hook.mode,
                   "rotate_secret": rotate, "connection": hook.connection}),
        );
        let put = self.store().hooks().hook_put(&hook, &write, &Effects::none().with_audit(audit)).await?;
        let secret = put.secret_stored.then_some(secret);
        Ok((HookWithSecret { hook: put.hook, secret }, put.created))
    }

    pub async fn hook_get(&self, ctx: &OpContext, name: &str) -> Result<Hook> {
        ctx.authorize(P::HookRead)?;
        self.store().hooks().hook_get(name).await
    }

    pub async fn hook_list(&self, ctx: &OpContext) -> Result<Vec<Hook>> {
        ctx.authorize(P::HookRead)?;
        self.store().hooks().hook_list().await
    }

    pub async fn hook_delete(&self, ctx: &OpContext, name: &str) -> Result<()> {
        ctx.authorize(P::HookAdmin)?;
        let audit = ctx.audit("hook.delete", format!("hook/{name}"), None, json!({}));
        self.store().hooks().hook_delete(name, &Effects::none().with_audit(audit)).await
    }
}
