//! Queues: the API (`ops`, SQS-like), the Task state that sends (`tasks`) and the
//! retention sweeper (`worker`).

pub mod ops;
pub mod tasks;
pub mod worker;
