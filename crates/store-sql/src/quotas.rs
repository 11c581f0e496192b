//! [`QuotaStore`] on SQL: one row per tenant, quota and period, consumed with one
//! conditional `UPDATE` each (`... WHERE used + n <= limit`), so that concurrent
//! consumers on any number of replicas never grant more than the limit: on PostgreSQL
//! the row lock serializes them and each re-checks the guard against the committed
//! usage; on SQLite one writer does.

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
