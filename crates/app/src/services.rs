//! The composition root's value: what the application is built on, built once at
//! start-up (`tenancy serve` builds it from its configuration; a test builds the one
//! it needs), and and the data plane it makes of them; [`crate::handlers`] builds the task handlers from it.
//!
//! Nothing is set after start-up: an area that needs the blob store, the master key or
//! the data plane gets it here, when its handlers are built ([`crate::handlers`]), so no
//! handler waits on a cell that a later call fills.
//!
//! The clock is not a service yet: operations read `Timestamp::now()`. Retention and
//! TTL work (issue 20) will inject one here; until something needs to move time in a
//! test, an unused port would only be decoration.

use std::sync::Arc;

use tenancy_adapters::dataplane::DatabaseProvisioner;
use tenancy_store::Store;

use crate::connections::auth::Connector;
use crate::dataplane::plane::DataPlane;
use tenancy_adapters::blob::BlobStore;
use tenancy_adapters::keys::envelope::{KeyProvider, MasterKeyProvider};
use tenancy_adapters::keys::SecretBox;
use tenancy_adapters::outbound::OutboundPolicy;

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
    /// The key-encryption keys of the secret store (the master key by default, see
    /// [`Services::with_secrets`]); without one, secrets are 503 `unavailable`.
    pub keks: Option<Arc<dyn KeyProvider>>,
    /// Creates tenants' databases; without one, no database is provisioned (a
    /// `database` resource is only recorded).
    pub data_plane: Option<Arc<dyn DatabaseProvisioner>>,
    /// The policy every outbound request obeys (`http:invoke`, hooks, functions;
    /// webhook deliveries take it in their worker's options).
    pub outbound: Arc<OutboundPolicy>,
    /// Turns connections into request headers (`http:invoke`, hooks, webhook
    /// deliveries), with the process's OAuth token cache; rebuilt by the builders
    /// below from the store, the key-encryption keys and the outbound policy.
    pub connector: Arc<Connector>,
}

impl Services {
    /// The store alone: no blob store, no master key, no data plane, the default
    /// outbound policy.
    pub fn new(store: Arc<dyn Store>) -> Self {
        let outbound: Arc<OutboundPolicy> = Arc::default();
        let connector = Arc::new(Connector::new(store.clone(), None, outbound.clone()));
        Services { store, blobs: None, secrets: None, keks: None, data_plane: None, outbound, connector }
    }

    fn rebuild_connector(mut self) -> Self {
        self.connector = Arc::new(Connector::new(self.store.clone(), self.keks.clone(), self.outbound.clone()));
        self
    }

    pub fn with_blobs(mut self, blobs: BlobStore) -> Self {
        self.blobs = Some(blobs);
        self
    }

    /// The master key's box; also the secret store's key-encryption key.
    pub fn with_secrets(mut self, secrets: Arc<SecretBox>) -> Self {
        self.keks = Some(Arc::new(MasterKeyProvider::new(secrets.clone(), "the master key")));
        self.secrets = Some(secrets);
        self.rebuild_connector()
    }

    pub fn with_data_plane(mut self, provisioner: Arc<dyn DatabaseProvisioner>) -> Self {
        self.data_plane = Some(provisioner);
        self
    }

    pub fn with_outbound(mut self, policy: Arc<OutboundPolicy>) -> Self {
        self.outbound = policy;
        self.rebuild_connector()
    }

    /// The data plane with what its steps need from the other services.
    pub(crate) fn plane(&self) -> Option<Arc<DataPlane>> {
        let provisioner = self.data_plane.clone()?;
        Some(Arc::new(DataPlane {
            provisioner,
            secrets: self.secrets.clone(),
            keks: self.keks.clone(),
            blobs: self.blobs.clone(),
        }))
    }
}
