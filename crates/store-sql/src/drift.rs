//! [`DriftStore`] on SQL: one row per reported drift id, and one for the last pass.

use async_trait::async_trait;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};

use super::{db_err, json_text, SqlStore};
use tenancy_store::Effects;
use tenancy_store::{DriftStore, ReconciliationRun};

/// The error code that rolls back a report of recorded drift (never leaves this module).
const REPORTED: ErrorCode = ErrorCode::DriftReported;

#[async_trait]
impl DriftStore for SqlStore {
    async fn drift_report(&self, id: &str, now: Timestamp, fx: &Effects) -> Result<bool> {
        let key = id.to_owned();
        let recorded = self
            .writer
            .write(fx, move |c| {
                Box::pin(async move {
                    let res = sqlx::query(
                        "INSERT INTO reported_drift (id, reported_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(&key)
                    .bind(now.millis())
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                    if res.rows_affected() == 0 {
                        // Reported before: fail the write so that `fx` is not written.
                        return Err(Error::Conflict {
                            code: REPORTED,
                            message: format!("drift {key} was reported already"),
                        });
                    }
                    Ok(())
                })
            })
            .await;
        match recorded {
            Ok(()) => Ok(true),
            Err(Error::Conflict { code: REPORTED, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn drift_reported(&self) -> Result<Vec<(String, Timestamp)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT id, reported_at FROM reported_drift ORDER BY id")
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        Ok(rows.into_iter().map(|(id, at)| (id, Timestamp(at))).collect())
    }

    async fn drift_forget(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = ids.to_vec();
        self.writer
            .write(&Effects::none(), move |c| {
                Box::pin(async move {
                    for id in &ids {
                        sqlx::query("DELETE FROM reported_drift WHERE id = $1")
                            .bind(id)
                            .execute(&mut *c)
                            .await
                            .map_err(db_err)?;
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn reconciliation_record(&self, run: &ReconciliationRun) -> Result<bool> {
        let run = run.clone();
        self.writer
            .write_atomic(&Effects::none(), move |c| {
                Box::pin(async move {
                    let res = sqlx::query(
                        "INSERT INTO reconciliation_runs (id, started_at, finished_at, node, report) \
                         VALUES (1, $1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET \
                         started_at = excluded.started_at, finished_at = excluded.finished_at, \
                         node = excluded.node, report = excluded.report \
                         WHERE reconciliation_runs.finished_at <= excluded.finished_at",
                    )
                    .bind(run.started_at.millis())
                    .bind(run.finished_at.millis())
                    .bind(&run.node)
                    .bind(json_text(&run.report))
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                    Ok(res.rows_affected() == 1)
                })
            })
            .await
    }

    async fn reconciliation_last(&self) -> Result<Option<ReconciliationRun>> {
        let row: Option<(i64, i64, String, String)> =
            sqlx::query_as("SELECT started_at, finished_at, node, report FROM reconciliation_runs WHERE id = 1")
                .fetch_optional(&self.reader)
                .await
                .map_err(db_err)?;
        let Some((started_at, finished_at, node, report)) = row else { return Ok(None) };
        let report = serde_json::from_str(&report)
            .map_err(|e| Error::internal(format!("corrupt reconciliation report: {e}")))?;
        Ok(Some(ReconciliationRun {
            started_at: Timestamp(started_at),
            finished_at: Timestamp(finished_at),
            node,
            report,
        }))
    }
}
