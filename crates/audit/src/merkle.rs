//! RFC 6962 (Certificate Transparency) Merkle tree hashing over audit records, for
//! periodic checkpoints and inclusion proofs.
//!
//! - leaf hash: `SHA-256(0x00 || entry)`;
//! - node hash: `SHA-256(0x01 || left || right)`;
//! - a tree of `n > 1` entries splits at `k`, the largest power of two below `n`;
//! - the root of the empty tree is `SHA-256("")`.
//!
//! For the audit log, entry `i` is the 32 raw bytes of record `seq = i + 1`'s hash
//! (see [`record_entry`]).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::record::AuditRecord;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Why a proof cannot be made or checked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MerkleError {
    #[error("leaf index {index} is outside a tree of size {tree_size}")]
    IndexOutOfRange { index: u64, tree_size: u64 },
    #[error("record hash is not 64 hex digits")]
    BadRecordHash,
}

/// `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The Merkle tree entry of a record: its hash as 32 raw bytes.
pub fn record_entry(record: &AuditRecord) -> Result<Hash, MerkleError> {
    hash_entry(&record.hash)
}

/// The Merkle tree entry of a record's hash (64 hex digits): its 32 raw bytes.
pub fn hash_entry(hash: &str) -> Result<Hash, MerkleError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hash, &mut out).map_err(|_| MerkleError::BadRecordHash)?;
    Ok(out)
}

/// Largest power of two strictly below `n` (`n >= 2`).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The root over already-hashed leaves (RFC 6962 MTH).
fn root_of(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest(b"").into(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// The Merkle tree hash of `entries` (each entry is leaf-hashed first).
pub fn merkle_root<E: AsRef<[u8]>>(entries: &[E]) -> Hash {
    let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e.as_ref())).collect();
    root_of(&leaves)
}

/// The right edge of a growing RFC 6962 tree: the roots of its perfect subtrees, left
/// to right (their sizes are the binary digits of the tree's size, largest first).
///
/// Appending a leaf merges equal-sized subtrees like a binary counter, so the root of
/// a log of `n` entries costs `O(log n)` memory and, per appended entry, amortized
/// `O(1)` hashes; a checkpointer keeps one and reads only the records sealed since its
/// last checkpoint instead of the whole log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MerkleFrontier {
    size: u64,
    subtrees: Vec<Hash>,
}

impl MerkleFrontier {
    pub fn new() -> MerkleFrontier {
        MerkleFrontier::default()
    }

    /// Entries appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one entry (leaf-hashed here, as [`merkle_root`] does).
    pub fn push(&mut self, entry: &[u8]) {
        let mut node = leaf_hash(entry);
        // Each trailing 1 bit of the old size is a perfect subtree of the new leaf's
        // size that now has its right sibling.
        let mut carry = self.size;
        while carry & 1 == 1 {
            let left = self.subtrees.pop().expect("one subtree per set bit of the size");
            node = node_hash(&left, &node);
            carry >>= 1;
        }
        self.subtrees.push(node);
        self.size += 1;
    }

    /// The root over everything appended: equal to [`merkle_root`] of the same entries.
    pub fn root(&self) -> Hash {
        match self.subtrees.split_last() {
            None => Sha256::digest(b"").into(),
            // A tree that is not a power of two splits at its largest subtree, and its
            // right part is the tree of the remaining subtrees: fold from the right.
            Some((last, rest)) => rest.iter().rev().fold(*last, |right, left| node_hash(left, &right)),
        }
    }
}

/// The audit path of entry `index` (RFC 6962 `PATH(m, D[n])`), leaf side first.
pub fn inclusion_proof<E: AsRef<[u8]>>(entries: &[E], index: u64) -> Result<Vec<Hash>, MerkleError> {
    let tree_size = entries.len() as u64;
    if index >= tree_size {
        return Err(MerkleError::IndexOutOfRange { index, tree_size });
    }
    let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e.as_ref())).collect();
    let mut proof = Vec::new();
    path(index as usize, &leaves, &mut proof);
    Ok(proof)
}

fn path(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(m, &leaves[..k], out);
        out.push(root_of(&leaves[k..]));
    } else {
        path(m - k, &leaves[k..], out);
        out.push(root_of(&leaves[..k]));
    }
}

/// Checks that `entry` is at `index` in the tree of `tree_size` entries with `root`
/// (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(entry: &[u8], index: u64, tree_size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= tree_size {
        return false;
    }
    let mut f = index;
    let mut s = tree_size - 1;
    let mut r = leaf_hash(entry);
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && &r == root
}

/// A periodic checkpoint: the Merkle root over the first `tree_size` records.
/// Publishing checkpoints outside the database (or signing them) is what makes
/// rewriting the whole chain detectable.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Number of records covered (`seq` 1 to `tree_size`).
    pub tree_size: u64,
    /// Lowercase hex Merkle root.
    pub root: String,
    /// RFC 3339 UTC with milliseconds.
    pub time: String,
}

impl Checkpoint {
    /// The checkpoint over `records` (which must be the log from `seq` 1, in order).
    pub fn over(records: &[AuditRecord], time: String) -> Result<Checkpoint, MerkleError> {
        let entries = records.iter().map(record_entry).collect::<Result<Vec<_>, _>>()?;
        Ok(Checkpoint { tree_size: entries.len() as u64, root: hex::encode(merkle_root(&entries)), time })
    }

    /// Whether `record` (at `seq`, so index `seq - 1`) is covered by this checkpoint
    /// according to `proof`.
    pub fn includes(&self, record: &AuditRecord, proof: &[Hash]) -> bool {
        let (Ok(entry), Ok(root), Ok(index)) = (
            record_entry(record),
            <[u8; 32]>::try_from(hex::decode(&self.root).unwrap_or_default()),
            u64::try_from(record.seq - 1),
        ) else {
            return false;
        };
        verify_inclusion(&entry, index, self.tree_size, proof, &root)
    }
}
