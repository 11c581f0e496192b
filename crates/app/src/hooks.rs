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

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::json;
use tenancy_asl::Failure;
use tenancy_domain::hook::{Hook, HookEvent, HookMode, HookSpec};
use tenancy_domain::queue::SendMessage;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_events::webhook::{self, WebhookSecret};
use tenancy_store::{Effects, HookSecretWrite, Store};

use crate::context::Permission as P;
use crate::engine::handlers::{app_failure, failure, TaskCall, TaskHandler, TaskOutput, TaskResult};
use crate::outbound::OutboundPolicy;
use crate::secretbox::SecretBox;
use crate::{App, OpContext};

/// How long the secret before a rotation keeps signing hook calls (as for subscriptions).
pub const ROTATION_OVERLAP_MS: i64 = crate::subscriptions::ROTATION_OVERLAP_MS;

pub use tenancy_domain::api::{HookWithSecret, TenantResourceView, TenantResources};

/// The associated data a hook's secret is sealed with.
fn secret_owner(name: &str) -> String {
    format!("hook/{name}")
}

fn fail_hook(hook: &str, e: impl std::fmt::Display) -> Failure {
    Failure { error: Some("Tenancy.HookFailed".into()), cause: Some(format!("hook {hook:?} failed: {e}")) }
}

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
                   "rotate_secret": rotate}),
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

pub const CALL_RESOURCE: &str = "tenancy:hooks.call";
pub const LIST_RESOURCE: &str = "tenancy:hooks.list";
pub const NOTIFY_RESOURCE: &str = "tenancy:hooks.notify";

/// The master key's box, shared with the app (set when `serve` sets it): hook calls
/// open their hooks' signing secrets with it.
pub type SecretCell = Arc<OnceLock<Arc<SecretBox>>>;

/// `tenancy:hooks.call` `{event, tenant_id}`: calls every `sync` hook of `event`; a
/// hook that finally fails is `Tenancy.HookFailed`. Result `{called: [names], count,
/// hooks: [the callback and queue hooks of the event], cursor: {i: 0}}`: the workflow
/// notifies those next, one by one.
pub struct CallHooks {
    client: reqwest::Client,
    policy: Arc<OutboundPolicy>,
    secrets: SecretCell,
}

impl CallHooks {
    /// Hooks under `policy`, signed with the secrets `secrets` opens (unsigned while it
    /// is empty: an embedded app without a master key).
    pub fn new(policy: Arc<OutboundPolicy>, secrets: SecretCell) -> Self {
        CallHooks { client: crate::delivery::http_client(&policy), policy, secrets }
    }

    /// The secrets a call of `hook` is signed with: its current one (generated now for a
    /// hook created before hooks were signed) and the previous one during a rotation.
    async fn signing_secrets(&self, store: &dyn Store, hook: &str) -> std::result::Result<Vec<WebhookSecret>, Failure> {
        let Some(sb) = self.secrets.get() else { return Ok(Vec::new()) };
        let owner = secret_owner(hook);
        let stored = store.hooks().hook_secrets(hook).await.map_err(app_failure)?;
        let current = match stored.current {
            Some(sealed) => sealed,
            None => {
                let fresh = sb.seal(&owner, &WebhookSecret::generate().expose());
                store.hooks().hook_secret_init(hook, &fresh).await.map_err(app_failure)?
            }
        };
        let now = Timestamp::now();
        let previous = stored.previous.filter(|_| stored.previous_expires_at.is_some_and(|t| t > now));
        let mut out = Vec::new();
        for sealed in std::iter::once(current).chain(previous) {
            let text = sb.open(&owner, &sealed).map_err(app_failure)?;
            out.push(WebhookSecret::parse(&text).map_err(|e| {
                failure(&format!("Tenancy.{}", ErrorCode::Internal), format!("corrupt secret of hook {hook:?}: {e}"))
            })?);
        }
        Ok(out)
    }

    /// POSTs `body` to an HTTP hook, signed (Standard Webhooks, `webhook-id` = `key`),
    /// retried up to its `max_attempts`.
    async fn call_one(
        &self,
        store: &dyn Store,
        hook: &Hook,
        body: &serde_json::Value,
        key: &str,
    ) -> std::result::Result<(), Failure> {
        let refused = || fail_hook(&hook.name, crate::outbound::REFUSED);
        let Some(Ok(url)) = hook.url.as_deref().map(reqwest::Url::parse) else { return Err(refused()) };
        if self.policy.check_url(&url).is_err() {
            return Err(refused());
        }
        let secrets = self.signing_secrets(store, &hook.name).await?;
        let body = serde_json::to_vec(body)
            .map_err(|e| failure(&format!("Tenancy.{}", ErrorCode::Internal), e.to_string()))?;
        let mut last = String::new();
        for attempt in 0..hook.max_attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt.min(5))).await;
            }
            let ts = Timestamp::now().millis() / 1000;
            let mut req = self
                .client
                .post(url.clone())
                .timeout(Duration::from_secs(match hook.mode {
                    HookMode::Sync => hook.timeout_s,
                    // The callback comes later; the notification itself is quick.
                    HookMode::Callback => hook.timeout_s.min(30),
                }))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("Idempotency-Key", key)
                .header(webhook::HEADER_ID, key)
                .header(webhook::HEADER_TIMESTAMP, ts.to_string());
            if !secrets.is_empty() {
                req = req.header(webhook::HEADER_SIGNATURE, webhook::sign_all(&secrets[..], key, ts, &body));
            }
            match req.body(body.clone()).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
                // Refused names stay refused: no point in retrying.
                Err(e) if crate::outbound::is_refused(&e) => return Err(refused()),
                // A coarse category, never the network's detail (no port-scan oracle).
                Err(e) => last = crate::outbound::describe(&e).to_owned(),
            }
        }
        Err(Failure {
            error: Some("Tenancy.HookFailed".into()),
            cause: Some(format!("hook {:?} failed after {} attempt(s): {last}", hook.name, hook.max_attempts)),
        })
    }
}

#[async_trait::async_trait]
impl TaskHandler for CallHooks {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        let p = call.parameters;
        let event = event_param(p)?;
        let tenant_id = p["tenant_id"]
            .as_str()
            .or(call.tenant_id)
            .ok_or_else(|| failure("States.Runtime", "hooks.call needs tenant_id"))?;
        let tenant = call.store.tenant_get(tenant_id).await.map_err(app_failure)?;
        let hooks = call.store.hooks().hook_list().await.map_err(app_failure)?;
        let mut called = Vec::new();
        for hook in hooks.iter().filter(|h| h.events.contains(&event) && h.mode == HookMode::Sync) {
            let key = format!("{}-{}", call.idempotency_key, hook.name);
            let body = json!({"event": event, "tenant": tenant, "execution_id": call.execution_id,
                              "idempotency_key": key});
            self.call_one(&**call.store, hook, &body, &key).await?;
            called.push(hook.name.clone());
        }
        let callback = callback_hooks(&hooks, event);
        Ok(TaskOutput::new(json!({"called": called, "count": callback.len(), "hooks": callback, "cursor": {"i": 0}})))
    }
}

impl App {
    /// The resources the lifecycle workflows created for a tenant (tenant keys: their own).
    pub async fn tenant_resources(&self, ctx: &OpContext, tenant_id: &str) -> Result<TenantResources> {
        ctx.authorize_tenant(P::TenantRead, tenant_id)?;
        self.store().tenant_get(tenant_id).await?;
        let list = self.store().workflows().tenant_resource_list(tenant_id).await?;
        let mut items = Vec::with_capacity(list.len());
        for r in list {
            let isolation = (r.kind == "database").then(|| crate::provisioning::record_isolation(&r.detail)).flatten();
            let observed = match (self.provisioner(), isolation) {
                (Some(p), Some(i)) if p.provisions(i) => {
                    Some(serde_json::to_value(p.database_observe(tenant_id, i).await?).map_err(Error::internal)?)
                }
                _ => None,
            };
            items.push(TenantResourceView { kind: r.kind, detail: r.detail, created_at: r.created_at, observed });
        }
        Ok(TenantResources { items })
    }
}

fn callback_hooks(hooks: &[Hook], event: HookEvent) -> Vec<serde_json::Value> {
    hooks
        .iter()
        .filter(|h| h.events.contains(&event) && h.mode == HookMode::Callback)
        .map(|h| {
            let mut v = json!({"name": h.name, "timeout_s": h.timeout_s, "max_attempts": h.max_attempts});
            match (&h.url, &h.queue) {
                (Some(url), _) => v["url"] = json!(url),
                (None, Some(queue)) => v["queue"] = json!(queue),
                (None, None) => {}
            }
            v
        })
        .collect()
}

fn event_param(p: &serde_json::Value) -> std::result::Result<HookEvent, Failure> {
    serde_json::from_value(p["event"].clone())
        .map_err(|e| failure("States.Runtime", format!("hooks need a valid event: {e}")))
}

/// `tenancy:hooks.list` `{event}`: the `callback` and queue hooks of `event` as `{count,
/// hooks: [{name, url | queue, timeout_s, max_attempts}]}`, for the workflow to notify
/// one by one.
pub struct ListCallbackHooks;

#[async_trait::async_trait]
impl TaskHandler for ListCallbackHooks {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        let event = event_param(call.parameters)?;
        let hooks = call.store.hooks().hook_list().await.map_err(app_failure)?;
        let list = callback_hooks(&hooks, event);
        Ok(TaskOutput::new(json!({"count": list.len(), "hooks": list})))
    }
}

/// `tenancy:hooks.notify.waitForTaskToken` `{event, hook: {name, ...}, tenant_id, token}`:
/// hands the tenant and the task token to a `callback` hook (a signed POST, retried like
/// a sync hook) or a queue hook (a message on its queue, deduplicated by the attempt's
/// key); the execution then waits until the hook calls `POST
/// /v1/task-tokens/{token}/success` (or `failure`), or the hook's `timeout_s` passes
/// (`States.Timeout`).
pub struct NotifyCallbackHook {
    calls: CallHooks,
}

impl NotifyCallbackHook {
    pub fn new(policy: Arc<OutboundPolicy>, secrets: SecretCell) -> Self {
        NotifyCallbackHook { calls: CallHooks::new(policy, secrets) }
    }
}

#[async_trait::async_trait]
impl TaskHandler for NotifyCallbackHook {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        let p = call.parameters;
        let event = event_param(p)?;
        let name =
            p["hook"]["name"].as_str().ok_or_else(|| failure("States.Runtime", "hooks.notify needs hook.name"))?;
        let token =
            p["token"].as_str().ok_or_else(|| failure("States.Runtime", "hooks.notify needs the task token"))?;
        let tenant_id = p["tenant_id"]
            .as_str()
            .or(call.tenant_id)
            .ok_or_else(|| failure("States.Runtime", "hooks.notify needs tenant_id"))?;
        let hook = call.store.hooks().hook_get(name).await.map_err(app_failure)?;
        let tenant = call.store.tenant_get(tenant_id).await.map_err(app_failure)?;
        let key = format!("{}-{}", call.idempotency_key, hook.name);
        let body = json!({"event": event, "tenant": tenant, "execution_id": call.execution_id,
                          "idempotency_key": key, "task_token": token});
        match &hook.queue {
            Some(queue) => {
                // The key as dedup id: a re-run of the attempt (after a crash) sends nothing new.
                let send = SendMessage { body, delay_s: None, group_id: None, dedup_id: Some(key.clone()) };
                let message = send.into_new().map_err(|e| fail_hook(&hook.name, e))?;
                call.store
                    .queues()
                    .message_send(queue, &[message], Timestamp::now())
                    .await
                    .map_err(|e| fail_hook(&hook.name, e))?;
            }
            None => self.calls.call_one(&**call.store, &hook, &body, &key).await?,
        }
        Ok(TaskOutput::new(json!({"notified": hook.name})))
    }
}
