//! The data plane: tenants' databases. `plane` holds the provisioner with the master
//! key and the blob store its steps need, `ops` the credentials API, `tasks` the task
//! handlers that create, delete and move databases, `credentials` a silo tenant's
//! PostgreSQL credentials kept in the secret store (`tenancy.database`).

pub mod credentials;
pub mod ops;
pub mod plane;
pub mod tasks;
