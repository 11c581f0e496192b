//! Tenancy's application layer.
//!
//! Every operation the API offers is one method on [`App`] taking an [`OpContext`]
//! (who is calling, for which request). Authorization happens here, before storage is
//! touched; every mutation builds its events and audit entry and hands them to the
//! store with the change, so they commit in one transaction.
//!
//! One folder per feature area, each with `ops.rs` (its API operations, methods of
//! [`App`]), `tasks.rs` (its task handlers and their `register`) and `worker.rs` (its
//! background loop) as it needs them. [`Services`] is what the app is built on (the
//! store and the IO adapters); [`handlers::handlers`] is the one place where every
//! area registers its task handlers with the engine ([`tenancy_engine`]).

mod app;
pub mod archive;
pub mod audit;
pub mod clock;
pub mod connections;
mod context;
pub mod dataplane;
pub mod entitlements;
pub mod events;
pub mod flags;
pub mod functions;
pub mod handlers;
pub mod hooks;
pub mod keys;
pub mod metrics;
pub mod plans;
pub mod policies;
pub mod queues;
pub mod quotas;
pub mod reconcile;
pub mod releases;
pub mod retention;
pub mod rollouts;
pub mod secrets;
pub mod services;
pub mod signup;
pub mod subscriptions;
pub mod tenants;
pub mod workflows;

pub use app::{App, DEFAULT_EXPORT_RETENTION_DAYS};
pub use clock::Clock;
pub use context::{OpContext, Permission, Principal};
pub use services::Services;
pub use tenancy_engine as engine;
pub use tenants::ops::TenantOperation;
pub use workflows::ops::*;
