//! The hooks' task handlers: call the synchronous hooks, list and notify the callback hooks.

use crate::connections::auth::{Connector, Credential};
use crate::services::Services;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tenancy_adapters::keys::SecretBox;
use tenancy_adapters::outbound::OutboundPolicy;
use tenancy_asl::Failure;
use tenancy_domain::hook::{Hook, HookEvent, HookMode};
use tenancy_domain::queue::SendMessage;
use tenancy_domain::time::Timestamp;
use tenancy_domain::ErrorCode;
use tenancy_engine::Registry;
use tenancy_engine::{app_failure, failure, TaskCall, TaskHandler, TaskOutput, TaskResult};
use tenancy_events::webhook::{self, WebhookSecret};
use tenancy_store::Store;

pub const CALL_RESOURCE: &str = "tenancy:hooks.call";
pub const LIST_RESOURCE: &str = "tenancy:hooks.list";
pub const NOTIFY_RESOURCE: &str = "tenancy:hooks.notify";

/// The associated data a hook's secret is sealed with.
pub(crate) fn secret_owner(name: &str) -> String {
    format!("hook/{name}")
}

pub(crate) fn fail_hook(hook: &str, e: impl std::fmt::Display) -> Failure {
    Failure { error: Some("Tenancy.HookFailed".into()), cause: Some(format!("hook {hook:?} failed: {e}")) }
}

/// The master key's box hook calls open their hooks' signing secrets with (none: an
/// embedded app without a master key, whose calls go unsigned).
type SecretCell = Option<Arc<SecretBox>>;

/// Registers the hooks' handlers, calling out under the services' outbound policy.
pub fn register(r: &Registry, services: &Services) {
    let (policy, secrets) = (&services.outbound, &services.secrets);
    let calls = || CallHooks::new(policy.clone(), secrets.clone()).with_connector(services.connector.clone());
    r.register(CALL_RESOURCE, calls());
    r.register(NOTIFY_RESOURCE, NotifyCallbackHook { calls: calls() });
    r.register(LIST_RESOURCE, ListCallbackHooks);
}

/// `tenancy:hooks.call` `{event, tenant_id}`: calls every `sync` hook of `event`; a
/// hook that finally fails is `Tenancy.HookFailed`. Result `{called: [names], count,
/// hooks: [the callback and queue hooks of the event], cursor: {i: 0}}`: the workflow
/// notifies those next, one by one.
pub struct CallHooks {
    pub(super) client: reqwest::Client,
    pub(super) policy: Arc<OutboundPolicy>,
    secrets: SecretCell,
    /// Resolves the hooks' connections (none: a hook naming one fails).
    connector: Option<Arc<Connector>>,
}

impl CallHooks {
    /// Hooks under `policy`, signed with the secrets `secrets` opens (unsigned while it
    /// is empty: an embedded app without a master key).
    pub fn new(policy: Arc<OutboundPolicy>, secrets: SecretCell) -> Self {
        CallHooks { client: crate::subscriptions::worker::http_client(&policy), policy, secrets, connector: None }
    }

    /// Calls hooks that name a connection with its credential from `connector`.
    pub fn with_connector(mut self, connector: Arc<Connector>) -> Self {
        self.connector = Some(connector);
        self
    }

    /// The credential of `hook`'s connection, if it names one.
    pub(super) async fn hook_credential(&self, hook: &Hook) -> std::result::Result<Option<Credential>, Failure> {
        let Some(name) = &hook.connection else { return Ok(None) };
        let connector = self
            .connector
            .as_ref()
            .ok_or_else(|| fail_hook(&hook.name, format!("connection {name:?} does not exist")))?;
        connector.credential(name).await.map(Some).map_err(|e| fail_hook(&hook.name, e))
    }

    /// The secrets a call of `hook` is signed with: its current one (generated now for a
    /// hook created before hooks were signed) and the previous one during a rotation.
    pub(super) async fn signing_secrets(
        &self,
        store: &dyn Store,
        hook: &str,
    ) -> std::result::Result<Vec<WebhookSecret>, Failure> {
        let Some(sb) = &self.secrets else { return Ok(Vec::new()) };
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
    pub(crate) async fn call_one(
        &self,
        store: &dyn Store,
        hook: &Hook,
        body: &serde_json::Value,
        key: &str,
    ) -> std::result::Result<(), Failure> {
        let refused = || fail_hook(&hook.name, tenancy_adapters::outbound::REFUSED);
        let Some(Ok(url)) = hook.url.as_deref().map(reqwest::Url::parse) else { return Err(refused()) };
        if self.policy.check_url(&url).is_err() {
            return Err(refused());
        }
        let secrets = self.signing_secrets(store, &hook.name).await?;
        let mut cred = self.hook_credential(hook).await?;
        let body = serde_json::to_vec(body)
            .map_err(|e| failure(&format!("Tenancy.{}", ErrorCode::Internal), e.to_string()))?;
        let mut last = String::new();
        for attempt in 0..hook.max_attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt.min(5))).await;
            }
            let ts = Timestamp::now().millis() / 1000;
            let mut req = tenancy_adapters::outbound::traced(self.client.post(url.clone()))
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
            if let Some(c) = &cred {
                req = req.header(c.header.clone(), c.value.clone());
            }
            match req.body(body.clone()).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                // A cached OAuth token refused: the next attempt fetches a new one.
                Ok(r)
                    if r.status() == reqwest::StatusCode::UNAUTHORIZED
                        && cred.as_ref().is_some_and(|c| c.cached_token) =>
                {
                    last = "HTTP 401".to_owned();
                    let (Some(connector), Some(name), Some(stale)) = (&self.connector, &hook.connection, &cred) else {
                        continue;
                    };
                    cred = Some(connector.refresh(name, stale).await.map_err(|e| fail_hook(&hook.name, e))?);
                }
                Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
                // Refused names stay refused: no point in retrying.
                Err(e) if tenancy_adapters::outbound::is_refused(&e) => return Err(refused()),
                // A coarse category, never the network's detail (no port-scan oracle).
                Err(e) => last = tenancy_adapters::outbound::describe(&e).to_owned(),
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
    /// A call with no `sync` hook subscribed to its event calls nobody: it reads the
    /// tenant and the hook list and writes nothing, so the engine runs it without a
    /// commit of its own (an upgrade's pre-check and verify steps, when the product
    /// subscribed only `upgrade_apply`). A hook added meanwhile is called all the same.
    async fn local_call(&self, store: &Arc<dyn Store>, parameters: &serde_json::Value) -> bool {
        let Ok(p) = CallParams::deserialize(parameters) else { return false };
        match store.hooks().hook_list().await {
            Ok(hooks) => !hooks.iter().any(|h| h.events.contains(&p.event) && h.mode == HookMode::Sync),
            Err(_) => false,
        }
    }

    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        let p: CallParams = call.params()?;
        let event = p.event;
        let tenant_id = p
            .tenant_id
            .as_deref()
            .or(call.tenant_id)
            .ok_or_else(|| failure("States.Runtime", "hooks.call needs tenant_id"))?;
        let tenant = call.store.tenant_get(tenant_id).await.map_err(app_failure)?;
        let hooks = call.store.hooks().hook_list().await.map_err(app_failure)?;
        let mut called = Vec::new();
        for hook in hooks.iter().filter(|h| h.events.contains(&event) && h.mode == HookMode::Sync) {
            // The task's key, not its attempt's: a step retried after a store error
            // calls the hook with the same key (docs/hooks.md).
            let key = format!("{}-{}", call.task_key, hook.name);
            let mut body = json!({"event": event, "tenant": tenant, "execution_id": call.execution_id,
                              "idempotency_key": key});
            if let Some(upgrade) = &p.upgrade {
                body["upgrade"] = upgrade.clone();
            }
            self.call_one(&**call.store, hook, &body, &key).await?;
            called.push(hook.name.clone());
        }
        let callback = callback_hooks(&hooks, event);
        Ok(TaskOutput::new(json!({"called": called, "count": callback.len(), "hooks": callback, "cursor": {"i": 0}})))
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

/// The parameters of `tenancy:hooks.call`.
#[derive(serde::Deserialize)]
struct CallParams {
    event: HookEvent,
    /// By default the execution's tenant.
    tenant_id: Option<String>,
    /// An upgrade's target: `{release, previous_release, bundle}`, passed to the hooks
    /// as `upgrade` (docs/releases.md).
    #[serde(default)]
    upgrade: Option<serde_json::Value>,
}

/// The parameters of `tenancy:hooks.notify`.
#[derive(serde::Deserialize)]
struct NotifyParams {
    event: HookEvent,
    hook: HookName,
    /// The task token the hook answers with.
    token: String,
    /// By default the execution's tenant.
    tenant_id: Option<String>,
}

#[derive(serde::Deserialize)]
struct HookName {
    name: String,
}

/// The parameters of `tenancy:hooks.list`.
#[derive(serde::Deserialize)]
struct ListParams {
    event: HookEvent,
}

/// `tenancy:hooks.list` `{event}`: the `callback` and queue hooks of `event` as `{count,
/// hooks: [{name, url | queue, timeout_s, max_attempts}]}`, for the workflow to notify
/// one by one.
pub struct ListCallbackHooks;

#[async_trait::async_trait]
impl TaskHandler for ListCallbackHooks {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        let event = call.params::<ListParams>()?.event;
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

    /// Notifies hooks that name a connection with its credential from `connector`.
    pub fn with_connector(mut self, connector: Arc<Connector>) -> Self {
        self.calls = self.calls.with_connector(connector);
        self
    }
}

#[async_trait::async_trait]
impl TaskHandler for NotifyCallbackHook {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        let p: NotifyParams = call.params()?;
        let event = p.event;
        let name = p.hook.name.as_str();
        let token = p.token.as_str();
        let tenant_id = p
            .tenant_id
            .as_deref()
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
                let send = SendMessage {
                    body,
                    delay_s: None,
                    group_id: None,
                    dedup_id: Some(key.clone()),
                    attributes: Default::default(),
                };
                let message = send
                    .into_new()
                    .map_err(|e| fail_hook(&hook.name, e))?
                    .with_traceparent(tenancy_trace::traceparent());
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
