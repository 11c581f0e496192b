//! Queues and dead-letter queues: depths, peek (read-only) and redrive.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;
use tenancy_app::Permission as P;

use super::{done, page_of, Fields};
use crate::session::Session;
use crate::view::{self, action_button, badge, json, notice, q, time};
use crate::Console;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    notice: Option<String>,
}

pub async fn list(State(s): State<Arc<Console>>, session: Session, Query(lq): Query<ListQuery>) -> Response {
    let queues = match s.app.queue_list(&session.ctx, &page_of(1000, None)).await {
        Ok(p) => p.items,
        Err(e) => return view::error_page(&e),
    };
    let dlqs: Vec<&str> = queues.iter().filter_map(|q| q.dead_letter_queue.as_deref()).collect();
    let mut rows = Vec::new();
    for queue in &queues {
        match s.app.queue_get(&session.ctx, &queue.name).await {
            Ok(info) => rows.push(info),
            Err(e) => return view::error_page(&e),
        }
    }
    let admin = session.can(P::QueueAdmin);
    let body = html! {
        (notice(lq.notice.as_deref()))
        table #queue-rows {
            tr { th { "queue" } th { "visible" } th { "in flight" } th { "delayed" } th { "dead-lettered" }
                 th { "oldest" } th { "dead-letter queue" } th { "updated" } th {} }
            @for info in &rows {
                @let name = info.queue.name.as_str();
                @let is_dlq = dlqs.contains(&name);
                tr data-queue=(name) class=[is_dlq.then_some("dlq")] {
                    td { a href={"/console/queues/" (q(name))} { (name) } @if is_dlq { " " span.badge.bad { "DLQ" } } }
                    td.num { (info.depth.visible) }
                    td.num { (info.depth.in_flight) }
                    td.num { (info.depth.delayed) }
                    td.num { (info.depth.dead_lettered) }
                    td.num { (info.depth.oldest_age_s) " s" }
                    td { (info.queue.dead_letter_queue.as_deref().unwrap_or("—")) }
                    td { (time(info.queue.updated_at)) }
                    td { @if admin && is_dlq { (action_button(&session, &format!("/console/queues/{}/redrive", q(name)), "Redrive", "")) } }
                }
            }
            @if rows.is_empty() { tr { td colspan="9" .muted { "No queues." } } }
        }
        p.muted { "A dead-letter queue's redrive moves its messages back to the queues they came from. "
                  "A queue's page peeks at its first messages without receiving them." }
    };
    view::page(&session, "Queues", "Queues and dead-letter queues", body)
}

#[derive(Debug, Default, Deserialize)]
pub struct DetailQuery {
    notice: Option<String>,
    /// Messages to peek at (1-100).
    limit: Option<u32>,
}

/// One queue: its settings and depth, and a peek at its first messages (nothing is
/// received: the peek changes no message); a dead-letter queue's redrive for admins.
pub async fn detail(
    State(s): State<Arc<Console>>,
    session: Session,
    Path(name): Path<String>,
    Query(dq): Query<DetailQuery>,
) -> Response {
    let info = match s.app.queue_get(&session.ctx, &name).await {
        Ok(info) => info,
        Err(e) => return view::error_page(&e),
    };
    let limit = dq.limit.unwrap_or(20).clamp(1, tenancy_domain::queue::MAX_PEEK);
    let peeked = s.app.message_peek(&session.ctx, &name, Some(limit)).await;
    // A dead-letter queue: some queue names it (a redrive has somewhere to go).
    let is_dlq = match s.app.queue_list(&session.ctx, &page_of(1000, None)).await {
        Ok(p) => p.items.iter().any(|q| q.dead_letter_queue.as_deref() == Some(name.as_str())),
        Err(e) => return view::error_page(&e),
    };
    let admin = session.can(P::QueueAdmin);
    let d = &info.depth;
    let body = html! {
        (notice(dq.notice.as_deref()))
        p { a href="/console/queues" { "← Queues" } }
        dl.facts {
            dt { "visible" } dd #depth-visible { (d.visible) }
            dt { "in flight" } dd { (d.in_flight) }
            dt { "delayed" } dd { (d.delayed) }
            dt { "dead-lettered" } dd { (d.dead_lettered) }
            dt { "oldest" } dd { (d.oldest_age_s) " s" }
            dt { "visibility timeout" } dd { (info.queue.visibility_timeout_s) " s" }
            dt { "dead-letter queue" } dd { (info.queue.dead_letter_queue.as_deref().unwrap_or("—"))
                @if let Some(n) = info.queue.max_receive_count { " after " (n) " receives" } }
        }
        @if admin && is_dlq {
            form.inline method="post" action={"/console/queues/" (q(&name)) "/redrive"} {
                (view::csrf(&session))
                input type="hidden" name="back" value="detail";
                button type="submit" data-action="Redrive" { "Redrive" }
            }
        }
        h2 { "First messages (peek)" }
        p.muted { "Shown without receiving them: no receive count, visibility or receipt changes." }
        @match &peeked {
            Err(e) => (view::unavailable(e)),
            Ok(messages) => {
                table #peek-rows {
                    tr { th { "id" } th { "state" } th { "receives" } th { "group" } th { "from" } th { "sent" }
                         th { "attributes" } th { "body" } }
                    @for m in messages {
                        tr data-message=(m.id) {
                            td { code { (m.id) } }
                            td { (badge(match m.state {
                                tenancy_domain::queue::MessageState::Visible => "visible",
                                tenancy_domain::queue::MessageState::InFlight => "in flight",
                                tenancy_domain::queue::MessageState::Delayed => "delayed",
                            })) }
                            td.num { (m.receive_count) }
                            td { (m.group_id.as_deref().unwrap_or("—")) }
                            td { (m.source_queue.as_deref().unwrap_or("—")) }
                            td { (time(m.sent_at)) }
                            td { @for (k, v) in &m.attributes { code { (k) "=" (v) } br; } }
                            td { (json(&m.body)) }
                        }
                    }
                    @if messages.is_empty() { tr { td colspan="8" .muted { "No messages." } } }
                }
            }
        }
    };
    view::page(&session, "Queues", &format!("Queue {name}"), body)
}

pub async fn redrive(
    State(s): State<Arc<Console>>,
    session: Session,
    Path(name): Path<String>,
    axum::Form(form): Fields,
) -> Response {
    if let Some(res) = session.csrf_refusal(&form) {
        return res;
    }
    if let Err(e) = session.ctx.authorize(P::QueueAdmin) {
        return view::error_page(&e);
    }
    // Back where the button was: the queue's own page or the list.
    let back = match form.get("back").map(String::as_str) {
        Some("detail") => format!("/console/queues/{}", q(&name)),
        _ => "/console/queues".to_owned(),
    };
    match s.app.queue_redrive(&session.ctx, &name).await {
        Ok(_) => done(&back, "queue-redriven"),
        Err(e) => view::error_page(&e),
    }
}
