//! `tenancy audit ...`: list the audit log, export it, verify an export offline, and
//! ask the server to verify its own chain.
//!
//! `verify` says what is wrong and where: the line, the record's `seq` and which check
//! failed with the values it compared. An export that does not start at `seq` 1 is
//! either a range export (`export --from`) or one whose first records were cut off;
//! the file alone cannot tell, so `verify` warns (and fails with `--complete`). A cut at
//! the end cannot be seen in the file at all: `--expect-head HASH` (the `head` that
//! `tenancy audit check` prints, or a published checkpoint) detects it.

use std::io::BufRead;
use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{json, Value};
use tenancy_audit::chain::ChainVerifier;
use tenancy_audit::{AuditRecord, BreakReason, ChainStart, GENESIS_HASH};
use tenancy_client::{AuditExportParams, AuditListParams, Client};

use crate::support::*;

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Audit records, oldest first (who did what to which target, and the outcome).
    List {
        /// Only records about this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Only records of this API key id (the actor).
        #[arg(long)]
        actor: Option<String>,
        /// Only records of this action (e.g. tenant.create).
        #[arg(long)]
        action: Option<String>,
        /// RFC 3339: only records at or after this time.
        #[arg(long)]
        after: Option<String>,
        /// Items per page, 1-1000 [default: 100].
        #[arg(long)]
        limit: Option<u32>,
        /// The cursor printed after the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Verify an NDJSON audit export offline: names the line and the check that fails
    /// for a changed, dropped or reordered record.
    Verify {
        /// The export (from `tenancy audit export > FILE`).
        file: PathBuf,
        /// The hash the export must end with (the `head` of `tenancy audit check`, or a
        /// checkpoint): detects records cut off at the end.
        #[arg(long, value_name = "HASH")]
        expect_head: Option<String>,
        /// The export must hold the whole log from seq 1 (not a range): fail, rather
        /// than warn, when its first records are missing.
        #[arg(long)]
        complete: bool,
    },
    /// Write sealed audit records as NDJSON to stdout (`> file`, then `audit verify file`).
    Export {
        /// RFC 3339: from the first record at or after this time.
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339: to the last record before this time.
        #[arg(long)]
        to: Option<String>,
    },
    /// Write an NDJSON export to the server's blob store; prints where and its head.
    Archive {
        /// RFC 3339: from the first record at or after this time.
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339: to the last record before this time.
        #[arg(long)]
        to: Option<String>,
    },
    /// Ask the server to verify its sealed chain and latest checkpoint; prints the head
    /// (for `audit verify --expect-head`). Exit 1 when the chain does not hold.
    Check {
        /// Also verify the Parquet archive in the blob store against the chain (files
        /// against their manifests, records against the database's).
        #[arg(long)]
        archive: bool,
    },
}

pub const AUDIT_COLUMNS: &[&str] = &["time", "actor_role", "actor_key_id", "action", "target", "outcome"];

/// Runs the commands that talk to the server; `verify` and `export` print themselves.
pub async fn audit(c: &Client, cmd: AuditCmd) -> Result<(Value, &'static [&'static str]), CliError> {
    Ok(match cmd {
        AuditCmd::List { tenant, actor, action, after, limit, cursor } => {
            let params = AuditListParams { tenant_id: tenant, actor, action, after, limit, cursor };
            (to_json(c.audit_list(&params).await?), AUDIT_COLUMNS)
        }
        AuditCmd::Archive { from, to } => (
            c.audit_export_create(from.as_deref(), to.as_deref()).await?,
            &["location", "records", "first_seq", "last_seq", "head"],
        ),
        AuditCmd::Check { archive } => {
            let mut v = if archive { c.audit_verify_archive().await? } else { c.audit_verify().await? };
            if v.get("ok") != Some(&Value::Bool(true)) {
                if let Some(reason) = v.pointer("/archive/reason") {
                    return Err(CliError::Other(anyhow::anyhow!(
                        "the audit archive does not verify: {}",
                        cell(Some(reason))
                    )));
                }
                return Err(CliError::Other(anyhow::anyhow!(
                    "the audit chain does not hold at seq {}: {}",
                    cell(v.get("seq")),
                    cell(v.get("reason"))
                )));
            }
            if archive {
                // The archive's figures beside the chain's, for the table.
                let a = v.get("archive").cloned().unwrap_or_default();
                for k in ["audit_files", "audit_records", "last_seq", "event_files", "events"] {
                    v[format!("archive_{k}")] = a.get(k).cloned().unwrap_or(Value::Null);
                }
                return Ok((
                    v,
                    &[
                        "ok",
                        "records",
                        "pending",
                        "head",
                        "archive_audit_records",
                        "archive_last_seq",
                        "archive_events",
                    ],
                ));
            }
            (v, &["ok", "records", "pending", "head"])
        }
        AuditCmd::Verify { .. } | AuditCmd::Export { .. } => unreachable!("run by run_client"),
    })
}

/// Streams `GET /v1/audit/export` to stdout as it arrives.
pub async fn export_audit(c: &Client, from: Option<String>, to: Option<String>) -> Result<(), CliError> {
    use std::io::Write;
    let mut export = c.audit_export(&AuditExportParams { from, to }).await?;
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = export.chunk().await? {
        out.write_all(&chunk).map_err(|e| CliError::Other(anyhow::anyhow!("failed to write the export: {e}")))?;
    }
    out.flush().map_err(|e| CliError::Other(anyhow::anyhow!("failed to write the export: {e}")))?;
    Ok(())
}

/// What an export that verified covers.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    pub head: String,
    /// Set when the export does not start at seq 1: what is missing before it.
    pub warning: Option<String>,
}

/// A hash shortened for a message (the full one is in `-o json` and the export).
fn short(h: &str) -> String {
    if h.len() > 16 {
        format!("{}…", &h[..16])
    } else {
        h.to_owned()
    }
}

/// Verifies an NDJSON export read from `reader`; the error says what is wrong at which
/// line.
pub fn verify_export(reader: impl BufRead, expect_head: Option<&str>, complete: bool) -> Result<Verified, String> {
    let mut verifier = ChainVerifier::new(ChainStart::Trusted);
    let mut first: Option<(u64, i64)> = None;
    let mut last: Option<(u64, i64, String)> = None;
    // Where the expected head was met, if it was (to tell "cut off" from "goes on").
    let mut head_at: Option<(u64, i64)> = None;
    for (i, line) in reader.lines().enumerate() {
        let n = i as u64 + 1;
        let text = line.map_err(|e| format!("line {n}: cannot read: {e}"))?;
        if text.trim().is_empty() {
            continue;
        }
        let record: AuditRecord =
            serde_json::from_str(&text).map_err(|e| format!("line {n}: not an audit record: {e}"))?;
        if let Err(b) = verifier.push(&record) {
            let seq = record.seq;
            return Err(match b.reason {
                BreakReason::HashMismatch { computed } => format!(
                    "line {n}: record hash mismatch (seq {seq}): expected {computed} (its content), found {}: \
                     the record was changed after it was sealed",
                    record.hash
                ),
                BreakReason::SeqGap { expected } if seq > expected => {
                    let missing = if seq - 1 == expected {
                        format!("record {expected} is missing")
                    } else {
                        format!("records {expected}-{} are missing", seq - 1)
                    };
                    format!("line {n}: sequence {seq} follows {}: {missing}", expected - 1)
                }
                BreakReason::SeqGap { expected } => format!(
                    "line {n}: sequence {seq} after {}: a record is repeated or out of order (expected {expected})",
                    expected - 1
                ),
                BreakReason::PrevHashMismatch { expected } => format!(
                    "line {n}: prev_hash mismatch (seq {seq}): expected {} (the hash of the line before), found {}: \
                     the record does not follow the one before it",
                    short(&expected),
                    short(&record.prev_hash)
                ),
                BreakReason::BadGenesis => format!(
                    "line {n}: sequence 1 must start the chain with a prev_hash of 64 zeros, found {}",
                    short(&record.prev_hash)
                ),
                BreakReason::InvalidSeq => format!("line {n}: sequence {seq} is not a valid sequence (at least 1)"),
                BreakReason::NotGenesis => format!("line {n}: sequence {seq} does not start the chain"),
            });
        }
        if first.is_none() {
            first = Some((n, record.seq));
        }
        if expect_head == Some(record.hash.as_str()) {
            head_at = Some((n, record.seq));
        }
        last = Some((n, record.seq, record.hash));
    }
    let summary = verifier.finish();
    let warning = match first {
        Some((n, seq)) if seq > 1 => {
            let missing = if seq == 2 { "record 1".to_owned() } else { format!("records 1-{}", seq - 1) };
            Some(format!("line {n}: sequence {seq} does not follow the chain start; the export is missing {missing}"))
        }
        _ => None,
    };
    if complete {
        if let Some(w) = &warning {
            return Err(w.clone());
        }
    }
    if let Some(expected) = expect_head {
        if summary.head != expected {
            return Err(match (head_at, &last) {
                (Some((n, seq)), Some((_, last_seq, _))) => {
                    format!("line {n}: the expected head is record {seq}, but the export goes on to record {last_seq}")
                }
                (_, Some((n, last_seq, hash))) => format!(
                    "line {n}: the export ends at sequence {last_seq} with hash {}, not the expected head {}: \
                     records after {last_seq} are missing (the export was cut off), or the head is of another log",
                    short(hash),
                    short(expected)
                ),
                (_, None) if expected == GENESIS_HASH => unreachable!("an empty export's head is the genesis hash"),
                (_, None) => format!("the export is empty, but the expected head is {}", short(expected)),
            });
        }
    }
    Ok(Verified {
        records: summary.records,
        first_seq: summary.first_seq,
        last_seq: summary.last_seq,
        head: summary.head,
        warning,
    })
}

pub fn verify_audit(
    file: &std::path::Path,
    expect_head: Option<&str>,
    complete: bool,
    output: Output,
) -> Result<(), CliError> {
    let f = std::fs::File::open(file).map_err(|e| CliError::Usage(format!("cannot open {}: {e}", file.display())))?;
    match verify_export(std::io::BufReader::new(f), expect_head, complete) {
        Ok(v) => {
            if let Some(w) = &v.warning {
                eprintln!(
                    "warning: {w} (expected of a range export made with --from; --complete fails on it, \
                     --expect-head checks the end)"
                );
            }
            let out = json!({"ok": true, "records": v.records, "first_seq": v.first_seq, "last_seq": v.last_seq,
                             "head": v.head, "complete": v.warning.is_none(), "head_checked": expect_head.is_some()});
            match output {
                Output::Table => println!("ok: {} records verified, head {}", v.records, v.head),
                _ => print_value(&out, &[], output),
            }
            Ok(())
        }
        Err(why) => Err(CliError::Other(anyhow::anyhow!("audit export {} failed verification: {why}", file.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sealed chain of `n` records, as NDJSON lines.
    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let mut r: AuditRecord = serde_json::from_value(json!({
                    "seq": seq, "id": format!("aud_{seq}"), "time": "2026-01-01T00:00:00.000Z",
                    "actor_key_id": null, "actor_role": "admin", "action": "tenant.create",
                    "target": format!("tenant/t{seq}"), "tenant_id": null, "request_id": null,
                    "source_ip": null, "outcome": "success",
                    "detail": {}, "prev_hash": prev, "hash": ""
                }))
                .expect("a record");
                r.hash = r.compute_hash();
                prev = r.hash.clone();
                r
            })
            .collect()
    }

    fn ndjson(records: &[AuditRecord]) -> String {
        records.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect()
    }

    #[test]
    fn says_what_is_wrong_at_which_line() {
        let records = chain(6);
        let whole = verify_export(ndjson(&records).as_bytes(), None, false).unwrap();
        assert_eq!((whole.records, whole.warning), (6, None));

        let mut changed = records.clone();
        changed[3].entry.target = "tenant/evil".into();
        let e = verify_export(ndjson(&changed).as_bytes(), None, false).unwrap_err();
        assert!(e.starts_with("line 4: record hash mismatch (seq 4): expected "), "{e}");
        assert!(e.contains(&format!("found {}", records[3].hash)), "{e}");

        let mut dropped = records.clone();
        dropped.drain(2..4);
        let e = verify_export(ndjson(&dropped).as_bytes(), None, false).unwrap_err();
        assert_eq!(e, "line 3: sequence 5 follows 2: records 3-4 are missing");

        let cut = verify_export(ndjson(&records[3..]).as_bytes(), None, false).unwrap();
        assert_eq!(
            cut.warning.as_deref(),
            Some("line 1: sequence 4 does not follow the chain start; the export is missing records 1-3")
        );
        let e = verify_export(ndjson(&records[3..]).as_bytes(), None, true).unwrap_err();
        assert!(e.contains("missing records 1-3"), "{e}");

        let head = records[5].hash.clone();
        verify_export(ndjson(&records).as_bytes(), Some(&head), true).unwrap();
        let e = verify_export(ndjson(&records[..4]).as_bytes(), Some(&head), false).unwrap_err();
        assert!(e.starts_with("line 4: the export ends at sequence 4 with hash "), "{e}");
        assert!(e.contains("records after 4 are missing"), "{e}");
    }
}
