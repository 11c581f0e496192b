//! A silo tenant's PostgreSQL credentials in the secret store: the tenant secret
//! [`SECRET_NAME`] (`tenancy.database`), whose value is
//! [`PostgresCredentials`] (`{"engine":"postgres","host","port","dbname","username","password"}`,
//! Secrets Manager's shape for RDS), envelope-encrypted like every secret.
//!
//! Decisions:
//!
//! * **Written before the database.** Provisioning puts version 1 (a fresh password)
//!   before it creates the database and its role, in the put's own transaction with its
//!   `secret.put` audit entry (by the system), not in the step's transaction with the
//!   resource record: the password must be durable before it reaches the role, so a
//!   repeated step (after a crash) or a concurrent one finds it and sets the same one
//!   (the first put wins; a second first put fails and reads the winner's). A crash
//!   between the put and the record leaves a secret whose database the retried step
//!   creates, or whose undo deletes it.
//! * **Reserved.** `tenancy.` names cannot be put, deleted or restored through the API
//!   (403 `forbidden`); they are read like any secret (`GET
//!   /v1/tenants/{id}/secrets/tenancy.database`, a service key included) and listed
//!   with the tenant's secrets, metadata only.
//! * **Silo only.** A pool tenant's login (a schema in the shared database) keeps its
//!   password sealed with the master key in `tenant_secrets` (`database:pool`), as
//!   before; `GET .../database-credentials` reads either.
//! * **Existing tenants.** Passwords provisioned before this change are sealed in
//!   `tenant_secrets` (`database:silo`). A SQL migration cannot envelope-encrypt, so the
//!   server moves them at start ([`crate::App::adopt_database_credentials`], before the
//!   workers run): for each, version 1 of the tenant's secret is put (unless the secret
//!   exists), then the old row is deleted. Each tenant's move is idempotent and
//!   crash-safe: a crash between the two leaves both, and the next start only deletes
//!   the old row (the secret, once it exists, is the one read). Until a tenant's row is
//!   moved, reads fall back to it. Upgrade every replica before provisioning again.
//! * **Gone with the database.** Deleting a tenant's silo database (offboarding, a move
//!   to a pool plan, an undo) deletes the secret at once (no recovery window: the
//!   database it opened is gone), with a `secret.delete` audit entry by the system.

use serde_json::json;
use tenancy_adapters::keys::envelope::{self, KeyProvider, Sealed, WrappedKey};
use tenancy_domain::plan::Isolation;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};
use tenancy_store::{Effects, SealedVersion, Store};

use crate::dataplane::plane::{secret_name, secret_owner, DataPlane};
use crate::secrets::postgres::{generate_password, PostgresCredentials};
use crate::OpContext;

/// The reserved name of a tenant's silo database credentials.
pub const SECRET_NAME: &str = "tenancy.database";

fn target(tenant_id: &str) -> String {
    format!("tenant/{tenant_id}/secret/{SECRET_NAME}")
}

impl DataPlane {
    fn kek(&self) -> Result<&dyn KeyProvider> {
        self.keks.as_deref().ok_or_else(|| Error::Unavailable("no master key configured".into()))
    }

    /// The current version of the tenant's credentials secret and its value; `None`
    /// when there is none.
    pub async fn credentials_current(
        &self,
        store: &dyn Store,
        tenant_id: &str,
    ) -> Result<Option<(i64, PostgresCredentials)>> {
        let secrets = store.secrets();
        let rec = match secrets.secret_get(Some(tenant_id), SECRET_NAME).await {
            Ok(rec) => rec,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let version = rec.current_version;
        Ok(Some((version, self.credentials_version(store, tenant_id, version).await?)))
    }

    /// One version of the tenant's credentials secret.
    pub async fn credentials_version(
        &self,
        store: &dyn Store,
        tenant_id: &str,
        version: i64,
    ) -> Result<PostgresCredentials> {
        let stored = store.secrets().secret_version_get(Some(tenant_id), SECRET_NAME, version).await?;
        let sealed = Sealed {
            ciphertext: stored.ciphertext,
            key: WrappedKey { kek_id: stored.kek_id, wrapped: stored.wrapped_key },
        };
        let binding = envelope::binding(Some(tenant_id), SECRET_NAME, version);
        let plain = envelope::open(self.kek()?, &binding, &sealed).map_err(|e| {
            Error::internal(format!("secret {:?} version {version} does not open: {e}", target(tenant_id)))
        })?;
        let text = std::str::from_utf8(&plain)
            .map_err(|_| Error::internal(format!("secret {:?} version {version} is not UTF-8", target(tenant_id))))?;
        PostgresCredentials::from_secret_text(text)
    }

    /// Puts `value` as the new current version of the tenant's credentials secret
    /// (the old current becomes previous), if the current version is still
    /// `expected_current` (`None`: the secret must not exist), else
    /// `PreconditionFailed` (or `AlreadyExists`-like database errors for a lost first
    /// put). Audited as `secret.put` by `ctx`, without the value. Returns the version.
    pub async fn credentials_put(
        &self,
        store: &dyn Store,
        ctx: &OpContext,
        tenant_id: &str,
        value: &PostgresCredentials,
        expected_current: Option<i64>,
    ) -> Result<i64> {
        let secrets = store.secrets();
        let newest = match secrets.secret_get(Some(tenant_id), SECRET_NAME).await {
            Ok(rec) => rec.versions.first().map(|v| v.0).unwrap_or(0).max(rec.current_version),
            Err(Error::NotFound { .. }) => 0,
            Err(e) => return Err(e),
        };
        let version = newest + 1;
        let text = value.to_secret_text();
        let binding = envelope::binding(Some(tenant_id), SECRET_NAME, version);
        let sealed = envelope::seal(self.kek()?, &binding, text.as_bytes())?;
        let stored = SealedVersion {
            version,
            ciphertext: sealed.ciphertext,
            wrapped_key: sealed.key.wrapped,
            kek_id: sealed.key.kek_id,
            created_at: Timestamp::now(),
        };
        let audit = ctx.audit(
            "secret.put",
            target(tenant_id),
            Some(tenant_id),
            json!({"version": version, "generated": "postgres", "username": value.username}),
        );
        secrets
            .secret_put(Some(tenant_id), SECRET_NAME, expected_current, &stored, &Effects::none().with_audit(audit))
            .await?;
        Ok(version)
    }

    /// The tenant's silo credentials, made the first time: the stored secret, else the
    /// password of a row provisioned before the secret store (moved into it), else a
    /// fresh password. Two first calls at once agree (the first put wins).
    pub(crate) async fn credentials_ensure(&self, store: &dyn Store, tenant_id: &str) -> Result<PostgresCredentials> {
        if let Some((_, creds)) = self.credentials_current(store, tenant_id).await? {
            self.forget_legacy(store, tenant_id).await?;
            return Ok(creds);
        }
        let target = self
            .provisioner
            .login_target(tenant_id, Isolation::Silo)?
            .ok_or_else(|| Error::internal("a data plane with logins named no login"))?;
        let password = match self.legacy_password(store, tenant_id).await? {
            Some(p) => p,
            None => generate_password(),
        };
        let value = PostgresCredentials::of(&target, &target.user, &password);
        match self.credentials_put(store, &OpContext::system(), tenant_id, &value, None).await {
            Ok(_) => {}
            Err(e) => match self.credentials_current(store, tenant_id).await? {
                // Another attempt's first put won: its value is the one.
                Some((_, winner)) => return Ok(winner),
                None => return Err(e),
            },
        }
        self.forget_legacy(store, tenant_id).await?;
        Ok(value)
    }

    /// Deletes the tenant's credentials secret at once (its database is gone), audited.
    pub(crate) async fn credentials_delete(&self, store: &dyn Store, tenant_id: &str) -> Result<()> {
        let audit = OpContext::system().audit(
            "secret.delete",
            target(tenant_id),
            Some(tenant_id),
            json!({"force": true, "reason": "database deleted"}),
        );
        let secrets = store.secrets();
        match secrets
            .secret_delete(Some(tenant_id), SECRET_NAME, Timestamp::now(), None, &Effects::none().with_audit(audit))
            .await
        {
            Ok(()) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The silo password sealed with the master key before the secret store kept it.
    pub(crate) async fn legacy_password(
        &self,
        store: &dyn Store,
        tenant_id: &str,
    ) -> Result<Option<tenancy_adapters::keys::envelope::Zeroizing<String>>> {
        let Some(sealed) = store.workflows().tenant_secret_get(tenant_id, &secret_name(Isolation::Silo)).await? else {
            return Ok(None);
        };
        let owner = secret_owner(tenant_id, Isolation::Silo);
        Ok(Some(tenancy_adapters::keys::envelope::Zeroizing::new(self.secrets()?.open(&owner, &sealed)?)))
    }

    async fn forget_legacy(&self, store: &dyn Store, tenant_id: &str) -> Result<()> {
        store.workflows().tenant_secret_delete(tenant_id, &secret_name(Isolation::Silo)).await?;
        Ok(())
    }

    /// Moves every silo password sealed in `tenant_secrets` into the secret store (see
    /// the module docs); the number of tenants moved.
    pub async fn adopt_legacy_credentials(&self, store: &dyn Store) -> Result<usize> {
        if !self.provisioner.uses_credentials() {
            return Ok(0);
        }
        let silo = secret_name(Isolation::Silo);
        let mut moved = 0;
        for row in store.secrets().sealed_values().await? {
            let name = row.key.iter().find(|(c, _)| *c == "name").map(|(_, v)| v.as_str());
            let tenant = row.key.iter().find(|(c, _)| *c == "tenant_id").map(|(_, v)| v.clone());
            let (Some(name), Some(tenant)) = (name, tenant) else { continue };
            if row.table != "tenant_secrets" || name != silo {
                continue;
            }
            // One tenant's failure (a row of a tenant being purged, say) does not stop
            // the start: its reads fall back to the old row, the next start retries.
            match self.credentials_ensure(store, &tenant).await {
                Ok(_) => moved += 1,
                Err(e) => {
                    tracing::warn!(tenant_id = %tenant, error = %e, "failed to move a database password into the secret store")
                }
            }
        }
        Ok(moved)
    }
}
