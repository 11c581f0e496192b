//! [`QuotaStore`] on SQL: one row per tenant, quota and period, consumed with one
//! conditional `UPDATE` each (`... WHERE used + n <= limit`), so that concurrent
//! consumers on any number of replicas never grant more than the limit: on PostgreSQL
//! the row lock serializes them and each re-checks the guard against the committed
//! usage; on SQLite one writer does.
//!
//! The common consume (one quota, no idempotency key, no effects of the caller's) is
//! one statement, [`FAST_CONSUME`]: an upsert whose guard grants only what needs no
//! event (no threshold crossing, no soft quota going over). On PostgreSQL it runs
//! without BEGIN/COMMIT (one round trip, committed when answered); on SQLite it joins
//! the writer's group commit as one statement without a savepoint, answered after
//! the COMMIT. When its guard holds back (a refusal, an event to write, a first
//! consume bigger than the threshold), the full transaction ([`consume`]) decides
//! (docs/entitlements.md "The fast path").

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{AnyConnection, Row};
use tenancy_domain::event::Event;
use tenancy_domain::plan::QuotaPeriod;
use tenancy_domain::quota::events::{QUOTA_EXCEEDED, QUOTA_THRESHOLD_REACHED};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};

use super::effects::apply_effects_batch;
use super::{db_err, SqlStore};
use tenancy_store::{Effects, QuotaConsumeRequest, QuotaCount, QuotaDemand, QuotaOutcome, QuotaStore};

/// The first millisecond of the period `now` is in; 0 for a quota without a period.
fn period_start(period: Option<QuotaPeriod>, now: Timestamp) -> i64 {
    period.map_or(0, |p| p.start(now).millis())
}

/// Whether usage went from under 80% of `limit` to at least 80%.
fn crossed_threshold(before: u64, after: u64, limit: u64) -> bool {
    let (b, a, l) = (before as u128 * 5, after as u128 * 5, limit as u128 * 4);
    limit > 0 && b < l && a >= l
}

/// The least usage at 80% of `limit` or more (0 for a limit of 0, which has no
/// crossing): usage `b` is under 80% iff `b < threshold(limit)`, so [`crossed_threshold`]
/// is `b < t && a >= t`.
fn threshold(limit: u64) -> u64 {
    (limit as u128 * 4).div_ceil(5) as u64
}

/// The one statement of the common consume: `$1` tenant, `$2` quota, `$3` period start,
/// `$4` amount, `$5` 1 when a first consume of the period may be granted here, `$6`
/// limit, `$7` the threshold ([`threshold`]), `$8` 1 for a soft quota. It adds `$4` to
/// the usage only where that needs no event: within the limit (or a soft quota already
/// over it) and not across the threshold; otherwise it writes nothing and returns no
/// row. On PostgreSQL the conflicting row is locked and the guard evaluated against
/// its latest committed usage, as [`consume`]'s `UPDATE` is.
const FAST_CONSUME: &str = "INSERT INTO quota_usage (tenant_id, quota, period_start, used, refused) \
     SELECT $1, $2, $3, $4, 0 WHERE $5 = 1 \
     ON CONFLICT (tenant_id, quota, period_start) DO UPDATE SET used = quota_usage.used + $4 \
     WHERE (quota_usage.used + $4 <= $6 OR ($8 = 1 AND quota_usage.used > $6)) \
     AND NOT (quota_usage.used < $7 AND quota_usage.used + $4 >= $7) \
     RETURNING used";

/// A consume [`FAST_CONSUME`] may answer: one demand, no idempotency key, no effects.
pub(super) struct Fast {
    pub(super) tenant: String,
    pub(super) quota: String,
    pub(super) start: i64,
    pub(super) amount: i64,
    pub(super) first_ok: i64,
    pub(super) limit: i64,
    pub(super) threshold: i64,
    pub(super) soft: i64,
}

impl Fast {
    fn of(req: &QuotaConsumeRequest, fx: &Effects) -> Option<Fast> {
        let [d] = req.demands.as_slice() else { return None };
        if req.idempotency_key.is_some() || !effects_are_empty(fx) {
            return None;
        }
        let amount = i64::try_from(d.amount).ok()?;
        // A first consume (from 0) granted here: within the limit and under the threshold.
        let t = threshold(d.limit);
        let first_ok = d.amount <= d.limit && !crossed_threshold(0, d.amount, d.limit);
        Some(Fast {
            tenant: req.tenant_id.clone(),
            quota: d.quota.clone(),
            start: period_start(d.period, req.now),
            amount,
            first_ok: i64::from(first_ok),
            limit: i64::try_from(d.limit).unwrap_or(i64::MAX),
            threshold: i64::try_from(t).unwrap_or(i64::MAX),
            soft: i64::from(d.soft),
        })
    }

    /// The usage after the grant, or `None` when the full transaction must decide.
    pub(super) async fn run<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(&self, e: E) -> Result<Option<u64>> {
        let row = sqlx::query(FAST_CONSUME)
            .bind(&self.tenant)
            .bind(&self.quota)
            .bind(self.start)
            .bind(self.amount)
            .bind(self.first_ok)
            .bind(self.limit)
            .bind(self.threshold)
            .bind(self.soft)
            .fetch_optional(e)
            .await
            .map_err(db_err)?;
        Ok(row.map(|r| r.get::<i64, _>(0) as u64))
    }
}

fn effects_are_empty(fx: &Effects) -> bool {
    fx.events.is_empty()
        && fx.audit.is_empty()
        && fx.executions.is_empty()
        && fx.resources.is_empty()
        && fx.tenants.is_empty()
}

fn quota_event(detail_type: &str, tenant_id: &str, d: &QuotaDemand, used: u64, now: Timestamp) -> Event {
    Event::new(
        detail_type,
        Some(tenant_id),
        vec![format!("tenant/{tenant_id}")],
        serde_json::json!({
            "tenant_id": tenant_id,
            "quota": d.quota,
            "used": used,
            "limit": d.limit,
            "soft": d.soft,
            "period": d.period.map(|p| p.as_str()),
            "resets_at": d.period.map(|p| p.next(now)),
        }),
    )
}

async fn ensure_row(c: &mut AnyConnection, tenant_id: &str, quota: &str, start: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO quota_usage (tenant_id, quota, period_start, used, refused) VALUES ($1, $2, $3, 0, 0) \
         ON CONFLICT (tenant_id, quota, period_start) DO NOTHING",
    )
    .bind(tenant_id)
    .bind(quota)
    .bind(start)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    Ok(())
}

fn grant_json(usage: &[QuotaCount]) -> String {
    serde_json::Value::Array(usage.iter().map(|u| serde_json::json!([u.quota, u.used])).collect()).to_string()
}

fn grant_of(text: &str) -> Result<Vec<QuotaCount>> {
    let corrupt = || Error::internal("corrupt quota grant record");
    let v: Vec<(String, u64)> = serde_json::from_str(text).map_err(|_| corrupt())?;
    Ok(v.into_iter().map(|(quota, used)| QuotaCount { quota, used }).collect())
}

async fn consume(c: &mut AnyConnection, req: QuotaConsumeRequest) -> Result<QuotaOutcome> {
    let tenant = req.tenant_id.as_str();
    if let Some(key) = &req.idempotency_key {
        // Claim the key first: a concurrent repeat waits here for the first to commit,
        // then finds its grant.
        let claimed = sqlx::query(
            "INSERT INTO quota_grants (tenant_id, idempotency_key, response, created_at) VALUES ($1, $2, NULL, $3) \
             ON CONFLICT (tenant_id, idempotency_key) DO NOTHING",
        )
        .bind(tenant)
        .bind(key)
        .bind(req.now.millis())
        .execute(&mut *c)
        .await
        .map_err(db_err)?
        .rows_affected();
        if claimed == 0 {
            let row = sqlx::query("SELECT response FROM quota_grants WHERE tenant_id = $1 AND idempotency_key = $2")
                .bind(tenant)
                .bind(key)
                .fetch_one(&mut *c)
                .await
                .map_err(db_err)?;
            let response: Option<String> = row.get(0);
            let usage = grant_of(response.as_deref().ok_or_else(|| Error::internal("quota grant without usage"))?)?;
            return Ok(QuotaOutcome::Granted { usage, repeat: true });
        }
    }
    let mut demands = req.demands.clone();
    demands.sort_by(|a, b| a.quota.cmp(&b.quota));
    let mut granted: Vec<(&QuotaDemand, i64, u64)> = Vec::with_capacity(demands.len());
    for d in &demands {
        let start = period_start(d.period, req.now);
        let amount = i64::try_from(d.amount).map_err(|_| Error::invalid("amount is too large"))?;
        let limit = i64::try_from(d.limit).unwrap_or(i64::MAX);
        ensure_row(c, tenant, &d.quota, start).await?;
        // The one conditional write: a hard quota's guard is checked against the
        // current usage by the statement that changes it.
        let sql = if d.soft {
            "UPDATE quota_usage SET used = used + $1 \
             WHERE tenant_id = $2 AND quota = $3 AND period_start = $4 RETURNING used"
        } else {
            "UPDATE quota_usage SET used = used + $1 \
             WHERE tenant_id = $2 AND quota = $3 AND period_start = $4 AND used + $5 <= $6 RETURNING used"
        };
        let mut q = sqlx::query(sql).bind(amount).bind(tenant).bind(&d.quota).bind(start);
        if !d.soft {
            q = q.bind(amount).bind(limit);
        }
        match q.fetch_optional(&mut *c).await.map_err(db_err)? {
            Some(row) => granted.push((d, start, row.get::<i64, _>(0) as u64)),
            None => return refuse(c, &req, d, start, &granted).await,
        }
    }
    let mut events = Vec::new();
    for (d, _, used) in &granted {
        let before = used.saturating_sub(d.amount);
        if crossed_threshold(before, *used, d.limit) {
            events.push(quota_event(QUOTA_THRESHOLD_REACHED, tenant, d, *used, req.now));
        }
        if d.soft && before <= d.limit && *used > d.limit {
            events.push(quota_event(QUOTA_EXCEEDED, tenant, d, *used, req.now));
        }
    }
    if !events.is_empty() {
        apply_effects_batch(c, &[Effects { events, ..Effects::default() }]).await?;
    }
    let usage: Vec<QuotaCount> =
        granted.iter().map(|(d, _, used)| QuotaCount { quota: d.quota.clone(), used: *used }).collect();
    if let Some(key) = &req.idempotency_key {
        sqlx::query("UPDATE quota_grants SET response = $1 WHERE tenant_id = $2 AND idempotency_key = $3")
            .bind(grant_json(&usage))
            .bind(tenant)
            .bind(key)
            .execute(&mut *c)
            .await
            .map_err(db_err)?;
    }
    Ok(QuotaOutcome::Granted { usage, repeat: false })
}

/// A hard quota refused `d`: takes back what the demands before it consumed (in this
/// transaction, so nobody saw it), forgets the claimed key, and announces the first
/// refusal since usage last went down.
async fn refuse(
    c: &mut AnyConnection,
    req: &QuotaConsumeRequest,
    d: &QuotaDemand,
    start: i64,
    granted: &[(&QuotaDemand, i64, u64)],
) -> Result<QuotaOutcome> {
    let tenant = req.tenant_id.as_str();
    for (g, gstart, _) in granted {
        sqlx::query(
            "UPDATE quota_usage SET used = used - $1 WHERE tenant_id = $2 AND quota = $3 AND period_start = $4",
        )
        .bind(g.amount as i64)
        .bind(tenant)
        .bind(&g.quota)
        .bind(*gstart)
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    }
    if let Some(key) = &req.idempotency_key {
        sqlx::query("DELETE FROM quota_grants WHERE tenant_id = $1 AND idempotency_key = $2")
            .bind(tenant)
            .bind(key)
            .execute(&mut *c)
            .await
            .map_err(db_err)?;
    }
    let first = sqlx::query(
        "UPDATE quota_usage SET refused = 1 WHERE tenant_id = $1 AND quota = $2 AND period_start = $3 AND refused = 0 \
         RETURNING used",
    )
    .bind(tenant)
    .bind(&d.quota)
    .bind(start)
    .fetch_optional(&mut *c)
    .await
    .map_err(db_err)?;
    let used = match first {
        Some(row) => {
            let used = row.get::<i64, _>(0) as u64;
            let event = quota_event(QUOTA_EXCEEDED, tenant, d, used, req.now);
            apply_effects_batch(c, &[Effects { events: vec![event], ..Effects::default() }]).await?;
            used
        }
        None => sqlx::query("SELECT used FROM quota_usage WHERE tenant_id = $1 AND quota = $2 AND period_start = $3")
            .bind(tenant)
            .bind(&d.quota)
            .bind(start)
            .fetch_one(&mut *c)
            .await
            .map_err(db_err)?
            .get::<i64, _>(0) as u64,
    };
    Ok(QuotaOutcome::Refused { quota: d.quota.clone(), used })
}

#[async_trait]
impl QuotaStore for SqlStore {
    async fn quota_consume(&self, req: &QuotaConsumeRequest, fx: &Effects) -> Result<QuotaOutcome> {
        if let Some(fast) = Fast::of(req, fx) {
            let fast = Arc::new(fast);
            // One writer: the statement joins its group commit (one statement, atomic,
            // so no savepoint). Many writers: it joins the consumes gathered into one
            // multi-row statement ([`super::quota_batch`]).
            let used = if self.dialect.single_writer() {
                let f = fast.clone();
                self.writer.write_atomic(fx, move |c| Box::pin(async move { f.run(&mut *c).await })).await?
            } else if let Some(batcher) = &self.consumes {
                batcher.consume(fast.clone()).await?
            } else {
                fast.run(&self.write_pool).await?
            };
            if let Some(used) = used {
                let usage = vec![QuotaCount { quota: fast.quota.clone(), used }];
                return Ok(QuotaOutcome::Granted { usage, repeat: false });
            }
        }
        let req = req.clone();
        self.writer.write(fx, move |c| Box::pin(consume(c, req))).await
    }

    async fn quota_release(
        &self,
        tenant_id: &str,
        quota: &str,
        period: Option<QuotaPeriod>,
        amount: u64,
        now: Timestamp,
        fx: &Effects,
    ) -> Result<u64> {
        let (tenant, quota) = (tenant_id.to_owned(), quota.to_owned());
        let start = period_start(period, now);
        let amount = i64::try_from(amount).map_err(|_| Error::invalid("amount is too large"))?;
        self.writer
            .write_atomic(fx, move |c| {
                Box::pin(async move {
                    let row = sqlx::query(
                        "UPDATE quota_usage SET used = CASE WHEN used > $1 THEN used - $2 ELSE 0 END, refused = 0 \
                         WHERE tenant_id = $3 AND quota = $4 AND period_start = $5 RETURNING used",
                    )
                    .bind(amount)
                    .bind(amount)
                    .bind(&tenant)
                    .bind(&quota)
                    .bind(start)
                    .fetch_optional(&mut *c)
                    .await
                    .map_err(db_err)?;
                    Ok(row.map_or(0, |r| r.get::<i64, _>(0) as u64))
                })
            })
            .await
    }

    async fn quota_usage(
        &self,
        tenant_id: &str,
        quotas: &[(String, Option<QuotaPeriod>)],
        now: Timestamp,
    ) -> Result<Vec<QuotaCount>> {
        let rows = sqlx::query("SELECT quota, period_start, used FROM quota_usage WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        Ok(quotas
            .iter()
            .map(|(name, period)| {
                let start = period_start(*period, now);
                let used = rows
                    .iter()
                    .find(|r| r.get::<String, _>(0) == *name && r.get::<i64, _>(1) == start)
                    .map_or(0, |r| r.get::<i64, _>(2) as u64);
                QuotaCount { quota: name.clone(), used }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`FAST_CONSUME`]'s guard names the crossing with [`threshold`]; it must be
    /// [`crossed_threshold`]'s, for every limit and usage (here: all small ones and
    /// the largest).
    #[test]
    fn the_threshold_is_the_crossing_of_80_percent() {
        let limits = (0..=60u64).chain([u64::MAX / 5, u64::MAX / 4, u64::MAX]);
        for limit in limits {
            let t = threshold(limit);
            for before in (0..=70u64).chain([t.saturating_sub(1), t, t.saturating_add(1)]) {
                for amount in [1, 2, 5, 13] {
                    let after = before.saturating_add(amount);
                    let fast = before < t && after >= t;
                    assert_eq!(fast, crossed_threshold(before, after, limit), "limit {limit}, {before} -> {after}");
                }
            }
        }
    }
}
