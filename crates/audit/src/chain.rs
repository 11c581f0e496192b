//! Hash chain verification: every record's hash is recomputed, `seq` must increase by
//! one and `prev_hash` must equal the previous record's hash.

use thiserror::Error;

use crate::record::{AuditRecord, GENESIS_HASH};

/// Where the verified records must start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainStart {
    /// The whole log: the first record is `seq` 1 with `prev_hash` [`GENESIS_HASH`].
    Genesis,
    /// A range export: the first record's `prev_hash` must equal this hash (the head
    /// of an earlier, already verified range or a published checkpoint).
    After(String),
    /// A range export whose start is trusted as given; the first record's
    /// `prev_hash` is reported in [`ChainSummary::start_prev_hash`] for the caller to
    /// check against another source.
    Trusted,
}

/// What a verified chain covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    /// Number of records verified.
    pub records: u64,
    /// `seq` of the first record, if any.
    pub first_seq: Option<i64>,
    /// `seq` of the last record, if any.
    pub last_seq: Option<i64>,
    /// `prev_hash` of the first record (the hash the range hangs from).
    pub start_prev_hash: String,
    /// Hash of the last record: the head to remember or compare with a checkpoint.
    pub head: String,
}

/// The first record at which the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("chain broken at record {index} (seq {seq}): {reason}")]
pub struct ChainBreak {
    /// 0-based position of the record in the input.
    pub index: u64,
    /// The record's `seq` as written in it.
    pub seq: i64,
    pub reason: BreakReason,
}

/// Why the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BreakReason {
    #[error("record content does not match its hash (recomputed {computed})")]
    HashMismatch { computed: String },
    #[error("expected seq {expected}")]
    SeqGap { expected: i64 },
    #[error("prev_hash does not match the previous record's hash {expected}")]
    PrevHashMismatch { expected: String },
    #[error("log must start at seq 1")]
    NotGenesis,
    #[error("seq 1 must have prev_hash of 64 zeros")]
    BadGenesis,
    #[error("seq must be at least 1")]
    InvalidSeq,
}

/// Verifies records one at a time, for streams too large to hold.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    start: ChainStart,
    records: u64,
    first_seq: Option<i64>,
    last_seq: Option<i64>,
    start_prev_hash: Option<String>,
    head: Option<String>,
}

impl ChainVerifier {
    /// A verifier expecting the chain to start as `start` says.
    pub fn new(start: ChainStart) -> ChainVerifier {
        ChainVerifier { start, records: 0, first_seq: None, last_seq: None, start_prev_hash: None, head: None }
    }

    /// Checks the next record.
    pub fn push(&mut self, record: &AuditRecord) -> Result<(), ChainBreak> {
        let fail = |reason| ChainBreak { index: self.records, seq: record.seq, reason };
        if record.seq < 1 {
            return Err(fail(BreakReason::InvalidSeq));
        }
        let computed = record.compute_hash();
        if computed != record.hash {
            return Err(fail(BreakReason::HashMismatch { computed }));
        }
        match (&self.last_seq, &self.head) {
            (Some(last), Some(head)) => {
                if record.seq != last + 1 {
                    return Err(fail(BreakReason::SeqGap { expected: last + 1 }));
                }
                if &record.prev_hash != head {
                    return Err(fail(BreakReason::PrevHashMismatch { expected: head.clone() }));
                }
            }
            _ => match &self.start {
                ChainStart::Genesis if record.seq != 1 => {
                    return Err(fail(BreakReason::NotGenesis));
                }
                ChainStart::After(expected) if &record.prev_hash != expected => {
                    return Err(fail(BreakReason::PrevHashMismatch { expected: expected.clone() }));
                }
                _ => {}
            },
        }
        if record.seq == 1 && record.prev_hash != GENESIS_HASH {
            return Err(fail(BreakReason::BadGenesis));
        }
        if self.first_seq.is_none() {
            self.first_seq = Some(record.seq);
            self.start_prev_hash = Some(record.prev_hash.clone());
        }
        self.records += 1;
        self.last_seq = Some(record.seq);
        self.head = Some(record.hash.clone());
        Ok(())
    }

    /// The summary of everything pushed so far.
    pub fn finish(self) -> ChainSummary {
        let start = match self.start {
            ChainStart::After(h) => h,
            ChainStart::Genesis | ChainStart::Trusted => GENESIS_HASH.to_owned(),
        };
        let start_prev_hash = self.start_prev_hash.unwrap_or(start);
        ChainSummary {
            records: self.records,
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            head: self.head.unwrap_or_else(|| start_prev_hash.clone()),
            start_prev_hash,
        }
    }
}

/// Verifies a whole log from its first record (`seq` 1, genesis `prev_hash`).
pub fn verify_chain(records: impl IntoIterator<Item = AuditRecord>) -> Result<ChainSummary, ChainBreak> {
    verify_chain_from(records, ChainStart::Genesis)
}

/// Verifies records starting as `start` says (a whole log or a range export).
pub fn verify_chain_from(
    records: impl IntoIterator<Item = AuditRecord>,
    start: ChainStart,
) -> Result<ChainSummary, ChainBreak> {
    let mut verifier = ChainVerifier::new(start);
    for record in records {
        verifier.push(&record)?;
    }
    Ok(verifier.finish())
}
