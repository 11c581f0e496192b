//! The data plane's API: tenants' database credentials and what the provisioner observes.

use crate::context::Permission;
use crate::dataplane::plane::{
    database_record, record_isolation, secret_name, secret_owner, DataPlane, DatabaseCredentials,
};
use crate::{App, OpContext};
use serde_json::json;
use std::sync::Arc;
use tenancy_adapters::dataplane::DatabaseProvisioner;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_store::Effects;

impl App {
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
        let sealed = self.store().workflows().tenant_secret_get(tenant_id, &secret_name(isolation)).await?;
        let (Some(sealed), Some(host), Some(database), Some(user)) =
            (sealed, d["host"].as_str(), d["database"].as_str(), d["user"].as_str())
        else {
            return Err(none());
        };
        let password = plane.secrets()?.open(&secret_owner(tenant_id, isolation), &sealed)?;
        let port = d["port"].as_u64().unwrap_or(5432) as u16;
        let audit = ctx.audit(
            "tenant.database_credentials.read",
            format!("tenant/{tenant_id}"),
            Some(tenant_id),
            json!({"isolation": isolation, "database": database, "user": user}),
        );
        self.store().commit_effects(&Effects::none().with_audit(audit)).await?;
        Ok(DatabaseCredentials {
            engine: d["engine"].as_str().unwrap_or("postgres").to_owned(),
            isolation,
            url: format!("postgres://{user}:{password}@{host}:{port}/{database}"),
            host: host.to_owned(),
            port,
            database: database.to_owned(),
            schema: d["schema"].as_str().map(str::to_owned),
            user: user.to_owned(),
            password,
        })
    }
}
