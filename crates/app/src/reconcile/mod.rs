//! Reconciliation: the pass that compares records with the data plane and repairs drift
//! (`ops`), and its loop (`worker`).

pub mod ops;
pub mod worker;
