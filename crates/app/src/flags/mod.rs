//! Feature flags: a tenant's effective entitlements evaluated as OpenFeature flags for
//! the OpenFeature Remote Evaluation Protocol (OFREP, docs/flags.md). The evaluation
//! itself is pure ([`tenancy_domain::flags`]); this area finds the tenant the request
//! targets, reads its terms through [`crate::App::tenant_terms`] and keeps the
//! catalogue, the set of features the plans name.

pub mod catalogue;
pub mod ops;
