//! Writing [`Effects`] inside the transaction of the change that causes them.
//!
//! The effects of a whole batch of writes are inserted together: one multi-row INSERT
//! per table and chunk, instead of one statement per record.

use std::borrow::Borrow;

use sqlx::{AnyConnection, Row};
use tenancy_domain::tenant::{Tenant, TenantStatus};
use tenancy_domain::{Error, Result};

use super::dialect::Dialect;
use super::{db_err, json_text};
use tenancy_store::{Effects, ResourceChange, TenantWrite};
use tenancy_store::{NewExecution, TenantResource};

/// Rows per multi-row INSERT: far below SQLite's limit of 32,766 bound values.
const CHUNK: usize = 200;

/// Inserts the executions with chosen names a write starts ([`Effects::executions`]);
/// runs with the write, inside its savepoint, so a taken name fails that write alone.
/// The others ([`NewExecution::named_by_id`]) cannot conflict and are inserted by
/// [`apply_effects_batch`].
pub(super) async fn start_executions(conn: &mut AnyConnection, fx: &Effects) -> Result<()> {
    for e in fx.executions.iter().filter(|e| !e.named_by_id()) {
        super::workflows::insert_execution(conn, e).await?;
    }
    Ok(())
}

/// Whether the write `fx` belongs to must run in a savepoint because of its effects:
/// an execution with a chosen name (inserted after the write) can fail after the
/// write wrote.
pub(super) fn effects_need_savepoint(fx: &Effects) -> bool {
    fx.executions.iter().any(|e| !e.named_by_id())
}

/// `INSERT INTO table (cols) VALUES ($1, ..), (..), ..` for `rows` rows, in the
/// dialect's placeholders (see [`Dialect::placeholder`]).
pub(super) fn insert_sql(head: &str, columns: usize, rows: usize, dialect: Dialect) -> String {
    let mut sql = String::from(head);
    sql.push_str(" VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..columns {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&dialect.placeholder(r * columns + c + 1));
        }
        sql.push(')');
    }
    sql
}

/// Inserts the executions named by their ids, events, audit entries and resource
/// changes of every write in `batch` (the executions with chosen names were applied
/// with their writes).
pub(super) async fn apply_effects_batch<B: Borrow<Effects>>(conn: &mut AnyConnection, batch: &[B]) -> Result<()> {
    let batch: Vec<&Effects> = batch.iter().map(Borrow::borrow).collect();
    let dialect = Dialect::of(conn);
    let executions: Vec<&NewExecution> =
        batch.iter().flat_map(|fx| &fx.executions).filter(|e| e.named_by_id()).collect();
    if !executions.is_empty() {
        super::workflows::insert_executions(conn, &executions, dialect).await?;
    }
    let tenants: Vec<&TenantWrite> = batch.iter().flat_map(|fx| &fx.tenants).collect();
    if !tenants.is_empty() {
        apply_tenant_writes(conn, &tenants, dialect).await?;
    }
    let events: Vec<_> = batch.iter().flat_map(|fx| fx.events.iter().map(|e| (e, fx.traces.get(&e.id)))).collect();
    for chunk in events.chunks(CHUNK) {
        let sql = insert_sql(
            "INSERT INTO events (id, source, detail_type, time, tenant_id, resources, detail, trace_context)",
            8,
            chunk.len(),
            dialect,
        );
        let mut q = sqlx::query(&sql);
        for (e, trace) in chunk {
            q = q
                .bind(&e.id)
                .bind(&e.source)
                .bind(&e.detail_type)
                .bind(e.time.millis())
                .bind(e.tenant_id.as_deref())
                .bind(json_text(&e.resources))
                .bind(json_text(&e.detail))
                .bind(trace.map(String::as_str));
        }
        q.execute(&mut *conn).await.map_err(db_err)?;
    }
    let audit: Vec<_> = batch.iter().flat_map(|fx| &fx.audit).collect();
    for chunk in audit.chunks(CHUNK) {
        let sql = insert_sql(
            "INSERT INTO audit_log (id, time, actor_key_id, actor_role, action, target, tenant_id, request_id, \
             source_ip, outcome, detail)",
            11,
            chunk.len(),
            dialect,
        );
        let mut q = sqlx::query(&sql);
        for a in chunk {
            q = q
                .bind(&a.id)
                .bind(a.time.millis())
                .bind(a.actor_key_id.as_deref())
                .bind(&a.actor_role)
                .bind(&a.action)
                .bind(&a.target)
                .bind(a.tenant_id.as_deref())
                .bind(a.request_id.as_deref())
                .bind(a.source_ip.as_deref())
                .bind(&a.outcome)
                .bind(json_text(&a.detail));
        }
        q.execute(&mut *conn).await.map_err(db_err)?;
    }
    if !events.is_empty() || !audit.is_empty() {
        // Wake the dispatcher and the audit sealer: here, now (they queue behind this
        // transaction for the writer), and on PostgreSQL every replica at commit.
        dialect.notify(&mut *conn, super::wakeup::CHANNEL, "").await.map_err(db_err)?;
        super::wakeup::bump();
    }
    apply_resource_changes(conn, batch.iter().flat_map(|fx| &fx.resources), dialect).await?;
    Ok(())
}

/// Writes tenants' new states, each only over the version it was computed from: where
/// the dialect has [`Dialect::update_from_values`] (SQLite) one `UPDATE ... FROM
/// (VALUES ...)` per 100 (its `RETURNING` says which applied), elsewhere one `UPDATE`
/// each. A stale one fails with `PreconditionFailed`
/// (a batch with two writes of one tenant fails too; the step committer then commits
/// its steps one by one).
async fn apply_tenant_writes(conn: &mut AnyConnection, writes: &[&TenantWrite], dialect: Dialect) -> Result<()> {
    super::terms::moved();
    if dialect.update_from_values() {
        for chunk in writes.chunks(100) {
            let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "WITH v(v_id, v_name, v_plan, v_region, v_status, v_metadata, v_version, v_created, v_updated, \
                 v_lifecycle, v_release, v_pinned, v_expected) AS (VALUES {values}) \
                 UPDATE tenants SET name = v_name, plan_id = v_plan, region = v_region, status = v_status, \
                 metadata = v_metadata, version = v_version, updated_at = v_updated, \
                 lifecycle_execution_id = v_lifecycle, release = v_release, pinned = v_pinned \
                 FROM v WHERE id = v_id AND version = v_expected RETURNING id"
            );
            let mut q = sqlx::query(&sql);
            for w in chunk {
                q = super::tenants::bind_tenant(q, &w.tenant).bind(w.expected_version);
            }
            let rows = q.fetch_all(&mut *conn).await.map_err(db_err)?;
            if rows.len() < chunk.len() {
                let applied: std::collections::HashSet<String> =
                    rows.iter().filter_map(|r| r.try_get::<String, _>(0).ok()).collect();
                let stale = chunk.iter().find(|w| !applied.contains(&w.tenant.id)).unwrap_or(&chunk[0]);
                return Err(stale_tenant(conn, stale).await);
            }
        }
        return revoke_offboarded_keys(conn, writes.iter().map(|w| &w.tenant)).await;
    }
    for w in writes {
        update_tenant(conn, w).await?;
    }
    revoke_offboarded_keys(conn, writes.iter().map(|w| &w.tenant)).await
}

/// Deletes the API keys of tenants just offboarded, with their status change (an
/// offboarded tenant is a tombstone: nobody acts as it any more).
pub(super) async fn revoke_offboarded_keys<'a>(
    conn: &mut AnyConnection,
    tenants: impl Iterator<Item = &'a Tenant>,
) -> Result<()> {
    for t in tenants.filter(|t| t.status == TenantStatus::Offboarded) {
        sqlx::query("DELETE FROM api_keys WHERE tenant_id = $1")
            .bind(&t.id)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

/// Writes one tenant's new state over the version it was computed from.
pub(super) async fn update_tenant(conn: &mut AnyConnection, w: &TenantWrite) -> Result<()> {
    super::terms::moved();
    // created_at ($8) is bound with the other columns but never written.
    let sql = "UPDATE tenants SET name = $2, plan_id = $3, region = $4, status = $5, metadata = $6, version = $7, \
               updated_at = $9, lifecycle_execution_id = $10, release = $11, pinned = $12 WHERE id = $1 AND version = $13";
    let res = super::tenants::bind_tenant(sqlx::query(sql), &w.tenant)
        .bind(w.expected_version)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    match res.rows_affected() {
        0 => Err(stale_tenant(conn, w).await),
        _ => Ok(()),
    }
}

/// The error of a tenant write that found another version (or no tenant).
async fn stale_tenant(conn: &mut AnyConnection, w: &TenantWrite) -> Error {
    let found =
        sqlx::query("SELECT version FROM tenants WHERE id = $1").bind(&w.tenant.id).fetch_optional(&mut *conn).await;
    match found {
        Ok(Some(row)) => Error::PreconditionFailed {
            kind: "tenant",
            id: w.tenant.id.clone(),
            expected: w.expected_version,
            found: row.try_get::<i64, _>(0).unwrap_or(-1),
        },
        Ok(None) => Error::not_found("tenant", &w.tenant.id),
        Err(e) => db_err(e),
    }
}

/// Applies resource changes in order; runs of consecutive `Put`s are one multi-row
/// `INSERT ... ON CONFLICT DO NOTHING` (a provisioning's records, many at once).
async fn apply_resource_changes<'a>(
    conn: &mut AnyConnection,
    changes: impl Iterator<Item = &'a ResourceChange>,
    dialect: Dialect,
) -> Result<()> {
    let mut puts: Vec<&TenantResource> = Vec::new();
    for change in changes.map(Some).chain(std::iter::once(None)) {
        if let Some(ResourceChange::Put(r)) = change {
            puts.push(r);
            continue;
        }
        for chunk in puts.chunks(CHUNK) {
            let mut sql = insert_sql(
                "INSERT INTO tenant_resources (tenant_id, kind, detail, created_by, created_at)",
                5,
                chunk.len(),
                dialect,
            );
            sql.push_str(" ON CONFLICT (tenant_id, kind) DO NOTHING");
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(&r.tenant_id)
                    .bind(&r.kind)
                    .bind(json_text(&r.detail))
                    .bind(&r.created_by)
                    .bind(r.created_at.millis());
            }
            q.execute(&mut *conn).await.map_err(db_err)?;
        }
        puts.clear();
        if let Some(ResourceChange::Delete { tenant_id, kind }) = change {
            sqlx::query("DELETE FROM tenant_resources WHERE tenant_id = $1 AND kind = $2")
                .bind(tenant_id)
                .bind(kind)
                .execute(&mut *conn)
                .await
                .map_err(db_err)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Dialect;

    #[test]
    fn multi_row_placeholders() {
        assert_eq!(
            super::insert_sql("INSERT INTO t (a, b)", 2, 2, Dialect::POSTGRES),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)"
        );
        assert_eq!(super::insert_sql("INSERT INTO t (a)", 1, 2, Dialect::SQLITE), "INSERT INTO t (a) VALUES (?), (?)");
    }
}
