//! Storage of provisioning hooks.

use async_trait::async_trait;
use tenancy_domain::hook::Hook;
use tenancy_domain::Result;

use crate::store::Effects;

/// Object safe: held as `Arc<dyn HookStore>` (see [`crate::Store::hooks`]).
#[async_trait]
pub trait HookStore: Send + Sync {
    /// Creates or replaces a hook; whether it was created.
    async fn hook_put(&self, hook: &Hook, fx: &Effects) -> Result<(Hook, bool)>;
    async fn hook_get(&self, name: &str) -> Result<Hook>;
    /// Every hook, by name (a handful per installation).
    async fn hook_list(&self) -> Result<Vec<Hook>>;
    async fn hook_delete(&self, name: &str, fx: &Effects) -> Result<()>;
}
