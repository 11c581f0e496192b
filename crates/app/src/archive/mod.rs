//! Archives: the leased archiver writes sealed audit records and events to the blob
//! store as Parquet, partitioned Hive-style by type and day of their `time`
//! (`audit/date=YYYY-MM-DD/<first seq>.parquet`, `events/date=YYYY-MM-DD/...`), with a
//! manifest per file (`manifests/<type>/date=.../<first seq>.json`: rows, bytes,
//! SHA-256, first and last `seq`) kept outside the data prefixes, so Athena and DuckDB
//! read only Parquet. The audit archive verifies against the chain
//! (`GET /v1/audit/verify?archive=true`); a replay reads the event archive for the
//! part of its range older than the database holds. See docs/audit.md, "Archives".

pub mod columns;
pub mod ops;
pub mod worker;

use serde::{Deserialize, Serialize};
use tenancy_domain::time::Timestamp;

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveKind {
    Audit,
    Events,
}

impl ArchiveKind {
    pub fn prefix(self) -> &'static str {
        match self {
            ArchiveKind::Audit => "audit",
            ArchiveKind::Events => "events",
        }
    }

    /// The columns of the kind's files.
    pub fn schema(self) -> arrow_schema::SchemaRef {
        match self {
            ArchiveKind::Audit => columns::audit_schema(),
            ArchiveKind::Events => columns::events_schema(),
        }
    }
}

/// The manifest written beside (not among) each archive file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The file's path in the blob store.
    pub file: String,
    pub kind: ArchiveKind,
    /// The partition, `YYYY-MM-DD` (UTC) of the rows' `time`.
    pub date: String,
    pub rows: u64,
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the file.
    pub sha256: String,
    /// The first and last `seq` in the file: audit sequence numbers for audit files,
    /// the events table's positions for event files.
    pub first_seq: i64,
    pub last_seq: i64,
    /// Audit files: the hash of the record with `last_seq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_hash: Option<String>,
    pub created_at: Timestamp,
}

/// `YYYY-MM-DD` of a time, UTC.
pub fn day(t: Timestamp) -> String {
    t.to_rfc3339()[..10].to_owned()
}

/// The data file of a partition starting at `first_seq`. Named by its first `seq`
/// only: a pass retried after a crash writes the same name again (a superset of the
/// rows), never a second file with the same rows.
pub fn data_path(kind: ArchiveKind, date: &str, first_seq: i64) -> String {
    format!("{}/date={date}/{first_seq:016}.parquet", kind.prefix())
}

/// The manifest of [`data_path`].
pub fn manifest_path(kind: ArchiveKind, date: &str, first_seq: i64) -> String {
    format!("manifests/{}/date={date}/{first_seq:016}.json", kind.prefix())
}
