//! [`HookStore`] on SQL: one row per hook, the record as JSON.

use async_trait::async_trait;
use sqlx::Row;
use tenancy_domain::hook::Hook;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};

use super::{db_err, json_text, SqlStore};
use tenancy_store::Effects;
use tenancy_store::{HookPut, HookSecretWrite, HookSecrets, HookStore};

impl SqlStore {
    /// After a write of hooks: the cached list is stale.
    fn hooks_changed(&self) {
        if let Some(c) = &self.records {
            c.hooks.clear();
        }
    }
}

fn hook_of(text: &str) -> Result<Hook> {
    serde_json::from_str(text).map_err(|e| Error::internal(format!("corrupt hook record: {e}")))
}

#[async_trait]
impl HookStore for SqlStore {
    async fn hook_put(&self, hook: &Hook, secret: &HookSecretWrite, fx: &Effects) -> Result<HookPut> {
        let (hook, secret, dialect) = (hook.clone(), secret.clone(), self.dialect);
        let put = self
            .writer
            .write(fx, move |c| {
                Box::pin(async move {
                    if let Some(conn) = &hook.connection {
                        crate::connections::must_exist(c, dialect, conn).await?;
                    }
                    let sql = format!("SELECT created_at, secret FROM hooks WHERE name = $1{}", dialect.for_update());
                    let existing = sqlx::query(&sql).bind(&hook.name).fetch_optional(&mut *c).await.map_err(db_err)?;
                    let mut stored = hook.clone();
                    let created = existing.is_none();
                    let mut has_secret = false;
                    if let Some(row) = existing {
                        stored.created_at = Timestamp(row.get(0));
                        has_secret = row.get::<Option<String>, _>(1).is_some();
                    }
                    let sql = if created {
                        "INSERT INTO hooks (name, hook, created_at, updated_at) VALUES ($1, $2, $3, $4)"
                    } else {
                        "UPDATE hooks SET hook = $2, created_at = $3, updated_at = $4 WHERE name = $1"
                    };
                    sqlx::query(sql)
                        .bind(&stored.name)
                        .bind(json_text(&stored))
                        .bind(stored.created_at.millis())
                        .bind(stored.updated_at.millis())
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    let secret_stored = match &secret {
                        HookSecretWrite::Keep => false,
                        HookSecretWrite::IfNone(_) if has_secret => false,
                        HookSecretWrite::IfNone(sealed) => {
                            sqlx::query("UPDATE hooks SET secret = $2 WHERE name = $1")
                                .bind(&stored.name)
                                .bind(sealed)
                                .execute(&mut *c)
                                .await
                                .map_err(db_err)?;
                            true
                        }
                        HookSecretWrite::Rotate { sealed, previous_until } => {
                            // The right-hand sides read the row as it was: the current
                            // secret becomes the previous one.
                            sqlx::query(
                                "UPDATE hooks SET previous_secret = secret, previous_expires_at = $3, secret = $2 \
                                 WHERE name = $1",
                            )
                            .bind(&stored.name)
                            .bind(sealed)
                            .bind(previous_until.millis())
                            .execute(&mut *c)
                            .await
                            .map_err(db_err)?;
                            true
                        }
                    };
                    Ok(HookPut { hook: stored, created, secret_stored })
                })
            })
            .await;
        self.hooks_changed();
        put
    }

    async fn hook_get(&self, name: &str) -> Result<Hook> {
        if self.records.is_some() {
            let hooks = self.hook_list().await?;
            return hooks.into_iter().find(|h| h.name == name).ok_or_else(|| Error::not_found("hook", name));
        }
        let row = sqlx::query("SELECT hook FROM hooks WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found("hook", name))?;
        hook_of(&row.get::<String, _>(0))
    }

    async fn hook_list(&self) -> Result<Vec<Hook>> {
        let generation = match self.records.as_ref().map(|c| c.hooks.get("")) {
            Some(Ok(hooks)) => return Ok(hooks),
            Some(Err(generation)) => Some(generation),
            None => None,
        };
        let rows = sqlx::query("SELECT hook FROM hooks ORDER BY name").fetch_all(&self.reader).await.map_err(db_err)?;
        let hooks = rows.iter().map(|r| hook_of(&r.get::<String, _>(0))).collect::<Result<Vec<_>>>()?;
        if let (Some(c), Some(generation)) = (&self.records, generation) {
            c.hooks.fill(generation, "", &hooks);
        }
        Ok(hooks)
    }

    async fn hook_delete(&self, name: &str, fx: &Effects) -> Result<()> {
        let name = name.to_owned();
        let deleted = self
            .writer
            .write(fx, move |c| {
                Box::pin(async move {
                    let res = sqlx::query("DELETE FROM hooks WHERE name = $1")
                        .bind(&name)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    if res.rows_affected() == 0 {
                        return Err(Error::not_found("hook", name));
                    }
                    Ok(())
                })
            })
            .await;
        self.hooks_changed();
        deleted
    }

    async fn hook_secrets(&self, name: &str) -> Result<HookSecrets> {
        let row = sqlx::query("SELECT secret, previous_secret, previous_expires_at FROM hooks WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found("hook", name))?;
        Ok(HookSecrets {
            current: row.get(0),
            previous: row.get(1),
            previous_expires_at: row.get::<Option<i64>, _>(2).map(Timestamp),
        })
    }

    async fn hook_secret_init(&self, name: &str, sealed: &str) -> Result<String> {
        let (name, sealed) = (name.to_owned(), sealed.to_owned());
        self.writer
            .write(&Effects::none(), move |c| {
                Box::pin(async move {
                    sqlx::query("UPDATE hooks SET secret = $2 WHERE name = $1 AND secret IS NULL")
                        .bind(&name)
                        .bind(&sealed)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    let row = sqlx::query("SELECT secret FROM hooks WHERE name = $1")
                        .bind(&name)
                        .fetch_optional(&mut *c)
                        .await
                        .map_err(db_err)?
                        .ok_or_else(|| Error::not_found("hook", &name))?;
                    row.get::<Option<String>, _>(0).ok_or_else(|| Error::internal("hook secret not stored"))
                })
            })
            .await
    }
}
