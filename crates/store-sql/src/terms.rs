//! The terms epoch ([`tenancy_store::TermsEpoch`]): one counter per process that moves
//! whenever this process writes what a tenant's terms are made of (a tenant record, a
//! plan, a tenant's overrides), so that the app may keep computed terms in memory
//! while the counter stands still (`App::tenant_terms`, docs/entitlements.md "The fast
//! path").
//!
//! It moves twice per such write: inside the transaction, before the COMMIT ([`moved`]
//! at the statement), and after the COMMIT once the store's caches show it, before the
//! writer is answered (the writer's `run_batch` for every write that goes through it,
//! and the plan write after it clears the plan cache). A value computed from records
//! read while the counter showed `e` is kept only under `e`: the first move drops what
//! was computed before the write, the second what was computed while it committed. So
//! an acknowledged write is never answered by memory with the records before it.
//!
//! One counter for the process, not per store nor per tenant: a tenant write anywhere
//! drops every tenant's memory (each recomputes once, which costs what an uncached read
//! costs). Tenant creations do not move it: a tenant that did not exist has no terms
//! in memory (a purge, which a re-creation of the id follows, moves it).

use std::sync::atomic::{AtomicU64, Ordering};

static EPOCH: AtomicU64 = AtomicU64::new(0);

/// Marks a write of terms' records (see the module).
pub(crate) fn moved() {
    EPOCH.fetch_add(1, Ordering::SeqCst);
}

/// The counter now.
pub(crate) fn current() -> u64 {
    EPOCH.load(Ordering::SeqCst)
}
