//! Queues and dead-letter queues: depths and redrive.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;
use tenancy_app::Permission as P;

use super::{done, page_of, Fields};
use crate::session::Session;
use crate::view::{self, action_button, notice, q, time};
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
                    td { (name) @if is_dlq { " " span.badge.bad { "DLQ" } } }
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
        p.muted { "A dead-letter queue's redrive moves its messages back to the queues they came from." }
    };
    view::page(&session, "Queues", "Queues and dead-letter queues", body)
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
    match s.app.queue_redrive(&session.ctx, &name).await {
        Ok(_) => done("/console/queues", "queue-redriven"),
        Err(e) => view::error_page(&e),
    }
}
