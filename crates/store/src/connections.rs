//! Storage of connections: a row per connection (its metadata) and its credential, a
//! sealed version of the platform secret `connection.<name>` of the secret store,
//! written in the same transaction (the store never sees the credential in plaintext).

use async_trait::async_trait;
use tenancy_domain::connection::Connection;
use tenancy_domain::Result;

use crate::secrets::SealedVersion;
use crate::store::Effects;

/// Object safe: held as `Arc<dyn ConnectionStore>` (see [`crate::Store::connections`]).
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Creates or replaces a connection (a replace keeps `created_at`) and puts
    /// `credential` as the new current version of its platform secret, in one
    /// transaction with `fx`. `expected_version` is the secret's current version the
    /// credential was sealed after (`None`: no secret yet); when it moved meanwhile the
    /// write is `PreconditionFailed` (the caller re-seals and retries). Whether it was
    /// created.
    async fn connection_put(
        &self,
        c: &Connection,
        expected_version: Option<i64>,
        credential: &SealedVersion,
        fx: &Effects,
    ) -> Result<(Connection, bool)>;
    async fn connection_get(&self, name: &str) -> Result<Connection>;
    /// Every connection, by name.
    async fn connection_list(&self) -> Result<Vec<Connection>>;
    /// Deletes a connection and its secret (every version, at once), with `fx`; 409
    /// `connection-in-use` naming the hooks and subscriptions that use it.
    async fn connection_delete(&self, name: &str, fx: &Effects) -> Result<()>;
}
