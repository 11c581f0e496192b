//! [`AuditStore`] on SQL: sealing unsealed rows into the hash chain, checkpoints.

use async_trait::async_trait;
use sqlx::Row;
use tenancy_audit::AuditRecord;
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};

use super::{db_err, parse_cursor_i64, rows, SqlStore, Where};
use tenancy_store::*;
use tenancy_store::{AuditFilter, StoredAudit};

/// An arbitrary constant: the advisory lock held by the one sealer at work.
const SEAL_LOCK: i64 = 0x5e_a1_a0_d1;

#[async_trait]
impl AuditStore for SqlStore {
    async fn audit_seal(&self, limit: u32, seal: Sealer<'_>) -> Result<u64> {
        if self.dialect.single_writer() {
            return self.audit_seal_single_writer(limit, seal).await;
        }
        let mut tx = self.begin_direct().await?;
        self.dialect.advisory_xact_lock(&mut *tx, SEAL_LOCK).await.map_err(db_err)?;
        let pending = sqlx::query(&format!("SELECT * FROM audit_log WHERE seq IS NULL ORDER BY pos LIMIT {limit}"))
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        if pending.is_empty() {
            return Ok(0);
        }
        let head = sqlx::query("SELECT seq, hash FROM audit_log WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let (mut seq, mut prev) = match head {
            Some(row) => (row.try_get::<i64, _>(0).map_err(db_err)?, row.try_get::<String, _>(1).map_err(db_err)?),
            None => (0, "0".repeat(64)),
        };
        for row in &pending {
            let a = rows::audit(row)?;
            seq += 1;
            let hash = seal(&a.entry, seq, &prev);
            sqlx::query("UPDATE audit_log SET seq = $1, prev_hash = $2, hash = $3 WHERE pos = $4 AND seq IS NULL")
                .bind(seq)
                .bind(&prev)
                .bind(&hash)
                .bind(a.pos)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            prev = hash;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(pending.len() as u64)
    }

    async fn audit_sealed(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(&format!("SELECT * FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT {limit}"))
            .bind(after_seq)
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(rows::sealed_audit).collect()
    }

    async fn audit_hashes(&self, after_seq: i64, limit: u32) -> Result<Vec<(i64, String)>> {
        sqlx::query_as(&format!("SELECT seq, hash FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT {limit}"))
            .bind(after_seq)
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)
    }

    async fn audit_archive_cursor(&self) -> Result<i64> {
        let row = sqlx::query("SELECT seq FROM archive_cursors WHERE name = 'audit'")
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        match row {
            Some(row) => row.try_get(0).map_err(db_err),
            None => Ok(0),
        }
    }

    async fn audit_archive_advance(&self, from: i64, to: i64) -> Result<bool> {
        let mut tx = self.begin_direct().await?;
        let moved = if from == 0 {
            sqlx::query(
                "INSERT INTO archive_cursors (name, seq) VALUES ('audit', $2) \
                 ON CONFLICT (name) DO UPDATE SET seq = $2 WHERE archive_cursors.seq = $1",
            )
        } else {
            sqlx::query("UPDATE archive_cursors SET seq = $2 WHERE name = 'audit' AND seq = $1")
        }
        .bind(from)
        .bind(to)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        tx.commit().await.map_err(db_err)?;
        Ok(moved == 1)
    }

    async fn audit_seq_range(&self, from: Option<Timestamp>, to: Option<Timestamp>) -> Result<Option<(i64, i64)>> {
        let row =
            sqlx::query("SELECT MIN(seq), MAX(seq) FROM audit_log WHERE seq IS NOT NULL AND time >= $1 AND time < $2")
                .bind(from.map_or(i64::MIN, Timestamp::millis))
                .bind(to.map_or(i64::MAX, Timestamp::millis))
                .fetch_one(&self.reader)
                .await
                .map_err(db_err)?;
        let min: Option<i64> = row.try_get(0).map_err(db_err)?;
        let max: Option<i64> = row.try_get(1).map_err(db_err)?;
        Ok(min.zip(max))
    }

    async fn audit_counts(&self) -> Result<(u64, u64)> {
        let row =
            sqlx::query("SELECT COUNT(seq), COUNT(*) FROM audit_log").fetch_one(&self.reader).await.map_err(db_err)?;
        let sealed: i64 = row.try_get(0).map_err(db_err)?;
        let all: i64 = row.try_get(1).map_err(db_err)?;
        Ok((sealed as u64, (all - sealed) as u64))
    }

    async fn audit_checkpoint_put(&self, cp: &AuditCheckpoint) -> Result<()> {
        sqlx::query("INSERT INTO audit_checkpoints (tree_size, root, time) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(cp.tree_size)
            .bind(&cp.root)
            .bind(cp.time.millis())
            .execute(&self.write_pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn audit_checkpoint_latest(&self) -> Result<Option<AuditCheckpoint>> {
        let row = sqlx::query("SELECT tree_size, root, time FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1")
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        row.map(|r| {
            Ok(AuditCheckpoint {
                tree_size: r.try_get(0).map_err(db_err)?,
                root: r.try_get(1).map_err(db_err)?,
                time: Timestamp(r.try_get(2).map_err(db_err)?),
            })
        })
        .transpose()
    }
}

impl SqlStore {
    /// [`AuditStore::audit_seal`] with a single writer (SQLite): the pending records
    /// and the chain's head are read in one snapshot on a reader, the hashes computed,
    /// and the seals written through the group-committing writer with one statement per
    /// 200 records, instead of a transaction holding the one write connection for a
    /// row-by-row update. One process per SQLite database means one sealer: the
    /// snapshot's head stays the head, and the `seq IS NULL` guard fails the write if
    /// it did not.
    async fn audit_seal_single_writer(&self, limit: u32, seal: Sealer<'_>) -> Result<u64> {
        let mut snapshot = self.reader.begin().await.map_err(db_err)?;
        let pending = sqlx::query(&format!("SELECT * FROM audit_log WHERE seq IS NULL ORDER BY pos LIMIT {limit}"))
            .fetch_all(&mut *snapshot)
            .await
            .map_err(db_err)?;
        if pending.is_empty() {
            return Ok(0);
        }
        let head = sqlx::query("SELECT seq, hash FROM audit_log WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *snapshot)
            .await
            .map_err(db_err)?;
        snapshot.commit().await.map_err(db_err)?;
        let (mut seq, mut prev) = match head {
            Some(row) => (row.try_get::<i64, _>(0).map_err(db_err)?, row.try_get::<String, _>(1).map_err(db_err)?),
            None => (0, "0".repeat(64)),
        };
        let mut seals = Vec::with_capacity(pending.len());
        for row in &pending {
            let a = rows::audit(row)?;
            seq += 1;
            let hash = seal(&a.entry, seq, &prev);
            seals.push((a.pos, seq, std::mem::replace(&mut prev, hash.clone()), hash));
        }
        let n = seals.len() as u64;
        self.writer
            .write(&tenancy_store::Effects::none(), move |conn| {
                Box::pin(async move {
                    for chunk in seals.chunks(200) {
                        let sql = seal_update_sql(chunk.len());
                        let mut q = sqlx::query(&sql);
                        for (pos, seq, prev, hash) in chunk {
                            q = q.bind(*pos).bind(*seq).bind(prev.as_str()).bind(hash.as_str());
                        }
                        let res = q.execute(&mut *conn).await.map_err(db_err)?;
                        if res.rows_affected() != chunk.len() as u64 {
                            return Err(Error::internal("audit records were sealed by someone else meanwhile"));
                        }
                    }
                    Ok(())
                })
            })
            .await?;
        Ok(n)
    }
}

/// The statement that seals `n` records on SQLite (binds: pos, seq, prev_hash, hash per
/// record).
///
/// Each record is found by its primary key. The `+` before `audit_log.seq` keeps the
/// planner off the unique index on `seq`: with it, SQLite 3.46 walked every unsealed
/// record for each statement (`SEARCH audit_log USING INDEX ... (seq=?)`, then the
/// VALUES for each), so sealing a backlog was quadratic: 200,000 records committed at
/// once took over ten minutes to seal (`tenancy-bench archive`), a few seconds now.
fn seal_update_sql(n: usize) -> String {
    let values = vec!["(?, ?, ?, ?)"; n].join(", ");
    format!(
        "WITH v(pos, seq, prev_hash, hash) AS (VALUES {values}) \
         UPDATE audit_log SET seq = v.seq, prev_hash = v.prev_hash, hash = v.hash \
         FROM v WHERE audit_log.pos = v.pos AND +audit_log.seq IS NULL"
    )
}

/// The audit log, oldest first ([`Store::audit_list`]).
///
/// [`Store::audit_list`]: tenancy_store::Store::audit_list
pub(super) async fn list(store: &SqlStore, filter: &AuditFilter, page: &PageRequest) -> Result<Page<StoredAudit>> {
    let mut w = Where::new("SELECT * FROM audit_log");
    w.eq("tenant_id", filter.tenant_id.as_deref());
    w.eq("actor_key_id", filter.actor.as_deref());
    w.eq("action", filter.action.as_deref());
    if let Some(after) = filter.after {
        w.raw(&format!("time >= {}", after.millis()));
    }
    if let Some(pos) = parse_cursor_i64(page.after.as_deref())? {
        w.raw(&format!("pos > {pos}"));
    }
    w.sql.push_str(&format!(" ORDER BY pos LIMIT {}", page.limit + 1));
    let rows = w.query().fetch_all(&store.reader).await.map_err(db_err)?;
    let entries = rows.iter().map(rows::audit).collect::<Result<Vec<_>>>()?;
    Ok(Page::from_overfetch(entries, page.limit, |a| a.pos.to_string()))
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::seal_update_sql;

    /// Sealing finds each record by its primary key: a plan through the index on `seq`
    /// visits every unsealed record per statement (quadratic in a backlog).
    #[tokio::test]
    async fn sealing_seeks_records_by_primary_key() {
        let db = crate::testing::sqlite().await;
        let plan = sqlx::query(&format!("EXPLAIN QUERY PLAN {}", seal_update_sql(3)))
            .fetch_all(&db.store.reader)
            .await
            .expect("explain");
        let steps: Vec<String> = plan.iter().map(|r| r.get::<String, _>(3)).collect();
        assert!(steps.iter().any(|s| s.contains("SEARCH audit_log USING INTEGER PRIMARY KEY")), "{steps:?}");
        assert!(!steps.iter().any(|s| s.contains("audit_log USING INDEX")), "{steps:?}");
    }
}
