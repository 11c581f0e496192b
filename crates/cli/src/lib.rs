//! The `tenancy` binary as a library: the server's start-up (used by the binary and by
//! the integration tests, which start real servers on port 0) and the operator CLI.

pub mod cli;
pub mod commands;
pub mod config;
pub mod inventory;
pub mod serve;
pub mod support;
