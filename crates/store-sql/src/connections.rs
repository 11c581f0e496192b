//! [`ConnectionStore`] on SQL: `connections` (a row per connection, its auth metadata
//! as JSON) beside the platform secret `connection.<name>` holding its credential
//! (`secrets`, `secret_versions`), both written in one transaction.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use tenancy_domain::connection::{self, AuthMeta, Connection};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};

use super::{db_err, json_text, SqlStore};
use crate::dialect::Dialect;
use tenancy_store::{ConnectionStore, Effects, SealedVersion};

const COLUMNS: &str = "name, auth, description, created_at, updated_at";

fn connection_of(row: &AnyRow) -> Result<Connection> {
    let auth: String = row.get(1);
    Ok(Connection {
        name: row.get(0),
        auth: serde_json::from_str::<AuthMeta>(&auth)
            .map_err(|e| Error::internal(format!("corrupt connection record: {e}")))?,
        description: row.get(2),
        created_at: Timestamp(row.get(3)),
        updated_at: Timestamp(row.get(4)),
    })
}

fn not_found(name: &str) -> Error {
    Error::not_found("connection", name)
}

/// Inside a write naming connection `name` (a hook, a subscription): 400
/// `invalid-connection` when there is none. The row is locked (PostgreSQL) so a
/// concurrent delete either sees this write's user or runs first.
pub(crate) async fn must_exist(c: &mut AnyConnection, dialect: Dialect, name: &str) -> Result<()> {
    let sql = format!("SELECT 1 FROM connections WHERE name = $1{}", dialect.for_update());
    match sqlx::query(&sql).bind(name).fetch_optional(&mut *c).await.map_err(db_err)? {
        Some(_) => Ok(()),
        None => Err(Error::InvalidRequest {
            code: ErrorCode::InvalidConnection,
            message: format!("connection {name:?} does not exist: create it with PUT /v1/connections/{{name}}"),
        }),
    }
}

/// The hooks and webhook subscriptions naming connection `name`, as `hook/<name>` and
/// `subscription/<id>`.
async fn users_of(c: &mut AnyConnection, name: &str) -> Result<Vec<String>> {
    let mut users = Vec::new();
    let names = |v: &serde_json::Value| v.get("connection").and_then(|c| c.as_str()) == Some(name);
    for row in sqlx::query("SELECT name, hook FROM hooks ORDER BY name").fetch_all(&mut *c).await.map_err(db_err)? {
        let hook: String = row.get(1);
        if serde_json::from_str::<serde_json::Value>(&hook).is_ok_and(|h| names(&h)) {
            users.push(format!("hook/{}", row.get::<String, _>(0)));
        }
    }
    for row in
        sqlx::query("SELECT id, target FROM subscriptions ORDER BY id").fetch_all(&mut *c).await.map_err(db_err)?
    {
        let target: String = row.get(1);
        if serde_json::from_str::<serde_json::Value>(&target).is_ok_and(|t| names(&t)) {
            users.push(format!("subscription/{}", row.get::<String, _>(0)));
        }
    }
    Ok(users)
}

#[async_trait]
impl ConnectionStore for SqlStore {
    async fn connection_put(
        &self,
        conn: &Connection,
        expected_version: Option<i64>,
        credential: &SealedVersion,
        fx: &Effects,
    ) -> Result<(Connection, bool)> {
        let (conn, credential, dialect) = (conn.clone(), credential.clone(), self.dialect);
        self.writer
            .write(fx, move |c| {
                Box::pin(async move {
                    let sql = format!("SELECT {COLUMNS} FROM connections WHERE name = $1{}", dialect.for_update());
                    let existing = sqlx::query(&sql).bind(&conn.name).fetch_optional(&mut *c).await.map_err(db_err)?;
                    let mut stored = conn.clone();
                    let created = existing.is_none();
                    if let Some(row) = existing {
                        stored.created_at = connection_of(&row)?.created_at;
                    }
                    let sql = if created {
                        "INSERT INTO connections (name, auth, description, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5)"
                    } else {
                        "UPDATE connections SET auth = $2, description = $3, created_at = $4, updated_at = $5 \
                         WHERE name = $1"
                    };
                    sqlx::query(sql)
                        .bind(&stored.name)
                        .bind(json_text(&stored.auth))
                        .bind(stored.description.clone())
                        .bind(stored.created_at.millis())
                        .bind(stored.updated_at.millis())
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    let secret = connection::secret_name(&stored.name);
                    crate::secrets::put_in(c, dialect, "", &secret, expected_version, &credential, &Default::default())
                        .await?;
                    Ok((stored, created))
                })
            })
            .await
    }

    async fn connection_get(&self, name: &str) -> Result<Connection> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM connections WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .ok_or_else(|| not_found(name))?;
        connection_of(&row)
    }

    async fn connection_list(&self) -> Result<Vec<Connection>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM connections ORDER BY name"))
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(connection_of).collect()
    }

    async fn connection_delete(&self, name: &str, fx: &Effects) -> Result<()> {
        let (name, dialect) = (name.to_owned(), self.dialect);
        self.writer
            .write(fx, move |c| {
                Box::pin(async move {
                    let sql = format!("SELECT 1 FROM connections WHERE name = $1{}", dialect.for_update());
                    if sqlx::query(&sql).bind(&name).fetch_optional(&mut *c).await.map_err(db_err)?.is_none() {
                        return Err(not_found(&name));
                    }
                    let users = users_of(c, &name).await?;
                    if !users.is_empty() {
                        return Err(Error::Conflict {
                            code: ErrorCode::ConnectionInUse,
                            message: format!(
                                "connection {name:?} is used by {}: point them elsewhere first",
                                users.join(", ")
                            ),
                        });
                    }
                    sqlx::query("DELETE FROM connections WHERE name = $1")
                        .bind(&name)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    crate::secrets::purge_rows(c, "", &connection::secret_name(&name)).await
                })
            })
            .await
    }
}
