//! RFC 6962 Merkle hashing against the Certificate Transparency test vectors, and
//! inclusion proofs by proptest.

use proptest::prelude::*;
use serde_json::json;
use tenancy_audit::merkle::{leaf_hash, MerkleError};
use tenancy_audit::{
    inclusion_proof, merkle_root, verify_inclusion, AuditEntry, AuditRecord, Checkpoint, MerkleFrontier, GENESIS_HASH,
};
use tenancy_domain::time::Timestamp;

/// The eight leaves of the Certificate Transparency reference tests
/// (certificate-transparency `merkle_tree_test`); the roots and paths below were
/// recomputed with a 15-line python3 RFC 6962 implementation and agree with them.
fn ct_leaves() -> Vec<Vec<u8>> {
    vec![
        vec![],
        vec![0x00],
        vec![0x10],
        vec![0x20, 0x21],
        vec![0x30, 0x31],
        vec![0x40, 0x41, 0x42, 0x43],
        (0x50..0x58).collect(),
        (0x60..0x70).collect(),
    ]
}

const CT_ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn h(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

#[test]
fn empty_tree_root_is_sha256_of_nothing() {
    let none: [&[u8]; 0] = [];
    assert_eq!(hex::encode(merkle_root(&none)), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

#[test]
fn roots_match_ct_vectors() {
    let leaves = ct_leaves();
    for (n, want) in CT_ROOTS.iter().enumerate() {
        assert_eq!(hex::encode(merkle_root(&leaves[..=n])), *want, "tree size {}", n + 1);
    }
    assert_eq!(leaf_hash(&[]), h(CT_ROOTS[0]));
}

#[test]
fn a_frontier_grows_through_the_ct_roots() {
    let mut frontier = MerkleFrontier::new();
    assert_eq!(hex::encode(frontier.root()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    for (leaf, want) in ct_leaves().iter().zip(CT_ROOTS) {
        frontier.push(leaf);
        assert_eq!(hex::encode(frontier.root()), want, "tree size {}", frontier.size());
    }
}

#[test]
fn inclusion_proofs_match_ct_vectors() {
    let leaves = ct_leaves();
    let cases: [(u64, usize, &[&str]); 3] = [
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (2, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    ];
    for (index, size, path) in cases {
        let proof = inclusion_proof(&leaves[..size], index).unwrap();
        let want: Vec<[u8; 32]> = path.iter().map(|p| h(p)).collect();
        assert_eq!(proof, want, "leaf {index} of {size}");
        let root = h(CT_ROOTS[size - 1]);
        assert!(verify_inclusion(&leaves[index as usize], index, size as u64, &proof, &root));
    }
    assert_eq!(inclusion_proof(&leaves[..1], 0).unwrap(), Vec::<[u8; 32]>::new());
    assert!(verify_inclusion(&leaves[0], 0, 1, &[], &h(CT_ROOTS[0])));
}

#[test]
fn bad_proofs_are_rejected() {
    let leaves = ct_leaves();
    let root = h(CT_ROOTS[7]);
    let proof = inclusion_proof(&leaves, 5).unwrap();
    assert!(!verify_inclusion(&leaves[5], 4, 8, &proof, &root), "wrong index");
    assert!(!verify_inclusion(&leaves[5], 5, 6, &proof, &root), "wrong size");
    assert!(!verify_inclusion(&leaves[5], 5, 8, &proof[..2], &root), "short proof");
    let mut long = proof.clone();
    long.push([0; 32]);
    assert!(!verify_inclusion(&leaves[5], 5, 8, &long, &root), "long proof");
    assert!(!verify_inclusion(&leaves[5], 8, 8, &proof, &root), "index out of range");
    assert_eq!(inclusion_proof(&leaves, 8), Err(MerkleError::IndexOutOfRange { index: 8, tree_size: 8 }));
}

#[test]
fn checkpoint_over_audit_records() {
    let mut prev = GENESIS_HASH.to_owned();
    let records: Vec<AuditRecord> = (1..=5)
        .map(|seq| {
            let e = AuditEntry {
                id: format!("aud_{seq}"),
                time: Timestamp::parse_rfc3339("2025-01-31T12:00:00.000Z").unwrap(),
                actor_key_id: None,
                actor_role: "system".into(),
                action: "tenant.update".into(),
                target: "tenant/acme".into(),
                tenant_id: Some("acme".into()),
                request_id: None,
                source_ip: None,
                outcome: "success".into(),
                detail: json!({"n": seq}),
            };
            let r = AuditRecord::seal(e, seq, &prev);
            prev = r.hash.clone();
            r
        })
        .collect();
    let cp = Checkpoint::over(&records, "2025-01-31T12:05:00.000Z".into()).unwrap();
    assert_eq!(cp.tree_size, 5);
    let entries: Vec<Vec<u8>> = records.iter().map(|r| hex::decode(&r.hash).unwrap()).collect();
    assert_eq!(cp.root, hex::encode(merkle_root(&entries)));
    for (i, r) in records.iter().enumerate() {
        let proof = inclusion_proof(&entries, i as u64).unwrap();
        assert!(cp.includes(r, &proof));
    }
    let mut forged = records[2].clone();
    forged.hash = records[3].hash.clone();
    assert!(!cp.includes(&forged, &inclusion_proof(&entries, 2).unwrap()));
    let json = serde_json::to_value(&cp).unwrap();
    assert_eq!(json["tree_size"], 5);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_leaf_proves_and_modified_leaves_fail(
        leaves in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..8), 1..40),
        pick in any::<prop::sample::Index>(),
        flip in any::<u8>(),
    ) {
        let root = merkle_root(&leaves);
        let n = leaves.len() as u64;
        for (i, leaf) in leaves.iter().enumerate() {
            let proof = inclusion_proof(&leaves, i as u64).unwrap();
            prop_assert!(verify_inclusion(leaf, i as u64, n, &proof, &root));
        }
        let i = pick.index(leaves.len());
        let proof = inclusion_proof(&leaves, i as u64).unwrap();
        let mut modified = leaves[i].clone();
        match modified.first_mut() {
            Some(b) => *b ^= flip.max(1),
            None => modified.push(flip),
        }
        prop_assert!(!verify_inclusion(&modified, i as u64, n, &proof, &root));
        if n > 1 {
            let j = (i + 1) % leaves.len();
            if leaves[j] != leaves[i] {
                prop_assert!(!verify_inclusion(&leaves[j], i as u64, n, &proof, &root));
            }
        }
    }
}

proptest! {
    /// Every size, including the ones a checkpointer resumes from: appending to a
    /// frontier gives the root of the whole list.
    #[test]
    fn a_frontier_root_is_the_root_of_everything_appended(
        entries in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 0..70),
        resume in 0usize..70,
    ) {
        let mut frontier = MerkleFrontier::new();
        for (i, e) in entries.iter().enumerate() {
            if i == resume.min(entries.len()) {
                prop_assert_eq!(frontier.root(), merkle_root(&entries[..i]));
            }
            frontier.push(e);
        }
        prop_assert_eq!(frontier.size(), entries.len() as u64);
        prop_assert_eq!(frontier.root(), merkle_root(&entries));
    }
}
