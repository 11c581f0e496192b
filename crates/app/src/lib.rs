//! Tenancy's application layer.
//!
//! Every operation the API offers is one method on [`App`] taking an [`OpContext`]
//! (who is calling, for which request). Authorization happens here, before storage is
//! touched; every mutation builds its events and audit entry and hands them to the
//! store with the change, so they commit in one transaction. Background work runs in
//! the workflow [`engine`] and the loops of [`delivery`], [`audit`] and [`queues`].

pub mod audit;
pub mod auth;
mod context;
pub mod custom_events;
pub mod delivery;
pub mod engine;
pub mod functions;
pub mod hooks;
pub mod lifecycle;
pub mod offboarding;
mod ops;
pub mod outbound;
pub mod provisioning;
pub mod queues;
pub mod reconcile;
pub mod secretbox;
pub mod subscriptions;
mod workflows;

pub use context::{OpContext, Permission, Principal};
pub use ops::*;
pub use workflows::*;
