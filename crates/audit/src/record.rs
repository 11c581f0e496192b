//! The audit record, the entry callers supply, and how a record is sealed (hashed).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::canonical::canonical_json;

/// `prev_hash` of the first record (`seq` 1): 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a caller records: everything but the log position and the hashes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AuditEntry {
    /// `aud_` + UUID v7, see [`AuditEntry::new_id`].
    pub id: String,
    /// RFC 3339 UTC with milliseconds, see [`format_time`].
    pub time: String,
    pub actor_key_id: Option<String>,
    /// `admin`, `operator`, `viewer`, `service`, `tenant` or `system`.
    pub actor_role: String,
    /// e.g. `tenant.create`, `secret.read`.
    pub action: String,
    /// e.g. `tenant/acme`.
    pub target: String,
    pub tenant_id: Option<String>,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
    /// `success` or `failure`.
    pub outcome: String,
    pub detail: serde_json::Value,
}

/// One audit record as stored and exported (one NDJSON line per record in exports).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// 1-based position in the log, contiguous.
    pub seq: i64,
    pub id: String,
    pub time: String,
    pub actor_key_id: Option<String>,
    pub actor_role: String,
    pub action: String,
    pub target: String,
    pub tenant_id: Option<String>,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
    pub outcome: String,
    pub detail: serde_json::Value,
    /// Hex SHA-256 of the previous record ([`GENESIS_HASH`] for `seq` 1).
    pub prev_hash: String,
    /// Hex SHA-256 of the canonical JSON of every other field, see [`AuditRecord::compute_hash`].
    pub hash: String,
}

impl AuditEntry {
    /// A fresh record id: `aud_` + UUID v7 (time-ordered).
    pub fn new_id() -> String {
        format!("aud_{}", uuid::Uuid::now_v7())
    }
}

/// `t` as RFC 3339 in UTC with exactly three fractional digits, e.g.
/// `2025-01-31T12:00:00.123Z`.
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    let t = t.replace_nanosecond(t.millisecond() as u32 * 1_000_000).expect("valid nanosecond");
    let s = t.format(&Rfc3339).expect("utc time formats as rfc 3339");
    // Rfc3339 drops trailing zero digits; pad to milliseconds.
    match s.find('.') {
        Some(dot) => {
            let frac = &s[dot + 1..s.len() - 1];
            format!("{}.{:0<3}Z", &s[..dot], frac)
        }
        None => format!("{}.000Z", &s[..s.len() - 1]),
    }
}

impl AuditRecord {
    /// Seals `entry` as record `seq` following the record whose hash is `prev_hash`.
    pub fn seal(entry: AuditEntry, seq: i64, prev_hash: &str) -> AuditRecord {
        let mut record = AuditRecord {
            seq,
            id: entry.id,
            time: entry.time,
            actor_key_id: entry.actor_key_id,
            actor_role: entry.actor_role,
            action: entry.action,
            target: entry.target,
            tenant_id: entry.tenant_id,
            request_id: entry.request_id,
            source_ip: entry.source_ip,
            outcome: entry.outcome,
            detail: entry.detail,
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
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

    /// The entry this record was sealed from.
    pub fn entry(&self) -> AuditEntry {
        AuditEntry {
            id: self.id.clone(),
            time: self.time.clone(),
            actor_key_id: self.actor_key_id.clone(),
            actor_role: self.actor_role.clone(),
            action: self.action.clone(),
            target: self.target.clone(),
            tenant_id: self.tenant_id.clone(),
            request_id: self.request_id.clone(),
            source_ip: self.source_ip.clone(),
            outcome: self.outcome.clone(),
            detail: self.detail.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn time_has_milliseconds_in_utc() {
        assert_eq!(format_time(datetime!(2025-01-31 12:00:00.123456 UTC)), "2025-01-31T12:00:00.123Z");
        assert_eq!(format_time(datetime!(2025-01-31 12:00:00 UTC)), "2025-01-31T12:00:00.000Z");
        assert_eq!(format_time(datetime!(2025-01-31 14:00:00.5 +02:00)), "2025-01-31T12:00:00.500Z");
    }

    #[test]
    fn ids_are_prefixed_uuids() {
        let id = AuditEntry::new_id();
        assert!(id.starts_with("aud_"));
        assert_eq!(id.len(), 4 + 36);
    }
}
