//! Provisioning hooks: product services the lifecycle workflows call, with the tenant
//! and an idempotency key, before a tenant becomes active.
//!
//! The provisioning workflow runs `tenancy:hooks.call` with `{event: "provision",
//! tenant_id}` after its own resources exist: every hook subscribed to the event gets
//! `POST <url>` with `{event, tenant, execution_id, idempotency_key}` and an
//! `Idempotency-Key` header (stable across retries and restarts), in name order. A 2xx
//! within `timeout_s` is success; anything else is retried (up to `max_attempts`, with
//! a short backoff). A hook that finally fails fails the task: the workflow undoes
//! what it created and marks the tenant `failed` (`TenantProvisioningFailed` with the
//! step and the error).

use std::time::Duration;

use serde_json::json;
use tenancy_asl::Failure;
use tenancy_domain::hook::{Hook, HookEvent, HookMode, HookSpec};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};
use tenancy_store::Effects;

use crate::context::Permission as P;
use crate::engine::handlers::{app_failure, failure, TaskCall, TaskHandler, TaskOutput, TaskResult};
use crate::outbound::OutboundPolicy;
use crate::{App, OpContext};

impl App {
    pub async fn hook_put(&self, ctx: &OpContext, name: &str, spec: HookSpec) -> Result<(Hook, bool)> {
        ctx.authorize(P::HookAdmin)?;
        let hook = spec.into_hook(name, Timestamp::now())?;
        let audit = ctx.audit(
            "hook.put",
            format!("hook/{name}"),
            None,
            json!({"url": hook.url, "events": hook.events, "mode": hook.mode}),
        );
        self.store().hooks().hook_put(&hook, &Effects::none().with_audit(audit)).await
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

/// `tenancy:hooks.call` `{event, tenant_id}`: calls every `sync` hook of `event`; a
/// hook that finally fails is `Tenancy.HookFailed`. Result `{called: [names], count,
/// hooks: [the callback hooks of the event], cursor: {i: 0}}`: the workflow notifies
/// the callback hooks next, one by one.
pub struct CallHooks {
    client: reqwest::Client,
    policy: std::sync::Arc<OutboundPolicy>,
}

impl CallHooks {
    /// Hooks under the default outbound policy (internal addresses refused).
    pub fn new() -> Self {
        CallHooks::with_policy(std::sync::Arc::default())
    }

    pub fn with_policy(policy: std::sync::Arc<OutboundPolicy>) -> Self {
        CallHooks { client: crate::delivery::http_client(&policy), policy }
    }

    async fn call_one(&self, hook: &Hook, body: &serde_json::Value, key: &str) -> std::result::Result<(), String> {
        let refused = || format!("hook {:?} failed: {}", hook.name, crate::outbound::REFUSED);
        let Ok(url) = reqwest::Url::parse(&hook.url) else { return Err(refused()) };
        if self.policy.check_url(&url).is_err() {
            return Err(refused());
        }
        let mut last = String::new();
        for attempt in 0..hook.max_attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt.min(5))).await;
            }
            let res = self
                .client
                .post(url.clone())
                .timeout(Duration::from_secs(match hook.mode {
                    HookMode::Sync => hook.timeout_s,
                    // The callback comes later; the notification itself is quick.
                    HookMode::Callback => hook.timeout_s.min(30),
                }))
                .header("Idempotency-Key", key)
                .json(body)
                .send()
                .await;
            match res {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
                // Refused names stay refused: no point in retrying.
                Err(e) if crate::outbound::is_refused(&e) => return Err(refused()),
                // A coarse category, never the network's detail (no port-scan oracle).
                Err(e) => last = crate::outbound::describe(&e).to_owned(),
            }
        }
        Err(format!("hook {:?} failed after {} attempt(s): {last}", hook.name, hook.max_attempts))
    }
}

impl Default for CallHooks {
    fn default() -> Self {
        CallHooks::new()
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
            self.call_one(hook, &body, &key)
                .await
                .map_err(|e| Failure { error: Some("Tenancy.HookFailed".into()), cause: Some(e) })?;
            called.push(hook.name.clone());
        }
        let callback = callback_hooks(&hooks, event);
        Ok(TaskOutput::new(json!({"called": called, "count": callback.len(), "hooks": callback, "cursor": {"i": 0}})))
    }
}

/// A resource a lifecycle workflow created for a tenant (`GET /v1/tenants/{id}/resources`).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TenantResourceView {
    /// `namespace`, `database`, `defaults`, ...
    pub kind: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub created_at: Timestamp,
    /// For a tenant's database: what the provisioner sees now (drift shows here).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub observed: Option<serde_json::Value>,
}

/// The resources of a tenant.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TenantResources {
    pub items: Vec<TenantResourceView>,
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
        .map(|h| json!({"name": h.name, "url": h.url, "timeout_s": h.timeout_s, "max_attempts": h.max_attempts}))
        .collect()
}

fn event_param(p: &serde_json::Value) -> std::result::Result<HookEvent, Failure> {
    serde_json::from_value(p["event"].clone())
        .map_err(|e| failure("States.Runtime", format!("hooks need a valid event: {e}")))
}

/// `tenancy:hooks.list` `{event}`: the `callback` hooks of `event` as `{count, hooks:
/// [{name, url, timeout_s, max_attempts}]}`, for the workflow to notify one by one.
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
/// POSTs the tenant and the task token to a `callback` hook (retried like a sync hook);
/// the execution then waits until the hook calls `POST /v1/task-tokens/{token}/success`
/// (or `failure`), or the hook's `timeout_s` passes (`States.Timeout`).
pub struct NotifyCallbackHook {
    calls: CallHooks,
}

impl NotifyCallbackHook {
    pub fn new() -> Self {
        NotifyCallbackHook { calls: CallHooks::new() }
    }

    pub fn with_policy(policy: std::sync::Arc<OutboundPolicy>) -> Self {
        NotifyCallbackHook { calls: CallHooks::with_policy(policy) }
    }
}

impl Default for NotifyCallbackHook {
    fn default() -> Self {
        NotifyCallbackHook::new()
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
        self.calls
            .call_one(&hook, &body, &key)
            .await
            .map_err(|e| Failure { error: Some("Tenancy.HookFailed".into()), cause: Some(e) })?;
        Ok(TaskOutput::new(json!({"notified": hook.name})))
    }
}
