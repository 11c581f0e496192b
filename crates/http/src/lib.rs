//! Tenancy's HTTP API.
//!
//! The only crate that knows axum. A handler extracts its inputs (with this crate's
//! extractors, so bad input becomes a problem+json document), calls one `app`
//! operation with the caller's [`tenancy_app::OpContext`] and converts the result.

mod access;
mod extract;
mod idempotency;
mod openapi;
mod problem;
mod ratelimit;
mod routes;
mod server;

pub use access::policy_actions;
pub use openapi::openapi_json;
pub use ratelimit::{Limit, RateLimits, SignupLimits};
pub use server::{
    prometheus, router, serve, ConnectionLimits, ServerState, DEFAULT_MAX_CONNECTIONS, HEADER_READ_TIMEOUT,
    METRICS_UPKEEP_INTERVAL,
};
