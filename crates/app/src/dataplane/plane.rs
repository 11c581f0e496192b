//! Tenants' data-plane databases in the lifecycle workflows.
//!
//! With a [`DataPlane`] set ([`App::set_provisioner`]; `tenancy serve` sets the
//! SQLite-file one on the embedded default and the PostgreSQL one on PostgreSQL), the
//! `database` steps of the lifecycle workflows (`tenancy:resource.create` /
//! `tenancy:resource.delete` with `kind: "database"`) create and delete a real database
//! for the tenant's isolation model (the plan's `isolation`) before recording or
//! forgetting the resource; the record's `detail` says where it is (`isolation`,
//! `engine`, and `host`/`database`/`schema`/`user` or `path`), never a password. A
//! provisioner that does not provision an isolation (the embedded default for `pool`)
//! leaves only the record.
//!
//! **Passwords.** A provisioner with logins ([`DatabaseProvisioner::uses_credentials`])
//! gets a password generated here once per tenant and isolation (32 random letters and
//! digits), stored *before* the database is created, so a repeated step (after a
//! crash) finds and reuses it: a silo tenant's as the tenant secret `tenancy.database`
//! in the secret store (envelope-encrypted, rotatable; see
//! [`crate::dataplane::credentials`]), a pool tenant's sealed with the master key
//! ([`SecretBox`], associated data `tenant/<id>/database:pool`) in `tenant_secrets`. It
//! is never part of a resource, an event, an audit entry, a workflow's input or output,
//! or a log line; `GET /v1/tenants/{id}/database-credentials` returns it (audited).
//!
//! **Moves.** A plan change between a pool and a silo plan moves the database
//! (`tenant-change-plan.json`): `tenancy:database.move_create` creates the target
//! isolation's database, `tenancy:database.export` writes the old one to the blob store
//! (`tenants/<id>/exports/<execution id>-<isolation>.<ext>`), the plan is applied, and
//! `tenancy:database.finish_move` points the resource record at the new database and
//! deletes the old one. A failure before the plan is applied runs
//! `tenancy:database.undo_move`: the new database goes, the old one stays. Data is not
//! copied into the new database (the export is there to import from); the old database
//! is only deleted after its export landed, so nothing is lost.

use std::sync::Arc;

use serde_json::Value;
use tenancy_adapters::dataplane::DatabaseProvisioner;
use tenancy_domain::plan::Isolation;
use tenancy_domain::{Error, Result};
use tenancy_store::{Store, TenantResource};
use tokio::io::AsyncWriteExt;

use tenancy_adapters::blob::BlobStore;
use tenancy_adapters::keys::envelope::KeyProvider;
use tenancy_adapters::keys::SecretBox;

pub const MOVE_CREATE: &str = "tenancy:database.move_create";
pub const EXPORT: &str = "tenancy:database.export";
pub const UNDO_MOVE: &str = "tenancy:database.undo_move";
pub const FINISH_MOVE: &str = "tenancy:database.finish_move";

/// The provisioner with what its steps need from the app: the master key for
/// passwords, the blob store for exports.
pub struct DataPlane {
    pub provisioner: Arc<dyn DatabaseProvisioner>,
    pub(crate) secrets: Option<Arc<SecretBox>>,
    /// The secret store's key-encryption keys: silo credentials are a tenant secret.
    pub(crate) keks: Option<Arc<dyn KeyProvider>>,
    pub(crate) blobs: Option<BlobStore>,
}

pub(crate) fn secret_name(isolation: Isolation) -> String {
    format!("database:{}", isolation.as_str())
}

pub(crate) fn secret_owner(tenant_id: &str, isolation: Isolation) -> String {
    format!("tenant/{tenant_id}/{}", secret_name(isolation))
}

/// The isolation a `database` resource record is for (records written before moves
/// existed have a `path` when they are a silo database).
pub fn record_isolation(detail: &Value) -> Option<Isolation> {
    match detail["isolation"].as_str() {
        Some(i) => Isolation::parse(i),
        None if detail.get("path").is_some() => Some(Isolation::Silo),
        None => None,
    }
}

pub(crate) async fn plan_isolation(store: &dyn Store, plan: &str) -> Result<Isolation> {
    Ok(store.plan_get(plan).await?.isolation)
}

pub(crate) async fn database_record(store: &dyn Store, tenant_id: &str) -> Result<Option<TenantResource>> {
    Ok(store.workflows().tenant_resource_list(tenant_id).await?.into_iter().find(|r| r.kind == "database"))
}

impl DataPlane {
    pub(crate) fn secrets(&self) -> Result<&SecretBox> {
        self.secrets.as_deref().ok_or_else(|| Error::internal("no master key to seal database passwords with"))
    }

    /// The tenant's password for `isolation`, generated and stored sealed the first time.
    async fn password(&self, store: &dyn Store, tenant_id: &str, isolation: Isolation) -> Result<String> {
        let secrets = self.secrets()?;
        let owner = secret_owner(tenant_id, isolation);
        let w = store.workflows();
        let sealed = match w.tenant_secret_get(tenant_id, &secret_name(isolation)).await? {
            Some(s) => s,
            None => {
                let fresh = secrets.seal(&owner, &crate::secrets::postgres::generate_password());
                // The first stored one wins when two attempts race.
                w.tenant_secret_put(tenant_id, &secret_name(isolation), &fresh).await?
            }
        };
        secrets.open(&owner, &sealed)
    }

    /// Creates (or finds) the tenant's database for `isolation`; its detail, or `None`
    /// when this provisioner keeps no database for that isolation.
    pub async fn ensure(&self, store: &dyn Store, tenant_id: &str, isolation: Isolation) -> Result<Option<Value>> {
        if !self.provisioner.provisions(isolation) {
            return Ok(None);
        }
        if !self.provisioner.uses_credentials() {
            return Ok(Some(self.provisioner.database_create(tenant_id, isolation, None).await?));
        }
        if isolation == Isolation::Pool {
            let password = self.password(store, tenant_id, isolation).await?;
            return Ok(Some(self.provisioner.database_create(tenant_id, isolation, Some(&password)).await?));
        }
        // Silo: the credentials secret, whose login may be the role or (after an
        // alternating-users rotation) its alternate; the other login keeps its password.
        let creds = self.credentials_ensure(store, tenant_id).await?;
        let role = self.provisioner.login_key(tenant_id, isolation)?;
        let own = (role.as_deref() == Some(creds.username.as_str())).then_some(creds.password.as_str());
        let detail = self.provisioner.database_create(tenant_id, isolation, own).await?;
        if own.is_none() {
            self.provisioner.login_set_password(tenant_id, isolation, &creds.username, &creds.password).await?;
        }
        Ok(Some(detail))
    }

    /// Deletes the tenant's database for `isolation` and its password.
    pub async fn remove(&self, store: &dyn Store, tenant_id: &str, isolation: Isolation) -> Result<()> {
        if !self.provisioner.provisions(isolation) {
            return Ok(());
        }
        self.provisioner.database_delete(tenant_id, isolation).await?;
        store.workflows().tenant_secret_delete(tenant_id, &secret_name(isolation)).await?;
        if isolation == Isolation::Silo && self.provisioner.uses_credentials() {
            self.credentials_delete(store, tenant_id).await?;
        }
        Ok(())
    }

    /// Exports the tenant's database for `isolation` to the blob store under `name`;
    /// `(location, bytes)`, or `None` when there is no database.
    pub(crate) async fn export(
        &self,
        tenant_id: &str,
        isolation: Isolation,
        name: &str,
    ) -> Result<Option<(String, u64)>> {
        if !self.provisioner.provisions(isolation) {
            return Ok(None);
        }
        let blobs = self.blobs.as_ref().ok_or_else(|| Error::Unavailable("no blob store configured".into()))?;
        let dir = tempfile::tempdir().map_err(|e| Error::Unavailable(format!("failed to create a temp dir: {e}")))?;
        let file = dir.path().join("export");
        if !self.provisioner.database_export(tenant_id, isolation, &file).await? {
            return Ok(None);
        }
        let path = format!("tenants/{tenant_id}/exports/{name}.{}", self.provisioner.export_extension());
        let unavailable =
            |e: std::io::Error| Error::Unavailable(format!("failed to write {path} to the blob store: {e}"));
        let mut snapshot = tokio::fs::File::open(&file)
            .await
            .map_err(|e| Error::Unavailable(format!("failed to read the export of {tenant_id:?}: {e}")))?;
        // Streamed: one `put` up to 10 MiB, a multipart upload of 10 MiB parts beyond,
        // so a large database never sits in memory. The same name on a repeated attempt:
        // the object is replaced by an equal copy.
        let mut upload =
            object_store::buffered::BufWriter::new(blobs.store.clone(), object_store::path::Path::from(path.as_str()));
        let copied = tokio::io::copy(&mut snapshot, &mut upload).await;
        let bytes = match copied {
            Ok(n) => n,
            Err(e) => {
                // Drops the parts uploaded so far instead of leaving them billed.
                let _ = upload.abort().await;
                return Err(unavailable(e));
            }
        };
        upload.shutdown().await.map_err(unavailable)?;
        Ok(Some((format!("{}/{path}", blobs.url.trim_end_matches('/')), bytes)))
    }
}

/// What `GET /v1/tenants/{id}/database-credentials` returns: how the tenant's service
/// connects to its database.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DatabaseCredentials {
    /// `postgres`.
    pub engine: String,
    /// `silo` (its own database) or `pool` (a schema in the shared database).
    pub isolation: Isolation,
    pub host: String,
    pub port: u16,
    pub database: String,
    /// The tenant's schema in the pool database (also the role's `search_path` there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    pub user: String,
    pub password: String,
    /// `postgres://user:password@host:port/database`.
    pub url: String,
}
