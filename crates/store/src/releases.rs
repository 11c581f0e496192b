//! Storage of releases (issue 16, docs/releases.md).

use async_trait::async_trait;
use tenancy_domain::release::{Bundle, Release};
use tenancy_domain::Result;

use crate::store::Effects;

/// Object safe: held as `Arc<dyn ReleaseStore>` (see [`crate::Store::releases`]).
#[async_trait]
pub trait ReleaseStore: Send + Sync {
    /// Creates a release or replaces its description and upgrade workflow (keeping its
    /// `created_at` and bundle), in one transaction with `fx`. With `r.default` the
    /// release becomes the fleet's default and the previous one stops being it, in the
    /// same transaction; without it a replaced release keeps its default flag. Returns
    /// the stored release and whether it was created.
    async fn release_put(&self, r: &Release, fx: &Effects) -> Result<(Release, bool)>;
    async fn release_get(&self, version: &str) -> Result<Release>;
    /// Every release, by version.
    async fn release_list(&self) -> Result<Vec<Release>>;
    /// The fleet's default release, if one is.
    async fn release_default(&self) -> Result<Option<Release>>;
    /// Records `bundle` as the release's bundle (the bytes are already in the blob
    /// store) with `fx`; returns the release and the bundle it replaced, whose object
    /// the caller deletes.
    async fn release_bundle_set(
        &self,
        version: &str,
        bundle: &Bundle,
        fx: &Effects,
    ) -> Result<(Release, Option<Bundle>)>;
}
