//! [`QueueStore`] on SQL.
//!
//! A message row is visible when `visible_at <= now`. A receive sets `visible_at` to
//! the end of the visibility timeout, `in_flight = 1` and a fresh `nonce`; the receipt
//! is `<seq>-<nonce>`, so a delete or visibility change finds its row by primary key
//! and only while no later receive replaced the nonce. Groups: only a group's head
//! (its lowest `seq`) can be received, so a group with a message in flight is skipped
//! and its messages come out in order; heads of different groups are taken oldest
//! first, one per group, so a long backlog in one group never holds up the others.
//!
//! On SQLite every write goes through the group-committing writer (which serializes
//! receives); on PostgreSQL receives lock their candidates `FOR UPDATE SKIP LOCKED`,
//! so concurrent receivers take disjoint messages without waiting on each other.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::postgres::PgListener;
use sqlx::{AnyConnection, Row};
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::queue::{
    self, Message, MessageState, NewMessage, PeekedMessage, Queue, QueueDepth, Sent, DEDUP_WINDOW_MS,
};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tokio::sync::watch;

use super::dialect::Dialect;
use super::{db_err, is_unique_violation, SqlStore};
use tenancy_store::Effects;
use tenancy_store::{QueueStore, Received};

/// The PostgreSQL channel sends notify. The payload is the queue's wake-up bucket
/// ([`bucket`]), never its name: whoever can LISTEN learns no names.
const CHANNEL: &str = "tenancy_queues";
/// Wake-up buckets: a send wakes the long polls of the queues sharing its bucket.
const BUCKETS: u32 = 256;
/// Rows per multi-row INSERT (8 values each).
const CHUNK: usize = 200;

fn get<T>(row: &AnyRow, col: &str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(col).map_err(db_err)
}

fn queue_row(row: &AnyRow) -> Result<Queue> {
    Ok(Queue {
        name: get(row, "name")?,
        visibility_timeout_s: get::<i64>(row, "visibility_timeout_s")? as u64,
        max_receive_count: get::<Option<i64>>(row, "max_receive_count")?.map(|n| n as u32),
        dead_letter_queue: get(row, "dead_letter_queue")?,
        delay_s: get::<i64>(row, "delay_s")? as u64,
        retention_s: get::<i64>(row, "retention_s")? as u64,
        created_at: Timestamp(get(row, "created_at")?),
        updated_at: Timestamp(get(row, "updated_at")?),
    })
}

/// The `attributes` column: a JSON object of strings, NULL for none.
fn attributes_of(row: &AnyRow) -> Result<std::collections::BTreeMap<String, String>> {
    match get::<Option<String>>(row, "attributes")? {
        None => Ok(Default::default()),
        Some(text) => {
            serde_json::from_str(&text).map_err(|e| Error::internal(format!("corrupt message attributes: {e}")))
        }
    }
}

fn body_of(row: &AnyRow) -> Result<serde_json::Value> {
    let body: String = get(row, "body")?;
    serde_json::from_str(&body).map_err(|e| Error::internal(format!("corrupt message body: {e}")))
}

fn message_row(row: &AnyRow, nonce: &str) -> Result<Message> {
    let seq: i64 = get(row, "seq")?;
    Ok(Message {
        id: get(row, "id")?,
        receipt: queue::receipt(seq, nonce),
        body: body_of(row)?,
        receive_count: get(row, "receive_count")?,
        group_id: get(row, "group_id")?,
        sent_at: Timestamp(get(row, "sent_at")?),
        source_queue: get(row, "source_queue")?,
        attributes: attributes_of(row)?,
    })
}

fn peeked_row(row: &AnyRow, now: Timestamp) -> Result<PeekedMessage> {
    let visible_at: i64 = get(row, "visible_at")?;
    let in_flight: i64 = get(row, "in_flight")?;
    let state = if visible_at <= now.millis() {
        MessageState::Visible
    } else if in_flight == 1 {
        MessageState::InFlight
    } else {
        MessageState::Delayed
    };
    Ok(PeekedMessage {
        id: get(row, "id")?,
        body: body_of(row)?,
        attributes: attributes_of(row)?,
        state,
        receive_count: get(row, "receive_count")?,
        group_id: get(row, "group_id")?,
        sent_at: Timestamp(get(row, "sent_at")?),
        visible_at: Timestamp(visible_at),
        source_queue: get(row, "source_queue")?,
    })
}

async fn load_queue(c: &mut AnyConnection, name: &str, lock: &str) -> Result<Queue> {
    let sql = format!("SELECT * FROM queues WHERE name = $1{lock}");
    let row = sqlx::query(&sql).bind(name).fetch_optional(&mut *c).await.map_err(db_err)?;
    queue_row(&row.ok_or_else(|| Error::not_found("queue", name))?)
}

async fn notify(c: &mut AnyConnection, queue: &str) -> Result<()> {
    let dialect = Dialect::of(c);
    if dialect.listen_notify() {
        dialect.notify(&mut *c, CHANNEL, &bucket(queue).to_string()).await.map_err(db_err)?;
    }
    Ok(())
}

/// The wake-up bucket of a queue (stable across processes and versions: SHA-256).
fn bucket(queue: &str) -> u32 {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(queue.as_bytes());
    u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % BUCKETS
}

/// Wakes the long polls of every queue in a bucket (a spurious wake-up is harmless).
fn bump_bucket(payload: &str) {
    let Ok(b) = payload.parse::<u32>() else { return };
    let map = channels().lock().expect("queue wake-ups");
    for (name, tx) in map.iter() {
        if bucket(name) == b {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// Inserts messages (in order) into `q`, honouring dedup ids; runs inside a write.
pub(super) async fn insert_messages(
    c: &mut AnyConnection,
    q: &Queue,
    messages: &[NewMessage],
    now: Timestamp,
) -> Result<Vec<Sent>> {
    let dialect = Dialect::of(c);
    if !dialect.single_writer() {
        // Concurrent sends to one group take turns (in a fixed order: no deadlocks), so
        // a group's `seq` order is its commit order and a later message can never be
        // received while an earlier one is still uncommitted. (With a single writer
        // they take turns already.)
        let mut groups: Vec<&str> = messages.iter().filter_map(|m| m.group_id.as_deref()).collect();
        groups.sort_unstable();
        groups.dedup();
        for g in groups {
            let key = format!("tenancy_queue/{}/{g}", q.name);
            dialect.advisory_xact_lock_text(&mut *c, &key).await.map_err(db_err)?;
        }
    }
    let mut results = Vec::with_capacity(messages.len());
    let mut fresh = Vec::with_capacity(messages.len());
    for m in messages {
        if let Some(dedup) = &m.dedup_id {
            let res = sqlx::query(
                "INSERT INTO queue_dedup (queue, dedup_id, message_id, expires_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (queue, dedup_id) DO UPDATE SET message_id = excluded.message_id, \
                 expires_at = excluded.expires_at WHERE queue_dedup.expires_at <= $5",
            )
            .bind(&q.name)
            .bind(dedup)
            .bind(&m.id)
            .bind(now.millis() + DEDUP_WINDOW_MS)
            .bind(now.millis())
            .execute(&mut *c)
            .await
            .map_err(db_err)?;
            if res.rows_affected() == 0 {
                let first: String =
                    sqlx::query("SELECT message_id FROM queue_dedup WHERE queue = $1 AND dedup_id = $2")
                        .bind(&q.name)
                        .bind(dedup)
                        .fetch_one(&mut *c)
                        .await
                        .map_err(db_err)?
                        .get(0);
                results.push(Sent { id: first, deduplicated: true });
                continue;
            }
        }
        results.push(Sent { id: m.id.clone(), deduplicated: false });
        fresh.push(m);
    }
    let expires = now.millis() + q.retention_s as i64 * 1000;
    for chunk in fresh.chunks(CHUNK) {
        let mut sql = String::from(
            "INSERT INTO queue_messages (id, queue, body, group_id, visible_at, sent_at, expires_at, attributes) \
             VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            let b = i * 8;
            sql.push('(');
            sql.push_str(&dialect.placeholders(b + 1, 8));
            sql.push(')');
        }
        let mut qy = sqlx::query(&sql);
        for m in chunk {
            let delay = m.delay_ms.unwrap_or(q.delay_s as i64 * 1000);
            let attributes = (!m.attributes.is_empty())
                .then(|| serde_json::to_string(&m.attributes))
                .transpose()
                .map_err(Error::internal)?;
            qy = qy
                .bind(&m.id)
                .bind(&q.name)
                .bind(&m.body)
                .bind(m.group_id.as_deref())
                .bind(now.millis() + delay)
                .bind(now.millis())
                .bind(expires)
                .bind(attributes);
        }
        qy.execute(&mut *c).await.map_err(db_err)?;
    }
    if !fresh.is_empty() {
        notify(c, &q.name).await?;
    }
    Ok(results)
}

/// Process-wide wake-up channels per queue name (spurious wake-ups are harmless).
fn channels() -> &'static Mutex<HashMap<String, watch::Sender<u64>>> {
    static CHANNELS: OnceLock<Mutex<HashMap<String, watch::Sender<u64>>>> = OnceLock::new();
    CHANNELS.get_or_init(Mutex::default)
}

pub(super) fn bump(queue: &str) {
    let map = channels().lock().expect("queue wake-ups");
    if let Some(tx) = map.get(queue) {
        tx.send_modify(|n| *n = n.wrapping_add(1));
    }
}

fn subscribe(queue: &str) -> watch::Receiver<u64> {
    let mut map = channels().lock().expect("queue wake-ups");
    // Drop the channels nobody listens to any more.
    if map.len() > 1024 {
        map.retain(|_, tx| tx.receiver_count() > 0);
    }
    map.entry(queue.to_owned()).or_insert_with(|| watch::channel(0).0).subscribe()
}

/// Starts (once per database URL) the task that turns `NOTIFY tenancy_queues` from any
/// replica into local wake-ups; it reconnects when its connection drops.
fn listen_postgres(url: &str) {
    static STARTED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    if !STARTED.get_or_init(Mutex::default).lock().expect("listeners").insert(url.to_owned()) {
        return;
    }
    let url = url.to_owned();
    tokio::spawn(async move {
        loop {
            let mut listener = match PgListener::connect(&url).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "failed to connect the queue wake-up listener");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Err(e) = listener.listen(CHANNEL).await {
                tracing::warn!(error = %e, "failed to LISTEN for queue wake-ups");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            // Anything may have been sent while not listening.
            let names: Vec<String> = channels().lock().expect("queue wake-ups").keys().cloned().collect();
            names.iter().for_each(|n| bump(n));
            loop {
                match listener.recv().await {
                    Ok(n) => bump_bucket(n.payload()),
                    Err(e) => {
                        tracing::warn!(error = %e, "queue wake-up listener failed; reconnecting");
                        break;
                    }
                }
            }
        }
    });
}

fn receipt_parts(receipt: &str) -> Result<(i64, String)> {
    queue::parse_receipt(receipt).map(|(s, n)| (s, n.to_owned())).ok_or_else(|| Error::InvalidRequest {
        code: ErrorCode::InvalidReceipt,
        message: format!("malformed receipt {receipt:?}"),
    })
}

#[async_trait]
impl QueueStore for SqlStore {
    async fn queue_put(&self, q: &Queue, fx: &Effects) -> Result<(Queue, bool)> {
        let (q, dialect) = (q.clone(), self.dialect);
        self.writer
            .write(fx, move |c| {
                Box::pin(async move {
                    if let Some(dlq) = &q.dead_letter_queue {
                        let sql = format!("SELECT name FROM queues WHERE name = $1{}", dialect.for_share());
                        if sqlx::query(&sql).bind(dlq).fetch_optional(&mut *c).await.map_err(db_err)?.is_none() {
                            return Err(Error::InvalidRequest {
                                code: ErrorCode::UnknownQueue,
                                message: format!("dead_letter_queue {dlq:?} does not exist"),
                            });
                        }
                    }
                    let sql = format!("SELECT created_at FROM queues WHERE name = $1{}", dialect.for_update());
                    let existing = sqlx::query(&sql).bind(&q.name).fetch_optional(&mut *c).await.map_err(db_err)?;
                    let mut stored = q.clone();
                    let created = existing.is_none();
                    if let Some(row) = existing {
                        stored.created_at = Timestamp(row.get(0));
                    }
                    let sql = if created {
                        "INSERT INTO queues (name, visibility_timeout_s, max_receive_count, dead_letter_queue, \
                         delay_s, retention_s, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                    } else {
                        "UPDATE queues SET visibility_timeout_s = $2, max_receive_count = $3, dead_letter_queue = $4, \
                         delay_s = $5, retention_s = $6, created_at = $7, updated_at = $8 WHERE name = $1"
                    };
                    let res = sqlx::query(sql)
                        .bind(&stored.name)
                        .bind(stored.visibility_timeout_s as i64)
                        .bind(stored.max_receive_count.map(i64::from))
                        .bind(stored.dead_letter_queue.as_deref())
                        .bind(stored.delay_s as i64)
                        .bind(stored.retention_s as i64)
                        .bind(stored.created_at.millis())
                        .bind(stored.updated_at.millis())
                        .execute(&mut *c)
                        .await;
                    match res {
                        Err(e) if is_unique_violation(&e) => {
                            Err(Error::conflict(format!("queue {:?} was created concurrently; retry", stored.name)))
                        }
                        Err(e) => Err(db_err(e)),
                        Ok(_) => Ok((stored, created)),
                    }
                })
            })
            .await
    }

    async fn queue_get(&self, name: &str) -> Result<Queue> {
        let row = self.read_one("SELECT * FROM queues WHERE name = $1", name, "queue").await?;
        queue_row(&row)
    }

    async fn queue_list(&self, page: &PageRequest) -> Result<Page<Queue>> {
        let after = page.after.clone().unwrap_or_default();
        let sql = format!("SELECT * FROM queues WHERE name > $1 ORDER BY name LIMIT {}", page.limit + 1);
        let rows = sqlx::query(&sql).bind(after).fetch_all(&self.reader).await.map_err(db_err)?;
        let queues = rows.iter().map(queue_row).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(queues, page.limit, |q| q.name.clone()))
    }

    async fn queue_delete(&self, name: &str, fx: &Effects) -> Result<()> {
        let (name, dialect) = (name.to_owned(), self.dialect);
        self.writer
            .write(fx, move |c| {
                Box::pin(async move {
                    load_queue(c, &name, dialect.for_update()).await?;
                    let users: Vec<String> =
                        sqlx::query("SELECT name FROM queues WHERE dead_letter_queue = $1 ORDER BY name")
                            .bind(&name)
                            .fetch_all(&mut *c)
                            .await
                            .map_err(db_err)?
                            .iter()
                            .map(|r| r.get(0))
                            .collect();
                    if !users.is_empty() {
                        return Err(Error::Conflict {
                            code: ErrorCode::QueueInUse,
                            message: format!("queue {name:?} is the dead_letter_queue of {users:?}"),
                        });
                    }
                    for sql in [
                        "DELETE FROM queue_messages WHERE queue = $1 AND group_id IS NULL",
                        "DELETE FROM queue_messages WHERE queue = $1 AND group_id IS NOT NULL",
                        "DELETE FROM queue_dedup WHERE queue = $1",
                        "DELETE FROM queues WHERE name = $1",
                    ] {
                        sqlx::query(sql).bind(&name).execute(&mut *c).await.map_err(db_err)?;
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn queue_depth(&self, name: &str, now: Timestamp) -> Result<QueueDepth> {
        self.queue_get(name).await?;
        let mut d = QueueDepth::default();
        let mut oldest: Option<i64> = None;
        for grouped in ["group_id IS NULL", "group_id IS NOT NULL"] {
            let sql = format!(
                "SELECT COALESCE(SUM(CASE WHEN visible_at <= $2 THEN 1 ELSE 0 END), 0), \
                 COALESCE(SUM(CASE WHEN visible_at > $2 AND in_flight = 1 THEN 1 ELSE 0 END), 0), \
                 COALESCE(SUM(CASE WHEN visible_at > $2 AND in_flight = 0 THEN 1 ELSE 0 END), 0), MIN(sent_at) \
                 FROM queue_messages WHERE queue = $1 AND {grouped} AND expires_at > $2"
            );
            let row = sqlx::query(&sql).bind(name).bind(now.millis()).fetch_one(&self.reader).await.map_err(db_err)?;
            d.visible += row.try_get::<i64, _>(0).map_err(db_err)? as u64;
            d.in_flight += row.try_get::<i64, _>(1).map_err(db_err)? as u64;
            d.delayed += row.try_get::<i64, _>(2).map_err(db_err)? as u64;
            if let Some(t) = row.try_get::<Option<i64>, _>(3).map_err(db_err)? {
                oldest = Some(oldest.map_or(t, |o| o.min(t)));
            }
        }
        let dead: i64 = sqlx::query("SELECT COUNT(*) FROM queue_messages WHERE source_queue = $1")
            .bind(name)
            .fetch_one(&self.reader)
            .await
            .map_err(db_err)?
            .get(0);
        d.dead_lettered = dead as u64;
        d.oldest_age_s = oldest.map_or(0, |t| ((now.millis() - t).max(0) / 1000) as u64);
        Ok(d)
    }

    async fn message_send(&self, queue: &str, messages: &[NewMessage], now: Timestamp) -> Result<Vec<Sent>> {
        let (queue, messages, dialect) = (queue.to_owned(), messages.to_vec(), self.dialect);
        let name = queue.clone();
        let sent = self
            .writer
            .write(&Effects::none(), move |c| {
                Box::pin(async move {
                    // Share-locked on PostgreSQL: a concurrent delete waits for this send.
                    let q = load_queue(c, &queue, dialect.for_share()).await?;
                    insert_messages(c, &q, &messages, now).await
                })
            })
            .await?;
        bump(&name);
        Ok(sent)
    }

    async fn message_receive(&self, queue: &str, max: u32, now: Timestamp) -> Result<Received> {
        let (queue, dialect) = (queue.to_owned(), self.dialect);
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let received = self
            .writer
            .write(&Effects::none(), move |c| {
                Box::pin(async move {
                    // No lock on the queue row: receives must not contend on it.
                    let q = load_queue(c, &queue, "").await?;
                    let lock = dialect.skip_locked();
                    let n = max.max(1);
                    let t = now.millis();
                    // (seq, receive_count) of the candidates: ungrouped by visibility,
                    // and the visible heads of groups.
                    let sql = format!(
                        "SELECT seq, receive_count FROM queue_messages WHERE queue = $1 AND group_id IS NULL \
                         AND visible_at <= $2 AND expires_at > $2 ORDER BY visible_at, seq LIMIT {n}{lock}"
                    );
                    let mut cands: Vec<(i64, i64)> = sqlx::query(&sql)
                        .bind(&queue)
                        .bind(t)
                        .fetch_all(&mut *c)
                        .await
                        .map_err(db_err)?
                        .iter()
                        .map(|r| (r.get(0), r.get(1)))
                        .collect();
                    let sql = format!(
                        "SELECT m.seq, m.receive_count FROM queue_messages m WHERE m.queue = $1 \
                         AND m.group_id IS NOT NULL AND m.visible_at <= $2 AND m.expires_at > $2 \
                         AND NOT EXISTS (SELECT 1 FROM queue_messages o WHERE o.queue = m.queue \
                         AND o.group_id = m.group_id AND o.seq < m.seq) ORDER BY m.seq LIMIT {n}{lock}"
                    );
                    let grouped = sqlx::query(&sql).bind(&queue).bind(t).fetch_all(&mut *c).await.map_err(db_err)?;
                    cands.extend(grouped.iter().map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1))));
                    cands.sort_unstable();
                    cands.truncate(n as usize);

                    let limit = q.max_receive_count.map(i64::from);
                    let (dead, take): (Vec<_>, Vec<_>) = cands
                        .into_iter()
                        .partition(|(_, count)| limit.is_some_and(|l| *count >= l) && q.dead_letter_queue.is_some());
                    let mut out = Received { dead_lettered: dead.len() as u64, ..Default::default() };
                    if let (false, Some(dlq)) = (dead.is_empty(), &q.dead_letter_queue) {
                        let list = dead.iter().map(|(s, _)| s.to_string()).collect::<Vec<_>>().join(", ");
                        let sql = format!(
                            "UPDATE queue_messages SET queue = $1, source_queue = $2, visible_at = $3, in_flight = 0, \
                             nonce = NULL, receive_count = 0 WHERE seq IN ({list})"
                        );
                        sqlx::query(&sql).bind(dlq).bind(&queue).bind(t).execute(&mut *c).await.map_err(db_err)?;
                        notify(c, dlq).await?;
                    }
                    if !take.is_empty() {
                        let list = take.iter().map(|(s, _)| s.to_string()).collect::<Vec<_>>().join(", ");
                        let sql = format!(
                            "UPDATE queue_messages SET visible_at = $1, in_flight = 1, nonce = $2, \
                             receive_count = receive_count + 1 WHERE seq IN ({list}) \
                             RETURNING seq, id, body, receive_count, group_id, sent_at, source_queue, attributes"
                        );
                        let rows = sqlx::query(&sql)
                            .bind(t + q.visibility_timeout_s as i64 * 1000)
                            .bind(&nonce)
                            .fetch_all(&mut *c)
                            .await
                            .map_err(db_err)?;
                        let mut msgs = Vec::with_capacity(rows.len());
                        for r in &rows {
                            msgs.push((get::<i64>(r, "seq")?, message_row(r, &nonce)?));
                        }
                        msgs.sort_by_key(|(s, _)| *s);
                        out.messages = msgs.into_iter().map(|(_, m)| m).collect();
                    } else if out.dead_lettered == 0 {
                        let row = sqlx::query(
                            "SELECT MIN(visible_at) FROM queue_messages WHERE queue = $1 AND visible_at > $2 \
                             AND group_id IS NULL",
                        )
                        .bind(&queue)
                        .bind(t)
                        .fetch_one(&mut *c)
                        .await
                        .map_err(db_err)?;
                        let ungrouped: Option<i64> = row.try_get(0).map_err(db_err)?;
                        let row = sqlx::query(
                            "SELECT MIN(visible_at) FROM queue_messages WHERE queue = $1 AND visible_at > $2 \
                             AND group_id IS NOT NULL",
                        )
                        .bind(&queue)
                        .bind(t)
                        .fetch_one(&mut *c)
                        .await
                        .map_err(db_err)?;
                        let grouped: Option<i64> = row.try_get(0).map_err(db_err)?;
                        out.next_visible_at = ungrouped.into_iter().chain(grouped).min().map(Timestamp);
                    }
                    Ok((out, q.dead_letter_queue))
                })
            })
            .await?;
        let (out, dlq) = received;
        if let (true, Some(dlq)) = (out.dead_lettered > 0, dlq) {
            bump(&dlq);
        }
        Ok(out)
    }

    async fn message_peek(&self, queue: &str, limit: u32, now: Timestamp) -> Result<Vec<PeekedMessage>> {
        self.queue_get(queue).await?;
        let sql = format!(
            "SELECT id, body, attributes, visible_at, in_flight, receive_count, group_id, sent_at, source_queue \
             FROM queue_messages WHERE queue = $1 AND expires_at > $2 ORDER BY seq LIMIT {}",
            limit.max(1)
        );
        let rows = sqlx::query(&sql).bind(queue).bind(now.millis()).fetch_all(&self.reader).await.map_err(db_err)?;
        rows.iter().map(|r| peeked_row(r, now)).collect()
    }

    async fn message_delete(&self, queue: &str, receipts: &[String]) -> Result<Vec<bool>> {
        let parsed = receipts.iter().map(|r| receipt_parts(r)).collect::<Result<Vec<_>>>()?;
        if parsed.is_empty() {
            return Ok(Vec::new());
        }
        let queue = queue.to_owned();
        let to_delete = parsed.clone();
        let dialect = self.dialect;
        let deleted: HashSet<(i64, String)> = self
            .writer
            .write_atomic(&Effects::none(), move |c| {
                Box::pin(async move {
                    let mut sql = format!("DELETE FROM queue_messages WHERE queue = {} AND (", dialect.placeholder(1));
                    for (i, _) in to_delete.iter().enumerate() {
                        if i > 0 {
                            sql.push_str(" OR ");
                        }
                        sql.push_str(&format!(
                            "(seq = {} AND nonce = {})",
                            dialect.placeholder(2 + 2 * i),
                            dialect.placeholder(3 + 2 * i)
                        ));
                    }
                    sql.push_str(") RETURNING seq, nonce");
                    let mut q = sqlx::query(&sql).bind(&queue);
                    for (seq, nonce) in &to_delete {
                        q = q.bind(*seq).bind(nonce.as_str());
                    }
                    let rows = q.fetch_all(&mut *c).await.map_err(db_err)?;
                    Ok(rows.iter().map(|r| (r.get::<i64, _>(0), r.get::<String, _>(1))).collect())
                })
            })
            .await?;
        Ok(parsed.into_iter().map(|p| deleted.contains(&p)).collect())
    }

    async fn message_visibility(&self, queue: &str, receipt: &str, visibility_ms: i64, now: Timestamp) -> Result<()> {
        let (seq, nonce) = receipt_parts(receipt)?;
        let (queue, receipt) = (queue.to_owned(), receipt.to_owned());
        let name = queue.clone();
        self.writer
            .write_atomic(&Effects::none(), move |c| {
                Box::pin(async move {
                    let res = sqlx::query(
                        "UPDATE queue_messages SET visible_at = $1 WHERE seq = $2 AND queue = $3 AND nonce = $4",
                    )
                    .bind(now.millis() + visibility_ms)
                    .bind(seq)
                    .bind(&queue)
                    .bind(&nonce)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                    if res.rows_affected() == 0 {
                        return Err(Error::not_found("receipt", receipt));
                    }
                    if visibility_ms == 0 {
                        notify(c, &queue).await?;
                    }
                    Ok(())
                })
            })
            .await?;
        if visibility_ms == 0 {
            bump(&name);
        }
        Ok(())
    }

    async fn queue_redrive(&self, dlq: &str, now: Timestamp, fx: &Effects) -> Result<u64> {
        let (dlq, dialect) = (dlq.to_owned(), self.dialect);
        let (moved, targets) = self
            .writer
            .write(fx, move |c| {
                Box::pin(async move {
                    load_queue(c, &dlq, dialect.for_share()).await?;
                    let t = now.millis();
                    let rows = sqlx::query(
                        "UPDATE queue_messages SET queue = source_queue, source_queue = NULL, visible_at = $2, \
                         in_flight = 0, nonce = NULL, receive_count = 0 \
                         WHERE queue = $1 AND source_queue IN (SELECT name FROM queues) \
                         AND NOT (in_flight = 1 AND visible_at > $2) RETURNING queue",
                    )
                    .bind(&dlq)
                    .bind(t)
                    .fetch_all(&mut *c)
                    .await
                    .map_err(db_err)?;
                    let targets: HashSet<String> = rows.iter().map(|r| r.get::<String, _>(0)).collect();
                    for target in &targets {
                        notify(c, target).await?;
                    }
                    Ok((rows.len() as u64, targets))
                })
            })
            .await?;
        targets.iter().for_each(|t| bump(t));
        Ok(moved)
    }

    async fn queue_prune(&self, now: Timestamp, limit: u32) -> Result<u64> {
        self.writer
            .write(&Effects::none(), move |c| {
                Box::pin(async move {
                    let sql = format!(
                        "DELETE FROM queue_messages WHERE seq IN \
                         (SELECT seq FROM queue_messages WHERE expires_at <= $1 LIMIT {limit})"
                    );
                    let res = sqlx::query(&sql).bind(now.millis()).execute(&mut *c).await.map_err(db_err)?;
                    let sql = format!(
                        "DELETE FROM queue_dedup WHERE (queue, dedup_id) IN \
                         (SELECT queue, dedup_id FROM queue_dedup WHERE expires_at <= $1 LIMIT {limit})"
                    );
                    sqlx::query(&sql).bind(now.millis()).execute(&mut *c).await.map_err(db_err)?;
                    Ok(res.rows_affected())
                })
            })
            .await
    }

    fn queue_wakeups(&self, queue: &str) -> watch::Receiver<u64> {
        if let Some(url) = &self.listen_url {
            listen_postgres(url);
        }
        subscribe(queue)
    }
}
