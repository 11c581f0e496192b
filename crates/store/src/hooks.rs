//! Storage of provisioning hooks and their signing secrets.

use async_trait::async_trait;
use tenancy_domain::hook::Hook;
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;

use crate::store::Effects;

/// A hook's signing secrets, sealed (the store never sees them in plaintext).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookSecrets {
    pub current: Option<String>,
    /// The secret before the last rotation, signing too until `previous_expires_at`.
    pub previous: Option<String>,
    pub previous_expires_at: Option<Timestamp>,
}

/// What a hook put does with the signing secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookSecretWrite {
    /// Leaves the secret as it is (a queue hook, which signs nothing).
    Keep,
    /// Stores this sealed secret when the hook has none (a new hook, or one created
    /// before hooks were signed); keeps the existing one otherwise.
    IfNone(String),
    /// Replaces the secret; the current one becomes the previous one until the time.
    Rotate { sealed: String, previous_until: Timestamp },
}

/// What [`HookStore::hook_put`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct HookPut {
    pub hook: Hook,
    pub created: bool,
    /// Whether the secret given was stored (the caller shows it this once).
    pub secret_stored: bool,
}

/// Object safe: held as `Arc<dyn HookStore>` (see [`crate::Store::hooks`]).
#[async_trait]
pub trait HookStore: Send + Sync {
    /// Creates or replaces a hook, and its secret as `secret` says.
    async fn hook_put(&self, hook: &Hook, secret: &HookSecretWrite, fx: &Effects) -> Result<HookPut>;
    async fn hook_get(&self, name: &str) -> Result<Hook>;
    /// Every hook, by name (a handful per installation).
    async fn hook_list(&self) -> Result<Vec<Hook>>;
    async fn hook_delete(&self, name: &str, fx: &Effects) -> Result<()>;
    /// The sealed signing secrets of a hook (404 when the hook is gone).
    async fn hook_secrets(&self, name: &str) -> Result<HookSecrets>;
    /// Stores `sealed` as the hook's secret unless it has one; the stored one (the
    /// first wins when two callers race). For hooks created before hooks were signed.
    async fn hook_secret_init(&self, name: &str, sealed: &str) -> Result<String>;
}
