//! Subscriptions: the API (`ops`) and the loops that fan events out and deliver them
//! as Standard Webhooks (`worker`).

pub mod ops;
pub mod worker;
