//! The secret store (the Secrets Manager role, docs/secrets.md): `ops.rs` the API
//! operations, `worker.rs` the sweeper that purges deleted secrets after their
//! recovery window, `rotate.rs` the master key's rotation (`tenancy master-key rotate`),
//! `postgres.rs` what rotating a tenant's PostgreSQL credentials does on the data plane.

pub mod ops;
pub mod postgres;
pub mod rotate;
pub mod worker;
