//! Idempotency keys on SQL: written directly (not through the writer), a lease while
//! the first request runs, its response once it is done.

use sqlx::Row;
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;

use super::{db_err, is_unique_violation, SqlStore};
use tenancy_store::IdempotencyState;

pub(super) async fn begin(
    store: &SqlStore,
    scope: &str,
    key: &str,
    request_hash: &str,
    lease_ms: i64,
) -> Result<IdempotencyState> {
    let now = Timestamp::now().millis();
    let res = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, request_hash, created_at, lease_expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(scope)
    .bind(key)
    .bind(request_hash)
    .bind(now)
    .bind(now + lease_ms)
    .execute(&store.write_pool)
    .await;
    match res {
        Ok(_) => Ok(IdempotencyState::Started),
        Err(e) if is_unique_violation(&e) => {
            let row = sqlx::query(
                "SELECT request_hash, status, response, lease_expires_at FROM idempotency_keys \
                 WHERE scope = $1 AND key = $2",
            )
            .bind(scope)
            .bind(key)
            .fetch_one(&store.write_pool)
            .await
            .map_err(db_err)?;
            let first_hash: String = row.get(0);
            let status: Option<i64> = row.get(1);
            let response: Option<String> = row.get(2);
            let lease: Option<i64> = row.get(3);
            if let (Some(status), Some(response)) = (status, response) {
                return Ok(IdempotencyState::Completed { request_hash: first_hash, status: status as u16, response });
            }
            // In progress: the same request takes over a key whose lease ran out
            // (its request died with its process); one taker wins the update.
            if first_hash == request_hash && lease.is_none_or(|l| l < now) {
                let taken = sqlx::query(
                    "UPDATE idempotency_keys SET lease_expires_at = $3, created_at = $4 \
                     WHERE scope = $1 AND key = $2 AND status IS NULL \
                     AND (lease_expires_at IS NULL OR lease_expires_at < $4)",
                )
                .bind(scope)
                .bind(key)
                .bind(now + lease_ms)
                .bind(now)
                .execute(&store.write_pool)
                .await
                .map_err(db_err)?;
                if taken.rows_affected() == 1 {
                    return Ok(IdempotencyState::Started);
                }
            }
            Ok(IdempotencyState::InProgress { request_hash: first_hash })
        }
        Err(e) => Err(db_err(e)),
    }
}

pub(super) async fn finish(store: &SqlStore, scope: &str, key: &str, status: u16, response: &str) -> Result<()> {
    sqlx::query(
        "UPDATE idempotency_keys SET status = $3, response = $4, lease_expires_at = NULL \
         WHERE scope = $1 AND key = $2 AND status IS NULL",
    )
    .bind(scope)
    .bind(key)
    .bind(status as i64)
    .bind(response)
    .execute(&store.write_pool)
    .await
    .map_err(db_err)?;
    Ok(())
}

pub(super) async fn abandon(store: &SqlStore, scope: &str, key: &str) -> Result<()> {
    sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status IS NULL")
        .bind(scope)
        .bind(key)
        .execute(&store.write_pool)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Deletes the keys created before `before` in batches of [`PRUNE_BATCH`], each its own
/// short statement (seeking by migration 0032's `idempotency_keys (created_at)`), so a
/// backlog never holds the write lock (SQLite) or a transaction (PostgreSQL) for long.
pub(super) async fn prune(store: &SqlStore, before: Timestamp) -> Result<u64> {
    let sql = format!(
        "DELETE FROM idempotency_keys WHERE (scope, key) IN \
         (SELECT scope, key FROM idempotency_keys WHERE created_at < $1 LIMIT {PRUNE_BATCH})"
    );
    let mut total = 0;
    loop {
        let res = sqlx::query(&sql).bind(before.millis()).execute(&store.write_pool).await.map_err(db_err)?;
        total += res.rows_affected();
        if res.rows_affected() < PRUNE_BATCH {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// Keys deleted per statement by [`prune`].
const PRUNE_BATCH: u64 = 1_000;
