//! API keys on SQL: created (a tenant key only for a tenant that is not offboarded),
//! read, listed (all, or a tenant's), deleted, rotated (the replaced secret's hash kept
//! for its grace), and their use recorded. The key itself is never stored, only its hash.

use sqlx::Row;
use tenancy_domain::apikey::ApiKey;
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::tenant::TenantStatus;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};

use super::{db_err, is_unique_violation, json_text, rows, SqlStore, Where};
use tenancy_store::Effects;

pub(super) async fn create(store: &SqlStore, k: &ApiKey, fx: &Effects) -> Result<()> {
    let (k, dialect) = (k.clone(), store.dialect);
    store
        .writer
        .write(fx, move |c| {
            Box::pin(async move {
                if let Some(tenant) = &k.tenant_id {
                    // In the transaction (and locked on PostgreSQL): a key created
                    // while its tenant's offboarding completes is revoked with the rest.
                    let sql = format!("SELECT status FROM tenants WHERE id = $1{}", dialect.for_share());
                    let row = sqlx::query(&sql).bind(tenant).fetch_optional(&mut *c).await.map_err(db_err)?;
                    let status: Option<String> = row.map(|r| r.get(0));
                    if status.as_deref().is_none_or(|s| s == TenantStatus::Offboarded.as_str()) {
                        return Err(Error::InvalidRequest {
                            code: ErrorCode::UnknownTenant,
                            message: format!("tenant {tenant:?} does not exist or is offboarded"),
                        });
                    }
                }
                let res = sqlx::query(
                    "INSERT INTO api_keys (id, name, role, tenant_id, hash, created_at, expires_at, rate_limit, \
                     last_used_at, previous_hash, previous_expires_at, labels, region) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(&k.id)
                .bind(&k.name)
                .bind(k.role.as_str())
                .bind(k.tenant_id.as_deref())
                .bind(&k.hash)
                .bind(k.created_at.millis())
                .bind(k.expires_at.map(Timestamp::millis))
                .bind(k.rate_limit.as_ref().map(json_text))
                .bind(k.last_used_at.map(Timestamp::millis))
                .bind(k.previous_hash.as_deref())
                .bind(k.previous_secret_expires_at.map(Timestamp::millis))
                .bind((!k.labels.is_empty()).then(|| json_text(&k.labels)))
                .bind(k.region.as_deref())
                .execute(&mut *c)
                .await;
                match res {
                    Err(e) if is_unique_violation(&e) => Err(Error::AlreadyExists { kind: "api key", id: k.id }),
                    Err(e) => Err(db_err(e)),
                    Ok(_) => Ok(()),
                }
            })
        })
        .await
}

pub(super) async fn get(store: &SqlStore, id: &str) -> Result<ApiKey> {
    let row = store.read_one("SELECT * FROM api_keys WHERE id = $1", id, "api key").await?;
    rows::api_key(&row)
}

pub(super) async fn list(store: &SqlStore, tenant_id: Option<&str>, page: &PageRequest) -> Result<Page<ApiKey>> {
    let mut w = Where::new("SELECT * FROM api_keys");
    w.eq("tenant_id", tenant_id);
    w.gt("id", page.after.as_deref());
    w.sql.push_str(&format!(" ORDER BY id LIMIT {}", page.limit + 1));
    let rows = w.query().fetch_all(&store.reader).await.map_err(db_err)?;
    let keys = rows.iter().map(rows::api_key).collect::<Result<Vec<_>>>()?;
    Ok(Page::from_overfetch(keys, page.limit, |k| k.id.clone()))
}

pub(super) async fn delete(store: &SqlStore, id: &str, fx: &Effects) -> Result<()> {
    let id = id.to_owned();
    store
        .writer
        .write(fx, move |c| {
            Box::pin(async move {
                let res = sqlx::query("DELETE FROM api_keys WHERE id = $1")
                    .bind(&id)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                if res.rows_affected() == 0 {
                    return Err(Error::not_found("api key", id));
                }
                Ok(())
            })
        })
        .await
}

pub(super) async fn rotate(
    store: &SqlStore,
    id: &str,
    hash: &str,
    previous_expires_at: Timestamp,
    fx: &Effects,
) -> Result<ApiKey> {
    let (id, hash) = (id.to_owned(), hash.to_owned());
    store
        .writer
        .write(fx, move |c| {
            Box::pin(async move {
                // The right-hand sides read the row as it was: the current hash becomes
                // the previous one.
                let res = sqlx::query(
                    "UPDATE api_keys SET previous_hash = hash, previous_expires_at = $3, hash = $2 WHERE id = $1",
                )
                .bind(&id)
                .bind(&hash)
                .bind(previous_expires_at.millis())
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
                if res.rows_affected() == 0 {
                    return Err(Error::not_found("api key", id));
                }
                let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1")
                    .bind(&id)
                    .fetch_one(&mut *c)
                    .await
                    .map_err(db_err)?;
                rows::api_key(&row)
            })
        })
        .await
}

pub(super) async fn touch(store: &SqlStore, id: &str, at: Timestamp) -> Result<()> {
    let id = id.to_owned();
    store
        .writer
        .write(&Effects::none(), move |c| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
                )
                .bind(&id)
                .bind(at.millis())
                .execute(&mut *c)
                .await
                .map_err(db_err)?;
                Ok(())
            })
        })
        .await
}
