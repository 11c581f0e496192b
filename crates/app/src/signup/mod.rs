//! Self-service sign-up (docs/self-service.md): `ops.rs` the two unauthenticated
//! operations (ask for an activation token, delivered only through a `SignupRequested`
//! event; activate it: the tenant is provisioned and its first tenant key returned
//! once), `worker.rs` the sweeper that purges expired tokens.

pub mod ops;
pub mod worker;
