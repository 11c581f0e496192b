//! The `tenancy` binary as a library: the server's start-up (used by the binary and by
//! the integration tests, which start real servers on port 0) and the operator CLI.

pub mod cli;
pub mod config;
pub mod functions_cli;
pub mod provisioning_cli;
pub mod serve;
pub mod workflows_cli;
