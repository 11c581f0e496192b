//! Plans: the catalog of isolation, features, quotas and lifecycle workflows.

pub mod ops;
