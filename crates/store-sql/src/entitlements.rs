//! [`EntitlementStore`] on SQL: one row per tenant with overrides, the record as JSON.

use async_trait::async_trait;
use sqlx::Row;
use tenancy_domain::entitlements::Overrides;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};

use super::{db_err, json_text, SqlStore};
use tenancy_store::{Effects, EntitlementStore};

#[async_trait]
impl EntitlementStore for SqlStore {
    async fn overrides_put(&self, o: &Overrides, fx: &Effects) -> Result<()> {
        let o = o.clone();
        self.writer
            .write(fx, move |c| {
                Box::pin(async move {
                    super::terms::moved();
                    sqlx::query(
                        "INSERT INTO tenant_overrides (tenant_id, overrides, expires_at, updated_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO UPDATE SET \
                         overrides = excluded.overrides, expires_at = excluded.expires_at, \
                         updated_at = excluded.updated_at",
                    )
                    .bind(&o.tenant_id)
                    .bind(json_text(&o))
                    .bind(o.expires_at.map(|t| t.millis()))
                    .bind(o.updated_at.unwrap_or_else(Timestamp::now).millis())
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                    Ok(())
                })
            })
            .await
    }

    async fn overrides_get(&self, tenant_id: &str) -> Result<Option<Overrides>> {
        let row = sqlx::query("SELECT overrides FROM tenant_overrides WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        row.map(|r| {
            serde_json::from_str(&r.get::<String, _>(0))
                .map_err(|e| Error::internal(format!("corrupt overrides record: {e}")))
        })
        .transpose()
    }

    async fn overrides_delete(&self, tenant_id: &str, fx: &Effects) -> Result<bool> {
        let tenant_id = tenant_id.to_owned();
        self.writer
            .write(fx, move |c| {
                Box::pin(async move {
                    super::terms::moved();
                    let res = sqlx::query("DELETE FROM tenant_overrides WHERE tenant_id = $1")
                        .bind(&tenant_id)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    Ok(res.rows_affected() > 0)
                })
            })
            .await
    }
}
