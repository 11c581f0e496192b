//! The flag catalogue: every feature some plan names. It decides only what a tenant's
//! own terms cannot: whether a feature they do not name is `false` (another plan has
//! it) or `FLAG_NOT_FOUND`, and which `false` features a bulk evaluation lists.
//!
//! It is read from `plan_list` and kept in memory: read again after this process
//! writes a plan (the plan operations call [`Catalogue::plans_changed`]), and at most
//! [`CATALOGUE_TTL`] after it was read, for the plans other replicas write. A single
//! evaluation of a flag its tenant's terms name never looks at it.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tenancy_domain::page::{PageRequest, MAX_LIMIT};
use tenancy_domain::Result;
use tenancy_store::Store;

/// How long a catalogue read from the plans is used before it is read again: how late,
/// at most, this replica learns of a feature another replica added to some plan.
pub const CATALOGUE_TTL: Duration = Duration::from_secs(1);

/// The features of every plan, as last read.
#[derive(Default)]
pub struct Catalogue {
    snapshot: RwLock<Option<Snapshot>>,
    /// Bumped by every plan write of this process; a snapshot read before is stale.
    generation: AtomicU64,
    /// Held by the one request that reads the plans again.
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct Snapshot {
    features: Arc<BTreeSet<String>>,
    generation: u64,
    read_at: Instant,
}

impl Catalogue {
    /// A plan was written by this process: the next request reads the plans again.
    pub fn plans_changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn current(&self) -> Option<Snapshot> {
        self.snapshot.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The current snapshot when no plan write of this process followed it.
    fn unchanged(&self) -> Option<Snapshot> {
        self.current().filter(|s| s.generation == self.generation.load(Ordering::Acquire))
    }

    /// The features every plan names.
    pub async fn features(&self, store: &dyn Store) -> Result<Arc<BTreeSet<String>>> {
        if let Some(s) = self.unchanged() {
            if s.read_at.elapsed() < CATALOGUE_TTL {
                return Ok(s.features);
            }
            // Only old: one request reads the plans, the others answer from the old set
            // meanwhile (no other write of this process happened since it was read).
            return match self.refresh.try_lock() {
                Ok(_reading) => self.read(store).await,
                Err(_) => Ok(s.features),
            };
        }
        // None yet, or this process changed a plan since: wait for a fresh read.
        let _reading = self.refresh.lock().await;
        match self.unchanged() {
            Some(s) if s.read_at.elapsed() < CATALOGUE_TTL => Ok(s.features),
            _ => self.read(store).await,
        }
    }

    /// Reads every plan's features and keeps them.
    async fn read(&self, store: &dyn Store) -> Result<Arc<BTreeSet<String>>> {
        // Taken before the plans are listed: a write during the listing leaves this
        // snapshot stale, so the next request reads again.
        let generation = self.generation.load(Ordering::Acquire);
        let read_at = Instant::now();
        let mut features = BTreeSet::new();
        let mut after = None;
        loop {
            let page = store.plan_list(&PageRequest::new(Some(MAX_LIMIT), after)?).await?;
            features.extend(page.items.into_iter().flat_map(|p| p.features));
            match page.next_cursor {
                Some(cursor) => after = Some(cursor),
                None => break,
            }
        }
        let features = Arc::new(features);
        let snapshot = Snapshot { features: features.clone(), generation, read_at };
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Some(snapshot);
        Ok(features)
    }
}
