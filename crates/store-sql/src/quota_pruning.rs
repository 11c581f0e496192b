//! [`QuotaPruning`] on SQL: the quota ledger's housekeeping. Usage rows of ended
//! periods and old idempotency records are deleted in bounded batches (a subquery with
//! `LIMIT`, which both engines take), through the writer like any write. Indexes of
//! migration 0020 (`quota_usage (period_start)`, `quota_grants (created_at)`) keep the
//! batches from scanning the tables.

use async_trait::async_trait;
use tenancy_domain::Result;

use super::{db_err, SqlStore};
use tenancy_store::{Effects, QuotaPrune, QuotaPruned, QuotaPruning};

#[async_trait]
impl QuotaPruning for SqlStore {
    async fn quota_prune(&self, prune: &QuotaPrune) -> Result<QuotaPruned> {
        let prune = prune.clone();
        self.writer
            .write(&Effects::none(), move |c| {
                Box::pin(async move {
                    let limit = prune.limit;
                    // $1 the cutoff, $2.. the starts kept.
                    let kept: Vec<String> = (0..prune.keep_starts.len()).map(|i| format!("${}", i + 2)).collect();
                    let except = if kept.is_empty() {
                        String::new()
                    } else {
                        format!(" AND period_start NOT IN ({})", kept.join(", "))
                    };
                    let sql = format!(
                        "DELETE FROM quota_usage WHERE (tenant_id, quota, period_start) IN \
                         (SELECT tenant_id, quota, period_start FROM quota_usage \
                          WHERE period_start > 0 AND period_start < $1{except} LIMIT {limit})"
                    );
                    let mut q = sqlx::query(&sql).bind(prune.periods_before.millis());
                    for start in &prune.keep_starts {
                        q = q.bind(start.millis());
                    }
                    let usage = q.execute(&mut *c).await.map_err(db_err)?.rows_affected();
                    let sql = format!(
                        "DELETE FROM quota_grants WHERE (tenant_id, idempotency_key) IN \
                         (SELECT tenant_id, idempotency_key FROM quota_grants WHERE created_at < $1 LIMIT {limit})"
                    );
                    let grants = sqlx::query(&sql)
                        .bind(prune.grants_before.millis())
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?
                        .rows_affected();
                    Ok(QuotaPruned { usage, grants })
                })
            })
            .await
    }
}
