//! Events: the archive's list, and custom events product services publish
//! (`POST /v1/events`, as EventBridge's PutEvents).

pub mod ops;
