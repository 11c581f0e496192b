//! Functions: the registry of HTTP endpoints Task states invoke with Lambda's
//! contract (`ops`), and the task handlers that invoke them (`tasks`).

pub mod ops;
pub mod tasks;
