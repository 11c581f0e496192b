//! Authorization policies (docs/policies.md): Cedar as the engine behind every request.
//! `engine.rs` builds the schema and the built-in policies (one per role, generated
//! from the role table and the route table, so they grant exactly what the roles
//! grant), keeps the policy set (built-in plus operators') in memory under the store's
//! policy revision, and decides requests through a decision cache; `ops.rs` the API
//! operations (put with validation against the schema, get, list, delete, check).

pub mod engine;
pub mod ops;
