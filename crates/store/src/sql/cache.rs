//! The SQLite store's tenant cache.
//!
//! On SQLite this process is the only writer of the database (the store holds an
//! exclusive lock file beside it), and every tenant write goes through
//! `tenant_create`/`tenant_update` or is a write's or a step's [`Effects::tenants`],
//! all of which refresh the cache in the writer task just before their COMMIT (a
//! failed COMMIT empties it). So the cache is coherent: reads of a tenant are served
//! from memory, and whoever sees a commit (the workflow worker claiming an execution a
//! tenant update started, a reader of that execution's status) already reads the
//! tenant it wrote. Entries only move forward
//! in version, so a read that raced a write can never put back an older copy.
//! PostgreSQL, written by several replicas, has no such cache. Plans and the hook list,
//! read for every tenant created and every hook call, are cached the same way
//! ([`RecordCache`]).

use std::collections::HashMap;
use std::sync::Mutex;

use tenancy_domain::tenant::Tenant;

#[cfg(doc)]
use crate::store::Effects;

/// Entries kept; past this the cache starts over (a cold read costs one query).
const CAPACITY: usize = 200_000;

#[derive(Default)]
pub(super) struct TenantCache {
    map: Mutex<HashMap<String, Tenant>>,
    /// Purges so far ([`TenantCache::forget`]): a read that began before one offers
    /// nothing, or it could put a purged tombstone back.
    purges: std::sync::atomic::AtomicU64,
}

impl TenantCache {
    pub(super) fn get(&self, id: &str) -> Option<Tenant> {
        self.map.lock().expect("tenant cache poisoned").get(id).cloned()
    }

    /// Forgets everything (after a COMMIT failed: entries offered for it are not true).
    pub(super) fn clear(&self) {
        self.map.lock().expect("tenant cache poisoned").clear();
    }

    /// Forgets a tenant whose record is deleted (a purge), before its COMMIT.
    pub(super) fn forget(&self, id: &str) {
        let mut map = self.map.lock().expect("tenant cache poisoned");
        self.purges.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        map.remove(id);
    }

    /// The purges so far, taken before a read whose result is offered with
    /// [`TenantCache::offer_read`].
    pub(super) fn purges(&self) -> u64 {
        self.purges.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// [`TenantCache::offer`] for what a read found, unless a purge happened since it
    /// began (`purges` then): the read may have found a record deleted since.
    pub(super) fn offer_read(&self, t: &Tenant, purges: u64) {
        let mut map = self.map.lock().expect("tenant cache poisoned");
        // Under the lock `forget` takes to count a purge.
        if self.purges() == purges {
            Self::put(&mut map, t);
        }
    }

    /// Stores `t` unless a newer version is already cached. A tenant created after a
    /// purge of its id is newer than any version of the purged one (`created_at`
    /// first), so the old tombstone never shadows it.
    pub(super) fn offer(&self, t: &Tenant) {
        Self::put(&mut self.map.lock().expect("tenant cache poisoned"), t);
    }

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

    #[test]
    fn a_read_racing_a_purge_is_not_cached() {
        let c = TenantCache::default();
        c.offer(&t(3));
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
        c.offer(&t(2));
        c.offer(&t(1));
        assert_eq!(c.get("acme").unwrap().version, 2);
        c.offer(&t(3));
        assert_eq!(c.get("acme").unwrap().name, "v3");
    }
}
