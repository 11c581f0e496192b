//! Tenancy's IO adapters, each behind a port.
//!
//! A *port* here is an object-safe trait the application layer holds as `Arc<dyn ...>`
//! and that says what Tenancy needs from the world outside its own database, in its
//! own terms (a tenant's database of an isolation model, not a `CREATE ROLE`). An
//! *adapter* is one implementation of a port on one technology. The application layer
//! knows only the ports; which adapter serves a port is decided once, at start-up, by
//! the composition root (`tenancy serve`), from the configuration.
//!
//! * [`dataplane`]: the port [`dataplane::DatabaseProvisioner`] (create, observe,
//!   export, list and delete a tenant's database) and its adapters,
//!   [`dataplane::SqliteFiles`] (a SQLite file per silo tenant, the embedded default)
//!   and [`dataplane::postgres::PostgresDataPlane`] (PostgreSQL databases and roles per
//!   silo tenant, schemas per pool tenant).
//!
//! The blob store (offboarding exports), the key provider (the master key that seals
//! stored secrets) and the outbound HTTP client join this crate as ports of their own.
//!
//! Not here: the control plane's own storage (`tenancy-store`), which is the system of
//! record rather than an outside system, and which the adapters do not depend on.

pub mod dataplane;
