//! The audit record, the entry callers supply, and how a record is sealed (hashed).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use tenancy_domain::time::Timestamp;

use crate::canonical::canonical_json;

/// `prev_hash` of the first record (`seq` 1): 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a change records, committed with it in one transaction (the store's
/// `Effects`): everything but the log position and the hashes, which the sealer adds
/// ([`AuditRecord::seal`]). This is the one definition of an audit entry's members:
/// the store writes and reads it, the API lists it, exports carry it inside
/// [`AuditRecord`].
///
/// `id` is `aud_` + UUID v7 ([`AuditEntry::new_id`]); `time` is written as RFC 3339
/// UTC with milliseconds (and an export's time must be written so, see
/// [`canonical_time`]); `actor_role` is `admin`, `operator`, `viewer`, `service`,
/// `tenant` or `system`; `action` e.g. `tenant.create`, `target` e.g. `tenant/acme`;
/// `outcome` is `success` or `failure`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: String,
    #[serde(deserialize_with = "canonical_time")]
    pub time: Timestamp,
    pub actor_key_id: Option<String>,
    pub actor_role: String,
    pub action: String,
    pub target: String,
    pub tenant_id: Option<String>,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
    pub outcome: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// One sealed audit record as exported (one NDJSON line per record): the entry
/// between its position and its hashes, in that member order. Unknown members are
/// refused (they would not be covered by the hash).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// 1-based position in the log, contiguous.
    pub seq: i64,
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// Hex SHA-256 of the previous record ([`GENESIS_HASH`] for `seq` 1).
    pub prev_hash: String,
    /// Hex SHA-256 of the canonical JSON of every other member, see [`AuditRecord::compute_hash`].
    pub hash: String,
}

/// Reads a time that must be written exactly as Tenancy writes it (RFC 3339 UTC with
/// three fractional digits, `2025-01-31T12:00:00.123Z`): the hash covers the text, so
/// another spelling of the same instant would be a different record.
pub fn canonical_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
    let text = String::deserialize(d)?;
    match Timestamp::parse_rfc3339(&text) {
        Some(t) if t.to_rfc3339() == text => Ok(t),
        _ => Err(serde::de::Error::custom(format!(
            "time {text:?} is not RFC 3339 UTC with milliseconds (like 2025-01-31T12:00:00.123Z)"
        ))),
    }
}

impl AuditEntry {
    /// A fresh record id: `aud_` + UUID v7 (time-ordered).
    pub fn new_id() -> String {
        format!("aud_{}", uuid::Uuid::now_v7())
    }
}

impl AuditRecord {
    /// Seals `entry` as record `seq` following the record whose hash is `prev_hash`.
    pub fn seal(entry: AuditEntry, seq: i64, prev_hash: &str) -> AuditRecord {
        let mut record = AuditRecord { seq, entry, prev_hash: prev_hash.to_owned(), hash: String::new() };
        record.hash = record.compute_hash();
        record
    }

    /// The canonical JSON that is hashed: the record as a JSON object without its
    /// `hash` member (absent optional fields are `null`), canonicalized.
    pub fn canonical_form(&self) -> String {
        let mut value = serde_json::to_value(self).expect("record serializes");
        if let serde_json::Value::Object(map) = &mut value {
            map.remove("hash");
        }
        canonical_json(&value)
    }

    /// Lowercase hex SHA-256 of [`AuditRecord::canonical_form`].
    pub fn compute_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_form().as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_must_be_written_as_tenancy_writes_them() {
        let time = |text: &str| canonical_time(serde_json::Value::String(text.to_owned()));
        assert_eq!(time("2025-01-31T12:00:00.123Z").unwrap(), Timestamp(1_738_324_800_123));
        // The same instant spelled otherwise is another text, hence another hash.
        for other in ["2025-01-31T12:00:00.123+00:00", "2025-01-31T12:00:00.1230Z", "2025-01-31T12:00:00Z", "x"] {
            assert!(time(other).is_err(), "{other}");
        }
    }

    #[test]
    fn ids_are_prefixed_uuids() {
        let id = AuditEntry::new_id();
        assert!(id.starts_with("aud_"));
        assert_eq!(id.len(), 4 + 36);
    }
}
