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
//! * [`blob`]: the blob store (audit and offboarding exports, exported databases):
//!   `object_store`'s port, with a local directory or S3 behind it.
//! * [`keys`]: the master key (a 32-byte key file in the data directory, or one given
//!   by path) and the [`keys::SecretBox`] that seals stored secrets with it
//!   (AES-256-GCM, the owner bound as associated data).
//! * [`outbound`]: the one policy every outbound HTTP request obeys (internal
//!   addresses refused unless allowed, no redirects, bounded time and size) and the
//!   clients built under it.
//!
//! Not here: the control plane's own storage (`tenancy-store`), which is the system of
//! record rather than an outside system, and which the adapters do not depend on.

pub mod blob;
pub mod dataplane;
pub mod keys;
pub mod outbound;
