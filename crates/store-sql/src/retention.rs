//! [`RetentionStore`] on SQL: the pruning of finished executions and their history in
//! bounded batches, per-state-machine retention, and the storage report.
//!
//! Every delete is one statement over at most `limit` rows picked by a subquery with
//! `LIMIT` (both engines take it), through the writer like any write: on SQLite it
//! joins the one writer's group commit for a few milliseconds, on PostgreSQL it is a
//! short transaction of its own. The caller (the app's leased pruner) loops, yielding
//! between batches, so neither engine holds a long write lock or a long transaction.
//! The batches seek by the indexes of migration 0032 (`executions (stopped_at)`,
//! `idempotency_keys (created_at)`) and the history's primary key.

use async_trait::async_trait;
use sqlx::Row;
use tenancy_domain::Result;

use super::{db_err, SqlStore};
use tenancy_store::{Effects, ExecutionHorizon, ExecutionsPruned, PruneCutoffs, RetentionStore, TableSize};

const DAY_MS: i64 = 86_400_000;

/// The tables the storage report lists: everything that grows with use, and the
/// records it is measured against.
pub const REPORTED_TABLES: &[&str] = &[
    "tenants",
    "api_keys",
    "executions",
    "execution_history",
    "idempotency_keys",
    "events",
    "deliveries",
    "delivery_attempts",
    "queue_messages",
    "queue_dedup",
    "quota_usage",
    "quota_grants",
    "signups",
    "secret_versions",
    "state_machines",
    "audit_log",
    "audit_checkpoints",
];

/// The executions past retention, as `e`, with `$1` now, `$2` the global cutoff and
/// `$3` the latest cutoff of all (a bound the `executions_stopped` index seeks by).
/// A tenant's current lifecycle execution is never among them.
const EXPIRED: &str = "e.stopped_at IS NOT NULL AND e.stopped_at < $3 \
     AND e.status IN ('SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABORTED') \
     AND e.stopped_at < COALESCE((SELECT $1 - r.retention_days * 86400000 FROM state_machine_retention r \
                                  WHERE r.name = e.state_machine), $2) \
     AND e.id NOT IN (SELECT t.lifecycle_execution_id FROM tenants t WHERE t.lifecycle_execution_id IS NOT NULL)";

impl SqlStore {
    /// The latest cutoff of any state machine: the global one, or a shorter retention's.
    async fn scan_bound(&self, h: &ExecutionHorizon) -> Result<i64> {
        let shortest: Option<i64> = sqlx::query_scalar("SELECT MIN(retention_days) FROM state_machine_retention")
            .fetch_one(&self.reader)
            .await
            .map_err(db_err)?;
        Ok(match shortest {
            Some(days) => h.before.millis().max(h.now.millis() - days * DAY_MS),
            None => h.before.millis(),
        })
    }
}

#[async_trait]
impl RetentionStore for SqlStore {
    async fn retention_set(&self, state_machine: &str, days: Option<u32>, fx: &Effects) -> Result<()> {
        let name = state_machine.to_owned();
        self.writer
            .write(fx, move |c| {
                Box::pin(async move {
                    sqlx::query("DELETE FROM state_machine_retention WHERE name = $1")
                        .bind(&name)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    if let Some(days) = days {
                        sqlx::query("INSERT INTO state_machine_retention (name, retention_days) VALUES ($1, $2)")
                            .bind(&name)
                            .bind(i64::from(days))
                            .execute(&mut *c)
                            .await
                            .map_err(db_err)?;
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn retention_list(&self) -> Result<Vec<(String, u32)>> {
        let rows = sqlx::query("SELECT name, retention_days FROM state_machine_retention ORDER BY name")
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1).clamp(0, u32::MAX.into()) as u32)).collect())
    }

    async fn executions_prune(&self, h: &ExecutionHorizon) -> Result<ExecutionsPruned> {
        let bound = self.scan_bound(h).await?;
        let (now, before, limit) = (h.now.millis(), h.before.millis(), h.limit);
        self.writer
            .write(&Effects::none(), move |c| {
                Box::pin(async move {
                    let sql = format!(
                        "DELETE FROM execution_history WHERE (execution_id, event_id) IN \
                         (SELECT h.execution_id, h.event_id FROM execution_history h WHERE h.execution_id IN \
                          (SELECT e.id FROM executions e WHERE {EXPIRED} ORDER BY e.stopped_at LIMIT {limit}) \
                          LIMIT {limit})"
                    );
                    let history = sqlx::query(&sql)
                        .bind(now)
                        .bind(before)
                        .bind(bound)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?
                        .rows_affected();
                    if history >= u64::from(limit) {
                        return Ok(ExecutionsPruned { executions: 0, history });
                    }
                    // The status is checked again on the row itself: an execution
                    // redriven since the subquery read it is not deleted.
                    let sql = format!(
                        "DELETE FROM executions WHERE id IN \
                         (SELECT e.id FROM executions e WHERE {EXPIRED} \
                          AND NOT EXISTS (SELECT 1 FROM execution_history h WHERE h.execution_id = e.id) \
                          ORDER BY e.stopped_at LIMIT {limit}) \
                         AND status IN ('SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABORTED')"
                    );
                    let executions = sqlx::query(&sql)
                        .bind(now)
                        .bind(before)
                        .bind(bound)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?
                        .rows_affected();
                    Ok(ExecutionsPruned { executions, history })
                })
            })
            .await
    }

    async fn storage_sizes(&self) -> Result<Vec<TableSize>> {
        let mut out = Vec::with_capacity(REPORTED_TABLES.len());
        for table in REPORTED_TABLES {
            let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&self.reader)
                .await
                .map_err(db_err)?;
            // No dbstat in this SQLite build: no figure rather than a guess.
            let bytes: Option<i64> =
                sqlx::query_scalar(self.dialect.table_bytes()).bind(*table).fetch_one(&self.reader).await.ok();
            out.push(TableSize {
                table: (*table).to_owned(),
                rows: rows.max(0) as u64,
                bytes: bytes.map(|b| b.max(0) as u64),
            });
        }
        Ok(out)
    }

    async fn prune_preview(&self, cut: &PruneCutoffs) -> Result<Vec<(String, u64)>> {
        let h = &cut.executions;
        let bound = self.scan_bound(h).await?;
        let count = |sql: String, binds: Vec<i64>| async move {
            let mut q = sqlx::query_scalar::<_, i64>(&sql);
            for b in binds {
                q = q.bind(b);
            }
            q.fetch_one(&self.reader).await.map_err(db_err).map(|n| n.max(0) as u64)
        };
        let ex = vec![h.now.millis(), h.before.millis(), bound];
        let finished = "SELECT id FROM deliveries WHERE status <> 'pending' AND updated_at < $1";
        let now = vec![h.now.millis()];
        let events = vec![cut.events_before.millis()];
        Ok(vec![
            (
                "executions".into(),
                count(format!("SELECT COUNT(*) FROM executions e WHERE {EXPIRED}"), ex.clone()).await?,
            ),
            (
                "execution_history".into(),
                count(
                    format!(
                        "SELECT COUNT(*) FROM execution_history WHERE execution_id IN \
                         (SELECT e.id FROM executions e WHERE {EXPIRED})"
                    ),
                    ex,
                )
                .await?,
            ),
            (
                "idempotency_keys".into(),
                count(
                    "SELECT COUNT(*) FROM idempotency_keys WHERE created_at < $1".into(),
                    vec![cut.idempotency_before.millis()],
                )
                .await?,
            ),
            (
                "events".into(),
                count(
                    "SELECT COUNT(*) FROM events e WHERE e.time < $1 AND e.dispatched = 1 AND NOT EXISTS \
                     (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.status = 'pending')"
                        .into(),
                    events.clone(),
                )
                .await?,
            ),
            ("deliveries".into(), count(format!("SELECT COUNT(*) FROM ({finished}) f"), events.clone()).await?),
            (
                "delivery_attempts".into(),
                count(format!("SELECT COUNT(*) FROM delivery_attempts WHERE delivery_id IN ({finished})"), events)
                    .await?,
            ),
            (
                "queue_messages".into(),
                count("SELECT COUNT(*) FROM queue_messages WHERE expires_at <= $1".into(), now.clone()).await?,
            ),
            (
                "queue_dedup".into(),
                count("SELECT COUNT(*) FROM queue_dedup WHERE expires_at <= $1".into(), now.clone()).await?,
            ),
            (
                "quota_grants".into(),
                count(
                    "SELECT COUNT(*) FROM quota_grants WHERE created_at < $1".into(),
                    vec![cut.grants_before.millis()],
                )
                .await?,
            ),
            ("signups".into(), count("SELECT COUNT(*) FROM signups WHERE expires_at <= $1".into(), now).await?),
        ])
    }
}
