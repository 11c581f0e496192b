//! Queue operations (the SQS role) and the retention sweeper.
//!
//! Receives long-poll: when nothing is visible they wait (up to `wait_s`, at most 20 s)
//! for a wake-up of the queue (a send, a redrive, a visibility change: in-process, and
//! on PostgreSQL from any replica through LISTEN/NOTIFY) or for the moment the next
//! delayed or in-flight message becomes visible, whichever comes first. They never
//! poll in a loop.

use std::time::Duration;

use serde_json::json;
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::queue::{
    self, Message, PeekedMessage, Queue, QueueInfo, QueueSpec, SendMessage, Sent, MAX_BATCH, MAX_PEEK,
    MAX_VISIBILITY_TIMEOUT_S, MAX_WAIT_S, TRACEPARENT_ATTRIBUTE,
};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_store::Effects;
use tokio::time::Instant;

use crate::context::Permission as P;
use crate::{App, OpContext};

pub use tenancy_domain::api::{
    DeleteBatch, DeletedBatch, PeekedMessages, ReceiveRequest, ReceivedMessages, Redriven, SendBatch, SentBatch,
    VisibilityChange,
};

/// A `queue.message` span per received message carrying a `traceparent` attribute:
/// a child of the span that sent it (so the sender's trace shows the message taken),
/// linked to the receive request's span (docs/operations.md "Traces").
fn received_span(queue: &str, m: &Message) {
    let Some(tp) = m.attributes.get(TRACEPARENT_ATTRIBUTE) else { return };
    let span = tracing::info_span!(parent: None, "queue.message", queue = %queue, message_id = %m.id,
        receive_count = m.receive_count);
    tenancy_trace::continue_from(&span, tp);
    tenancy_trace::link_to_current(&span);
}

fn batch_size(n: usize, what: &str) -> Result<()> {
    if n == 0 || n > MAX_BATCH {
        return Err(Error::InvalidRequest {
            code: ErrorCode::InvalidBatch,
            message: format!("{what} must hold 1 to {MAX_BATCH} items, got {n}"),
        });
    }
    Ok(())
}

impl App {
    pub async fn queue_put(&self, ctx: &OpContext, name: &str, spec: QueueSpec) -> Result<(Queue, bool)> {
        ctx.authorize(P::QueueAdmin)?;
        let q = spec.into_queue(name, Timestamp::now())?;
        let audit = ctx.audit(
            "queue.put",
            format!("queue/{name}"),
            None,
            json!({"visibility_timeout_s": q.visibility_timeout_s, "max_receive_count": q.max_receive_count,
                   "dead_letter_queue": q.dead_letter_queue, "delay_s": q.delay_s, "retention_s": q.retention_s}),
        );
        self.store().queues().queue_put(&q, &Effects::none().with_audit(audit)).await
    }

    pub async fn queue_get(&self, ctx: &OpContext, name: &str) -> Result<QueueInfo> {
        ctx.authorize(P::QueueRead)?;
        let queues = self.store().queues();
        let queue = queues.queue_get(name).await?;
        let depth = queues.queue_depth(name, Timestamp::now()).await?;
        Ok(QueueInfo { queue, depth })
    }

    pub async fn queue_list(&self, ctx: &OpContext, page: &PageRequest) -> Result<Page<Queue>> {
        ctx.authorize(P::QueueRead)?;
        self.store().queues().queue_list(page).await
    }

    pub async fn queue_delete(&self, ctx: &OpContext, name: &str) -> Result<()> {
        ctx.authorize(P::QueueAdmin)?;
        let audit = ctx.audit("queue.delete", format!("queue/{name}"), None, json!({}));
        self.store().queues().queue_delete(name, &Effects::none().with_audit(audit)).await
    }

    /// Moves a dead-letter queue's messages back to their source queues.
    pub async fn queue_redrive(&self, ctx: &OpContext, name: &str) -> Result<Redriven> {
        ctx.authorize(P::QueueAdmin)?;
        let now = Timestamp::now();
        // The count is known only after the move; the audit entry records the request.
        let audit = ctx.audit("queue.redrive", format!("queue/{name}"), None, json!({"time": now}));
        let moved = self.store().queues().queue_redrive(name, now, &Effects::none().with_audit(audit)).await?;
        Ok(Redriven { moved })
    }

    pub async fn message_send(&self, ctx: &OpContext, queue: &str, m: SendMessage) -> Result<Sent> {
        let mut sent = self.message_send_batch(ctx, queue, vec![m]).await?;
        Ok(sent.remove(0))
    }

    pub async fn message_send_batch(
        &self,
        ctx: &OpContext,
        queue: &str,
        entries: Vec<SendMessage>,
    ) -> Result<Vec<Sent>> {
        ctx.authorize(P::QueueUse)?;
        batch_size(entries.len(), "entries")?;
        let messages = entries
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                m.into_new().map(|m| m.with_traceparent(tenancy_trace::traceparent())).map_err(|e| match e {
                    Error::InvalidRequest { code, message }
                        if matches!(code, ErrorCode::InvalidRequest | ErrorCode::InvalidMessageAttributes) =>
                    {
                        Error::InvalidRequest { code, message: format!("entries[{i}]: {message}") }
                    }
                    e => e,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.store().queues().message_send(queue, &messages, Timestamp::now()).await
    }

    /// Receives up to `max` messages, waiting up to `wait_s` for one to arrive.
    pub async fn message_receive(&self, ctx: &OpContext, queue: &str, req: ReceiveRequest) -> Result<Vec<Message>> {
        ctx.authorize(P::QueueUse)?;
        let max = req.max.unwrap_or(1);
        if max == 0 || max as usize > MAX_BATCH {
            return Err(Error::invalid(format!("max must be between 1 and {MAX_BATCH}, got {max}")));
        }
        let wait_s = req.wait_s.unwrap_or(0);
        if wait_s > MAX_WAIT_S {
            return Err(Error::invalid(format!("wait_s must be between 0 and {MAX_WAIT_S}, got {wait_s}")));
        }
        let queues = self.store().queues();
        let deadline = Instant::now() + Duration::from_secs(wait_s);
        // Subscribed before the first look, so a send between the look and the wait
        // still wakes this receive.
        let mut wake = queues.queue_wakeups(queue);
        wake.borrow_and_update();
        loop {
            let now = Timestamp::now();
            let r = queues.message_receive(queue, max, now).await?;
            if !r.messages.is_empty() || Instant::now() >= deadline {
                r.messages.iter().for_each(|m| received_span(queue, m));
                return Ok(r.messages);
            }
            if r.dead_lettered > 0 {
                continue;
            }
            let mut until = deadline;
            if let Some(next) = r.next_visible_at {
                let ms = (next.millis() - Timestamp::now().millis()).max(0) as u64;
                until = until.min(Instant::now() + Duration::from_millis(ms));
            }
            tokio::select! {
                changed = wake.changed() => {
                    if changed.is_err() {
                        return Ok(Vec::new());
                    }
                }
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    /// The first `limit` messages (1-100, default 10) in send order, whatever their
    /// state, without receiving them (read-only: for operators looking into a queue or
    /// a dead-letter queue).
    pub async fn message_peek(&self, ctx: &OpContext, queue: &str, limit: Option<u32>) -> Result<Vec<PeekedMessage>> {
        ctx.authorize(P::QueueRead)?;
        let limit = limit.unwrap_or(10);
        if limit == 0 || limit > MAX_PEEK {
            return Err(Error::invalid(format!("limit must be between 1 and {MAX_PEEK}, got {limit}")));
        }
        self.store().queues().message_peek(queue, limit, Timestamp::now()).await
    }

    /// Deletes messages by receipt.
    pub async fn message_delete_batch(
        &self,
        ctx: &OpContext,
        queue: &str,
        receipts: Vec<String>,
    ) -> Result<DeletedBatch> {
        ctx.authorize(P::QueueUse)?;
        batch_size(receipts.len(), "receipts")?;
        let found = self.store().queues().message_delete(queue, &receipts).await?;
        let mut out = DeletedBatch { deleted: Vec::new(), not_found: Vec::new() };
        for (r, ok) in receipts.into_iter().zip(found) {
            if ok {
                out.deleted.push(r);
            } else {
                out.not_found.push(r);
            }
        }
        Ok(out)
    }

    /// Deletes one message; `NotFound` when the receipt names none (stale or deleted).
    pub async fn message_delete(&self, ctx: &OpContext, queue: &str, receipt: &str) -> Result<()> {
        let out = self.message_delete_batch(ctx, queue, vec![receipt.to_owned()]).await?;
        if out.deleted.is_empty() {
            self.store().queues().queue_get(queue).await?;
            return Err(Error::not_found("receipt", receipt));
        }
        Ok(())
    }

    pub async fn message_visibility(
        &self,
        ctx: &OpContext,
        queue: &str,
        receipt: &str,
        change: VisibilityChange,
    ) -> Result<()> {
        ctx.authorize(P::QueueUse)?;
        if change.visibility_timeout_s > MAX_VISIBILITY_TIMEOUT_S {
            return Err(Error::invalid(format!(
                "visibility_timeout_s must be between 0 and {MAX_VISIBILITY_TIMEOUT_S}, got {}",
                change.visibility_timeout_s
            )));
        }
        let ms = change.visibility_timeout_s as i64 * 1000;
        self.store().queues().message_visibility(queue, receipt, ms, Timestamp::now()).await
    }

    /// Checks that a queue exists (for the targets that name one).
    pub async fn queue_must_exist(&self, name: &str) -> Result<()> {
        queue::validate_name(name)?;
        match self.store().queues().queue_get(name).await {
            Ok(_) => Ok(()),
            Err(Error::NotFound { .. }) => Err(Error::InvalidRequest {
                code: ErrorCode::UnknownQueue,
                message: format!("queue {name:?} does not exist"),
            }),
            Err(e) => Err(e),
        }
    }
}
