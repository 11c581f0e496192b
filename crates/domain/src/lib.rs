//! Domain types and rules of Tenancy.
//!
//! This crate does no IO and knows nothing of HTTP or SQL (beyond the status number
//! each error code belongs to): it holds the records (plans, tenants, API keys, events,
//! audit entries), their validation, the tenant status state machine, the single
//! application error type and the one list of error codes. Every other crate depends
//! on it; it depends on none of them.

pub mod api;
pub mod apikey;
pub mod connection;
pub mod entitlements;
pub mod error;
pub mod event;
pub mod flags;
pub mod function;
pub mod hook;
pub mod ids;
pub mod page;
pub mod plan;
pub mod policy;
pub mod queue;
pub mod quota;
pub mod ratelimit;
pub mod release;
pub mod rollout;
pub mod secret;
pub mod signup;
pub mod subscription;
pub mod tenant;
pub mod time;

pub use error::{Error, ErrorCode, Result};
