//! The SQLite store's tenant cache.
//!
//! On SQLite this process is the only writer of the database (the store holds an
//! exclusive lock file beside it), and every tenant write goes through
//! `tenant_create`/`tenant_update` or is a write's or a step's [`Effects::tenants`],
//! all of which pass through the writer task. A tenant the writer is about to commit
//! is **staged** just before the COMMIT: it is not served from memory, so its readers
//! go to the database until the COMMIT is over, and is **published** into the cache
//! right after it (dropped if the COMMIT failed, which leaves the version before it). So the cache never runs ahead of the
//! database (a reader cannot see a tenant `failed` from memory while the rows its
//! commit deletes are still there) nor behind it (whoever sees a commit, the workflow
//! worker claiming an execution a tenant update started or a reader of that
//! execution's status, reads the tenant it wrote). Entries only move forward in
//! version, and a read does not fill the cache for a staged tenant, so a read that
//! raced a write can never put back an older copy.
//! PostgreSQL, written by several replicas, has no such cache. Plans and the hook list,
//! read for every tenant created and every hook call, are cached the same way
//! ([`RecordCache`]).

use std::collections::HashMap;
use std::sync::Mutex;

use tenancy_domain::tenant::Tenant;

#[cfg(doc)]
use tenancy_store::Effects;

/// Entries kept; past this the cache starts over (a cold read costs one query).
const CAPACITY: usize = 200_000;

#[derive(Default)]
pub(super) struct TenantCache {
    inner: Mutex<Inner>,
    /// Purges so far ([`TenantCache::forget`]): a read that began before one offers
    /// nothing, or it could put a purged tombstone back.
    purges: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Tenant>,
    /// Tenants of the COMMIT in progress ([`TenantCache::stage`]): not served, not
    /// filled by reads, published after the COMMIT.
    staged: HashMap<String, Tenant>,
}

impl TenantCache {
    pub(super) fn get(&self, id: &str) -> Option<Tenant> {
        let inner = self.inner.lock().expect("tenant cache poisoned");
        if inner.staged.contains_key(id) {
            return None;
        }
        inner.entries.get(id).cloned()
    }

    /// Forgets a tenant whose record is deleted (a purge), before its COMMIT.
    pub(super) fn forget(&self, id: &str) {
        let mut inner = self.inner.lock().expect("tenant cache poisoned");
        self.purges.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        inner.entries.remove(id);
    }

    /// The purges so far, taken before a read whose result is offered with
    /// [`TenantCache::offer_read`].
    pub(super) fn purges(&self) -> u64 {
        self.purges.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Caches what a read found, unless a purge happened since it began (`purges`
    /// then: the read may have found a record deleted since) or the tenant is staged (a
    /// COMMIT of it is in progress: the read may have found the version before it).
    pub(super) fn offer_read(&self, t: &Tenant, purges: u64) {
        let mut inner = self.inner.lock().expect("tenant cache poisoned");
        // Under the lock `forget` takes to count a purge.
        if self.purges() == purges && !inner.staged.contains_key(&t.id) {
            Self::put(&mut inner.entries, t);
        }
    }

    /// A tenant the writer commits next: not served until [`TenantCache::publish`]
    /// (the COMMIT succeeded) or [`TenantCache::discard`] (it failed). Only the writer
    /// task stages, one COMMIT at a time.
    pub(super) fn stage(&self, t: &Tenant) {
        Self::put(&mut self.inner.lock().expect("tenant cache poisoned").staged, t);
    }

    /// After a COMMIT: the staged tenants are what the database holds now.
    pub(super) fn publish(&self) {
        let mut inner = self.inner.lock().expect("tenant cache poisoned");
        let staged = std::mem::take(&mut inner.staged);
        staged.values().for_each(|t| Self::put(&mut inner.entries, t));
    }

    /// After a failed COMMIT: the staged tenants were not written; their entries, if
    /// any, still hold what the database holds.
    pub(super) fn discard(&self) {
        self.inner.lock().expect("tenant cache poisoned").staged.clear();
    }

    /// Stores `t` unless a newer version is already there. A tenant created after a
    /// purge of its id is newer than any version of the purged one (`created_at`
    /// first), so the old tombstone never shadows it.
    fn put(map: &mut HashMap<String, Tenant>, t: &Tenant) {
        if map.get(&t.id).is_some_and(|cached| (cached.created_at, cached.version) >= (t.created_at, t.version)) {
            return;
        }
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(t.id.clone(), t.clone());
    }
}

/// A cache of rarely written records (plans, the hook list) on SQLite, where this
/// process is the only writer: a write of them clears it after its commit, and a read
/// fills it only if no such write was made while it read (the generation did not move),
/// so a read racing a write never puts the old record back.
pub(super) struct ReadCache<V> {
    inner: Mutex<(u64, HashMap<String, V>)>,
}

impl<V> Default for ReadCache<V> {
    fn default() -> Self {
        ReadCache { inner: Mutex::new((0, HashMap::new())) }
    }
}

impl<V: Clone> ReadCache<V> {
    /// The cached value of `key`, or the generation to fill it at after reading it.
    pub(super) fn get(&self, key: &str) -> Result<V, u64> {
        let inner = self.inner.lock().expect("read cache poisoned");
        inner.1.get(key).cloned().ok_or(inner.0)
    }

    /// Caches `value` as read at `generation`, unless a write came since.
    pub(super) fn fill(&self, generation: u64, key: &str, value: &V) {
        let mut inner = self.inner.lock().expect("read cache poisoned");
        if inner.0 == generation {
            inner.1.insert(key.to_owned(), value.clone());
        }
    }

    /// Forgets everything (after a write of these records).
    pub(super) fn clear(&self) {
        let mut inner = self.inner.lock().expect("read cache poisoned");
        inner.0 += 1;
        inner.1.clear();
    }
}

/// The SQLite store's caches of rarely written records.
#[derive(Default)]
pub(super) struct RecordCache {
    pub(super) plans: ReadCache<tenancy_domain::plan::Plan>,
    /// The whole hook list, under the key `""`.
    pub(super) hooks: ReadCache<Vec<tenancy_domain::hook::Hook>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenancy_domain::tenant::TenantStatus;
    use tenancy_domain::time::Timestamp;

    fn t(version: i64) -> Tenant {
        Tenant {
            id: "acme".into(),
            name: format!("v{version}"),
            plan: "p".into(),
            region: "r".into(),
            status: TenantStatus::Active,
            metadata: Default::default(),
            version,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            lifecycle_execution_id: None,
            release: None,
            pinned: None,
        }
    }

    #[test]
    fn reads_racing_a_write_are_not_cached() {
        let c = ReadCache::<i64>::default();
        let Err(generation) = c.get("pro") else { panic!("empty cache") };
        c.clear(); // a write committed while the read ran
        c.fill(generation, "pro", &1);
        assert!(c.get("pro").is_err());
        let Err(generation) = c.get("pro") else { panic!("empty cache") };
        c.fill(generation, "pro", &2);
        assert_eq!(c.get("pro"), Ok(2));
    }

    /// A write, committed.
    fn committed(c: &TenantCache, t: &Tenant) {
        c.stage(t);
        c.publish();
    }

    #[test]
    fn a_read_racing_a_purge_is_not_cached() {
        let c = TenantCache::default();
        committed(&c, &t(3));
        let before = c.purges();
        c.forget("acme");
        c.offer_read(&t(3), before);
        assert!(c.get("acme").is_none(), "the purged tombstone stays out");
        c.offer_read(&t(1), c.purges());
        assert_eq!(c.get("acme").unwrap().version, 1, "a read after the purge is cached");
    }

    #[test]
    fn never_goes_back_in_version() {
        let c = TenantCache::default();
        committed(&c, &t(2));
        committed(&c, &t(1));
        assert_eq!(c.get("acme").unwrap().version, 2);
        committed(&c, &t(3));
        assert_eq!(c.get("acme").unwrap().name, "v3");
    }

    /// Between the staging and the end of the COMMIT the tenant is not served from
    /// memory (neither the old version, which the COMMIT may have replaced, nor the new
    /// one, which it may not have written yet) and reads do not fill it.
    #[test]
    fn a_staged_tenant_is_served_only_after_its_commit() {
        let c = TenantCache::default();
        committed(&c, &t(1));
        c.stage(&t(2));
        assert!(c.get("acme").is_none(), "the COMMIT is in progress");
        c.offer_read(&t(1), c.purges());
        assert!(c.get("acme").is_none(), "a read during the COMMIT fills nothing");
        c.publish();
        assert_eq!(c.get("acme").unwrap().version, 2);
        c.stage(&t(3));
        c.discard();
        assert_eq!(c.get("acme").unwrap().version, 2, "a failed COMMIT leaves the version before it");
    }
}
