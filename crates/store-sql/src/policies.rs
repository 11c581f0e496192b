//! [`PolicyStore`] on SQL: `policies` (a row per operator policy, its Cedar text) and
//! `policy_revision` (one row), moved in the transaction of every put and delete.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use tenancy_domain::policy::Policy;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};

use super::{db_err, SqlStore};
use tenancy_store::{Effects, PolicyStore};

const COLUMNS: &str = "name, cedar, created_at, updated_at";

fn policy_of(row: &AnyRow) -> Policy {
    Policy { name: row.get(0), cedar: row.get(1), created_at: Timestamp(row.get(2)), updated_at: Timestamp(row.get(3)) }
}

/// Moves the revision (the row is locked by the update until the commit).
async fn bump(c: &mut AnyConnection) -> Result<()> {
    sqlx::query("UPDATE policy_revision SET rev = rev + 1 WHERE id = 1").execute(&mut *c).await.map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl PolicyStore for SqlStore {
    async fn policy_put(&self, p: &Policy, fx: &Effects) -> Result<(Policy, bool)> {
        let p = p.clone();
        self.writer
            .write(fx, move |c| {
                Box::pin(async move {
                    // The revision first: its row lock orders concurrent puts of one name.
                    bump(c).await?;
                    let existing = sqlx::query(&format!("SELECT {COLUMNS} FROM policies WHERE name = $1"))
                        .bind(&p.name)
                        .fetch_optional(&mut *c)
                        .await
                        .map_err(db_err)?;
                    let mut stored = p.clone();
                    let created = existing.is_none();
                    let sql = match existing {
                        None => "INSERT INTO policies (name, cedar, created_at, updated_at) VALUES ($1, $2, $3, $4)",
                        Some(row) => {
                            stored.created_at = policy_of(&row).created_at;
                            "UPDATE policies SET cedar = $2, created_at = $3, updated_at = $4 WHERE name = $1"
                        }
                    };
                    sqlx::query(sql)
                        .bind(&stored.name)
                        .bind(&stored.cedar)
                        .bind(stored.created_at.millis())
                        .bind(stored.updated_at.millis())
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    Ok((stored, created))
                })
            })
            .await
    }

    async fn policy_get(&self, name: &str) -> Result<Policy> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM policies WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found("policy", name))?;
        Ok(policy_of(&row))
    }

    async fn policy_list(&self) -> Result<Vec<Policy>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM policies ORDER BY name"))
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(policy_of).collect())
    }

    async fn policy_delete(&self, name: &str, fx: &Effects) -> Result<()> {
        let name = name.to_owned();
        self.writer
            .write(fx, move |c| {
                Box::pin(async move {
                    bump(c).await?;
                    let res = sqlx::query("DELETE FROM policies WHERE name = $1")
                        .bind(&name)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    if res.rows_affected() == 0 {
                        return Err(Error::not_found("policy", name));
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn policy_revision(&self) -> Result<i64> {
        let row = sqlx::query("SELECT rev FROM policy_revision WHERE id = 1")
            .fetch_one(&self.reader)
            .await
            .map_err(db_err)?;
        Ok(row.get(0))
    }
}
