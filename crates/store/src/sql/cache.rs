//! The SQLite store's tenant cache.
//!
//! On SQLite this process is the only writer of the database (the store holds an
//! exclusive lock file beside it), and every tenant write goes through
//! `tenant_create`/`tenant_update` or is a write's or a step's [`Effects::tenants`],
//! all of which refresh the cache after their commit. So the cache is coherent: reads of a tenant are served from memory. Entries only move
//! forward in version, so a read that raced a write can never put back an older copy.
//! PostgreSQL, written by several replicas, has no such cache.

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
}

impl TenantCache {
    pub(super) fn get(&self, id: &str) -> Option<Tenant> {
        self.map.lock().expect("tenant cache poisoned").get(id).cloned()
    }

    /// Stores `t` unless a newer version is already cached.
    pub(super) fn offer(&self, t: &Tenant) {
        let mut map = self.map.lock().expect("tenant cache poisoned");
        if map.get(&t.id).is_some_and(|cached| cached.version >= t.version) {
            return;
        }
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(t.id.clone(), t.clone());
    }
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
        }
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
