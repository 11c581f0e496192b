//! [`ReleaseStore`] on SQL: one row per release, the record as JSON beside the default
//! flag (`is_default`), which a write moves in its transaction.

use async_trait::async_trait;
use sqlx::Row;
use tenancy_domain::release::{Bundle, Release};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};

use super::{db_err, json_text, SqlStore};
use tenancy_store::{Effects, ReleaseStore};

fn release_of(row: &sqlx::any::AnyRow) -> Result<Release> {
    let text: String = row.try_get(0).map_err(db_err)?;
    let mut r: Release =
        serde_json::from_str(&text).map_err(|e| Error::internal(format!("corrupt release record: {e}")))?;
    r.default = row.try_get::<i64, _>(1).map_err(db_err)? != 0;
    Ok(r)
}

async fn write_row(c: &mut sqlx::AnyConnection, r: &Release, created: bool) -> Result<()> {
    let sql = if created {
        "INSERT INTO releases (version, release, is_default, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)"
    } else {
        "UPDATE releases SET release = $2, is_default = $3, created_at = $4, updated_at = $5 WHERE version = $1"
    };
    sqlx::query(sql)
        .bind(&r.version)
        .bind(json_text(r))
        .bind(i64::from(r.default))
        .bind(r.created_at.millis())
        .bind(r.updated_at.millis())
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl ReleaseStore for SqlStore {
    async fn release_put(&self, r: &Release, fx: &Effects) -> Result<(Release, bool)> {
        let (r, dialect) = (r.clone(), self.dialect);
        self.writer
            .write(fx, move |c| {
                Box::pin(async move {
                    let sql =
                        format!("SELECT release, is_default FROM releases WHERE version = $1{}", dialect.for_update());
                    let existing = sqlx::query(&sql).bind(&r.version).fetch_optional(&mut *c).await.map_err(db_err)?;
                    let mut stored = r.clone();
                    let created = existing.is_none();
                    if let Some(row) = existing {
                        let old = release_of(&row)?;
                        stored.created_at = old.created_at;
                        stored.bundle = old.bundle;
                        stored.default = r.default || old.default;
                    }
                    if r.default {
                        sqlx::query("UPDATE releases SET is_default = 0 WHERE is_default <> 0 AND version <> $1")
                            .bind(&r.version)
                            .execute(&mut *c)
                            .await
                            .map_err(db_err)?;
                    }
                    write_row(c, &stored, created).await?;
                    Ok((stored, created))
                })
            })
            .await
    }

    async fn release_get(&self, version: &str) -> Result<Release> {
        let row = sqlx::query("SELECT release, is_default FROM releases WHERE version = $1")
            .bind(version)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found("release", version))?;
        release_of(&row)
    }

    async fn release_list(&self) -> Result<Vec<Release>> {
        let rows = sqlx::query("SELECT release, is_default FROM releases ORDER BY version")
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(release_of).collect()
    }

    async fn release_default(&self) -> Result<Option<Release>> {
        let row =
            sqlx::query("SELECT release, is_default FROM releases WHERE is_default <> 0 ORDER BY version LIMIT 1")
                .fetch_optional(&self.reader)
                .await
                .map_err(db_err)?;
        row.as_ref().map(release_of).transpose()
    }

    async fn release_bundle_set(
        &self,
        version: &str,
        bundle: &Bundle,
        fx: &Effects,
    ) -> Result<(Release, Option<Bundle>)> {
        let (version, bundle, dialect) = (version.to_owned(), bundle.clone(), self.dialect);
        self.writer
            .write(fx, move |c| {
                Box::pin(async move {
                    let sql =
                        format!("SELECT release, is_default FROM releases WHERE version = $1{}", dialect.for_update());
                    let row = sqlx::query(&sql)
                        .bind(&version)
                        .fetch_optional(&mut *c)
                        .await
                        .map_err(db_err)?
                        .ok_or_else(|| Error::not_found("release", &version))?;
                    let mut r = release_of(&row)?;
                    let old = r.bundle.replace(bundle.clone());
                    r.updated_at = Timestamp::now();
                    write_row(c, &r, false).await?;
                    Ok((r, old))
                })
            })
            .await
    }
}
