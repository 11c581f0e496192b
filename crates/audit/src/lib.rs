//! The pure part of Tenancy's tamper-evident audit log: the one audit record type
//! ([`AuditEntry`] as a change writes it, [`AuditRecord`] once sealed; the domain, the
//! store, the application and the API all use these), its canonical form and hash
//! ([`record`], [`canonical`]), hash chain verification ([`chain`]),
//! RFC 6962 Merkle checkpoints and inclusion proofs ([`merkle`]) and verification of
//! NDJSON exports ([`ndjson`]). Storage lives elsewhere. `docs/audit.md` describes
//! the format for third-party verifiers.

pub mod canonical;
pub mod chain;
pub mod merkle;
pub mod ndjson;
pub mod record;
pub mod view;

pub use chain::{verify_chain, verify_chain_from, BreakReason, ChainBreak, ChainStart, ChainSummary};
pub use merkle::{inclusion_proof, merkle_root, verify_inclusion, Checkpoint, MerkleFrontier};
pub use ndjson::{verify_ndjson, VerifyError};
pub use record::{AuditEntry, AuditRecord, GENESIS_HASH};
pub use view::{AuditRecordView, StoredAudit};
