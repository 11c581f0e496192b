//! Secrets (the Secrets Manager role): named values per tenant, or of the platform,
//! kept in versions with stage labels, encrypted at rest (envelope encryption, see
//! docs/secrets.md). This module holds the shapes and the rules; the crypto is in
//! `tenancy-adapters` (`keys::envelope`), the operations in `tenancy-app` (`secrets`).
//!
//! Decisions written down here:
//! - A name is 1-128 of letters, digits and `_+=.@-` (Secrets Manager's set without
//!   `/`, which would not fit one path segment).
//! - A value is UTF-8 text of at most [`MAX_VALUE_BYTES`] (64 KiB, Secrets Manager's
//!   limit); binary values are generated or given as base64 text.
//! - Stages: `current`, `previous` and `pending` each label at most one version (a
//!   secret always has a current one). A put makes the new version current, the old
//!   current previous, and the old previous loses its label. `pending` is set only by
//!   a rotation: its create step labels a new version `pending`, its finish step moves
//!   pending -> current and current -> previous (docs/secrets.md, "Rotation").
//! - A secret remembers the generator of the last put that gave one, and the rotation
//!   spec of the last put that gave one ([`RotationSpec`]): a rotation makes its pending
//!   value with that generator; a secret without one cannot be rotated.
//! - Versions are numbered 1, 2, ... per secret; a put keeps the labelled versions and
//!   the [`KEPT_VERSIONS`] most recent ones, and deletes older unlabelled versions in
//!   its transaction.
//! - Deletion is scheduled: a deleted secret keeps its versions for a recovery window
//!   of 1-30 days (default 7), during which reads and puts are 409 `secret-deleted` and
//!   `restore` brings it back; `force=true` deletes at once. A sweeper purges it after
//!   the window; then it is 404.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;
use crate::{Error, ErrorCode, Result};

/// The longest secret value, in bytes (64 KiB).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// The longest secret name.
pub const MAX_NAME_LEN: usize = 128;
/// Unlabelled versions a secret keeps beside its labelled ones.
pub const KEPT_VERSIONS: i64 = 10;
/// The recovery window when `recovery_days` is not given.
pub const DEFAULT_RECOVERY_DAYS: u32 = 7;
/// The longest recovery window.
pub const MAX_RECOVERY_DAYS: u32 = 30;
/// The longest generated value (characters or bytes).
pub const MAX_GENERATED_LEN: u32 = 4096;
/// Characters of a generated random string when no `charset` is given.
pub const ALPHANUMERIC: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A stage label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Current,
    Previous,
    Pending,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Current => "current",
            Stage::Previous => "previous",
            Stage::Pending => "pending",
        }
    }

    pub fn parse(s: &str) -> Result<Stage> {
        match s {
            "current" => Ok(Stage::Current),
            "previous" => Ok(Stage::Previous),
            "pending" => Ok(Stage::Pending),
            _ => Err(Error::InvalidRequest {
                code: ErrorCode::InvalidQuery,
                message: format!("stage must be current, previous or pending, got {s:?}"),
            }),
        }
    }
}

/// How a put makes a value instead of taking one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Generator {
    /// `length` (1-4096) characters drawn uniformly from `charset` (2-256 distinct
    /// printable ASCII characters; default letters and digits).
    RandomString {
        length: u32,
        #[serde(default)]
        charset: Option<String>,
    },
    /// `length` (1-4096) random bytes, as standard base64 text.
    RandomBytes { length: u32 },
    /// A 256-bit key for HMAC-SHA256, as standard base64 text.
    HmacKey {},
    /// An Ed25519 key pair: the JSON text `{"private_key": PKCS#8 PEM, "public_key":
    /// SubjectPublicKeyInfo PEM}` (what OpenSSL and most libraries load).
    Ed25519 {},
    /// A password for a PostgreSQL role: 32 letters and digits, safe unquoted in a
    /// connection string (URL or key=value) and inside a SQL string literal.
    PostgresPassword {},
}

impl Generator {
    /// Checks the generator's parameters.
    pub fn validate(&self) -> Result<()> {
        let length_ok = |n: u32| {
            if n == 0 || n > MAX_GENERATED_LEN {
                Err(invalid(format!("generate.length must be between 1 and {MAX_GENERATED_LEN}, got {n}")))
            } else {
                Ok(())
            }
        };
        match self {
            Generator::RandomString { length, charset } => {
                length_ok(*length)?;
                if let Some(c) = charset {
                    let mut seen = std::collections::BTreeSet::new();
                    let printable = c.bytes().all(|b| (0x20..0x7f).contains(&b));
                    let distinct = c.bytes().all(|b| seen.insert(b));
                    if !printable || !distinct || !(2..=256).contains(&c.len()) {
                        return Err(invalid(
                            "generate.charset must be 2-256 distinct printable ASCII characters".to_owned(),
                        ));
                    }
                }
                Ok(())
            }
            Generator::RandomBytes { length } => length_ok(*length),
            Generator::HmacKey {} | Generator::Ed25519 {} | Generator::PostgresPassword {} => Ok(()),
        }
    }
}

/// The body of `PUT .../secrets/{name}`: exactly one of `value` and `generate`.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretPut {
    /// The new version's value: UTF-8 text of at most 64 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Or a generator of the value (kept on the secret: rotations use it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<Generator>,
    /// How the secret rotates (kept on the secret until a put gives another one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationSpec>,
}

/// The characters of a generated PostgreSQL password.
pub const POSTGRES_PASSWORD_LEN: u32 = 32;

/// How a secret rotates: when (`every` or `cron`, or only on request) and what the set
/// and test steps do (`target`). See docs/secrets.md, "Rotation".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotationSpec {
    /// An interval, e.g. `30d`, `12h` (at least 1 hour, at most 1000 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// A cron expression in UTC (5 fields, or 6 with seconds), e.g. `0 3 * * *`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// What the set and test steps do; `generated` (nothing) by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RotationTarget>,
}

/// Where a rotation applies and verifies the new value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RotationTarget {
    /// Nothing to apply: the value is only generated (set and test do nothing).
    Generated {},
    /// A hook (`PUT /v1/hooks/{name}`) is called for set and for test, signed, with
    /// `{action, tenant_id, secret, version, value}`.
    Hook { hook: String },
    /// A worker on a queue gets `{action, task_token, tenant_id, secret, version}` for
    /// set and for test and answers with the task token; it reads the pending value
    /// itself.
    Queue { queue: String },
    /// The PostgreSQL login of a silo tenant's `tenancy.database` secret (docs/secrets.md,
    /// "Rotating database credentials").
    Postgres { strategy: PostgresStrategy },
}

impl RotationSpec {
    /// The target, `generated` when none is given.
    pub fn target(&self) -> RotationTarget {
        self.target.clone().unwrap_or(RotationTarget::Generated {})
    }
}

/// What the last rotation of a secret did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LastRotation {
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    pub execution_id: String,
    /// The version the rotation created (once its create step ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Why it failed (the failing step's error and cause; never a value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub at: Timestamp,
}

/// The answer of `POST .../secrets/{name}/rotate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RotationStarted {
    /// The rotation's execution (`GET /v1/executions/{id}`).
    pub execution_id: String,
    pub name: String,
    pub tenant_id: Option<String>,
    /// `running`.
    pub status: String,
}

impl std::fmt::Debug for SecretPut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretPut")
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .field("generate", &self.generate)
            .field("rotation", &self.rotation)
            .finish()
    }
}

impl Drop for SecretPut {
    fn drop(&mut self) {
        if let Some(v) = self.value.take() {
            wipe(v);
        }
    }
}

/// Overwrites a string's bytes before its memory is freed.
pub fn wipe(mut s: String) {
    zeroize::Zeroize::zeroize(&mut s);
}

/// One version in a secret's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecretVersionMeta {
    pub version: i64,
    /// Its stage labels (none for an older version kept for reads by number).
    pub stages: Vec<Stage>,
    pub created_at: Timestamp,
}

/// A secret's metadata, never its value: what lists show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecretMeta {
    pub name: String,
    /// The owning tenant; `null` for a platform secret.
    pub tenant_id: Option<String>,
    /// The version labelled `current`.
    pub current_version: i64,
    /// The versions kept, newest first, with their labels.
    pub versions: Vec<SecretVersionMeta>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Set while the secret is scheduled for deletion (restore it before `purge_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<Timestamp>,
    /// When the sweeper purges a deleted secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_at: Option<Timestamp>,
    /// The generator rotations make values with (its type and parameters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<Generator>,
    /// How the secret rotates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationSpec>,
    /// When the scheduler starts the next rotation (with `rotation.every` or `cron`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation_at: Option<Timestamp>,
    /// The last rotation: running, succeeded or failed (with why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation: Option<LastRotation>,
}

/// A secret's value: the answer of `GET .../secrets/{name}`.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecretValue {
    pub name: String,
    pub version: i64,
    pub stages: Vec<Stage>,
    pub value: String,
    pub created_at: Timestamp,
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretValue")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("stages", &self.stages)
            .field("value", &"<redacted>")
            .finish()
    }
}

impl Drop for SecretValue {
    fn drop(&mut self) {
        wipe(std::mem::take(&mut self.value));
    }
}

/// Checks a secret name (see the module docs).
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+=.@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "secret name {name:?} is invalid: use 1-{MAX_NAME_LEN} letters, digits and '_', '+', '=', '.', '@', '-'"
        )))
    }
}

/// Names starting with this are Tenancy's own (`tenancy.database`, a silo tenant's
/// PostgreSQL credentials): readable like any secret, but never written, deleted or
/// restored through the API (403 `forbidden`); Tenancy writes them itself and rotation
/// replaces their versions.
pub const RESERVED_PREFIX: &str = "tenancy.";

/// Whether `name` is reserved for Tenancy ([`RESERVED_PREFIX`]).
pub fn is_reserved(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX)
}

/// Refuses a write (put, delete, restore) of a reserved name: 403 `forbidden`. The
/// caller may well be allowed to write secrets; this name is Tenancy's.
pub fn check_writable(name: &str) -> Result<()> {
    if is_reserved(name) {
        return Err(Error::Forbidden(format!(
            "secret {name:?} is managed by Tenancy (names starting with {RESERVED_PREFIX:?} are reserved): \
             read it, or rotate it, but it cannot be written, deleted or restored"
        )));
    }
    Ok(())
}

/// How a PostgreSQL login's password is rotated (docs/secrets.md, "Rotating database
/// credentials").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PostgresStrategy {
    /// One login whose password is replaced: simple, but connections opened with the
    /// old password fail between the new password's set and clients reading it.
    SingleUser,
    /// Two logins taking turns (the tenant's role and its alternate): each rotation
    /// sets a new password on the login not in use, so the previous version's login
    /// keeps working until the next rotation.
    AlternatingUsers,
}

/// Checks a value's size: over [`MAX_VALUE_BYTES`] is 413 `payload-too-large`.
pub fn check_value(value: &str) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::InvalidRequest {
            code: ErrorCode::PayloadTooLarge,
            message: format!("a secret value is at most {MAX_VALUE_BYTES} bytes, this one has {}", value.len()),
        });
    }
    Ok(())
}

/// The recovery window of a delete: `recovery_days` 1-30 (default 7), or `force`.
pub fn recovery_window(recovery_days: Option<u32>, force: bool) -> Result<Option<u32>> {
    match (recovery_days, force) {
        (Some(_), true) => Err(invalid("give recovery_days or force=true, not both".to_owned())),
        (None, true) => Ok(None),
        (days, false) => {
            let days = days.unwrap_or(DEFAULT_RECOVERY_DAYS);
            if days == 0 || days > MAX_RECOVERY_DAYS {
                return Err(invalid(format!(
                    "recovery_days must be between 1 and {MAX_RECOVERY_DAYS} (use force=true to delete at once), \
                     got {days}"
                )));
            }
            Ok(Some(days))
        }
    }
}

fn invalid(message: String) -> Error {
    Error::InvalidRequest { code: ErrorCode::InvalidSecret, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_values_windows() {
        for ok in ["db-password", "API_KEY.v2", "a", "x@y+z=w", &"x".repeat(128)] {
            validate_name(ok).unwrap();
        }
        for bad in ["", "a/b", "a b", "é", &"x".repeat(129)] {
            assert_eq!(validate_name(bad).unwrap_err().code(), ErrorCode::InvalidSecret, "{bad}");
        }
        check_value(&"x".repeat(MAX_VALUE_BYTES)).unwrap();
        assert_eq!(check_value(&"x".repeat(MAX_VALUE_BYTES + 1)).unwrap_err().code(), ErrorCode::PayloadTooLarge);
        assert_eq!(recovery_window(None, false).unwrap(), Some(7));
        assert_eq!(recovery_window(Some(30), false).unwrap(), Some(30));
        assert_eq!(recovery_window(None, true).unwrap(), None);
        for (days, force) in [(Some(0), false), (Some(31), false), (Some(3), true)] {
            assert_eq!(recovery_window(days, force).unwrap_err().code(), ErrorCode::InvalidSecret);
        }
    }

    #[test]
    fn reserved_names_and_strategies() {
        assert!(is_reserved("tenancy.database"));
        assert!(!is_reserved("tenancy-database") && !is_reserved("db.tenancy."));
        assert_eq!(check_writable("tenancy.database").unwrap_err().code(), ErrorCode::Forbidden);
        check_writable("database").unwrap();
        let s: PostgresStrategy = serde_json::from_value(json!("alternating_users")).unwrap();
        assert_eq!(s, PostgresStrategy::AlternatingUsers);
        assert_eq!(serde_json::to_value(PostgresStrategy::SingleUser).unwrap(), json!("single_user"));
        assert!(serde_json::from_value::<PostgresStrategy>(json!("alternating")).is_err());
    }

    #[test]
    fn generators() {
        let g = |v| serde_json::from_value::<Generator>(v);
        g(json!({"type": "random_string", "length": 32})).unwrap().validate().unwrap();
        g(json!({"type": "random_string", "length": 8, "charset": "01"})).unwrap().validate().unwrap();
        g(json!({"type": "random_bytes", "length": 16})).unwrap().validate().unwrap();
        g(json!({"type": "hmac_key"})).unwrap().validate().unwrap();
        for bad in [
            json!({"type": "random_string", "length": 0}),
            json!({"type": "random_bytes", "length": 4097}),
            json!({"type": "random_string", "length": 8, "charset": "aa"}),
            json!({"type": "random_string", "length": 8, "charset": "a"}),
            json!({"type": "random_string", "length": 8, "charset": "ab\n"}),
        ] {
            assert!(g(bad.clone()).unwrap().validate().is_err(), "{bad}");
        }
        g(json!({"type": "ed25519"})).unwrap().validate().unwrap();
        g(json!({"type": "postgres_password"})).unwrap().validate().unwrap();
        assert!(g(json!({"type": "rsa"})).is_err());
        assert!(g(json!({"type": "hmac_key", "length": 3})).is_err());
    }

    #[test]
    fn values_are_redacted_in_debug() {
        let v = SecretValue {
            name: "n".into(),
            version: 1,
            stages: vec![Stage::Current],
            value: "hunter2-distinctive".into(),
            created_at: Timestamp(0),
        };
        assert!(!format!("{v:?}").contains("hunter2"));
        let p = SecretPut { value: Some("hunter2-distinctive".into()), generate: None, rotation: None };
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
