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
    /// The generator rotations use (JSON of `tenancy_domain::secret::Generator`).
    pub generator: Option<String>,
    /// The rotation spec (JSON of `tenancy_domain::secret::RotationSpec`).
    pub rotation: Option<String>,
    /// When the scheduler starts the next rotation.
    pub next_rotation_at: Option<Timestamp>,
    /// The running rotation's execution.
    pub rotation_execution_id: Option<String>,
    /// The last rotation's outcome (JSON of `tenancy_domain::secret::LastRotation`).
    pub last_rotation: Option<String>,
}

/// What a put sets on the secret besides the version; `None` fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretConfig {
    /// The generator (JSON).
    pub generator: Option<String>,
    /// The rotation spec (JSON) and the next scheduled rotation.
    pub rotation: Option<(String, Option<Timestamp>)>,
}

/// How a rotation starts: the execution that runs it and what the secret's row must
/// look like for it to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationStart {
    pub execution_id: String,
    /// A rotation whose execution is no longer running (stopped, timed out): it is
    /// taken over (its pending label dropped) instead of refusing the start.
    pub takeover: Option<String>,
    /// For a scheduled start: the `next_rotation_at` it was due at (another replica
    /// that started it first moved it, and this start is refused).
    pub due: Option<Timestamp>,
    /// The `next_rotation_at` after this start (`None`: unchanged).
    pub next_rotation_at: Option<Option<Timestamp>>,
    /// The last rotation record (JSON, status `running`).
    pub last_rotation: String,
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

    /// [`SecretStore::secret_put`] that also sets the secret's generator and rotation
    /// spec (`config`), in the same transaction.
    async fn secret_put_configured(
        &self,
        scope: SecretScope<'_>,
        name: &str,
        expected_current: Option<i64>,
        v: &SealedVersion,
        config: &SecretConfig,
        fx: &Effects,
    ) -> Result<SecretRecord>;
    /// Marks a rotation of the secret running (`rotation_execution_id`), with `fx` (the
    /// execution's start, the audit entry) in one transaction, only when no other
    /// rotation is running (else 409 `rotation-in-progress`, nothing written) and the
    /// secret is not deleted (409 `secret-deleted`).
    async fn secret_rotation_start(
        &self,
        scope: SecretScope<'_>,
        name: &str,
        start: &RotationStart,
        fx: &Effects,
    ) -> Result<()>;
    /// Adds `v` labelled `pending` (replacing an older pending label) for the rotation
    /// `execution_id`; `PreconditionFailed` when that rotation is not the running one.
    /// A repeat with the same version (a re-run step) changes nothing.
    async fn secret_pending_put(
        &self,
        scope: SecretScope<'_>,
        name: &str,
        execution_id: &str,
        v: &SealedVersion,
    ) -> Result<()>;
    /// Ends the rotation `execution_id`, with `fx`, in one transaction: with
    /// `finish = Some(version)` moves pending -> current and current -> previous, only
    /// if `version` is still the pending one; with `None` drops the pending label.
    /// Records `last_rotation` and frees the secret for the next rotation. Returns
    /// `false`, writing nothing, when that rotation is not the running one (done before).
    async fn secret_rotation_end(
        &self,
        scope: SecretScope<'_>,
        name: &str,
        execution_id: &str,
        finish: Option<i64>,
        last_rotation: &str,
        fx: &Effects,
    ) -> Result<bool>;
    /// Secrets whose scheduled rotation is due by `now` (none running), at most `limit`:
    /// scope, name and the due time.
    async fn secret_rotation_due(&self, now: Timestamp, limit: u32)
        -> Result<Vec<(Option<String>, String, Timestamp)>>;
    /// Takes or renews the lease of the singleton job `job` for `owner` until `until`:
    /// `true` when `owner` holds it (it was free, expired by `now`, or already its own).
    async fn job_lease(&self, job: &str, owner: &str, now: Timestamp, until: Timestamp) -> Result<bool>;
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
