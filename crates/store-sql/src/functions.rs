//! [`FunctionStore`] on SQL: one row per function, the record as JSON beside its sealed
//! secret.

use async_trait::async_trait;
use sqlx::Row;
use tenancy_domain::function::Function;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};

use super::{db_err, json_text, SqlStore};
use tenancy_store::Effects;
use tenancy_store::{FunctionStore, StoredFunction};

fn function_of(text: &str) -> Result<Function> {
    serde_json::from_str(text).map_err(|e| Error::internal(format!("corrupt function record: {e}")))
}

#[async_trait]
impl FunctionStore for SqlStore {
    async fn function_put(&self, f: &StoredFunction, fx: &Effects) -> Result<(StoredFunction, bool)> {
        let (f, dialect) = (f.clone(), self.dialect);
        self.writer
            .write(fx, move |c| {
                Box::pin(async move {
                    let sql =
                        format!("SELECT created_at, secret FROM functions WHERE name = $1{}", dialect.for_update());
                    let existing =
                        sqlx::query(&sql).bind(&f.function.name).fetch_optional(&mut *c).await.map_err(db_err)?;
                    let mut stored = f.clone();
                    let created = existing.is_none();
                    if let Some(row) = existing {
                        stored.function.created_at = Timestamp(row.get(0));
                        stored.secret = row.get(1);
                    }
                    let sql = if created {
                        "INSERT INTO functions (name, function, secret, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5)"
                    } else {
                        "UPDATE functions SET function = $2, secret = $3, created_at = $4, updated_at = $5 \
                         WHERE name = $1"
                    };
                    sqlx::query(sql)
                        .bind(&stored.function.name)
                        .bind(json_text(&stored.function))
                        .bind(&stored.secret)
                        .bind(stored.function.created_at.millis())
                        .bind(stored.function.updated_at.millis())
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    Ok((stored, created))
                })
            })
            .await
    }

    async fn function_get(&self, name: &str) -> Result<StoredFunction> {
        let row = sqlx::query("SELECT function, secret FROM functions WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found("function", name))?;
        Ok(StoredFunction { function: function_of(&row.get::<String, _>(0))?, secret: row.get(1) })
    }

    async fn function_list(&self) -> Result<Vec<Function>> {
        let rows = sqlx::query("SELECT function FROM functions ORDER BY name")
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| function_of(&r.get::<String, _>(0))).collect()
    }

    async fn function_delete(&self, name: &str, fx: &Effects) -> Result<()> {
        let name = name.to_owned();
        self.writer
            .write(fx, move |c| {
                Box::pin(async move {
                    let res = sqlx::query("DELETE FROM functions WHERE name = $1")
                        .bind(&name)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    if res.rows_affected() == 0 {
                        return Err(Error::not_found("function", name));
                    }
                    Ok(())
                })
            })
            .await
    }
}
