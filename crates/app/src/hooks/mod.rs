//! Provisioning hooks: the API (`ops`) and the task handlers that call them (`tasks`).

pub mod ops;
pub mod tasks;
pub mod validate;
