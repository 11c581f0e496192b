//! Workflows: state machines and executions (`ops`) and `http:invoke` (`tasks`).

pub mod ops;
pub mod tasks;
