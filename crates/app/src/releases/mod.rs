//! Releases and tenant upgrades (issue 16, docs/releases.md).
//!
//! A release is a version of the product (`PUT /v1/releases/{version}`), optionally with
//! a configuration bundle: bytes streamed to the blob store with their SHA-256 computed
//! on the way in and checked on the way out ([`bundle`]). One release may be the
//! fleet's default; a tenant created while there is one starts on it. A tenant carries
//! the release it is on (`release`) and may be pinned to it. `POST
//! /v1/tenants/{id}/upgrade` moves one tenant to a release with a lifecycle execution
//! ([`upgrade`]): the built-in `tenancy.tenant.upgrade` (pre-check, apply and verify
//! hooks, a rollback hook on failure) or the release's own `upgrade_workflow`; the
//! tenant is `updating` meanwhile and ends `active` on the new release or, rolled
//! back, on its old one ([`tasks`]).

pub mod bundle;
pub mod ops;
pub mod tasks;
pub mod upgrade;
