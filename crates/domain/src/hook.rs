//! Provisioning hooks: product services called by the lifecycle workflows.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;
use crate::{Error, ErrorCode, Result};

/// The lifecycle moments a hook can be called at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HookEvent {
    Provision,
    Offboard,
    PlanChange,
    Suspend,
    Resume,
    /// Asked before a tenant create or plan change commits, within the request; it may
    /// refuse the change (`sync` URL hooks only; docs/entitlements.md).
    Validate,
    /// The steps of a tenant's upgrade to a release (docs/releases.md): checked before
    /// anything changes, applied, verified, and rolled back after a failed apply or
    /// verify. Called by the built-in upgrade as `sync` hooks (a callback hook of these
    /// events is not notified by it).
    UpgradePreCheck,
    UpgradeApply,
    UpgradeVerify,
    UpgradeRollback,
    /// Called by the set and test steps of the rotations of secrets whose rotation
    /// target names the hook, with the new value (`sync` URL hooks only;
    /// docs/secrets.md). A hook gets secret values only when it subscribes to this.
    SecretRotation,
}

impl HookEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::Provision => "provision",
            HookEvent::Offboard => "offboard",
            HookEvent::PlanChange => "plan_change",
            HookEvent::Suspend => "suspend",
            HookEvent::Resume => "resume",
            HookEvent::Validate => "validate",
            HookEvent::UpgradePreCheck => "upgrade_pre_check",
            HookEvent::UpgradeApply => "upgrade_apply",
            HookEvent::UpgradeVerify => "upgrade_verify",
            HookEvent::UpgradeRollback => "upgrade_rollback",
            HookEvent::SecretRotation => "secret_rotation",
        }
    }
}

/// How a hook answers: `sync` (its 2xx response is the result) or `callback` (it
/// accepts with 2xx and later reports through the task token it was given). A queue
/// hook is always `callback`: its worker answers through the task token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HookMode {
    #[default]
    Sync,
    Callback,
}

pub const DEFAULT_TIMEOUT_S: u64 = 10;
/// A sync hook's longest request.
pub const MAX_TIMEOUT_S: u64 = 300;
/// A callback hook's longest wait for its callback (24 hours).
pub const MAX_CALLBACK_TIMEOUT_S: u64 = 86_400;
/// A `validate` hook's longest request: it holds up the caller's request.
pub const MAX_VALIDATE_TIMEOUT_S: u64 = 30;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
pub const MAX_MAX_ATTEMPTS: u32 = 10;

/// The body of `PUT /v1/hooks/{name}`: an HTTP hook (`url`) or a queue hook (`queue`),
/// one of the two.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HookSpec {
    /// Absolute `http://` or `https://` URL receiving signed `POST`s (Standard Webhooks).
    #[serde(default)]
    pub url: Option<String>,
    /// A built-in queue (it must exist) that receives `{event, tenant, execution_id,
    /// idempotency_key, task_token}`; its worker answers through the task token.
    #[serde(default)]
    pub queue: Option<String>,
    /// At least one of `provision`, `offboard`, `plan_change`, `suspend`, `resume`,
    /// `validate` (a `sync` URL hook only, `timeout_s` at most 30; called once per
    /// request, without retries), `upgrade_pre_check`, `upgrade_apply`,
    /// `upgrade_verify`, `upgrade_rollback` (docs/releases.md).
    pub events: Vec<HookEvent>,
    /// `sync` (default for URL hooks) or `callback` (the only mode of a queue hook).
    #[serde(default)]
    pub mode: Option<HookMode>,
    /// `sync`: per attempt (1-300, default 10); `callback` and queue hooks: until the
    /// answer (1-86400).
    #[serde(default)]
    pub timeout_s: Option<u64>,
    /// Attempts of the HTTP request before the hook has failed (1-10, default 3).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Replaces the hook's signing secret with a new one, returned in this response
    /// only; the previous one keeps signing too for 24 hours. Without it a replace keeps
    /// the secret.
    #[serde(default)]
    pub rotate_secret: bool,
    /// A connection (`PUT /v1/connections/{name}`, it must exist) whose credential
    /// every request of this HTTP hook carries besides the signature.
    #[serde(default)]
    pub connection: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Hook {
    pub name: String,
    /// The URL of an HTTP hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The queue of a queue hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    pub events: Vec<HookEvent>,
    pub mode: HookMode,
    pub timeout_s: u64,
    pub max_attempts: u32,
    /// The connection whose credential the hook's requests carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

fn invalid(message: String) -> Error {
    Error::InvalidRequest { code: ErrorCode::InvalidHook, message }
}

impl HookSpec {
    pub fn into_hook(self, name: &str, now: Timestamp) -> Result<Hook> {
        crate::ids::validate_slug("hook", name)?;
        let mode = match (&self.url, &self.queue) {
            (Some(_), Some(_)) => {
                return Err(invalid("give url (an HTTP hook) or queue (a queue hook), not both".into()));
            }
            (None, None) => return Err(invalid("a hook needs a url (an HTTP hook) or a queue (a queue hook)".into())),
            (Some(url), None) => {
                let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
                if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) || url.contains(char::is_whitespace) {
                    return Err(Error::InvalidRequest {
                        code: ErrorCode::InvalidUrl,
                        message: format!("hook url must be an absolute http or https URL, got {url:?}"),
                    });
                }
                self.mode.unwrap_or_default()
            }
            (None, Some(queue)) => {
                crate::queue::validate_name(queue)?;
                if self.mode == Some(HookMode::Sync) {
                    return Err(invalid(
                        "a queue hook is answered by its worker through the task token: its mode is callback".into(),
                    ));
                }
                HookMode::Callback
            }
        };
        if self.events.is_empty() {
            return Err(invalid(
                "events must name at least one of provision, offboard, plan_change, suspend, resume, validate, \
                 upgrade_pre_check, upgrade_apply, upgrade_verify, upgrade_rollback, \
                 secret_rotation"
                    .into(),
            ));
        }
        let validates = self.events.contains(&HookEvent::Validate);
        if validates && mode != HookMode::Sync {
            return Err(invalid(
                "a validate hook answers within the request it validates: it is a sync URL hook (no callback, no \
                 queue)"
                    .into(),
            ));
        }
        let timeout_s = self.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S);
        let max = match mode {
            HookMode::Callback => MAX_CALLBACK_TIMEOUT_S,
            HookMode::Sync if validates => MAX_VALIDATE_TIMEOUT_S,
            HookMode::Sync => MAX_TIMEOUT_S,
        };
        if timeout_s == 0 || timeout_s > max {
            return Err(invalid(format!("timeout_s must be between 1 and {max} for a {mode:?} hook, got {timeout_s}")));
        }
        let max_attempts = self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
        if max_attempts == 0 || max_attempts > MAX_MAX_ATTEMPTS {
            return Err(invalid(format!("max_attempts must be between 1 and {MAX_MAX_ATTEMPTS}, got {max_attempts}")));
        }
        if let Some(c) = &self.connection {
            if self.queue.is_some() {
                return Err(invalid("a queue hook sends no HTTP request: it takes no connection".into()));
            }
            crate::connection::validate_name(c)?;
        }
        let mut events = self.events;
        events.sort_by_key(|e| e.as_str());
        events.dedup();
        Ok(Hook {
            name: name.to_owned(),
            url: self.url,
            queue: self.queue,
            events,
            mode,
            timeout_s,
            max_attempts,
            connection: self.connection,
            created_at: now,
            updated_at: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(v: serde_json::Value) -> Result<Hook> {
        serde_json::from_value::<HookSpec>(v).unwrap().into_hook("h", Timestamp(0))
    }

    #[test]
    fn url_or_queue() {
        let code = |r: Result<Hook>| match r {
            Err(Error::InvalidRequest { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        let both = serde_json::json!({"url": "http://x/h", "queue": "q", "events": ["provision"]});
        assert_eq!(code(hook(both)), ErrorCode::InvalidHook);
        assert_eq!(code(hook(serde_json::json!({"events": ["provision"]}))), ErrorCode::InvalidHook);
        let sync = serde_json::json!({"queue": "q", "events": ["provision"], "mode": "sync"});
        assert_eq!(code(hook(sync)), ErrorCode::InvalidHook);
        assert_eq!(
            code(hook(serde_json::json!({"queue": "a b", "events": ["provision"]}))),
            ErrorCode::InvalidQueueName
        );
        let q = hook(serde_json::json!({"queue": "q", "events": ["provision"], "timeout_s": 3600})).unwrap();
        assert_eq!((q.mode, q.url, q.queue.as_deref(), q.timeout_s), (HookMode::Callback, None, Some("q"), 3600));
        let u = hook(serde_json::json!({"url": "http://x/h", "events": ["provision"]})).unwrap();
        assert_eq!((u.mode, u.queue), (HookMode::Sync, None));
    }

    #[test]
    fn validate_hooks_are_sync_url_hooks_with_a_short_timeout() {
        let refused = |v| matches!(hook(v), Err(Error::InvalidRequest { code: ErrorCode::InvalidHook, .. }));
        assert!(refused(serde_json::json!({"url": "http://x/h", "events": ["validate"], "mode": "callback"})));
        assert!(refused(serde_json::json!({"queue": "q", "events": ["validate"]})));
        assert!(refused(serde_json::json!({"url": "http://x/h", "events": ["validate"], "timeout_s": 31})));
        let v = hook(serde_json::json!({"url": "http://x/h", "events": ["validate", "provision"]})).unwrap();
        assert_eq!((v.mode, v.events), (HookMode::Sync, vec![HookEvent::Provision, HookEvent::Validate]));
    }
}
