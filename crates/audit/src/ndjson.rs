//! Verification of an NDJSON export (one record per line), as `tenancy audit verify
//! FILE` does it.

use std::io::BufRead;

use thiserror::Error;

use crate::chain::{ChainBreak, ChainStart, ChainSummary, ChainVerifier};
use crate::record::AuditRecord;

/// Why an export does not verify; `line` is 1-based.
#[derive(Debug, Error)]
pub enum VerifyError {
    #[error("failed to read line {line}")]
    Io {
        line: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("line {line} is not an audit record")]
    Parse {
        line: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error("line {line}")]
    Chain {
        line: u64,
        #[source]
        source: ChainBreak,
    },
}

impl VerifyError {
    /// The 1-based line the error is about.
    pub fn line(&self) -> u64 {
        match self {
            VerifyError::Io { line, .. } | VerifyError::Parse { line, .. } | VerifyError::Chain { line, .. } => *line,
        }
    }
}

/// Verifies an export: a whole log if it starts at `seq` 1, otherwise a range whose
/// starting `prev_hash` is trusted and reported in the summary. Blank lines are
/// skipped.
pub fn verify_ndjson(reader: impl BufRead) -> Result<ChainSummary, VerifyError> {
    verify_ndjson_from(reader, ChainStart::Trusted)
}

/// [`verify_ndjson`] with an explicit expectation of where the export starts.
pub fn verify_ndjson_from(reader: impl BufRead, start: ChainStart) -> Result<ChainSummary, VerifyError> {
    let mut verifier = ChainVerifier::new(start);
    for (i, line) in reader.lines().enumerate() {
        let line_no = i as u64 + 1;
        let text = line.map_err(|source| VerifyError::Io { line: line_no, source })?;
        if text.trim().is_empty() {
            continue;
        }
        let record: AuditRecord =
            serde_json::from_str(&text).map_err(|source| VerifyError::Parse { line: line_no, source })?;
        verifier.push(&record).map_err(|source| VerifyError::Chain { line: line_no, source })?;
    }
    Ok(verifier.finish())
}
