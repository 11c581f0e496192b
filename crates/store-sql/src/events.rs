//! [`EventStore`] on SQL: subscriptions, the outbox dispatch and deliveries.
//!
//! The dispatcher scans events with `dispatched = 0` instead of following a cursor:
//! on PostgreSQL identity values are not handed out in commit order, so an event with
//! a lower `seq` may become visible after one with a higher `seq`; a flag never skips
//! it. Concurrent dispatchers lock disjoint events (`FOR UPDATE SKIP LOCKED`).

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use tenancy_domain::event::Event;
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::subscription::{Delivery, DeliveryAttempt, DeliveryStatus, Subscription};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};

use super::dialect::Dialect;
use super::effects::apply_effects_batch;
use super::{db_err, is_unique_violation, json_text, parse_cursor_i64, rows, wakeup, SqlStore, Where};
use tenancy_store::*;
use tenancy_store::{Effects, EventFilter, StoredEvent};

/// Rows per multi-row INSERT.
const CHUNK: usize = 200;

fn get<T>(row: &AnyRow, col: &str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(col).map_err(db_err)
}

fn json<T: serde::de::DeserializeOwned>(row: &AnyRow, col: &str) -> Result<T> {
    let text: String = get(row, col)?;
    serde_json::from_str(&text).map_err(|e| Error::internal(format!("corrupt JSON in column {col}: {e}")))
}

fn subscription(row: &AnyRow) -> Result<StoredSubscription> {
    Ok(StoredSubscription {
        subscription: Subscription {
            id: get(row, "id")?,
            name: get(row, "name")?,
            pattern: json(row, "pattern")?,
            target: json(row, "target")?,
            version: get(row, "version")?,
            created_at: Timestamp(get(row, "created_at")?),
            updated_at: Timestamp(get(row, "updated_at")?),
        },
        secret: get(row, "secret")?,
        previous_secret: get(row, "previous_secret")?,
        previous_expires_at: get::<Option<i64>>(row, "previous_secret_expires_at")?.map(Timestamp),
    })
}

fn delivery(row: &AnyRow) -> Result<Delivery> {
    let status: String = get(row, "status")?;
    let status = DeliveryStatus::parse(&status)
        .ok_or_else(|| Error::internal(format!("corrupt delivery status {status:?} in the store")))?;
    Ok(Delivery {
        id: get(row, "id")?,
        subscription_id: get(row, "subscription_id")?,
        event_id: get(row, "event_id")?,
        status,
        attempts: get(row, "attempts")?,
        next_attempt_at: (status == DeliveryStatus::Pending)
            .then(|| get::<i64>(row, "next_attempt_at").map(Timestamp))
            .transpose()?,
        last_error: get(row, "last_error")?,
        created_at: Timestamp(get(row, "created_at")?),
        updated_at: Timestamp(get(row, "updated_at")?),
        attempt_log: Vec::new(),
    })
}

fn attempt(row: &AnyRow) -> Result<(String, DeliveryAttempt)> {
    Ok((
        get(row, "delivery_id")?,
        DeliveryAttempt {
            attempt: get(row, "attempt")?,
            time: Timestamp(get(row, "time")?),
            status_code: get::<Option<i64>>(row, "status_code")?.map(|c| c as u16),
            latency_ms: get(row, "latency_ms")?,
            error: get(row, "error")?,
        },
    ))
}

/// One delivery per (event, matching subscription).
fn fan_out(
    events: &[StoredEvent],
    subs: &[StoredSubscription],
    matches: Matcher<'_>,
    now: Timestamp,
) -> Vec<NewDelivery> {
    let mut new = Vec::new();
    for e in events {
        for s in subs {
            if matches(s, &e.event) {
                new.push(NewDelivery::new(&s.subscription.id, &e.event.id, now));
            }
        }
    }
    new
}

async fn insert_deliveries(conn: &mut sqlx::AnyConnection, new: &[NewDelivery], now: Timestamp) -> Result<()> {
    let dialect = Dialect::of(conn);
    for chunk in new.chunks(CHUNK) {
        let values = (0..chunk.len())
            .map(|i| {
                let b = i * 4;
                format!(
                    "({}, {}, {}, 'pending', 0, 0, {}, {now}, {now})",
                    dialect.placeholder(b + 1),
                    dialect.placeholder(b + 2),
                    dialect.placeholder(b + 3),
                    dialect.placeholder(b + 4),
                    now = now.millis()
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO deliveries (id, subscription_id, event_id, status, attempts, tries, next_attempt_at, \
             created_at, updated_at) VALUES {values}"
        );
        let mut q = sqlx::query(&sql);
        for d in chunk {
            q = q.bind(&d.id).bind(&d.subscription_id).bind(&d.event_id).bind(d.due.millis());
        }
        q.execute(&mut *conn).await.map_err(db_err)?;
    }
    Ok(())
}

/// A change's effects inside a transaction of this module's own.
async fn apply_fx(tx: &mut Transaction<'static, Any>, fx: &Effects) -> Result<()> {
    apply_effects_batch(tx, std::slice::from_ref(fx)).await
}

impl SqlStore {
    /// A transaction on the write connection, outside the group-committing writer:
    /// dispatch, claims and results are batches of their own.
    pub(super) async fn begin_direct(&self) -> Result<Transaction<'static, Any>> {
        self.write_pool.begin().await.map_err(db_err)
    }

    /// [`EventStore::outbox_dispatch`] with a single writer (SQLite): the events and
    /// subscriptions are read in one snapshot on a reader (a subscription committed
    /// before an event is seen with it), and only the deliveries and the `dispatched`
    /// marks go through the group-committing writer. The dispatcher is woken by every
    /// commit: as a transaction of its own on the one write connection it kept the
    /// writer waiting for that connection (a third of the writer's time while tenants
    /// provisioned). One process per SQLite database means one dispatcher: nobody else
    /// marks these events in between.
    async fn outbox_dispatch_single_writer(
        &self,
        limit: u32,
        matches: Matcher<'_>,
        now: Timestamp,
    ) -> Result<DispatchOutcome> {
        let mut snapshot = self.reader.begin().await.map_err(db_err)?;
        let subs = sqlx::query("SELECT * FROM subscriptions")
            .fetch_all(&mut *snapshot)
            .await
            .map_err(db_err)?
            .iter()
            .map(subscription)
            .collect::<Result<Vec<_>>>()?;
        // With no subscription in the snapshot nothing can match: the events are only
        // marked, so their bodies are not read (most of the dispatcher's cost while
        // tenants provision on a control plane nobody subscribed to yet).
        let (seqs, new) = if subs.is_empty() {
            let seqs: Vec<i64> =
                sqlx::query_scalar(&format!("SELECT seq FROM events WHERE dispatched = 0 ORDER BY seq LIMIT {limit}"))
                    .fetch_all(&mut *snapshot)
                    .await
                    .map_err(db_err)?;
            (seqs, Vec::new())
        } else {
            let rows = sqlx::query(&format!("SELECT * FROM events WHERE dispatched = 0 ORDER BY seq LIMIT {limit}"))
                .fetch_all(&mut *snapshot)
                .await
                .map_err(db_err)?;
            let events = rows.iter().map(rows::event).collect::<Result<Vec<_>>>()?;
            (events.iter().map(|e| e.seq).collect(), fan_out(&events, &subs, matches, now))
        };
        snapshot.commit().await.map_err(db_err)?;
        if seqs.is_empty() {
            return Ok(DispatchOutcome::default());
        }
        let outcome = DispatchOutcome { events: seqs.len() as u64, deliveries: new.len() as u64 };
        let seqs = seqs.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        let any = !new.is_empty();
        self.writer
            .write(&Effects::none(), move |conn| {
                Box::pin(async move {
                    insert_deliveries(conn, &new, now).await?;
                    // Its text is new every time: prepared once, not cached (a cached copy
                    // would only push out the statements that are used again).
                    sqlx::query(&format!("UPDATE events SET dispatched = 1 WHERE seq IN ({seqs})"))
                        .persistent(false)
                        .execute(&mut *conn)
                        .await
                        .map_err(db_err)?;
                    Ok(())
                })
            })
            .await?;
        if any {
            wakeup::bump();
        }
        Ok(outcome)
    }

    async fn notify_in(&self, tx: &mut Transaction<'static, Any>) -> Result<()> {
        self.dialect.notify(&mut **tx, wakeup::CHANNEL, "").await.map_err(db_err)
    }

    async fn attempts_of(&self, deliveries: &mut [Delivery]) -> Result<()> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "SELECT * FROM delivery_attempts WHERE delivery_id IN ({}) ORDER BY delivery_id, attempt",
            self.dialect.placeholders(1, deliveries.len())
        );
        let mut q = sqlx::query(&sql);
        for d in deliveries.iter() {
            q = q.bind(&d.id);
        }
        let rows = q.fetch_all(&self.reader).await.map_err(db_err)?;
        for row in &rows {
            let (id, a) = attempt(row)?;
            if let Some(d) = deliveries.iter_mut().find(|d| d.id == id) {
                d.attempt_log.push(a);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl EventStore for SqlStore {
    async fn subscription_create(&self, s: &StoredSubscription, fx: &Effects) -> Result<()> {
        let mut tx = self.begin_direct().await?;
        let sub = &s.subscription;
        if let Some(conn) = sub.target.webhook().and_then(|w| w.connection) {
            crate::connections::must_exist(&mut tx, self.dialect, &conn).await?;
        }
        let res = sqlx::query(
            "INSERT INTO subscriptions (id, name, pattern, target, secret, previous_secret, \
             previous_secret_expires_at, version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&sub.id)
        .bind(&sub.name)
        .bind(json_text(&sub.pattern))
        .bind(json_text(&sub.target))
        .bind(s.secret.as_deref())
        .bind(s.previous_secret.as_deref())
        .bind(s.previous_expires_at.map(Timestamp::millis))
        .bind(sub.version)
        .bind(sub.created_at.millis())
        .bind(sub.updated_at.millis())
        .execute(&mut *tx)
        .await;
        match res {
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::AlreadyExists { kind: "subscription", id: sub.id.clone() })
            }
            r => r.map_err(db_err)?,
        };
        apply_fx(&mut tx, fx).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn subscription_get(&self, id: &str) -> Result<StoredSubscription> {
        let row = self.read_one("SELECT * FROM subscriptions WHERE id = $1", id, "subscription").await?;
        subscription(&row)
    }

    async fn subscription_list(&self, page: &PageRequest) -> Result<Page<StoredSubscription>> {
        let sql = format!("SELECT * FROM subscriptions WHERE id > $1 ORDER BY id LIMIT {}", page.limit + 1);
        let rows = sqlx::query(&sql)
            .bind(page.after.as_deref().unwrap_or(""))
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        let subs = rows.iter().map(subscription).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(subs, page.limit, |s| s.subscription.id.clone()))
    }

    async fn subscription_update(
        &self,
        s: &StoredSubscription,
        expected_version: i64,
        fx: &Effects,
    ) -> Result<StoredSubscription> {
        let mut tx = self.begin_direct().await?;
        let mut stored = s.clone();
        stored.subscription.version = expected_version + 1;
        let sub = &stored.subscription;
        if let Some(conn) = sub.target.webhook().and_then(|w| w.connection) {
            crate::connections::must_exist(&mut tx, self.dialect, &conn).await?;
        }
        let res = sqlx::query(
            "UPDATE subscriptions SET name = $2, pattern = $3, target = $4, secret = $5, previous_secret = $6, \
             previous_secret_expires_at = $7, version = $8, updated_at = $9 WHERE id = $1 AND version = $10",
        )
        .bind(&sub.id)
        .bind(&sub.name)
        .bind(json_text(&sub.pattern))
        .bind(json_text(&sub.target))
        .bind(stored.secret.as_deref())
        .bind(stored.previous_secret.as_deref())
        .bind(stored.previous_expires_at.map(Timestamp::millis))
        .bind(sub.version)
        .bind(sub.updated_at.millis())
        .bind(expected_version)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if res.rows_affected() == 0 {
            let found = sqlx::query("SELECT version FROM subscriptions WHERE id = $1")
                .bind(&sub.id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?
                .ok_or_else(|| Error::not_found("subscription", &sub.id))?
                .get::<i64, _>(0);
            return Err(Error::PreconditionFailed {
                kind: "subscription",
                id: sub.id.clone(),
                expected: expected_version,
                found,
            });
        }
        apply_fx(&mut tx, fx).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(stored)
    }

    async fn subscription_delete(&self, id: &str, fx: &Effects) -> Result<()> {
        let mut tx = self.begin_direct().await?;
        let res =
            sqlx::query("DELETE FROM subscriptions WHERE id = $1").bind(id).execute(&mut *tx).await.map_err(db_err)?;
        if res.rows_affected() == 0 {
            return Err(Error::not_found("subscription", id));
        }
        sqlx::query(
            "DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE subscription_id = $1)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query("DELETE FROM deliveries WHERE subscription_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        apply_fx(&mut tx, fx).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn outbox_dispatch(&self, limit: u32, matches: Matcher<'_>, now: Timestamp) -> Result<DispatchOutcome> {
        if self.dialect.single_writer() {
            return self.outbox_dispatch_single_writer(limit, matches, now).await;
        }
        let mut tx = self.begin_direct().await?;
        let sql = format!(
            "SELECT * FROM events WHERE dispatched = 0 ORDER BY seq LIMIT {limit}{}",
            self.dialect.skip_locked()
        );
        let rows = sqlx::query(&sql).fetch_all(&mut *tx).await.map_err(db_err)?;
        if rows.is_empty() {
            return Ok(DispatchOutcome::default());
        }
        let events = rows.iter().map(rows::event).collect::<Result<Vec<_>>>()?;
        // Read in the same transaction, after the events: a subscription committed
        // before an event was is always seen by that event's dispatch.
        let subs = sqlx::query("SELECT * FROM subscriptions")
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?
            .iter()
            .map(subscription)
            .collect::<Result<Vec<_>>>()?;
        let new = fan_out(&events, &subs, matches, now);
        insert_deliveries(&mut tx, &new, now).await?;
        let seqs = events.iter().map(|e| e.seq.to_string()).collect::<Vec<_>>().join(", ");
        // A new text every time: not cached (as in `outbox_dispatch_single_writer`).
        sqlx::query(&format!("UPDATE events SET dispatched = 1 WHERE seq IN ({seqs})"))
            .persistent(false)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if !new.is_empty() {
            self.notify_in(&mut tx).await?;
        }
        tx.commit().await.map_err(db_err)?;
        if !new.is_empty() {
            wakeup::bump();
        }
        Ok(DispatchOutcome { events: events.len() as u64, deliveries: new.len() as u64 })
    }

    async fn delivery_create(&self, deliveries: &[NewDelivery], fx: &Effects) -> Result<()> {
        let mut tx = self.begin_direct().await?;
        let now = Timestamp::now();
        insert_deliveries(&mut tx, deliveries, now).await?;
        apply_fx(&mut tx, fx).await?;
        if !deliveries.is_empty() {
            self.notify_in(&mut tx).await?;
        }
        tx.commit().await.map_err(db_err)?;
        wakeup::bump();
        Ok(())
    }

    async fn delivery_claim(
        &self,
        owner: &str,
        lease_ms: i64,
        limit: u32,
        now: Timestamp,
        skip: &[String],
    ) -> Result<Vec<ClaimedDelivery>> {
        let skip_clause = if skip.is_empty() {
            String::new()
        } else {
            format!(" AND subscription_id NOT IN ({})", Dialect::numbered_placeholders(4, skip.len()))
        };
        let sql = format!(
            "UPDATE deliveries SET lease_owner = $1, lease_expires_at = $2 WHERE id IN (SELECT id FROM deliveries \
             WHERE status = 'pending' AND next_attempt_at <= $3 AND (lease_expires_at IS NULL OR lease_expires_at < $3)\
             {skip_clause} ORDER BY next_attempt_at LIMIT {limit}{}) \
             RETURNING id, subscription_id, event_id, attempts, tries",
            self.dialect.skip_locked()
        );
        if self.dialect.single_writer() {
            // Workers are woken by every commit: look on a reader first, so that finding
            // nothing does not take SQLite's one write connection from the writer.
            let due: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM deliveries WHERE status = 'pending' AND next_attempt_at <= $1 \
                 AND (lease_expires_at IS NULL OR lease_expires_at < $1) LIMIT 1",
            )
            .bind(now.millis())
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
            if due.is_none() {
                return Ok(Vec::new());
            }
        }
        let mut q = sqlx::query(&sql).bind(owner).bind(now.millis() + lease_ms).bind(now.millis());
        for s in skip {
            q = q.bind(s.as_str());
        }
        let rows = q.fetch_all(&self.write_pool).await.map_err(db_err)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let claimed: Vec<(String, String, String, i64, i64)> = rows
            .iter()
            .map(|r| {
                Ok((
                    get(r, "id")?,
                    get(r, "subscription_id")?,
                    get(r, "event_id")?,
                    get(r, "attempts")?,
                    get(r, "tries")?,
                ))
            })
            .collect::<Result<_>>()?;
        let mut event_ids: Vec<&str> = claimed.iter().map(|c| c.2.as_str()).collect();
        event_ids.sort_unstable();
        event_ids.dedup();
        let mut events = std::collections::HashMap::new();
        for chunk in event_ids.chunks(500) {
            let sql = format!("SELECT * FROM events WHERE id IN ({})", self.dialect.placeholders(1, chunk.len()));
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&self.reader).await.map_err(db_err)? {
                let e = rows::event(&row)?.event;
                let trace: Option<String> = row.try_get("trace_context").map_err(db_err)?;
                events.insert(e.id.clone(), (e, trace));
            }
        }
        let mut sub_ids: Vec<&str> = claimed.iter().map(|c| c.1.as_str()).collect();
        sub_ids.sort_unstable();
        sub_ids.dedup();
        let mut versions = std::collections::HashMap::new();
        for chunk in sub_ids.chunks(500) {
            let sql = format!(
                "SELECT id, version FROM subscriptions WHERE id IN ({})",
                self.dialect.placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&self.reader).await.map_err(db_err)? {
                let (id, version): (String, i64) = (get(&row, "id")?, get(&row, "version")?);
                versions.insert(id, version);
            }
        }
        let mut out = Vec::with_capacity(claimed.len());
        for (id, subscription_id, event_id, attempts, tries) in claimed {
            match events.get(&event_id) {
                Some((event, trace)) => {
                    let subscription_version = versions.get(&subscription_id).copied().unwrap_or(0);
                    out.push(ClaimedDelivery {
                        id,
                        subscription_id,
                        subscription_version,
                        event: event.clone(),
                        attempts,
                        tries,
                        trace_context: trace.clone(),
                    })
                }
                None => {
                    sqlx::query(
                        "UPDATE deliveries SET status = 'dead', last_error = 'the event is no longer archived', \
                         lease_owner = NULL, lease_expires_at = NULL, updated_at = $2 WHERE id = $1",
                    )
                    .bind(&id)
                    .bind(now.millis())
                    .execute(&self.write_pool)
                    .await
                    .map_err(db_err)?;
                }
            }
        }
        Ok(out)
    }

    async fn delivery_release(&self, owner: &str, ids: &[String]) -> Result<()> {
        for chunk in ids.chunks(500) {
            let sql = format!(
                "UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL \
                 WHERE lease_owner = {} AND id IN ({})",
                self.dialect.placeholder(1),
                self.dialect.placeholders(2, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(owner);
            for id in chunk {
                q = q.bind(id.as_str());
            }
            q.execute(&self.write_pool).await.map_err(db_err)?;
        }
        Ok(())
    }

    async fn delivery_record(&self, owner: &str, results: &[AttemptResult]) -> Result<()> {
        if results.is_empty() {
            return Ok(());
        }
        let now = Timestamp::now().millis();
        let mut tx = self.begin_direct().await?;
        for chunk in results.chunks(CHUNK) {
            let values = (0..chunk.len())
                .map(|i| format!("({})", self.dialect.placeholders(i * 6 + 1, 6)))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO delivery_attempts (delivery_id, attempt, time, status_code, latency_ms, error) \
                 VALUES {values} ON CONFLICT DO NOTHING"
            );
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(&r.delivery_id)
                    .bind(r.attempt)
                    .bind(r.time.millis())
                    .bind(r.status_code.map(i64::from))
                    .bind(r.latency_ms)
                    .bind(r.error.as_deref());
            }
            q.execute(&mut *tx).await.map_err(db_err)?;
        }
        let delivered: Vec<&AttemptResult> = results.iter().filter(|r| r.next == DeliveryNext::Delivered).collect();
        for chunk in delivered.chunks(CHUNK) {
            let sql = format!(
                "UPDATE deliveries SET status = 'delivered', attempts = attempts + 1, tries = tries + 1, \
                 lease_owner = NULL, lease_expires_at = NULL, last_error = NULL, updated_at = {now} \
                 WHERE lease_owner = {} AND id IN ({})",
                self.dialect.placeholder(1),
                self.dialect.placeholders(2, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(owner);
            for r in chunk {
                q = q.bind(&r.delivery_id);
            }
            q.execute(&mut *tx).await.map_err(db_err)?;
        }
        for r in results {
            let (status, next_at) = match r.next {
                DeliveryNext::Delivered => continue,
                DeliveryNext::RetryAt(at) => ("pending", at.millis()),
                DeliveryNext::Dead => ("dead", now),
            };
            sqlx::query(
                "UPDATE deliveries SET status = $3, attempts = attempts + 1, tries = tries + 1, next_attempt_at = $4, \
                 lease_owner = NULL, lease_expires_at = NULL, last_error = $5, updated_at = $6 \
                 WHERE id = $1 AND lease_owner = $2",
            )
            .bind(&r.delivery_id)
            .bind(owner)
            .bind(status)
            .bind(next_at)
            .bind(r.error.as_deref())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn delivery_list(
        &self,
        subscription_id: &str,
        status: Option<DeliveryStatus>,
        page: &PageRequest,
    ) -> Result<Page<Delivery>> {
        let status_clause = if status.is_some() { " AND status = $3" } else { "" };
        let sql = format!(
            "SELECT * FROM deliveries WHERE subscription_id = $1 AND id > $2{status_clause} ORDER BY id LIMIT {}",
            page.limit + 1
        );
        let mut q = sqlx::query(&sql).bind(subscription_id).bind(page.after.as_deref().unwrap_or(""));
        if let Some(s) = status {
            q = q.bind(s.as_str());
        }
        let rows = q.fetch_all(&self.reader).await.map_err(db_err)?;
        let mut page =
            Page::from_overfetch(rows.iter().map(delivery).collect::<Result<Vec<_>>>()?, page.limit, |d: &Delivery| {
                d.id.clone()
            });
        self.attempts_of(&mut page.items).await?;
        Ok(page)
    }

    async fn delivery_get(&self, subscription_id: &str, delivery_id: &str) -> Result<Delivery> {
        let row = sqlx::query("SELECT * FROM deliveries WHERE id = $1 AND subscription_id = $2")
            .bind(delivery_id)
            .bind(subscription_id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found("delivery", delivery_id))?;
        let mut d = [delivery(&row)?];
        self.attempts_of(&mut d).await?;
        let [d] = d;
        Ok(d)
    }

    async fn delivery_retry(
        &self,
        subscription_id: &str,
        delivery_id: &str,
        now: Timestamp,
        fx: &Effects,
    ) -> Result<()> {
        let mut tx = self.begin_direct().await?;
        let res = sqlx::query(
            "UPDATE deliveries SET status = 'pending', tries = 0, next_attempt_at = $3, lease_owner = NULL, \
             lease_expires_at = NULL, updated_at = $3 WHERE id = $1 AND subscription_id = $2 AND status = 'dead'",
        )
        .bind(delivery_id)
        .bind(subscription_id)
        .bind(now.millis())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if res.rows_affected() == 0 {
            let status: Option<String> =
                sqlx::query("SELECT status FROM deliveries WHERE id = $1 AND subscription_id = $2")
                    .bind(delivery_id)
                    .bind(subscription_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err)?
                    .map(|r| r.get(0));
            return Err(match status {
                None => Error::not_found("delivery", delivery_id),
                Some(s) => Error::Conflict {
                    code: ErrorCode::DeliveryNotDead,
                    message: format!("delivery {delivery_id:?} is {s}; only dead deliveries are retried"),
                },
            });
        }
        apply_fx(&mut tx, fx).await?;
        self.notify_in(&mut tx).await?;
        tx.commit().await.map_err(db_err)?;
        wakeup::bump();
        Ok(())
    }

    async fn event_range(
        &self,
        from: Timestamp,
        to: Timestamp,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let sql =
            format!("SELECT * FROM events WHERE time >= $1 AND time < $2 AND seq > $3 ORDER BY seq LIMIT {limit}");
        let rows = sqlx::query(&sql)
            .bind(from.millis())
            .bind(to.millis())
            .bind(after_seq)
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(rows::event).collect()
    }

    async fn events_prune(&self, before: Timestamp, archived_only: bool) -> Result<(u64, u64)> {
        const BATCH: i64 = 5_000;
        let mut tx = self.begin_direct().await?;
        let finished = format!(
            "SELECT id FROM deliveries WHERE status <> 'pending' AND updated_at < $1 ORDER BY updated_at LIMIT {BATCH}"
        );
        sqlx::query(&format!("DELETE FROM delivery_attempts WHERE delivery_id IN ({finished})"))
            .bind(before.millis())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let deliveries = sqlx::query(&format!("DELETE FROM deliveries WHERE id IN ({finished})"))
            .bind(before.millis())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        let events = sqlx::query(&format!(
            "DELETE FROM events WHERE seq IN (SELECT seq FROM events e WHERE e.time < $1 AND e.dispatched = 1 {} \
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.status = 'pending') \
             ORDER BY e.seq LIMIT {BATCH})",
            if archived_only { "AND e.archived = 1" } else { "" }
        ))
        .bind(before.millis())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        tx.commit().await.map_err(db_err)?;
        Ok((events, deliveries))
    }

    async fn events_unarchived(&self, after_seq: i64, limit: u32) -> Result<Vec<StoredEvent>> {
        let sql = format!("SELECT * FROM events WHERE archived = 0 AND seq > $1 ORDER BY seq LIMIT {limit}");
        let rows = sqlx::query(&sql).bind(after_seq).fetch_all(&self.reader).await.map_err(db_err)?;
        rows.iter().map(rows::event).collect()
    }

    async fn events_mark_archived(&self, seqs: &[i64]) -> Result<()> {
        for chunk in seqs.chunks(500) {
            let list = (1..=chunk.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
            let sql = format!("UPDATE events SET archived = 1 WHERE seq IN ({list})");
            // The last chunk's length differs from pass to pass: not cached, or each pass
            // would leave another statement in the writer's cache.
            let mut q = sqlx::query(&sql).persistent(chunk.len() == 500);
            for seq in chunk {
                q = q.bind(*seq);
            }
            let mut tx = self.begin_direct().await?;
            q.execute(&mut *tx).await.map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
        }
        Ok(())
    }

    async fn events_restore(&self, events: &[Event]) -> Result<()> {
        let mut tx = self.begin_direct().await?;
        for e in events {
            sqlx::query(
                "INSERT INTO events (id, source, detail_type, time, tenant_id, resources, detail, dispatched, archived) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 1, 1) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&e.id)
            .bind(&e.source)
            .bind(&e.detail_type)
            .bind(e.time.millis())
            .bind(e.tenant_id.as_deref())
            .bind(serde_json::to_string(&e.resources).map_err(Error::internal)?)
            .bind(serde_json::to_string(&e.detail).map_err(Error::internal)?)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn events_oldest(&self) -> Result<Option<Timestamp>> {
        let row = sqlx::query("SELECT MIN(time) FROM events").fetch_one(&self.reader).await.map_err(db_err)?;
        let min: Option<i64> = row.try_get(0).map_err(db_err)?;
        Ok(min.map(Timestamp))
    }

    fn subscribe_wakeups(&self) -> tokio::sync::watch::Receiver<u64> {
        match &self.listen_url {
            Some(url) => wakeup::subscribe_postgres(url.clone()),
            None => wakeup::subscribe_local(),
        }
    }

    async fn notify_wakeup(&self) {
        wakeup::bump();
        if let Err(e) = self.dialect.notify(&self.write_pool, wakeup::CHANNEL, "").await {
            tracing::warn!(error = %e, "failed to notify other replicas");
        }
    }
}

/// The event archive, oldest first ([`Store::event_list`]).
///
/// [`Store::event_list`]: tenancy_store::Store::event_list
pub(super) async fn list(store: &SqlStore, filter: &EventFilter, page: &PageRequest) -> Result<Page<StoredEvent>> {
    let mut w = Where::new("SELECT * FROM events");
    w.eq("detail_type", filter.detail_type.as_deref());
    w.eq("tenant_id", filter.tenant_id.as_deref());
    if let Some(after) = filter.after {
        w.raw(&format!("time >= {}", after.millis()));
    }
    if let Some(seq) = parse_cursor_i64(page.after.as_deref())? {
        w.raw(&format!("seq > {seq}"));
    }
    w.sql.push_str(&format!(" ORDER BY seq LIMIT {}", page.limit + 1));
    let rows = w.query().fetch_all(&store.reader).await.map_err(db_err)?;
    let events = rows.iter().map(rows::event).collect::<Result<Vec<_>>>()?;
    Ok(Page::from_overfetch(events, page.limit, |e| e.seq.to_string()))
}
