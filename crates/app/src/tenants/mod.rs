//! Tenants: the API (`ops`), the lifecycle rules every lifecycle execution obeys
//! (`lifecycle`: built-in machines, reserved resources, the engine's task guard), the
//! lifecycle's task handlers (`tasks`) and the offboarding export (`offboarding`).

pub mod lifecycle;
pub mod offboarding;
pub mod ops;
pub mod tasks;
