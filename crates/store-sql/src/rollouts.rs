//! [`RolloutStore`] on SQL: one row per rollout (the record as JSON, its waves without
//! their tenants, beside its status, revision and lease), one `rollout_members` row per
//! tenant of it (its state in its wave, written only when it changed), and one
//! `rollout_tenants` row per tenant an active rollout holds, whose primary key makes
//! overlapping rollouts impossible.

use async_trait::async_trait;
use sqlx::{AnyConnection, Row};
use tenancy_domain::rollout::{status, Rollout, RolloutTenant};
use tenancy_domain::{Error, ErrorCode, Result};

use super::{db_err, is_unique_violation, json_text, SqlStore};
use tenancy_store::{Effects, RolloutStore};

/// Rows of a multi-row statement (6 parameters each: far below both engines' limits).
const ROWS_PER_STATEMENT: usize = 200;

fn corrupt(e: impl std::fmt::Display) -> Error {
    Error::internal(format!("corrupt rollout record: {e}"))
}

/// The stored header: the record without its tenants (they are `rollout_members`) and
/// without what [`Rollout::refresh`] derives from them.
fn header_json(r: &Rollout) -> String {
    let mut h = r.without_tenants();
    h.failed.clear();
    h.not_rolled_back.clear();
    json_text(&h)
}

/// Reads the rollout whose header is `text` with its members, in `c`'s snapshot.
async fn assemble(c: &mut AnyConnection, id: &str, text: &str) -> Result<Rollout> {
    let mut r: Rollout = serde_json::from_str(text).map_err(corrupt)?;
    if r.waves.iter().any(|w| !w.tenants.is_empty()) {
        // Written before `rollout_members` (migration 0033): the tenants are inline.
        return Ok(r);
    }
    let rows = sqlx::query("SELECT wave, idx, member FROM rollout_members WHERE rollout_id = $1 ORDER BY wave, idx")
        .bind(id)
        .fetch_all(&mut *c)
        .await
        .map_err(db_err)?;
    for row in rows {
        let (wave, idx): (i64, i64) = (row.try_get(0).map_err(db_err)?, row.try_get(1).map_err(db_err)?);
        let text: String = row.try_get(2).map_err(db_err)?;
        let t: RolloutTenant = serde_json::from_str(&text).map_err(corrupt)?;
        let w = r.waves.get_mut(wave as usize).ok_or_else(|| corrupt(format!("member of wave {wave}")))?;
        if w.tenants.len() != idx as usize {
            return Err(corrupt(format!("wave {wave} misses its tenant {}", w.tenants.len())));
        }
        w.tenants.push(t);
    }
    r.refresh();
    Ok(r)
}

/// Writes (inserts or replaces) the members of `r` at `at`.
async fn put_members(c: &mut AnyConnection, r: &Rollout, at: &[(usize, usize)]) -> Result<()> {
    for chunk in at.chunks(ROWS_PER_STATEMENT) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let b = i * 6;
                format!("(${}, ${}, ${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6)
            })
            .collect();
        let sql = format!(
            "INSERT INTO rollout_members (rollout_id, wave, idx, tenant_id, state, member) VALUES {} \
             ON CONFLICT (rollout_id, wave, idx) DO UPDATE SET state = excluded.state, member = excluded.member",
            rows.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for &(wi, ti) in chunk {
            let t = r
                .waves
                .get(wi)
                .and_then(|w| w.tenants.get(ti))
                .ok_or_else(|| Error::internal(format!("rollout {}: no tenant at ({wi}, {ti})", r.id)))?;
            q = q.bind(&r.id).bind(wi as i64).bind(ti as i64).bind(&t.tenant_id).bind(&t.state).bind(json_text(t));
        }
        q.execute(&mut *c).await.map_err(db_err)?;
    }
    Ok(())
}

/// Every tenant position of `r`.
fn all_positions(r: &Rollout) -> Vec<(usize, usize)> {
    r.waves.iter().enumerate().flat_map(|(wi, w)| (0..w.tenants.len()).map(move |ti| (wi, ti))).collect()
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
                    .bind(header_json(&r))
                    .bind(r.rev)
                    .bind(r.created_at.millis())
                    .bind(r.updated_at.millis())
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                    put_members(&mut *c, &r, &all_positions(&r)).await?;
                    if !status::is_active(&r.status) {
                        return Ok(());
                    }
                    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                        let rows: Vec<String> =
                            (0..chunk.len()).map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2)).collect();
                        let sql =
                            format!("INSERT INTO rollout_tenants (tenant_id, rollout_id) VALUES {}", rows.join(", "));
                        let mut q = sqlx::query(&sql);
                        for id in chunk {
                            q = q.bind(id).bind(&r.id);
                        }
                        match q.execute(&mut *c).await {
                            Ok(_) => {}
                            // Taken since the check above (another replica's rollout).
                            Err(e) if is_unique_violation(&e) => {
                                return Err(conflict(&[(chunk[0].clone(), "another".into())]))
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
        let mut snapshot = self.reader.begin().await.map_err(db_err)?;
        let row = sqlx::query("SELECT rollout FROM rollouts WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *snapshot)
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found("rollout", id))?;
        let text: String = row.try_get(0).map_err(db_err)?;
        let r = assemble(&mut snapshot, id, &text).await?;
        snapshot.rollback().await.map_err(db_err)?;
        Ok(r)
    }

    async fn rollout_get_changed(&self, id: &str, known_rev: i64) -> Result<Option<Rollout>> {
        let rev: i64 = sqlx::query("SELECT rev FROM rollouts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found("rollout", id))?
            .try_get(0)
            .map_err(db_err)?;
        if rev == known_rev {
            return Ok(None);
        }
        self.rollout_get(id).await.map(Some)
    }

    async fn rollout_list(&self) -> Result<Vec<Rollout>> {
        let mut snapshot = self.reader.begin().await.map_err(db_err)?;
        let rows = sqlx::query("SELECT id, rollout FROM rollouts ORDER BY created_at DESC, id DESC")
            .fetch_all(&mut *snapshot)
            .await
            .map_err(db_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let (id, text): (String, String) = (row.try_get(0).map_err(db_err)?, row.try_get(1).map_err(db_err)?);
            out.push(assemble(&mut snapshot, &id, &text).await?);
        }
        snapshot.rollback().await.map_err(db_err)?;
        Ok(out)
    }

    async fn rollout_save(&self, r: &Rollout, changed: &[(usize, usize)], fx: &Effects) -> Result<()> {
        let r = r.clone();
        let changed = changed.to_vec();
        self.writer
            .write(fx, move |c| {
                Box::pin(async move {
                    let done = sqlx::query(
                        "UPDATE rollouts SET status = $2, rollout = $3, rev = $4, updated_at = $5 \
                         WHERE id = $1 AND rev = $6",
                    )
                    .bind(&r.id)
                    .bind(&r.status)
                    .bind(header_json(&r))
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
                    // A record from before `rollout_members` moves its tenants there now.
                    let has_members = sqlx::query("SELECT 1 FROM rollout_members WHERE rollout_id = $1 LIMIT 1")
                        .bind(&r.id)
                        .fetch_optional(&mut *c)
                        .await
                        .map_err(db_err)?
                        .is_some();
                    if has_members {
                        put_members(&mut *c, &r, &changed).await?;
                    } else {
                        put_members(&mut *c, &r, &all_positions(&r)).await?;
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
        // Most passes find nothing to drive, or only rollouts this owner holds with
        // more than half its lease left: answered from the reader, without a write.
        let rows = sqlx::query(
            "SELECT id, lease_owner, lease_until FROM rollouts WHERE status IN ('running', 'paused', 'halted') \
             ORDER BY created_at",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let half = now_ms + (until_ms - now_ms) / 2;
        let mut mine = Vec::new();
        let mut renew = false;
        for row in &rows {
            let id: String = row.try_get(0).map_err(db_err)?;
            let holder: Option<String> = row.try_get(1).map_err(db_err)?;
            let until: i64 = row.try_get(2).map_err(db_err)?;
            match holder.as_deref() {
                Some(h) if h == owner && until >= half => mine.push(id),
                // Another owner's live lease: not ours to take.
                Some(h) if h != owner && until >= now_ms => {}
                _ => renew = true,
            }
        }
        if !renew {
            return Ok(mine);
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
