//! NDJSON export verification, including an export produced by an independent
//! Python implementation of docs/audit.md (`fixtures/export.ndjson`).

use std::io::Cursor;

use serde_json::json;
use tenancy_audit::ndjson::verify_ndjson_from;
use tenancy_audit::{verify_ndjson, AuditEntry, AuditRecord, BreakReason, ChainStart, VerifyError, GENESIS_HASH};
use tenancy_domain::time::Timestamp;

/// Written by the Python code in docs/audit.md (floats, UTF-16 key order, control
/// characters, a u64 integer, an empty detail), not by this crate.
const PYTHON_EXPORT: &str = include_str!("fixtures/export.ndjson");
const PYTHON_HEAD: &str = "81dc8e29e35071a02b7f2aaf8d74abac88edf3c5795f7cd783ab24d691b1a771";

fn export(n: i64) -> String {
    let mut prev = GENESIS_HASH.to_owned();
    let mut out = String::new();
    for seq in 1..=n {
        let e = AuditEntry {
            id: format!("aud_{seq}"),
            time: Timestamp::parse_rfc3339("2025-01-31T12:00:00.000Z").unwrap(),
            actor_key_id: Some("key_1".into()),
            actor_role: "operator".into(),
            action: "secret.read".into(),
            target: "tenant/acme/secret/db".into(),
            tenant_id: Some("acme".into()),
            request_id: Some(format!("req_{seq}")),
            source_ip: Some("198.51.100.1".into()),
            outcome: "success".into(),
            detail: json!({"version": seq}),
        };
        let r = AuditRecord::seal(e, seq, &prev);
        prev = r.hash.clone();
        out.push_str(&serde_json::to_string(&r).unwrap());
        out.push('\n');
    }
    out
}

#[test]
fn python_written_export_verifies() {
    let summary = verify_ndjson(Cursor::new(PYTHON_EXPORT)).unwrap();
    assert_eq!(summary.records, 4);
    assert_eq!(summary.head, PYTHON_HEAD);
    // Re-sealing the parsed records in Rust gives the same hashes.
    for line in PYTHON_EXPORT.lines() {
        let r: AuditRecord = serde_json::from_str(line).unwrap();
        assert_eq!(AuditRecord::seal(r.entry.clone(), r.seq, &r.prev_hash), r);
    }
}

#[test]
fn own_export_verifies_with_blank_lines_skipped() {
    let text = export(5) + "\n\n";
    let summary = verify_ndjson(Cursor::new(text)).unwrap();
    assert_eq!((summary.records, summary.first_seq, summary.last_seq), (5, Some(1), Some(5)));
}

#[test]
fn errors_carry_line_numbers() {
    let lines: Vec<String> = export(5).lines().map(str::to_owned).collect();

    let mut changed = lines.clone();
    changed[3] = changed[3].replace("secret.read", "secret.list");
    let err = verify_ndjson(Cursor::new(changed.join("\n"))).unwrap_err();
    assert_eq!(err.line(), 4);
    assert!(matches!(&err, VerifyError::Chain { source, .. }
        if matches!(source.reason, BreakReason::HashMismatch { .. })));
    assert_eq!(err.to_string(), "line 4");

    let mut dropped = lines.clone();
    dropped.remove(1);
    let err = verify_ndjson(Cursor::new(dropped.join("\n"))).unwrap_err();
    assert_eq!(err.line(), 2);

    let mut garbage = lines.clone();
    garbage[2] = "{not json".into();
    let err = verify_ndjson(Cursor::new(garbage.join("\n"))).unwrap_err();
    assert!(matches!(err, VerifyError::Parse { line: 3, .. }));
    assert_eq!(err.to_string(), "line 3 is not an audit record");
}

#[test]
fn range_exports_report_their_anchor() {
    let lines: Vec<String> = export(6).lines().map(str::to_owned).collect();
    let prev: AuditRecord = serde_json::from_str(&lines[2]).unwrap();
    let range = lines[3..].join("\n");
    let summary = verify_ndjson(Cursor::new(range.clone())).unwrap();
    assert_eq!(summary.first_seq, Some(4));
    assert_eq!(summary.start_prev_hash, prev.hash);
    verify_ndjson_from(Cursor::new(range.clone()), ChainStart::After(prev.hash.clone())).unwrap();
    let err = verify_ndjson_from(Cursor::new(range), ChainStart::Genesis).unwrap_err();
    assert_eq!(err.line(), 1);
}

#[test]
fn checkpoint_over_python_export_matches_python_root() {
    // checkpoint_root("export.ndjson", 4) from the Python code in docs/audit.md.
    let records: Vec<AuditRecord> = PYTHON_EXPORT.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let cp = tenancy_audit::Checkpoint::over(&records, "2025-01-31T12:10:00.000Z".into()).unwrap();
    assert_eq!(cp.root, "44a8274b32eacafc3e19d98145a39f91c33ae11bc227f7990040f3ec597987fd");
}

/// An export written by `GET /v1/audit/export` of the version before the audit record
/// had one type (issue 13): it still verifies, and every line reads back and writes
/// out byte for byte as it was (members, their order, the time's spelling).
const EXPORT_BEFORE_ISSUE_13: &str = include_str!("fixtures/export_before_issue_13.ndjson");

#[test]
fn exports_of_earlier_versions_verify_and_round_trip() {
    let summary = verify_ndjson(Cursor::new(EXPORT_BEFORE_ISSUE_13)).unwrap();
    assert_eq!((summary.first_seq, summary.last_seq), (Some(1), Some(4)));
    assert_eq!(summary.head, "4a16d2ffa6b72b5ddaf39319bd7b0c12f8ba27ef7ee59b17d812216a9208474e");
    for line in EXPORT_BEFORE_ISSUE_13.lines() {
        let r: AuditRecord = serde_json::from_str(line).unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), line);
    }
    // The same record with its time spelled otherwise is not read as the same record.
    let first = EXPORT_BEFORE_ISSUE_13.lines().next().unwrap().replacen(".821Z", ".821+00:00", 1);
    assert!(matches!(verify_ndjson(Cursor::new(first)), Err(VerifyError::Parse { line: 1, .. })));
}
