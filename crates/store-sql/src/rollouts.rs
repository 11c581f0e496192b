//! [`RolloutStore`] on SQL: one row per rollout (the record as JSON beside its status,
//! revision and lease) and one `rollout_tenants` row per tenant an active rollout
//! holds, whose primary key makes overlapping rollouts impossible.

use async_trait::async_trait;
use sqlx::Row;
use tenancy_domain::rollout::{status, Rollout};
use tenancy_domain::{Error, ErrorCode, Result};

use super::{db_err, is_unique_violation, json_text, SqlStore};
use tenancy_store::{Effects, RolloutStore};

fn rollout_of(row: &sqlx::any::AnyRow) -> Result<Rollout> {
    let text: String = row.try_get(0).map_err(db_err)?;
    serde_json::from_str(&text).map_err(|e| Error::internal(format!("corrupt rollout record: {e}")))
}

fn conflict(held: &[(String, String)]) -> Error {
    let shown: Vec<String> = held.iter().take(5).map(|(t, r)| format!("{t} (rollout {r})")).collect();
    Error::Conflict {
        code: ErrorCode::RolloutConflict,
        message: format!(
            "{} of the rollout's tenants are held by an active rollout: {}{}",
            held.len(),
            shown.join(", "),
            if held.len() > 5 { ", ..." } else { "" }
        ),
    }
}

#[async_trait]
impl RolloutStore for SqlStore {
    async fn rollout_insert(&self, r: &Rollout, fx: &Effects) -> Result<()> {
        let r = r.clone();
        self.writer
            .write(fx, move |c| {
                Box::pin(async move {
                    let ids = r.tenant_ids();
                    let mut held = Vec::new();
                    for chunk in ids.chunks(500) {
                        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
                        let sql = format!(
                            "SELECT tenant_id, rollout_id FROM rollout_tenants WHERE tenant_id IN ({})",
                            marks.join(", ")
                        );
                        let mut q = sqlx::query(&sql);
                        for id in chunk {
                            q = q.bind(id);
                        }
                        for row in q.fetch_all(&mut *c).await.map_err(db_err)? {
                            held.push((row.try_get(0).map_err(db_err)?, row.try_get(1).map_err(db_err)?));
                        }
                    }
                    if !held.is_empty() {
                        return Err(conflict(&held));
                    }
                    sqlx::query(
                        "INSERT INTO rollouts (id, status, rollout, rev, lease_owner, lease_until, created_at, \
                         updated_at) VALUES ($1, $2, $3, $4, NULL, 0, $5, $6)",
                    )
                    .bind(&r.id)
                    .bind(&r.status)
                    .bind(json_text(&r))
                    .bind(r.rev)
                    .bind(r.created_at.millis())
                    .bind(r.updated_at.millis())
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                    for id in &ids {
                        let res = sqlx::query("INSERT INTO rollout_tenants (tenant_id, rollout_id) VALUES ($1, $2)")
                            .bind(id)
                            .bind(&r.id)
                            .execute(&mut *c)
                            .await;
                        match res {
                            Ok(_) => {}
                            Err(e) if is_unique_violation(&e) => {
                                return Err(conflict(&[(id.clone(), "another".into())]))
                            }
                            Err(e) => return Err(db_err(e)),
                        }
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn rollout_get(&self, id: &str) -> Result<Rollout> {
        let row = sqlx::query("SELECT rollout FROM rollouts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found("rollout", id))?;
        rollout_of(&row)
    }

    async fn rollout_list(&self) -> Result<Vec<Rollout>> {
        let rows = sqlx::query("SELECT rollout FROM rollouts ORDER BY created_at DESC, id DESC")
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(rollout_of).collect()
    }

    async fn rollout_save(&self, r: &Rollout, fx: &Effects) -> Result<()> {
        let r = r.clone();
        self.writer
            .write(fx, move |c| {
                Box::pin(async move {
                    let done = sqlx::query(
                        "UPDATE rollouts SET status = $2, rollout = $3, rev = $4, updated_at = $5 \
                         WHERE id = $1 AND rev = $6",
                    )
                    .bind(&r.id)
                    .bind(&r.status)
                    .bind(json_text(&r))
                    .bind(r.rev)
                    .bind(r.updated_at.millis())
                    .bind(r.rev - 1)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                    if done.rows_affected() == 0 {
                        return Err(Error::PreconditionFailed {
                            kind: "rollout",
                            id: r.id.clone(),
                            expected: r.rev - 1,
                            found: -1,
                        });
                    }
                    if !status::is_active(&r.status) {
                        sqlx::query("DELETE FROM rollout_tenants WHERE rollout_id = $1")
                            .bind(&r.id)
                            .execute(&mut *c)
                            .await
                            .map_err(db_err)?;
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn rollout_lease(&self, owner: &str, now_ms: i64, until_ms: i64) -> Result<Vec<String>> {
        // Most passes find nothing to drive: answered from the reader, without a write.
        let active: i64 = sqlx::query("SELECT COUNT(*) FROM rollouts WHERE status IN ('running', 'paused', 'halted')")
            .fetch_one(&self.reader)
            .await
            .map_err(db_err)?
            .try_get(0)
            .map_err(db_err)?;
        if active == 0 {
            return Ok(Vec::new());
        }
        let owner = owner.to_owned();
        self.writer
            .write(&Effects::none(), move |c| {
                Box::pin(async move {
                    let rows = sqlx::query(
                        "SELECT id FROM rollouts WHERE status IN ('running', 'paused', 'halted') \
                         AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until < $2) ORDER BY created_at",
                    )
                    .bind(&owner)
                    .bind(now_ms)
                    .fetch_all(&mut *c)
                    .await
                    .map_err(db_err)?;
                    let mut leased = Vec::new();
                    for row in rows {
                        let id: String = row.try_get(0).map_err(db_err)?;
                        let done = sqlx::query(
                            "UPDATE rollouts SET lease_owner = $2, lease_until = $3 WHERE id = $1 \
                             AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < $4)",
                        )
                        .bind(&id)
                        .bind(&owner)
                        .bind(until_ms)
                        .bind(now_ms)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                        if done.rows_affected() == 1 {
                            leased.push(id);
                        }
                    }
                    Ok(leased)
                })
            })
            .await
    }
}
