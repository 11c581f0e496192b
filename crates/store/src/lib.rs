//! The store API of Tenancy: object-safe per-area traits, records and [`Effects`].
//!
//! The [`Store`] trait is what the `app` crate sees, always as `Arc<dyn Store>`.
//! Every mutating method takes [`Effects`]: the events, audit entries, executions and
//! tenant writes that the change causes ([`Store::commit_effects`] commits effects with
//! no other change). A backend commits the change and its effects in ONE transaction,
//! or nothing at all; this is the transactional outbox the rest of the system relies on.
//!
//! The backends live in crates of their own: `tenancy-store-sql` (`SqlStore`, on SQLite,
//! the embedded default, and PostgreSQL). This crate does not depend on any of them nor
//! on sqlx, so the app, the engine and http see only the traits. Every backend runs the
//! same conformance suites (`conformance`, `workflow_conformance`, `queue_conformance`,
//! behind the `testsuite` feature: they are not compiled into the server).
//!
//! The store is the control plane's own database. The tenants' databases (the data
//! plane) are not part of it: their provisioners are adapters, in `tenancy-adapters`.

mod audit;
#[cfg(feature = "testsuite")]
pub mod conformance;
mod connections;
mod drift;
mod entitlements;
mod events;
mod functions;
mod hooks;
mod metrics;
mod policies;
#[cfg(feature = "testsuite")]
pub mod queue_conformance;
mod queues;
mod quotas;
mod releases;
mod retention;
mod rollouts;
mod secrets;
mod signups;
mod store;
mod workflow;
#[cfg(feature = "testsuite")]
pub mod workflow_conformance;

pub use audit::*;
pub use connections::*;
pub use drift::*;
pub use entitlements::*;
pub use events::*;
pub use functions::*;
pub use hooks::*;
pub use metrics::*;
pub use policies::*;
pub use queues::*;
pub use quotas::*;
pub use releases::*;
pub use retention::*;
pub use rollouts::*;
pub use secrets::*;
pub use signups::*;
pub use store::*;
pub use workflow::*;
