//! The composition root's value: what the application is built on, built once at
//! start-up (`tenancy serve` builds it from its configuration; a test builds the one
//! it needs), and the one place where every feature area registers its task handlers.
//!
//! Nothing is set after start-up: an area that needs the blob store, the master key or
//! the data plane gets it here, when its handlers are built ([`registry`]), so no
//! handler waits on a cell that a later call fills.
//!
//! The clock is not a service yet: operations read `Timestamp::now()`. Retention and
//! TTL work (issue 20) will inject one here; until something needs to move time in a
//! test, an unused port would only be decoration.

use std::sync::Arc;

use tenancy_adapters::dataplane::DatabaseProvisioner;
use tenancy_engine::Registry;
use tenancy_store::Store;

use crate::audit::ops::BlobStore;
use crate::dataplane::plane::DataPlane;
use crate::outbound::OutboundPolicy;
use crate::secretbox::SecretBox;

/// The store and the IO adapters the application runs on.
#[derive(Clone)]
pub struct Services {
    pub store: Arc<dyn Store>,
    /// Where audit exports, offboarding exports and moved databases go; without one,
    /// those operations answer 503 `unavailable`.
    pub blobs: Option<BlobStore>,
    /// The master key's box: webhook, hook and function secrets and data-plane
    /// passwords are sealed with it. Without one nothing can be sealed (tests).
    pub secrets: Option<Arc<SecretBox>>,
    /// Creates tenants' databases; without one, no database is provisioned (a
    /// `database` resource is only recorded).
    pub data_plane: Option<Arc<dyn DatabaseProvisioner>>,
    /// The policy every outbound request obeys (`http:invoke`, hooks, functions;
    /// webhook deliveries take it in their worker's options).
    pub outbound: Arc<OutboundPolicy>,
}

impl Services {
    /// The store alone: no blob store, no master key, no data plane, the default
    /// outbound policy.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Services { store, blobs: None, secrets: None, data_plane: None, outbound: Arc::default() }
    }

    pub fn with_blobs(mut self, blobs: BlobStore) -> Self {
        self.blobs = Some(blobs);
        self
    }

    pub fn with_secrets(mut self, secrets: Arc<SecretBox>) -> Self {
        self.secrets = Some(secrets);
        self
    }

    pub fn with_data_plane(mut self, provisioner: Arc<dyn DatabaseProvisioner>) -> Self {
        self.data_plane = Some(provisioner);
        self
    }

    pub fn with_outbound(mut self, policy: Arc<OutboundPolicy>) -> Self {
        self.outbound = policy;
        self
    }

    /// The data plane with what its steps need from the other services.
    pub(crate) fn plane(&self) -> Option<Arc<DataPlane>> {
        let provisioner = self.data_plane.clone()?;
        Some(Arc::new(DataPlane { provisioner, secrets: self.secrets.clone(), blobs: self.blobs.clone() }))
    }
}

/// Every task handler: the engine's own, then each feature area's. The one place a new
/// area adds its `register` call (docs/task-handlers.md).
pub fn registry(services: &Services, plane: Option<&Arc<DataPlane>>) -> Registry {
    let r = Registry::new();
    tenancy_engine::register_builtin(&r);
    crate::tenants::tasks::register(&r, plane);
    crate::tenants::offboarding::register(&r, services, plane);
    crate::dataplane::tasks::register(&r, plane);
    crate::hooks::tasks::register(&r, services);
    crate::queues::tasks::register(&r);
    crate::functions::tasks::register(&r, services);
    crate::workflows::tasks::register(&r, services);
    r
}
