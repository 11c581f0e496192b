//! Storage of the audit log's sealing: the hash chain and Merkle checkpoints.

use async_trait::async_trait;
use tenancy_audit::{AuditEntry, AuditRecord};
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;

/// Computes the hash of an entry sealed as `seq` after `prev_hash`.
pub type Sealer<'a> = &'a (dyn Fn(&AuditEntry, i64, &str) -> String + Send + Sync);

/// A stored Merkle checkpoint over records `1..=tree_size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheckpoint {
    pub tree_size: i64,
    /// Lowercase hex root.
    pub root: String,
    pub time: Timestamp,
}

/// Object safe: every `Store` is one.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Seals up to `limit` unsealed entries in `pos` order, continuing the chain from
    /// the last sealed record: assigns `seq`, `prev_hash` and `hash = seal(entry, seq,
    /// prev_hash)`. One sealer at a time (serialized by the database). Returns how many
    /// were sealed.
    async fn audit_seal(&self, limit: u32, seal: Sealer<'_>) -> Result<u64>;
    /// Sealed records with `seq > after_seq`, in `seq` order, as stored (a record whose
    /// hash does not match its content is returned as it is, for verification to find).
    async fn audit_sealed(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditRecord>>;
    /// `(seq, hash)` of sealed records with `seq > after_seq`, in `seq` order: what a
    /// Merkle checkpoint needs, without the records.
    async fn audit_hashes(&self, after_seq: i64, limit: u32) -> Result<Vec<(i64, String)>>;
    /// The `seq` range of sealed records with `from <= time < to`: the first and the
    /// last such record (records in between are included whatever their time).
    async fn audit_seq_range(&self, from: Option<Timestamp>, to: Option<Timestamp>) -> Result<Option<(i64, i64)>>;
    /// (sealed, unsealed) record counts.
    async fn audit_counts(&self) -> Result<(u64, u64)>;
    /// The last `seq` the archiver has written to the blob store (0: none).
    async fn audit_archive_cursor(&self) -> Result<i64>;
    /// Moves the archive cursor from `from` to `to`; false (and nothing changed) when
    /// it is no longer at `from` (another archiver moved it).
    async fn audit_archive_advance(&self, from: i64, to: i64) -> Result<bool>;
    async fn audit_checkpoint_put(&self, cp: &AuditCheckpoint) -> Result<()>;
    async fn audit_checkpoint_latest(&self) -> Result<Option<AuditCheckpoint>>;
}
