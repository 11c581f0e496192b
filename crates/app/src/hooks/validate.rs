//! The `validate` hooks: product services asked, within the request, before a tenant
//! create or plan change commits (docs/entitlements.md#the-validate-hook).
//!
//! Every HTTP hook subscribed to `validate` (a `sync` URL hook: the hook API refuses a
//! callback or queue hook for it) gets one signed `POST` (Standard Webhooks, as the
//! other hooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`) under the
//! outbound policy, in name order, with
//! `{event: "validate", action: "tenant.create" | "tenant.change_plan", tenant, plan,
//! from_plan?, request_id}` (`tenant` as it would be created, or as it is; `plan` the
//! plan it would be on; `from_plan` the plan it leaves).
//!
//! The answer:
//! - a 2xx with an empty body, or a JSON object without `"allow": false`: allowed;
//! - a 2xx with `{"allow": false, "reason": "..."}`: refused. The caller gets 422
//!   `validation-refused` with the reason in `detail` (at most [`MAX_REASON_CHARS`]
//!   characters, control characters as spaces); nothing is written, no event, no audit;
//! - anything else (no answer within the hook's `timeout_s`, at most 30 s; a refused
//!   destination; a non-2xx status; a body that is not a JSON object, or over 16 KiB):
//!   the hook could not be asked, and the change fails closed with 503
//!   `hook-unavailable` naming the hook. A validator exists to stop changes, so its
//!   silence must not let them through; an operator who wants them through removes
//!   `validate` from the hook's events.
//!
//! One attempt per request, no retries (API calls do not retry on their own: the caller
//! does). An allow is no promise: the change may still fail after it (the plan filled
//! up meanwhile, a concurrent change), so a hook must not act on the question alone.

use serde_json::json;
use std::time::Duration;
use tenancy_domain::hook::{Hook, HookEvent, HookMode};
use tenancy_domain::plan::Plan;
use tenancy_domain::tenant::Tenant;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_events::webhook;

use crate::hooks::tasks::CallHooks;
use crate::{App, OpContext};

/// The longest reason of a refusal shown to the caller, in characters (longer ones are
/// cut, with `...`).
pub const MAX_REASON_CHARS: usize = 500;
/// The largest answer read from a validate hook.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// What a `validate` hook is asked about.
pub(crate) struct Validation<'a> {
    /// `tenant.create` or `tenant.change_plan`.
    pub action: &'static str,
    pub tenant: &'a Tenant,
    pub plan: &'a Plan,
    pub from_plan: Option<&'a Plan>,
}

impl App {
    /// Asks every `validate` hook about `v`; the first refusal (422
    /// `validation-refused`) or failure to answer (503 `hook-unavailable`) stops it.
    /// Nothing is asked when no hook subscribes to `validate`.
    pub(crate) async fn validate_with_hooks(&self, ctx: &OpContext, v: Validation<'_>) -> Result<()> {
        let hooks = self.store.hooks().hook_list().await?;
        let hooks: Vec<&Hook> = hooks
            .iter()
            .filter(|h| h.events.contains(&HookEvent::Validate) && h.mode == HookMode::Sync && h.url.is_some())
            .collect();
        if hooks.is_empty() {
            return Ok(());
        }
        let mut body = json!({"event": HookEvent::Validate, "action": v.action, "tenant": v.tenant, "plan": v.plan,
                              "request_id": ctx.request_id});
        if let Some(from) = v.from_plan {
            body["from_plan"] = json!(from);
        }
        let body = serde_json::to_vec(&body).map_err(Error::internal)?;
        for hook in hooks {
            ask(&self.validator, &*self.store, hook, &body).await?;
        }
        Ok(())
    }
}

fn unavailable(hook: &str, what: &str) -> Error {
    Error::Hook {
        code: ErrorCode::HookUnavailable,
        message: format!(
            "validate hook {hook:?} could not be asked ({what}); nothing was changed: retry later (the change fails \
             closed while a validate hook does not answer)"
        ),
    }
}

/// One signed `POST` to `hook`, and its answer.
async fn ask(calls: &CallHooks, store: &dyn tenancy_store::Store, hook: &Hook, body: &[u8]) -> Result<()> {
    let refused = || unavailable(&hook.name, tenancy_adapters::outbound::REFUSED);
    let Some(Ok(url)) = hook.url.as_deref().map(reqwest::Url::parse) else { return Err(refused()) };
    if calls.policy.check_url(&url).is_err() {
        return Err(refused());
    }
    let secrets =
        calls.signing_secrets(store, &hook.name).await.map_err(|f| Error::internal(f.cause.unwrap_or_default()))?;
    let id = tenancy_domain::ids::new_id("val");
    let ts = Timestamp::now().millis() / 1000;
    let timeout = Duration::from_secs(hook.timeout_s.min(tenancy_domain::hook::MAX_VALIDATE_TIMEOUT_S));
    let mut req = tenancy_adapters::outbound::traced(calls.client.post(url))
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(webhook::HEADER_ID, &id)
        .header(webhook::HEADER_TIMESTAMP, ts.to_string());
    if !secrets.is_empty() {
        req = req.header(webhook::HEADER_SIGNATURE, webhook::sign_all(&secrets[..], &id, ts, body));
    }
    let cred = calls
        .hook_credential(hook)
        .await
        .map_err(|f| unavailable(&hook.name, f.cause.as_deref().unwrap_or("its connection failed")))?;
    if let Some(c) = cred {
        req = req.header(c.header, c.value);
    }
    let res = match req.body(body.to_vec()).send().await {
        Ok(res) => res,
        Err(e) => return Err(unavailable(&hook.name, tenancy_adapters::outbound::describe(&e))),
    };
    let status = res.status();
    if !status.is_success() {
        tenancy_adapters::outbound::drain(res, MAX_ANSWER_BYTES).await;
        return Err(unavailable(&hook.name, &format!("it answered HTTP {}", status.as_u16())));
    }
    let answer = match tenancy_adapters::outbound::read_capped(res, MAX_ANSWER_BYTES).await {
        Ok(bytes) => bytes,
        Err(tenancy_adapters::outbound::ReadError::TooLarge) => {
            return Err(unavailable(&hook.name, &format!("its answer is over {MAX_ANSWER_BYTES} bytes")))
        }
        Err(tenancy_adapters::outbound::ReadError::Transport(e)) => {
            return Err(unavailable(&hook.name, tenancy_adapters::outbound::describe(&e)))
        }
    };
    match verdict(&answer) {
        Ok(None) => Ok(()),
        Ok(Some(reason)) => {
            tracing::info!(hook = %hook.name, reason = %reason, "a validate hook refused a change");
            Err(Error::Hook {
                code: ErrorCode::ValidationRefused,
                message: format!("refused by validate hook {:?}: {reason}", hook.name),
            })
        }
        Err(what) => Err(unavailable(&hook.name, what)),
    }
}

/// What a 2xx answer says: `None` allows, `Some(reason)` refuses; an answer that is
/// not an empty body or a JSON object (with `allow` a boolean when given) is an error.
fn verdict(body: &[u8]) -> std::result::Result<Option<String>, &'static str> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let Ok(serde_json::Value::Object(answer)) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Err("its 2xx answer is not a JSON object");
    };
    match answer.get("allow") {
        None | Some(serde_json::Value::Bool(true)) => Ok(None),
        Some(serde_json::Value::Bool(false)) => {
            let reason = match answer.get("reason") {
                Some(serde_json::Value::String(r)) if !r.trim().is_empty() => bounded_reason(r),
                _ => "no reason given".to_owned(),
            };
            Ok(Some(reason))
        }
        Some(_) => Err("its answer's allow is not true or false"),
    }
}

/// At most [`MAX_REASON_CHARS`] characters, control characters as spaces.
fn bounded_reason(r: &str) -> String {
    let clean: String = r.trim().chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if clean.chars().count() <= MAX_REASON_CHARS {
        return clean;
    }
    let mut cut: String = clean.chars().take(MAX_REASON_CHARS - 3).collect();
    cut.push_str("...");
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(verdict(b""), Ok(None));
        assert_eq!(verdict(b"{}"), Ok(None));
        assert_eq!(verdict(br#"{"allow": true}"#), Ok(None));
        assert_eq!(verdict(br#"{"allow": false, "reason": "over budget"}"#), Ok(Some("over budget".into())));
        assert_eq!(verdict(br#"{"allow": false}"#), Ok(Some("no reason given".into())));
        assert!(verdict(b"ok").is_err());
        assert!(verdict(br#"{"allow": "no"}"#).is_err());
        assert!(verdict(b"[]").is_err());
        let long = format!(r#"{{"allow": false, "reason": "{}\n"}}"#, "x".repeat(2000));
        let reason = verdict(long.as_bytes()).unwrap().unwrap();
        assert_eq!(reason.chars().count(), MAX_REASON_CHARS);
        assert!(reason.ends_with("..."));
        assert_eq!(bounded_reason("a\u{7}b"), "a b");
    }
}
