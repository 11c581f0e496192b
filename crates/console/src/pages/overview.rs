//! The overview: what needs an operator's attention.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use maud::{html, Markup};
use tenancy_app::ExecutionQuery;
use tenancy_domain::subscription::DeliveryStatus;
use tenancy_domain::tenant::{TenantFilter, TenantStatus};

use super::page_of;
use crate::session::Session;
use crate::view::{self, badge, q, time, unavailable};
use crate::Console;

/// Tenants counted per status up to this many (more shows as "1000+").
const COUNT_CAP: u32 = 1000;
/// Tenants whose quotas are looked at for hot spots.
const HOT_SPOT_TENANTS: u32 = 50;

pub async fn page(State(s): State<Arc<Console>>, session: Session) -> Response {
    let body = html! {
        div.grid {
            section #tenants-by-status { h2 { "Tenants by status" } (tenants_by_status(&s, &session).await) }
            section #rollouts { h2 { "Running rollouts" } (rollouts(&s, &session).await) }
            section #failed-executions { h2 { "Failed executions" } (executions(&s, &session, "FAILED", false).await) }
            section #stuck-executions { h2 { "Stuck executions" } (executions(&s, &session, "RUNNING", true).await) }
            section #dlq { h2 { "Dead-letter queues" } (dead_letters(&s, &session).await) }
            section #webhooks { h2 { "Webhook failures" } (webhooks(&s, &session).await) }
            section #quota-hot-spots { h2 { "Quota hot spots" } (hot_spots(&s, &session).await) }
            section #drift { h2 { "Drift" } (drift(&s, &session).await) }
        }
    };
    view::page(&session, "Overview", "Overview", body)
}

async fn tenants_by_status(s: &Console, session: &Session) -> Markup {
    let mut rows = Vec::new();
    for status in TenantStatus::ALL {
        let filter = TenantFilter { status: Some(status), ..Default::default() };
        match s.app.tenant_list(&session.ctx, &filter, &page_of(COUNT_CAP, None)).await {
            Ok(p) => {
                let n = p.items.len();
                let more = p.next_cursor.is_some();
                rows.push((status.as_str(), if more { format!("{n}+") } else { n.to_string() }));
            }
            Err(e) => return unavailable(&e),
        }
    }
    html! {
        table.compact {
            @for (status, n) in rows {
                tr { td { a href={"/console/tenants?status=" (status)} { (badge(status)) } } td.num data-status=(status) { (n) } }
            }
        }
    }
}

async fn executions(s: &Console, session: &Session, status: &str, stuck: bool) -> Markup {
    let query = ExecutionQuery { status: Some(status.to_owned()), stuck, ..Default::default() };
    match s.app.execution_list(&session.ctx, query, &page_of(10, None)).await {
        Ok(p) if p.items.is_empty() => html! { p.muted { "None." } },
        Ok(p) => html! {
            table {
                tr { th { "execution" } th { "state machine" } th { "tenant" } th { "updated" } }
                @for e in &p.items {
                    tr {
                        td { a href={"/console/executions/" (q(&e.id))} { (e.id) } }
                        td { (e.state_machine) }
                        td { (e.tenant_id.as_deref().unwrap_or("—")) }
                        td { (time(e.updated_at)) }
                    }
                }
            }
            p { a href={"/console/executions?status=" (status) @if stuck { "&stuck=true" }} { "All" } }
        },
        Err(e) => unavailable(&e),
    }
}

async fn dead_letters(s: &Console, session: &Session) -> Markup {
    let queues = match s.app.queue_list(&session.ctx, &page_of(1000, None)).await {
        Ok(p) => p.items,
        Err(e) => return unavailable(&e),
    };
    let mut dlqs: Vec<String> = queues.iter().filter_map(|q| q.dead_letter_queue.clone()).collect();
    dlqs.sort();
    dlqs.dedup();
    let mut rows = Vec::new();
    for name in dlqs {
        if let Ok(info) = s.app.queue_get(&session.ctx, &name).await {
            rows.push((name, info.depth.visible + info.depth.in_flight + info.depth.delayed));
        }
    }
    if rows.is_empty() {
        return html! { p.muted { "No dead-letter queues." } };
    }
    html! {
        table.compact {
            tr { th { "queue" } th { "messages" } }
            @for (name, depth) in rows {
                tr { td { a href="/console/queues" { (name) } } td.num { (depth) } }
            }
        }
    }
}

async fn webhooks(s: &Console, session: &Session) -> Markup {
    let subs = match s.app.subscription_list(&session.ctx, &page_of(50, None)).await {
        Ok(p) => p.items,
        Err(e) => return unavailable(&e),
    };
    if subs.is_empty() {
        return html! { p.muted { "No subscriptions." } };
    }
    let mut rows = Vec::new();
    for sub in subs {
        let total = s.app.delivery_list(&session.ctx, &sub.id, None, &page_of(1000, None)).await;
        let dead = s.app.delivery_list(&session.ctx, &sub.id, Some(DeliveryStatus::Dead), &page_of(1000, None)).await;
        if let (Ok(total), Ok(dead)) = (total, dead) {
            rows.push((sub, dead.items.len(), total.items.len()));
        }
    }
    rows.sort_by(|a, b| (b.1 * a.2.max(1)).cmp(&(a.1 * b.2.max(1))));
    html! {
        table.compact {
            tr { th { "subscription" } th { "dead / recent deliveries" } }
            @for (sub, dead, total) in rows {
                tr {
                    td { a href={"/console/subscriptions/" (q(&sub.id))} { (sub.name) } }
                    td.num { (dead) " / " (total) @if total > 0 { " (" (dead * 100 / total) "%)" } }
                }
            }
        }
    }
}

async fn hot_spots(s: &Console, session: &Session) -> Markup {
    let filter = TenantFilter { status: Some(TenantStatus::Active), ..Default::default() };
    let tenants = match s.app.tenant_list(&session.ctx, &filter, &page_of(HOT_SPOT_TENANTS, None)).await {
        Ok(p) => p.items,
        Err(e) => return unavailable(&e),
    };
    let mut hot = Vec::new();
    for t in tenants {
        let Ok(quotas) = s.app.quota_list(&session.ctx, &t.id).await else { continue };
        for u in quotas {
            if u.limit > 0 && u.used * 10 >= u.limit * 8 {
                hot.push((t.id.clone(), u));
            }
        }
    }
    if hot.is_empty() {
        return html! { p.muted { "No quota at 80% or more." } };
    }
    hot.sort_by(|a, b| (b.1.used * a.1.limit).cmp(&(a.1.used * b.1.limit)));
    html! {
        table.compact {
            tr { th { "tenant" } th { "quota" } th { "usage" } }
            @for (tenant, u) in hot.iter().take(20) {
                tr {
                    td { a href={"/console/tenants/" (q(tenant))} { (tenant) } }
                    td { (u.name) }
                    td { (view::usage(u.used, u.limit)) }
                }
            }
        }
    }
}

async fn drift(s: &Console, session: &Session) -> Markup {
    match s.app.reconciliation_last(&session.ctx).await {
        Ok(None) => html! { p.muted { "No reconciliation pass yet." } },
        Ok(Some(r)) => {
            let open: Vec<_> = r.drift.iter().filter(|d| !d.repaired).collect();
            html! {
                p { "Last pass " (time(r.finished_at)) " on " (r.node) ": " (r.tenants_checked) " tenants checked, "
                    (open.len()) " unrepaired drift." }
                @if !open.is_empty() {
                    table.compact {
                        tr { th { "tenant" } th { "resource" } th { "problem" } }
                        @for d in open.iter().take(20) {
                            tr { td { (d.tenant_id.as_deref().unwrap_or("—")) } td { (d.resource) } td { (d.problem) } }
                        }
                    }
                }
            }
        }
        Err(e) => unavailable(&e),
    }
}

async fn rollouts(s: &Console, session: &Session) -> Markup {
    match s.app.rollout_list(&session.ctx).await {
        Ok(list) => {
            let running: Vec<_> = list.iter().filter(|r| r.status == "running" || r.status == "paused").collect();
            if running.is_empty() {
                return html! { p.muted { "None running." } };
            }
            html! {
                table.compact {
                    tr { th { "rollout" } th { "target" } th { "status" } th { "wave" } }
                    @for r in running {
                        tr {
                            td { a href={"/console/rollouts/" (q(&r.id))} { (r.id) } }
                            td { (super::rollouts::target(r)) }
                            td { (badge(&r.status)) }
                            td { (r.waves.get(r.current_wave).map(|w| w.name.as_str()).unwrap_or("—")) }
                        }
                    }
                }
            }
        }
        Err(e) => unavailable(&e),
    }
}
