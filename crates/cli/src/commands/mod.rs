//! The operator commands, one file per API area: the command's clap enum, its table
//! columns and the function that calls the API through `tenancy-client`.

pub mod audit;
pub mod backup;
pub mod connections;
pub mod entitlements;
pub mod events;
pub mod functions;
pub mod hooks;
pub mod keys;
pub mod plans;
pub mod policies;
pub mod queues;
pub mod quotas;
pub mod reconciliation;
pub mod releases;
pub mod rollouts;
pub mod secrets;
pub mod signup;
pub mod storage;
pub mod subscriptions;
pub mod task_tokens;
pub mod tenants;
pub mod workflows;
