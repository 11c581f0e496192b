//! The master key's record: the fingerprint of the key that seals stored secrets.

use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;

use super::{db_err, SqlStore};
use tenancy_store::{Effects, MasterKeyState};

pub(super) async fn state(store: &SqlStore) -> Result<MasterKeyState> {
    let fingerprint: Option<(String,)> = sqlx::query_as("SELECT fingerprint FROM master_key WHERE id = 1")
        .fetch_optional(&store.reader)
        .await
        .map_err(db_err)?;
    let sealed: Option<(i64,)> = sqlx::query_as(
        "SELECT 1 FROM subscriptions WHERE secret IS NOT NULL OR previous_secret IS NOT NULL \
         UNION ALL SELECT 1 FROM hooks WHERE secret IS NOT NULL OR previous_secret IS NOT NULL \
         UNION ALL SELECT 1 FROM functions \
         UNION ALL SELECT 1 FROM tenant_secrets \
         UNION ALL SELECT 1 FROM secret_versions LIMIT 1",
    )
    .fetch_optional(&store.reader)
    .await
    .map_err(db_err)?;
    Ok(MasterKeyState { fingerprint: fingerprint.map(|f| f.0), sealed_values: sealed.is_some() })
}

pub(super) async fn record(store: &SqlStore, fingerprint: &str) -> Result<String> {
    let fingerprint = fingerprint.to_owned();
    store
        .writer
        .write_atomic(&Effects::none(), move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO master_key (id, fingerprint, created_at) VALUES (1, $1, $2) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(&fingerprint)
                .bind(Timestamp::now().millis())
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
                let row: (String,) = sqlx::query_as("SELECT fingerprint FROM master_key WHERE id = 1")
                    .fetch_one(&mut *c)
                    .await
                    .map_err(db_err)?;
                Ok(row.0)
            })
        })
        .await
}
