//! Storage of the secret store: a row per secret (its stage labels, its deletion) and
//! its sealed versions. The store never sees a value or a data key in plaintext: the
//! application seals them (`tenancy_adapters::keys::envelope`) before they get here.

use async_trait::async_trait;
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;

use crate::store::Effects;

/// Whose a secret is: a tenant's, or the platform's (`None`).
pub type SecretScope<'a> = Option<&'a str>;

/// A secret's row: its labels and its deletion, with its kept versions.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretRecord {
    pub tenant_id: Option<String>,
    pub name: String,
    pub current_version: i64,
    pub previous_version: Option<i64>,
    pub pending_version: Option<i64>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub deleted_at: Option<Timestamp>,
    pub purge_at: Option<Timestamp>,
    /// The kept versions and when each was created, newest first.
    pub versions: Vec<(i64, Timestamp)>,
}

/// A sealed version as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedVersion {
    pub version: i64,
    /// The value under its data key (`v1:` base64 of nonce and ciphertext).
    pub ciphertext: String,
    /// The data key wrapped by the key-encryption key `kek_id`.
    pub wrapped_key: String,
    pub kek_id: String,
    pub created_at: Timestamp,
}

/// A version's wrapped data key, for re-wrapping under a new key-encryption key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedVersionKey {
    pub tenant_id: Option<String>,
    pub name: String,
    pub version: i64,
    pub wrapped_key: String,
    pub kek_id: String,
}

/// Object safe: held as `Arc<dyn SecretStore>` (see [`crate::Store::secrets`]).
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The secret with its versions; `NotFound` when there is none (a deleted one,
    /// until purged, is found with `deleted_at` set).
    async fn secret_get(&self, scope: SecretScope<'_>, name: &str) -> Result<SecretRecord>;
    /// The secret (without its version list) and, in the same read, its sealed version
    /// `version`, or its current one when `None`: the hot path of a read, one query
    /// where [`SecretStore::secret_get`] and [`SecretStore::secret_version_get`] take
    /// three. `NotFound` when there is no secret; the version is `None` when not kept
    /// (a deleted secret is found with `deleted_at` set, as by `secret_get`).
    async fn secret_read(
        &self,
        scope: SecretScope<'_>,
        name: &str,
        version: Option<i64>,
    ) -> Result<(SecretRecord, Option<SealedVersion>)>;
    /// One sealed version; `NotFound` when it is not kept.
    async fn secret_version_get(&self, scope: SecretScope<'_>, name: &str, version: i64) -> Result<SealedVersion>;
    /// Adds `v` as the new current version, in one transaction with `fx`: the old
    /// current becomes previous, the old previous loses its label, and unlabelled
    /// versions older than the kept window are deleted. `expected_current` is the
    /// current version `v.version` was sealed after (`None`: the secret is new); when
    /// it moved meanwhile the write is `PreconditionFailed` (the caller re-seals for
    /// the next number and retries). A deleted secret is 409 `secret-deleted`.
    async fn secret_put(
        &self,
        scope: SecretScope<'_>,
        name: &str,
        expected_current: Option<i64>,
        v: &SealedVersion,
        fx: &Effects,
    ) -> Result<SecretRecord>;
    /// Metadata of a scope's secrets by name, deleted ones included.
    async fn secret_list(&self, scope: SecretScope<'_>, page: &PageRequest) -> Result<Page<SecretRecord>>;
    /// Schedules the secret's deletion at `purge_at`, or deletes it now (`None`).
    /// Already deleted: 409 `secret-deleted`.
    async fn secret_delete(
        &self,
        scope: SecretScope<'_>,
        name: &str,
        now: Timestamp,
        purge_at: Option<Timestamp>,
        fx: &Effects,
    ) -> Result<()>;
    /// Cancels a scheduled deletion. Not deleted: 409 `secret-not-deleted`.
    async fn secret_restore(&self, scope: SecretScope<'_>, name: &str, fx: &Effects) -> Result<SecretRecord>;
    /// Secrets whose recovery window ended by `now`, at most `limit`.
    async fn secret_purge_due(&self, now: Timestamp, limit: u32) -> Result<Vec<(Option<String>, String)>>;
    /// Deletes a secret whose window ended by `now` (else nothing, `false`), with `fx`.
    async fn secret_purge(&self, scope: SecretScope<'_>, name: &str, now: Timestamp, fx: &Effects) -> Result<bool>;
    /// Every version's wrapped data key (for a re-wrap under a new key-encryption key).
    async fn secret_wrapped_keys(&self) -> Result<Vec<WrappedVersionKey>>;
    /// Replaces wrapped data keys (`wrapped_key` and `kek_id`; the ciphertexts stay) and
    /// records the master key's new fingerprint, all in one transaction. Fails, changing
    /// nothing, if the recorded fingerprint is not `old_fingerprint`.
    async fn secret_rewrap(
        &self,
        keys: &[WrappedVersionKey],
        resealed: &[Resealed],
        old_fingerprint: &str,
        new_fingerprint: &str,
    ) -> Result<()>;
    /// Every value sealed directly with the master key (webhook, hook and function
    /// signing secrets, data-plane passwords), for re-sealing under a new one.
    async fn sealed_values(&self) -> Result<Vec<Resealed>>;
}

/// A value sealed directly with the master key, where it is: its table, the row's key
/// columns and values, the column, and the sealed text (see [`SecretStore::sealed_values`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resealed {
    pub table: &'static str,
    pub column: &'static str,
    /// `(column, value)` pairs naming the row.
    pub key: Vec<(&'static str, String)>,
    pub sealed: String,
}
