//! [`SecretStore`] on SQL: `secrets` (a row per secret: labels, deletion) and
//! `secret_versions` (sealed values and wrapped data keys). A platform secret's
//! `tenant_id` is the empty string.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::secret::KEPT_VERSIONS;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};

use super::{db_err, SqlStore};
use tenancy_store::{
    Effects, Resealed, RotationStart, SealedVersion, SecretConfig, SecretRecord, SecretScope, SecretStore,
    WrappedVersionKey,
};

const COLUMNS: &str = "tenant_id, name, current_version, previous_version, pending_version, created_at, updated_at, \
     deleted_at, purge_at, generator, rotation, next_rotation_at, rotation_execution_id, last_rotation";

fn scope_of(scope: SecretScope<'_>) -> String {
    scope.unwrap_or("").to_owned()
}

fn record_of(row: &AnyRow) -> SecretRecord {
    let tenant: String = row.get(0);
    SecretRecord {
        tenant_id: (!tenant.is_empty()).then_some(tenant),
        name: row.get(1),
        current_version: row.get(2),
        previous_version: row.get(3),
        pending_version: row.get(4),
        created_at: Timestamp(row.get(5)),
        updated_at: Timestamp(row.get(6)),
        deleted_at: row.get::<Option<i64>, _>(7).map(Timestamp),
        purge_at: row.get::<Option<i64>, _>(8).map(Timestamp),
        versions: Vec::new(),
        generator: row.get(9),
        rotation: row.get(10),
        next_rotation_at: row.get::<Option<i64>, _>(11).map(Timestamp),
        rotation_execution_id: row.get(12),
        last_rotation: row.get(13),
    }
}

fn not_found(name: &str) -> Error {
    Error::not_found("secret", name)
}

fn deleted(name: &str, purge_at: Option<i64>) -> Error {
    let when = purge_at.map(|t| Timestamp(t).to_rfc3339()).unwrap_or_default();
    Error::Conflict {
        code: ErrorCode::SecretDeleted,
        message: format!(
            "secret {name:?} is scheduled for deletion (purged at {when}): restore it with POST .../restore first"
        ),
    }
}

async fn versions_of(c: &mut AnyConnection, tenant: &str, name: &str) -> Result<Vec<(i64, Timestamp)>> {
    let rows = sqlx::query(
        "SELECT version, created_at FROM secret_versions WHERE tenant_id = $1 AND name = $2 ORDER BY version DESC",
    )
    .bind(tenant)
    .bind(name)
    .fetch_all(&mut *c)
    .await
    .map_err(db_err)?;
    Ok(rows.iter().map(|r| (r.get(0), Timestamp(r.get(1)))).collect())
}

async fn get_in(c: &mut AnyConnection, tenant: &str, name: &str, lock: &str) -> Result<Option<SecretRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM secrets WHERE tenant_id = $1 AND name = $2{lock}");
    let Some(row) = sqlx::query(&sql).bind(tenant).bind(name).fetch_optional(&mut *c).await.map_err(db_err)? else {
        return Ok(None);
    };
    let mut rec = record_of(&row);
    rec.versions = versions_of(c, tenant, name).await?;
    Ok(Some(rec))
}

/// [`SecretStore::secret_put`] inside a transaction (connections put their credential
/// with their own row).
/// Stores one sealed version (the caller's transaction decides its labels).
async fn insert_version(
    c: &mut AnyConnection,
    tenant: &str,
    name: &str,
    v: &SealedVersion,
) -> std::result::Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO secret_versions (tenant_id, name, version, ciphertext, wrapped_key, kek_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(tenant)
    .bind(name)
    .bind(v.version)
    .bind(&v.ciphertext)
    .bind(&v.wrapped_key)
    .bind(&v.kek_id)
    .bind(v.created_at.millis())
    .execute(&mut *c)
    .await
    .map(|_| ())
}

pub(crate) async fn put_in(
    c: &mut AnyConnection,
    dialect: crate::dialect::Dialect,
    tenant: &str,
    name: &str,
    expected_current: Option<i64>,
    v: &SealedVersion,
    config: &SecretConfig,
) -> Result<SecretRecord> {
    let (tenant, name) = (tenant.to_owned(), name.to_owned());
    let existing = get_in(c, &tenant, &name, dialect.for_update()).await?;
    let now = v.created_at.millis();
    match (&existing, expected_current) {
        (Some(e), _) if e.deleted_at.is_some() => return Err(deleted(&name, e.purge_at.map(|t| t.millis()))),
        (None, None) => {
            sqlx::query(
                "INSERT INTO secrets (tenant_id, name, current_version, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $4)",
            )
            .bind(&tenant)
            .bind(&name)
            .bind(v.version)
            .bind(now)
            .execute(&mut *c)
            .await
            .map_err(db_err)?;
        }
        (Some(e), Some(expected)) if e.current_version == expected => {
            sqlx::query(
                "UPDATE secrets SET previous_version = current_version, current_version = $3, \
                     updated_at = $4 WHERE tenant_id = $1 AND name = $2",
            )
            .bind(&tenant)
            .bind(&name)
            .bind(v.version)
            .bind(now)
            .execute(&mut *c)
            .await
            .map_err(db_err)?;
        }
        (e, expected) => {
            return Err(Error::PreconditionFailed {
                kind: "secret",
                id: name.clone(),
                expected: expected.unwrap_or(0),
                found: e.as_ref().map_or(0, |e| e.current_version),
            })
        }
    }
    insert_version(c, &tenant, &name, v).await.map_err(db_err)?;
    if let Some(g) = &config.generator {
        sqlx::query("UPDATE secrets SET generator = $3 WHERE tenant_id = $1 AND name = $2")
            .bind(&tenant)
            .bind(&name)
            .bind(g)
            .execute(&mut *c)
            .await
            .map_err(db_err)?;
    }
    if let Some((spec, next)) = &config.rotation {
        sqlx::query("UPDATE secrets SET rotation = $3, next_rotation_at = $4 WHERE tenant_id = $1 AND name = $2")
            .bind(&tenant)
            .bind(&name)
            .bind(spec)
            .bind(next.map(|t| t.millis()))
            .execute(&mut *c)
            .await
            .map_err(db_err)?;
    }
    // Older unlabelled versions beyond the kept window go.
    sqlx::query(
        "DELETE FROM secret_versions WHERE tenant_id = $1 AND name = $2 AND version <= $3 \
             AND version NOT IN (SELECT current_version FROM secrets WHERE tenant_id = $1 AND name = $2 \
               UNION ALL SELECT previous_version FROM secrets WHERE tenant_id = $1 AND name = $2 \
                 AND previous_version IS NOT NULL \
               UNION ALL SELECT pending_version FROM secrets WHERE tenant_id = $1 AND name = $2 \
                 AND pending_version IS NOT NULL)",
    )
    .bind(&tenant)
    .bind(&name)
    .bind(v.version - KEPT_VERSIONS)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    get_in(c, &tenant, &name, "").await?.ok_or_else(|| not_found(&name))
}

#[async_trait]
impl SecretStore for SqlStore {
    async fn secret_get(&self, scope: SecretScope<'_>, name: &str) -> Result<SecretRecord> {
        let mut c = self.reader.acquire().await.map_err(db_err)?;
        get_in(&mut c, &scope_of(scope), name, "").await?.ok_or_else(|| not_found(name))
    }

    async fn secret_read(
        &self,
        scope: SecretScope<'_>,
        name: &str,
        version: Option<i64>,
    ) -> Result<(SecretRecord, Option<SealedVersion>)> {
        let secret_columns = COLUMNS.split(", ").map(|c| format!("s.{c}")).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT {secret_columns}, v.version, v.ciphertext, v.wrapped_key, v.kek_id, v.created_at \
             FROM secrets s LEFT JOIN secret_versions v ON v.tenant_id = s.tenant_id AND v.name = s.name \
             AND v.version = COALESCE($3, s.current_version) WHERE s.tenant_id = $1 AND s.name = $2"
        );
        let row = sqlx::query(&sql)
            .bind(scope_of(scope))
            .bind(name)
            .bind(version)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .ok_or_else(|| not_found(name))?;
        let base = COLUMNS.split(", ").count();
        let sealed = row.get::<Option<i64>, _>(base).map(|version| SealedVersion {
            version,
            ciphertext: row.get(base + 1),
            wrapped_key: row.get(base + 2),
            kek_id: row.get(base + 3),
            created_at: Timestamp(row.get(base + 4)),
        });
        Ok((record_of(&row), sealed))
    }

    async fn secret_version_get(&self, scope: SecretScope<'_>, name: &str, version: i64) -> Result<SealedVersion> {
        let row = sqlx::query(
            "SELECT version, ciphertext, wrapped_key, kek_id, created_at FROM secret_versions \
             WHERE tenant_id = $1 AND name = $2 AND version = $3",
        )
        .bind(scope_of(scope))
        .bind(name)
        .bind(version)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .ok_or_else(|| Error::not_found("secret version", format!("{name}@{version}")))?;
        Ok(SealedVersion {
            version: row.get(0),
            ciphertext: row.get(1),
            wrapped_key: row.get(2),
            kek_id: row.get(3),
            created_at: Timestamp(row.get(4)),
        })
    }

    async fn secret_put(
        &self,
        scope: SecretScope<'_>,
        name: &str,
        expected_current: Option<i64>,
        v: &SealedVersion,
        fx: &Effects,
    ) -> Result<SecretRecord> {
        self.secret_put_configured(scope, name, expected_current, v, &SecretConfig::default(), fx).await
    }

    async fn secret_put_configured(
        &self,
        scope: SecretScope<'_>,
        name: &str,
        expected_current: Option<i64>,
        v: &SealedVersion,
        config: &SecretConfig,
        fx: &Effects,
    ) -> Result<SecretRecord> {
        let (tenant, name, v, dialect, config) =
            (scope_of(scope), name.to_owned(), v.clone(), self.dialect, config.clone());
        self.writer
            .write(fx, move |c| {
                Box::pin(async move { put_in(c, dialect, &tenant, &name, expected_current, &v, &config).await })
            })
            .await
    }

    async fn secret_list(&self, scope: SecretScope<'_>, page: &PageRequest) -> Result<Page<SecretRecord>> {
        let tenant = scope_of(scope);
        let sql = format!(
            "SELECT {COLUMNS} FROM secrets WHERE tenant_id = $1 AND name > $2 ORDER BY name LIMIT {}",
            page.limit + 1
        );
        let rows = sqlx::query(&sql)
            .bind(&tenant)
            .bind(page.after.clone().unwrap_or_default())
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        let mut page = Page::from_overfetch(rows.iter().map(record_of).collect(), page.limit, |r| r.name.clone());
        if let (Some(first), Some(last)) = (page.items.first(), page.items.last()) {
            let rows = sqlx::query(
                "SELECT name, version, created_at FROM secret_versions WHERE tenant_id = $1 AND name >= $2 \
                 AND name <= $3 ORDER BY name, version DESC",
            )
            .bind(&tenant)
            .bind(&first.name)
            .bind(&last.name)
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
            for r in &rows {
                let name: String = r.get(0);
                if let Some(rec) = page.items.iter_mut().find(|s| s.name == name) {
                    rec.versions.push((r.get(1), Timestamp(r.get(2))));
                }
            }
        }
        Ok(page)
    }

    async fn secret_delete(
        &self,
        scope: SecretScope<'_>,
        name: &str,
        now: Timestamp,
        purge_at: Option<Timestamp>,
        fx: &Effects,
    ) -> Result<()> {
        let (tenant, name, dialect) = (scope_of(scope), name.to_owned(), self.dialect);
        self.writer
            .write(fx, move |c| {
                Box::pin(async move {
                    let sql = format!(
                        "SELECT deleted_at, purge_at FROM secrets WHERE tenant_id = $1 AND name = $2{}",
                        dialect.for_update()
                    );
                    let row = sqlx::query(&sql)
                        .bind(&tenant)
                        .bind(&name)
                        .fetch_optional(&mut *c)
                        .await
                        .map_err(db_err)?
                        .ok_or_else(|| not_found(&name))?;
                    if row.get::<Option<i64>, _>(0).is_some() {
                        return Err(deleted(&name, row.get(1)));
                    }
                    match purge_at {
                        Some(at) => {
                            sqlx::query(
                                "UPDATE secrets SET deleted_at = $3, purge_at = $4, updated_at = $3 \
                                 WHERE tenant_id = $1 AND name = $2",
                            )
                            .bind(&tenant)
                            .bind(&name)
                            .bind(now.millis())
                            .bind(at.millis())
                            .execute(&mut *c)
                            .await
                            .map_err(db_err)?;
                        }
                        None => purge_rows(c, &tenant, &name).await?,
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn secret_restore(&self, scope: SecretScope<'_>, name: &str, fx: &Effects) -> Result<SecretRecord> {
        let (tenant, name, dialect) = (scope_of(scope), name.to_owned(), self.dialect);
        self.writer
            .write(fx, move |c| {
                Box::pin(async move {
                    let rec = get_in(c, &tenant, &name, dialect.for_update()).await?.ok_or_else(|| not_found(&name))?;
                    if rec.deleted_at.is_none() {
                        return Err(Error::Conflict {
                            code: ErrorCode::SecretNotDeleted,
                            message: format!("secret {name:?} is not scheduled for deletion"),
                        });
                    }
                    sqlx::query(
                        "UPDATE secrets SET deleted_at = NULL, purge_at = NULL WHERE tenant_id = $1 AND name = $2",
                    )
                    .bind(&tenant)
                    .bind(&name)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                    Ok(SecretRecord { deleted_at: None, purge_at: None, ..rec })
                })
            })
            .await
    }

    async fn secret_purge_due(&self, now: Timestamp, limit: u32) -> Result<Vec<(Option<String>, String)>> {
        let rows = sqlx::query(&format!(
            "SELECT tenant_id, name FROM secrets WHERE purge_at <= $1 ORDER BY purge_at LIMIT {limit}"
        ))
        .bind(now.millis())
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| {
                let t: String = r.get(0);
                ((!t.is_empty()).then_some(t), r.get(1))
            })
            .collect())
    }

    async fn secret_purge(&self, scope: SecretScope<'_>, name: &str, now: Timestamp, fx: &Effects) -> Result<bool> {
        let (tenant, name, dialect) = (scope_of(scope), name.to_owned(), self.dialect);
        self.writer
            .write(fx, move |c| {
                Box::pin(async move {
                    let sql = format!(
                        "SELECT 1 FROM secrets WHERE tenant_id = $1 AND name = $2 AND purge_at <= $3{}",
                        dialect.for_update()
                    );
                    let due = sqlx::query(&sql)
                        .bind(&tenant)
                        .bind(&name)
                        .bind(now.millis())
                        .fetch_optional(&mut *c)
                        .await
                        .map_err(db_err)?;
                    if due.is_none() {
                        // Restored meanwhile, or purged by another replica: nothing to
                        // do, and no effects (the caller's audit entry is not written).
                        return Err(Error::Conflict { code: ErrorCode::SecretNotDeleted, message: String::new() });
                    }
                    purge_rows(c, &tenant, &name).await?;
                    Ok(true)
                })
            })
            .await
            .or_else(|e| match e {
                Error::Conflict { code: ErrorCode::SecretNotDeleted, .. } => Ok(false),
                e => Err(e),
            })
    }

    async fn secret_wrapped_keys(&self) -> Result<Vec<WrappedVersionKey>> {
        let rows = sqlx::query(
            "SELECT tenant_id, name, version, wrapped_key, kek_id FROM secret_versions ORDER BY tenant_id, name, version",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| {
                let t: String = r.get(0);
                WrappedVersionKey {
                    tenant_id: (!t.is_empty()).then_some(t),
                    name: r.get(1),
                    version: r.get(2),
                    wrapped_key: r.get(3),
                    kek_id: r.get(4),
                }
            })
            .collect())
    }

    async fn secret_rewrap(
        &self,
        keys: &[WrappedVersionKey],
        resealed: &[Resealed],
        old_fingerprint: &str,
        new_fingerprint: &str,
    ) -> Result<()> {
        let (keys, resealed) = (keys.to_vec(), resealed.to_vec());
        let (old, new) = (old_fingerprint.to_owned(), new_fingerprint.to_owned());
        self.writer
            .write(&Effects::none(), move |c| {
                Box::pin(async move {
                    let res = sqlx::query("UPDATE master_key SET fingerprint = $2 WHERE id = 1 AND fingerprint = $1")
                        .bind(&old)
                        .bind(&new)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    if res.rows_affected() != 1 {
                        return Err(Error::conflict(
                            "the database does not record the old master key's fingerprint: nothing was changed",
                        ));
                    }
                    for k in &keys {
                        sqlx::query(
                            "UPDATE secret_versions SET wrapped_key = $4, kek_id = $5 \
                             WHERE tenant_id = $1 AND name = $2 AND version = $3",
                        )
                        .bind(k.tenant_id.clone().unwrap_or_default())
                        .bind(&k.name)
                        .bind(k.version)
                        .bind(&k.wrapped_key)
                        .bind(&k.kek_id)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    }
                    for r in &resealed {
                        let wh: Vec<String> =
                            r.key.iter().enumerate().map(|(i, (col, _))| format!("{col} = ${}", i + 2)).collect();
                        let sql = format!("UPDATE {} SET {} = $1 WHERE {}", r.table, r.column, wh.join(" AND "));
                        let mut q = sqlx::query(&sql).bind(&r.sealed);
                        for (_, v) in &r.key {
                            q = q.bind(v);
                        }
                        q.execute(&mut *c).await.map_err(db_err)?;
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn secret_rotation_start(
        &self,
        scope: SecretScope<'_>,
        name: &str,
        start: &RotationStart,
        fx: &Effects,
    ) -> Result<()> {
        let (tenant, name, dialect, start) = (scope_of(scope), name.to_owned(), self.dialect, start.clone());
        self.writer
            .write(fx, move |c| {
                Box::pin(async move {
                    let rec = lock_row(c, dialect, &tenant, &name).await?;
                    if rec.deleted_at.is_some() {
                        return Err(deleted(&name, rec.purge_at.map(|t| t.millis())));
                    }
                    if let Some(running) = &rec.rotation_execution_id {
                        if start.takeover.as_deref() != Some(running.as_str()) {
                            return Err(Error::Conflict {
                                code: ErrorCode::RotationInProgress,
                                message: format!(
                                    "secret {name:?} is being rotated by execution {running}: wait for it to end"
                                ),
                            });
                        }
                    }
                    if start.due.is_some() && rec.next_rotation_at != start.due {
                        return Err(Error::Conflict {
                            code: ErrorCode::RotationInProgress,
                            message: format!("the scheduled rotation of secret {name:?} was started already"),
                        });
                    }
                    let next = match start.next_rotation_at {
                        Some(n) => n.map(|t| t.millis()),
                        None => rec.next_rotation_at.map(|t| t.millis()),
                    };
                    // A taken-over rotation's pending version loses its label.
                    let pending = if start.takeover.is_some() { None } else { rec.pending_version };
                    sqlx::query(
                        "UPDATE secrets SET rotation_execution_id = $3, last_rotation = $4, next_rotation_at = $5, \
                         pending_version = $6 WHERE tenant_id = $1 AND name = $2",
                    )
                    .bind(&tenant)
                    .bind(&name)
                    .bind(&start.execution_id)
                    .bind(&start.last_rotation)
                    .bind(next)
                    .bind(pending)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                    Ok(())
                })
            })
            .await
    }

    async fn secret_pending_put(
        &self,
        scope: SecretScope<'_>,
        name: &str,
        execution_id: &str,
        v: &SealedVersion,
    ) -> Result<()> {
        let (tenant, name, dialect, v, exe) =
            (scope_of(scope), name.to_owned(), self.dialect, v.clone(), execution_id.to_owned());
        self.writer
            .write(&Effects::none(), move |c| {
                Box::pin(async move {
                    let rec = lock_row(c, dialect, &tenant, &name).await?;
                    if rec.rotation_execution_id.as_deref() != Some(exe.as_str()) {
                        return Err(Error::PreconditionFailed {
                            kind: "secret rotation",
                            id: name.clone(),
                            expected: 0,
                            found: 0,
                        });
                    }
                    if rec.pending_version == Some(v.version) {
                        return Ok(());
                    }
                    insert_version(c, &tenant, &name, &v).await.map_err(|e| {
                        if super::is_unique_violation(&e) {
                            // A put took this version number meanwhile.
                            Error::PreconditionFailed {
                                kind: "secret version",
                                id: name.clone(),
                                expected: v.version,
                                found: 0,
                            }
                        } else {
                            db_err(e)
                        }
                    })?;
                    sqlx::query(
                        "UPDATE secrets SET pending_version = $3, updated_at = $4 WHERE tenant_id = $1 AND name = $2",
                    )
                    .bind(&tenant)
                    .bind(&name)
                    .bind(v.version)
                    .bind(v.created_at.millis())
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                    Ok(())
                })
            })
            .await
    }

    async fn secret_rotation_end(
        &self,
        scope: SecretScope<'_>,
        name: &str,
        execution_id: &str,
        finish: Option<i64>,
        last_rotation: &str,
        fx: &Effects,
    ) -> Result<bool> {
        let (tenant, name, dialect, exe, last) =
            (scope_of(scope), name.to_owned(), self.dialect, execution_id.to_owned(), last_rotation.to_owned());
        self.writer
            .write(fx, move |c| {
                Box::pin(async move {
                    let rec = lock_row(c, dialect, &tenant, &name).await?;
                    if rec.rotation_execution_id.as_deref() != Some(exe.as_str()) {
                        // Ended before (a re-run step), or taken over: nothing, no effects.
                        return Err(Error::Conflict { code: ErrorCode::ExecutionMoved, message: String::new() });
                    }
                    let now = Timestamp::now().millis();
                    match finish {
                        Some(version) => {
                            if rec.pending_version != Some(version) {
                                return Err(Error::PreconditionFailed {
                                    kind: "secret pending version",
                                    id: name.clone(),
                                    expected: version,
                                    found: rec.pending_version.unwrap_or(0),
                                });
                            }
                            sqlx::query(
                                "UPDATE secrets SET previous_version = current_version, current_version = $3, \
                                 pending_version = NULL, rotation_execution_id = NULL, last_rotation = $4, \
                                 updated_at = $5 WHERE tenant_id = $1 AND name = $2",
                            )
                            .bind(&tenant)
                            .bind(&name)
                            .bind(version)
                            .bind(&last)
                            .bind(now)
                            .execute(&mut *c)
                            .await
                            .map_err(db_err)?;
                            // The old previous lost its label: trim as a put does.
                            sqlx::query(
                                "DELETE FROM secret_versions WHERE tenant_id = $1 AND name = $2 AND version <= $3 \
                                 AND version NOT IN (SELECT current_version FROM secrets WHERE tenant_id = $1 AND name = $2 \
                                   UNION ALL SELECT previous_version FROM secrets WHERE tenant_id = $1 AND name = $2 \
                                     AND previous_version IS NOT NULL)",
                            )
                            .bind(&tenant)
                            .bind(&name)
                            .bind(version - KEPT_VERSIONS)
                            .execute(&mut *c)
                            .await
                            .map_err(db_err)?;
                        }
                        None => {
                            sqlx::query(
                                "UPDATE secrets SET pending_version = NULL, rotation_execution_id = NULL, \
                                 last_rotation = $3, updated_at = $4 WHERE tenant_id = $1 AND name = $2",
                            )
                            .bind(&tenant)
                            .bind(&name)
                            .bind(&last)
                            .bind(now)
                            .execute(&mut *c)
                            .await
                            .map_err(db_err)?;
                        }
                    }
                    Ok(true)
                })
            })
            .await
            .or_else(|e| match e {
                Error::Conflict { code: ErrorCode::ExecutionMoved, .. } => Ok(false),
                e => Err(e),
            })
    }

    async fn secret_rotation_due(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(Option<String>, String, Timestamp)>> {
        let rows = sqlx::query(&format!(
            "SELECT tenant_id, name, next_rotation_at FROM secrets WHERE next_rotation_at <= $1 \
             AND rotation_execution_id IS NULL AND deleted_at IS NULL ORDER BY next_rotation_at LIMIT {limit}"
        ))
        .bind(now.millis())
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| {
                let t: String = r.get(0);
                ((!t.is_empty()).then_some(t), r.get(1), Timestamp(r.get(2)))
            })
            .collect())
    }

    async fn job_lease(&self, job: &str, owner: &str, now: Timestamp, until: Timestamp) -> Result<bool> {
        let (job, owner) = (job.to_owned(), owner.to_owned());
        self.writer
            .write(&Effects::none(), move |c| {
                Box::pin(async move {
                    let res = sqlx::query(
                        "INSERT INTO job_leases (name, owner, expires_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
                         WHERE job_leases.owner = excluded.owner OR job_leases.expires_at <= $4",
                    )
                    .bind(&job)
                    .bind(&owner)
                    .bind(until.millis())
                    .bind(now.millis())
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                    Ok(res.rows_affected() == 1)
                })
            })
            .await
    }

    async fn sealed_values(&self) -> Result<Vec<Resealed>> {
        let mut out = Vec::new();
        let sources: [(&'static str, &'static str, &[&'static str]); 6] = [
            ("subscriptions", "secret", &["id"]),
            ("subscriptions", "previous_secret", &["id"]),
            ("hooks", "secret", &["name"]),
            ("hooks", "previous_secret", &["name"]),
            ("functions", "secret", &["name"]),
            ("tenant_secrets", "sealed", &["tenant_id", "name"]),
        ];
        for (table, column, key) in sources {
            let sql = format!("SELECT {column}, {} FROM {table} WHERE {column} IS NOT NULL", key.join(", "));
            let rows = sqlx::query(&sql).fetch_all(&self.reader).await.map_err(db_err)?;
            for r in &rows {
                out.push(Resealed {
                    table,
                    column,
                    key: key.iter().enumerate().map(|(i, k)| (*k, r.get::<String, _>(i + 1))).collect(),
                    sealed: r.get(0),
                });
            }
        }
        Ok(out)
    }
}

async fn lock_row(
    c: &mut AnyConnection,
    dialect: crate::dialect::Dialect,
    tenant: &str,
    name: &str,
) -> Result<SecretRecord> {
    get_in(c, tenant, name, dialect.for_update()).await?.ok_or_else(|| not_found(name))
}

pub(crate) async fn purge_rows(c: &mut AnyConnection, tenant: &str, name: &str) -> Result<()> {
    for table in ["secret_versions", "secrets"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE tenant_id = $1 AND name = $2"))
            .bind(tenant)
            .bind(name)
            .execute(&mut *c)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}
