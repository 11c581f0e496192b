//! Subscriptions: deliveries, failures, retry, replay.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;
use tenancy_app::Permission as P;
use tenancy_domain::subscription::{DeliveryStatus, Target};
use tenancy_domain::time::Timestamp;

use super::{done, page_of, set, Fields};
use crate::session::Session;
use crate::view::{self, action_button, badge, csrf, notice, q, time};
use crate::Console;

pub async fn list(State(s): State<Arc<Console>>, session: Session) -> Response {
    let subs = match s.app.subscription_list(&session.ctx, &page_of(1000, None)).await {
        Ok(p) => p.items,
        Err(e) => return view::error_page(&e),
    };
    let body = html! {
        table #subscription-rows {
            tr { th { "name" } th { "target" } th { "pattern" } th { "updated" } }
            @for sub in &subs {
                tr {
                    td { a href={"/console/subscriptions/" (q(&sub.id))} { (sub.name) } }
                    td { (target(&sub.target)) }
                    td { code { (sub.pattern.to_string()) } }
                    td { (time(sub.updated_at)) }
                }
            }
            @if subs.is_empty() { tr { td colspan="4" .muted { "No subscriptions." } } }
        }
    };
    view::page(&session, "Subscriptions", "Subscriptions", body)
}

fn target(t: &Target) -> String {
    match serde_json::to_value(t) {
        Ok(serde_json::Value::Object(m)) => m
            .get("url")
            .or_else(|| m.get("queue"))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| serde_json::Value::Object(m).to_string()),
        Ok(v) => v.to_string(),
        Err(_) => String::new(),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct DetailQuery {
    status: Option<String>,
    notice: Option<String>,
}

pub async fn detail(
    State(s): State<Arc<Console>>,
    session: Session,
    Path(id): Path<String>,
    Query(dq): Query<DetailQuery>,
) -> Response {
    let sub = match s.app.subscription_get(&session.ctx, &id).await {
        Ok(x) => x,
        Err(e) => return view::error_page(&e),
    };
    let status = match set(&dq.status).as_deref() {
        Some("pending") => Some(DeliveryStatus::Pending),
        Some("delivered") => Some(DeliveryStatus::Delivered),
        Some("dead") => Some(DeliveryStatus::Dead),
        _ => None,
    };
    let deliveries = match s.app.delivery_list(&session.ctx, &id, status, &page_of(200, None)).await {
        Ok(p) => p.items,
        Err(e) => return view::error_page(&e),
    };
    let base = format!("/console/subscriptions/{}", q(&id));
    let write = session.can(P::SubscriptionWrite);
    let body = html! {
        (notice(dq.notice.as_deref()))
        dl.facts {
            dt { "Target" } dd { (target(&sub.target)) }
            dt { "Pattern" } dd { code { (sub.pattern.to_string()) } }
        }
        p.tabs {
            a href=(base) { "all" }
            @for st in ["pending", "delivered", "dead"] { a href={(base) "?status=" (st)} { (st) } }
        }
        @if write {
            form.filters method="post" action={(base) "/replay"} {
                (csrf(&session))
                label { "Replay events from " input type="text" name="from" placeholder="2025-01-01T00:00:00Z" required; }
                label { " to " input type="text" name="to" placeholder="2025-01-02T00:00:00Z" required; }
                button type="submit" { "Replay" }
            }
        }
        table #delivery-rows {
            tr { th { "delivery" } th { "event" } th { "status" } th { "attempts" } th { "last error" } th { "updated" } th {} }
            @for d in &deliveries {
                tr {
                    td { (d.id) } td { (d.event_id) } td { (badge(d.status.as_str())) } td.num { (d.attempts) }
                    td { (d.last_error.as_deref().unwrap_or("")) } td { (time(d.updated_at)) }
                    td { @if write && d.status == DeliveryStatus::Dead {
                        (action_button(&session, &format!("{base}/deliveries/{}/retry", q(&d.id)), "Retry", "")) } }
                }
            }
            @if deliveries.is_empty() { tr { td colspan="7" .muted { "No deliveries." } } }
        }
    };
    view::page(&session, "Subscriptions", &format!("Subscription {}", sub.name), body)
}

pub async fn retry(
    State(s): State<Arc<Console>>,
    session: Session,
    Path((id, delivery)): Path<(String, String)>,
    axum::Form(form): Fields,
) -> Response {
    if let Some(res) = session.csrf_refusal(&form) {
        return res;
    }
    if let Err(e) = session.ctx.authorize(P::SubscriptionWrite) {
        return view::error_page(&e);
    }
    match s.app.delivery_retry(&session.ctx, &id, &delivery).await {
        Ok(_) => done(&format!("/console/subscriptions/{}", q(&id)), "retry"),
        Err(e) => view::error_page(&e),
    }
}

pub async fn replay(
    State(s): State<Arc<Console>>,
    session: Session,
    Path(id): Path<String>,
    axum::Form(form): Fields,
) -> Response {
    if let Some(res) = session.csrf_refusal(&form) {
        return res;
    }
    if let Err(e) = session.ctx.authorize(P::SubscriptionWrite) {
        return view::error_page(&e);
    }
    let at = |name: &str| form.get(name).and_then(|v| Timestamp::parse_rfc3339(v.trim()));
    let (Some(from), Some(to)) = (at("from"), at("to")) else {
        return view::error_page(&tenancy_domain::Error::invalid("from and to must be RFC 3339 times"));
    };
    match s.app.subscription_replay(&session.ctx, &id, from, to).await {
        Ok(_) => done(&format!("/console/subscriptions/{}", q(&id)), "replayed"),
        Err(e) => view::error_page(&e),
    }
}
