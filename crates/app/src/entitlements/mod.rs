//! Entitlements: a tenant's per-tenant overrides of its plan (features on or off,
//! quota limits, config values, with an optional expiry) and the effective view, the
//! plan with the unexpired overrides laid over it
//! ([`tenancy_domain::entitlements::effective`]). Usage counting is the quota ledger's.

pub mod ops;
pub mod terms;

pub use terms::TenantTerms;
