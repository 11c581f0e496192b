//! Tenants on SQL: created (merged into one multi-row insert by the SQLite writer),
//! read (from the cache on SQLite), listed, updated over their version, purged.

use std::sync::Arc;

use sqlx::Row;
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::tenant::{Tenant, TenantFilter, TenantStatus};
use tenancy_domain::{Error, ErrorCode, Result};

use super::cache::TenantCache;
use super::{db_err, effects, is_unique_violation, json_text, rows, writer, SqlStore, Where};
use tenancy_store::{Effects, TenantWrite};

/// Binds a tenant's columns in table order (id, name, plan_id, region, status, metadata,
/// version, created_at, updated_at, lifecycle_execution_id, release, pinned): 12 values.
pub(super) fn bind_tenant<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    t: &'q Tenant,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    q.bind(&t.id)
        .bind(&t.name)
        .bind(&t.plan)
        .bind(&t.region)
        .bind(t.status.as_str())
        .bind(json_text(&t.metadata))
        .bind(t.version)
        .bind(t.created_at.millis())
        .bind(t.updated_at.millis())
        .bind(t.lifecycle_execution_id.as_deref())
        .bind(t.release.as_deref())
        .bind(t.pinned.as_ref().map(json_text))
}

/// Forgets a tenant in the cache when dropped (see `tenant_purge`).
struct ForgetOnDrop(Option<Arc<TenantCache>>, String);

impl Drop for ForgetOnDrop {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.forget(&self.1);
        }
        // After the tenant cache forgot it (see the `terms` module).
        super::terms::moved();
    }
}

impl SqlStore {
    /// For a write of one tenant ([`writer::Writer::write_atomic_then`]): stages it in
    /// the tenant cache, if there is one, for the writer to publish after its COMMIT.
    fn cache_tenant(&self) -> impl FnOnce(&Tenant) + Send + 'static {
        let cache = self.tenants.clone();
        move |stored| cache.iter().for_each(|c| c.stage(stored))
    }
}

/// On SQLite the writer puts the new tenant in the cache as it commits.
pub(super) async fn create(store: &SqlStore, t: &Tenant, fx: &Effects) -> Result<Tenant> {
    if store.writer.merges_tenant_insert(fx) {
        // SQLite: one multi-row INSERT for the batch, the plan check part of it
        // (one writer, so no plan delete can come in between).
        store.writer.insert_tenant(t, fx).await?;
        Ok(t.clone())
    } else {
        let t = t.clone();
        let (lock, dialect) = (store.dialect.for_share(), store.dialect);
        store
            .writer
            .write_atomic_then(
                fx,
                move |c| {
                    Box::pin(async move {
                        // On PostgreSQL the plan row stays share-locked until commit, so a
                        // concurrent plan delete either sees this tenant or comes first.
                        let sql = format!("SELECT max_tenants FROM plans WHERE id = $1{lock}");
                        let Some(plan) =
                            sqlx::query(&sql).bind(&t.plan).fetch_optional(&mut *c).await.map_err(db_err)?
                        else {
                            return Err(writer::unknown_plan(&t.plan));
                        };
                        if let Some(max) = plan.try_get::<Option<i64>, _>(0).map_err(db_err)? {
                            super::plans::check_room(c, dialect, &t.plan, max).await?;
                        }
                        let sql = "INSERT INTO tenants (id, name, plan_id, region, status, metadata, version, \
                               created_at, updated_at, lifecycle_execution_id, release, pinned) \
                               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
                        let res = bind_tenant(sqlx::query(sql), &t).execute(&mut *c).await;
                        match res {
                            Err(e) if is_unique_violation(&e) => Err(Error::AlreadyExists { kind: "tenant", id: t.id }),
                            Err(e) => Err(db_err(e)),
                            Ok(_) => Ok(t),
                        }
                    })
                },
                store.cache_tenant(),
            )
            .await
    }
}

pub(super) async fn get(store: &SqlStore, id: &str) -> Result<Tenant> {
    if let Some(t) = store.tenants.as_ref().and_then(|c| c.get(id)) {
        return Ok(t);
    }
    let purges = store.tenants.as_ref().map(|c| c.purges());
    let row = store.read_one("SELECT * FROM tenants WHERE id = $1", id, "tenant").await?;
    let t = rows::tenant(&row)?;
    if let (Some(c), Some(purges)) = (&store.tenants, purges) {
        c.offer_read(&t, purges);
    }
    Ok(t)
}

pub(super) async fn list(store: &SqlStore, filter: &TenantFilter, page: &PageRequest) -> Result<Page<Tenant>> {
    let mut w = Where::new("SELECT * FROM tenants");
    w.eq("plan_id", filter.plan.as_deref());
    w.eq("status", filter.status.map(TenantStatus::as_str));
    w.eq("region", filter.region.as_deref());
    w.eq("release", filter.release.as_deref());
    w.gt("id", page.after.as_deref());
    w.sql.push_str(&format!(" ORDER BY id LIMIT {}", page.limit + 1));
    let rows = w.query().fetch_all(&store.reader).await.map_err(db_err)?;
    let tenants = rows.iter().map(rows::tenant).collect::<Result<Vec<_>>>()?;
    Ok(Page::from_overfetch(tenants, page.limit, |t| t.id.clone()))
}

pub(super) async fn update(store: &SqlStore, t: &Tenant, expected_version: i64, fx: &Effects) -> Result<Tenant> {
    let mut stored = t.clone();
    stored.version = expected_version + 1;
    let write = TenantWrite { tenant: stored, expected_version };
    store
        .writer
        .write_atomic_then(
            fx,
            move |c| {
                Box::pin(async move {
                    effects::update_tenant(c, &write).await?;
                    effects::revoke_offboarded_keys(c, std::iter::once(&write.tenant)).await?;
                    Ok(write.tenant)
                })
            },
            store.cache_tenant(),
        )
        .await
}

/// [`update`] of a tenant starting its move to `plan`, if the plan has room: under the
/// plan's cap lock, counted with the tenants holding it and those moving to it, so
/// concurrent moves and creates never pass `max_tenants`. Records the move
/// (`plan_moves`) with the tenant's new current execution.
pub(super) async fn move_start(
    store: &SqlStore,
    t: &Tenant,
    expected_version: i64,
    plan: &str,
    fx: &Effects,
) -> Result<Tenant> {
    let mut stored = t.clone();
    stored.version = expected_version + 1;
    let write = TenantWrite { tenant: stored, expected_version };
    let (plan, lock, dialect) = (plan.to_owned(), store.dialect.for_share(), store.dialect);
    store
        .writer
        .write_then(
            fx,
            move |c| {
                Box::pin(async move {
                    let sql = format!("SELECT max_tenants FROM plans WHERE id = $1{lock}");
                    let Some(row) = sqlx::query(&sql).bind(&plan).fetch_optional(&mut *c).await.map_err(db_err)? else {
                        return Err(writer::unknown_plan(&plan));
                    };
                    if let Some(max) = row.try_get::<Option<i64>, _>(0).map_err(db_err)? {
                        super::plans::check_room(c, dialect, &plan, max).await?;
                    }
                    effects::update_tenant(c, &write).await?;
                    let execution = write.tenant.lifecycle_execution_id.clone().unwrap_or_default();
                    sqlx::query(
                        "INSERT INTO plan_moves (tenant_id, plan_id, execution_id) VALUES ($1, $2, $3) \
                         ON CONFLICT (tenant_id) DO UPDATE SET plan_id = excluded.plan_id, \
                         execution_id = excluded.execution_id",
                    )
                    .bind(&write.tenant.id)
                    .bind(&plan)
                    .bind(execution)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                    Ok(write.tenant)
                })
            },
            store.cache_tenant(),
        )
        .await
}

pub(super) async fn purge(store: &SqlStore, id: &str, expected_version: i64, fx: &Effects) -> Result<()> {
    let id = id.to_owned();
    let cache = store.tenants.clone();
    let gone = id.clone();
    // Forgotten before the COMMIT (whoever sees it must not read the tombstone from
    // memory) and after it (a read that ran in between may have offered it again).
    let _forget_after = ForgetOnDrop(store.tenants.clone(), id.clone());
    store
        .writer
        .write_atomic_then(
            fx,
            move |c| {
                Box::pin(async move {
                    super::terms::moved();
                    let deleted = sqlx::query("DELETE FROM tenants WHERE id = $1 AND version = $2 AND status = $3")
                        .bind(&id)
                        .bind(expected_version)
                        .bind(TenantStatus::Offboarded.as_str())
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    if deleted.rows_affected() == 0 {
                        let row = sqlx::query("SELECT version, status FROM tenants WHERE id = $1")
                            .bind(&id)
                            .fetch_optional(&mut *c)
                            .await
                            .map_err(db_err)?;
                        let Some(row) = row else { return Err(Error::not_found("tenant", &id)) };
                        let (found, status): (i64, String) = (row.get(0), row.get(1));
                        if found != expected_version {
                            return Err(Error::PreconditionFailed {
                                kind: "tenant",
                                id,
                                expected: expected_version,
                                found,
                            });
                        }
                        return Err(Error::Conflict {
                            code: ErrorCode::InvalidTransition,
                            message: format!("tenant {id:?} is {status}: only an offboarded tenant can be purged"),
                        });
                    }
                    for table in [
                        "tenant_resources",
                        "tenant_secrets",
                        "quota_usage",
                        "quota_grants",
                        "secret_versions",
                        "secrets",
                        "plan_moves",
                    ] {
                        sqlx::query(&format!("DELETE FROM {table} WHERE tenant_id = $1"))
                            .bind(&id)
                            .execute(&mut *c)
                            .await
                            .map_err(db_err)?;
                    }
                    // The old tenant's executions stay (an operator finds them by id, and
                    // events and audit name them) but no longer belong to the id: a new
                    // tenant given it must not read them with its tenant key.
                    sqlx::query("UPDATE executions SET tenant_id = NULL WHERE tenant_id = $1")
                        .bind(&id)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    Ok(())
                })
            },
            move |_| cache.iter().for_each(|c| c.forget(&gone)),
        )
        .await
}
