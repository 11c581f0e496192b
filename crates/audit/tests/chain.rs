//! Sealing, canonicalization stability and hash chain tamper detection.

use serde_json::json;
use tenancy_audit::chain::ChainVerifier;
use tenancy_audit::{verify_chain, verify_chain_from, AuditEntry, AuditRecord, BreakReason, ChainStart, GENESIS_HASH};
use tenancy_domain::time::Timestamp;

fn entry(i: i64) -> AuditEntry {
    AuditEntry {
        id: format!("aud_{i:04}"),
        time: Timestamp::parse_rfc3339(&format!("2025-01-31T12:00:{:02}.000Z", i % 60)).unwrap(),
        actor_key_id: (i % 2 == 0).then(|| "key_admin".to_owned()),
        actor_role: "admin".to_owned(),
        action: "tenant.create".to_owned(),
        target: format!("tenant/t{i}"),
        tenant_id: Some(format!("t{i}")),
        request_id: Some(format!("req_{i}")),
        source_ip: None,
        outcome: "success".to_owned(),
        detail: json!({"plan": "pro", "limits": {"seats": i, "ratio": 0.5}, "tags": ["a", "b"]}),
    }
}

fn log(n: i64) -> Vec<AuditRecord> {
    let mut prev = GENESIS_HASH.to_owned();
    (1..=n)
        .map(|seq| {
            let r = AuditRecord::seal(entry(seq), seq, &prev);
            prev = r.hash.clone();
            r
        })
        .collect()
}

#[test]
fn sealed_chain_verifies() {
    let records = log(5);
    assert_eq!(records[0].prev_hash, GENESIS_HASH);
    assert_eq!(records[1].prev_hash, records[0].hash);
    assert_eq!(records[0].entry.clone(), entry(1));
    let summary = verify_chain(records.clone()).unwrap();
    assert_eq!(summary.records, 5);
    assert_eq!(summary.first_seq, Some(1));
    assert_eq!(summary.last_seq, Some(5));
    assert_eq!(summary.start_prev_hash, GENESIS_HASH);
    assert_eq!(summary.head, records[4].hash);
}

#[test]
fn empty_log_verifies_with_genesis_head() {
    let summary = verify_chain(Vec::new()).unwrap();
    assert_eq!(summary.records, 0);
    assert_eq!(summary.head, GENESIS_HASH);
}

#[test]
fn hash_is_sha256_of_the_documented_canonical_form() {
    let r = AuditRecord::seal(
        AuditEntry {
            id: "aud_1".into(),
            time: Timestamp::parse_rfc3339("2025-01-31T12:00:00.000Z").unwrap(),
            actor_key_id: None,
            actor_role: "system".into(),
            action: "tenant.create".into(),
            target: "tenant/acme".into(),
            tenant_id: Some("acme".into()),
            request_id: None,
            source_ip: Some("203.0.113.7".into()),
            outcome: "success".into(),
            detail: json!({"z": 1, "a": [1.0, "é"]}),
        },
        1,
        GENESIS_HASH,
    );
    let expected_form = concat!(
        r#"{"action":"tenant.create","actor_key_id":null,"actor_role":"system","#,
        r#""detail":{"a":[1,"é"],"z":1},"id":"aud_1","outcome":"success","#,
        r#""prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","#,
        r#""request_id":null,"seq":1,"source_ip":"203.0.113.7","target":"tenant/acme","#,
        r#""tenant_id":"acme","time":"2025-01-31T12:00:00.000Z"}"#
    );
    assert_eq!(r.canonical_form(), expected_form);
    // Computed independently: python3 -c 'import hashlib,sys;
    //   print(hashlib.sha256(sys.argv[1].encode()).hexdigest())' "$FORM"
    assert_eq!(r.hash, "ac47bbe54a25d1b181d8666b8f156eb25895887917983fecc2655c8de44ef14f");
}

#[test]
fn key_order_in_detail_does_not_change_the_hash() {
    let mut a = entry(1);
    a.detail = serde_json::from_str(r#"{"b": {"y": 1, "x": [2, {"q": 1, "p": 2}]}, "a": true}"#).unwrap();
    let mut b = entry(1);
    b.detail = serde_json::from_str(r#"{"a": true, "b": {"x": [2, {"p": 2, "q": 1}], "y": 1}}"#).unwrap();
    assert_eq!(AuditRecord::seal(a, 1, GENESIS_HASH).hash, AuditRecord::seal(b, 1, GENESIS_HASH).hash);
}

#[test]
fn changed_field_is_detected() {
    let mut records = log(4);
    records[2].entry.outcome = "failure".into();
    let err = verify_chain(records).unwrap_err();
    assert_eq!((err.index, err.seq), (2, 3));
    assert!(matches!(err.reason, BreakReason::HashMismatch { .. }));
}

#[test]
fn changed_nested_detail_key_is_detected() {
    let mut records = log(4);
    records[1].entry.detail["limits"]["seats"] = json!(1000);
    let err = verify_chain(records).unwrap_err();
    assert_eq!(err.seq, 2);
    assert!(matches!(err.reason, BreakReason::HashMismatch { .. }));
}

#[test]
fn changed_and_resealed_record_breaks_the_next_link() {
    let mut records = log(4);
    let mut forged = records[1].entry.clone();
    forged.outcome = "failure".into();
    records[1] = AuditRecord::seal(forged, 2, &records[0].hash);
    let err = verify_chain(records).unwrap_err();
    assert_eq!(err.seq, 3);
    assert!(matches!(err.reason, BreakReason::PrevHashMismatch { .. }));
}

#[test]
fn dropped_record_is_detected() {
    let mut records = log(5);
    records.remove(2);
    let err = verify_chain(records).unwrap_err();
    assert_eq!((err.index, err.seq), (2, 4));
    assert_eq!(err.reason, BreakReason::SeqGap { expected: 3 });
    assert_eq!(err.to_string(), "chain broken at record 2 (seq 4): expected seq 3");
}

#[test]
fn dropped_and_renumbered_record_is_detected() {
    let mut records = log(5);
    records.remove(2);
    records[2].seq = 3;
    let err = verify_chain(records.clone()).unwrap_err();
    assert!(matches!(err.reason, BreakReason::HashMismatch { .. }));
    // Even re-sealed with the new seq, the link to the previous record is broken.
    records[2] = AuditRecord::seal(records[2].entry.clone(), 3, &records[2].prev_hash.clone());
    let err = verify_chain(records).unwrap_err();
    assert_eq!(err.seq, 3);
    assert!(matches!(err.reason, BreakReason::PrevHashMismatch { .. }));
}

#[test]
fn swapped_pair_is_detected() {
    let mut records = log(5);
    records.swap(1, 2);
    let err = verify_chain(records).unwrap_err();
    assert_eq!((err.index, err.seq), (1, 3));
    assert_eq!(err.reason, BreakReason::SeqGap { expected: 2 });
}

#[test]
fn wrong_genesis_is_detected() {
    let bad = AuditRecord::seal(entry(1), 1, &"1".repeat(64));
    assert_eq!(verify_chain(vec![bad.clone()]).unwrap_err().reason, BreakReason::BadGenesis);
    assert_eq!(verify_chain_from(vec![bad], ChainStart::Trusted).unwrap_err().reason, BreakReason::BadGenesis);
    let records = log(3);
    assert_eq!(verify_chain(records[1..].to_vec()).unwrap_err().reason, BreakReason::NotGenesis);
    let zero = AuditRecord::seal(entry(0), 0, GENESIS_HASH);
    assert_eq!(verify_chain(vec![zero]).unwrap_err().reason, BreakReason::InvalidSeq);
}

#[test]
fn range_export_from_the_middle() {
    let records = log(10);
    let range = records[4..8].to_vec();
    let trusted = verify_chain_from(range.clone(), ChainStart::Trusted).unwrap();
    assert_eq!(trusted.records, 4);
    assert_eq!(trusted.first_seq, Some(5));
    assert_eq!(trusted.start_prev_hash, records[3].hash);
    assert_eq!(trusted.head, records[7].hash);
    let anchored = verify_chain_from(range.clone(), ChainStart::After(records[3].hash.clone())).unwrap();
    assert_eq!(anchored, trusted);
    let err = verify_chain_from(range, ChainStart::After(records[2].hash.clone())).unwrap_err();
    assert_eq!(err.index, 0);
    assert!(matches!(err.reason, BreakReason::PrevHashMismatch { .. }));
}

#[test]
fn streaming_verifier_matches_batch() {
    let records = log(6);
    let mut v = ChainVerifier::new(ChainStart::Genesis);
    for r in &records {
        v.push(r).unwrap();
    }
    assert_eq!(v.finish(), verify_chain(records).unwrap());
}

#[test]
fn records_round_trip_through_json_in_field_order() {
    let r = &log(1)[0];
    let line = serde_json::to_string(r).unwrap();
    assert!(line.starts_with(r#"{"seq":1,"id":"aud_0001","time":"#));
    assert!(line.ends_with(&format!(r#""hash":"{}"}}"#, r.hash)));
    let back: AuditRecord = serde_json::from_str(&line).unwrap();
    assert_eq!(&back, r);
    let extra = line.replacen("{", r#"{"injected":1,"#, 1);
    assert!(serde_json::from_str::<AuditRecord>(&extra).is_err());
}
