//! The data plane's API: tenants' database credentials and what the provisioner observes.

use crate::context::Permission;
use crate::dataplane::plane::{
    database_record, record_isolation, secret_name, secret_owner, DataPlane, DatabaseCredentials,
};
use crate::{App, OpContext};
use serde_json::json;
use std::sync::Arc;
use tenancy_adapters::dataplane::DatabaseProvisioner;
use tenancy_domain::plan::Isolation;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_store::Effects;

impl App {
    /// Moves silo tenants' passwords provisioned before the secret store into it (see
    /// [`crate::dataplane::credentials`]); `tenancy serve` runs it at start, before the
    /// workers. The number of tenants moved.
    pub async fn adopt_database_credentials(&self) -> Result<usize> {
        match self.data_plane() {
            Some(plane) => plane.adopt_legacy_credentials(&**self.store()).await,
            None => Ok(0),
        }
    }

    /// The PostgreSQL side of credential rotation on this server's data plane
    /// (`invalid` on the SQLite data plane, whose databases have no logins).
    pub fn postgres_rotation(&self) -> Result<crate::secrets::postgres::PostgresRotation> {
        let provisioner = self.provisioner().ok_or_else(|| Error::invalid("this server has no data plane"))?;
        crate::secrets::postgres::PostgresRotation::new(provisioner.clone())
    }

    pub fn provisioner(&self) -> Option<&Arc<dyn DatabaseProvisioner>> {
        self.plane.as_ref().map(|d| &d.provisioner)
    }

    pub fn data_plane(&self) -> Option<&Arc<DataPlane>> {
        self.plane.as_ref()
    }

    /// The connection info of the tenant's database, password included (admins,
    /// operators and the tenant's own key; every read is audited). 409
    /// `no-database-credentials` on the SQLite data plane (its databases are files
    /// without logins); 404 when the tenant has no database (yet).
    pub async fn tenant_database_credentials(&self, ctx: &OpContext, tenant_id: &str) -> Result<DatabaseCredentials> {
        ctx.authorize_tenant(Permission::DatabaseCredentials, tenant_id)?;
        self.store().tenant_get(tenant_id).await?;
        let none = || Error::not_found("database credentials", tenant_id);
        let plane = self.data_plane().ok_or_else(none)?;
        if !plane.provisioner.uses_credentials() {
            return Err(Error::Conflict {
                code: ErrorCode::NoDatabaseCredentials,
                message: format!(
                    "tenant {tenant_id:?} has no database credentials: the data plane is SQLite (a silo tenant's \
                     database is a file under the server's data directory, opened without a login; a pool \
                     tenant has none); run the server with --data-plane-url postgres://... for tenant \
                     databases with logins"
                ),
            });
        }
        let record = database_record(&**self.store(), tenant_id).await?.ok_or_else(none)?;
        let isolation = record_isolation(&record.detail).ok_or_else(none)?;
        let d = &record.detail;
        let engine = d["engine"].as_str().unwrap_or("postgres").to_owned();
        let store = &**self.store();
        // A silo tenant's: the current version of its `tenancy.database` secret (or the
        // row of a password provisioned before the secret store, until it is moved).
        let stored = match isolation {
            Isolation::Silo => plane.credentials_current(store, tenant_id).await?,
            Isolation::Pool => None,
        };
        let (version, host, port, database, user, password) = match stored {
            Some((version, c)) => {
                (Some(version), c.host.clone(), c.port, c.dbname.clone(), c.username.clone(), c.password.clone())
            }
            None => {
                let sealed = store.workflows().tenant_secret_get(tenant_id, &secret_name(isolation)).await?;
                let (Some(sealed), Some(host), Some(database), Some(user)) =
                    (sealed, d["host"].as_str(), d["database"].as_str(), d["user"].as_str())
                else {
                    return Err(none());
                };
                let password = plane.secrets()?.open(&secret_owner(tenant_id, isolation), &sealed)?;
                let port = d["port"].as_u64().unwrap_or(5432) as u16;
                (None, host.to_owned(), port, database.to_owned(), user.to_owned(), password)
            }
        };
        let audit = ctx.audit(
            "tenant.database_credentials.read",
            format!("tenant/{tenant_id}"),
            Some(tenant_id),
            json!({"isolation": isolation, "database": database, "user": user, "version": version}),
        );
        self.store().commit_effects(&Effects::none().with_audit(audit)).await?;
        Ok(DatabaseCredentials {
            engine,
            isolation,
            url: format!("postgres://{user}:{password}@{host}:{port}/{database}"),
            host,
            port,
            database,
            schema: d["schema"].as_str().map(str::to_owned),
            user,
            password,
        })
    }
}
