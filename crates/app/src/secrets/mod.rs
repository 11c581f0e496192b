//! The secret store (the Secrets Manager role, docs/secrets.md): `ops.rs` the API
//! operations, `worker.rs` the sweeper that purges deleted secrets after their
//! recovery window, `rotate.rs` the master key's rotation (`tenancy master-key rotate`),
//! `postgres.rs` what rotating a tenant's PostgreSQL credentials does on the data plane.
//! `rotation.rs` the start of a secret's rotation and its specs, `tasks.rs` the steps of
//! the rotation workflow, `scheduler.rs` the worker that starts scheduled rotations.

pub mod ops;
pub mod postgres;
pub mod rotate;
pub mod rotation;
pub mod scheduler;
pub mod tasks;
pub mod worker;
