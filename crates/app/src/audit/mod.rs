//! The audit log: the API (list, verify, export) and the sealer's loop (`worker`).

pub mod ops;
pub mod worker;
