//! The audit log: browse, filter, verify.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use tenancy_audit::StoredAudit;
use tenancy_store::AuditFilter;

use super::{page_of, set};
use crate::session::Session;
use crate::view::{self, badge, q, time};
use crate::Console;

/// Audit entries as a table (also the tenant page's audit trail).
pub fn table(items: &[StoredAudit]) -> Markup {
    html! {
        table.audit {
            tr { th { "seq" } th { "time" } th { "actor" } th { "action" } th { "target" } th { "tenant" } th { "request" } th { "detail" } }
            @for a in items {
                @let e = &a.entry;
                tr data-action=(e.action) {
                    td.num { @if let Some(s) = a.seq { (s) } @else { span.muted { "unsealed" } } }
                    td { (time(e.time)) }
                    td { (e.actor_role) @if let Some(k) = &e.actor_key_id { " " span.muted { (k) } } }
                    td { code { (e.action) } }
                    td { (e.target) }
                    td { (e.tenant_id.as_deref().unwrap_or("—")) }
                    td.muted { (e.request_id.as_deref().unwrap_or("—")) }
                    td { @if !e.detail.is_null() && e.detail != serde_json::json!({}) { details { summary { "detail" } (view::json(&e.detail)) } } }
                }
            }
            @if items.is_empty() { tr { td colspan="8" .muted { "No entries." } } }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    tenant: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    cursor: Option<String>,
}

pub async fn list(State(s): State<Arc<Console>>, session: Session, Query(lq): Query<ListQuery>) -> Response {
    let filter =
        AuditFilter { tenant_id: set(&lq.tenant), actor: set(&lq.actor), action: set(&lq.action), after: None };
    let page = match s.app.audit_list(&session.ctx, filter, &page_of(100, set(&lq.cursor))).await {
        Ok(p) => p,
        Err(e) => return view::error_page(&e),
    };
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let body = html! {
        form.filters method="get" action="/console/audit" {
            input type="text" name="tenant" value=(v(&lq.tenant)) placeholder="tenant id";
            input type="text" name="actor" value=(v(&lq.actor)) placeholder="actor key id";
            input type="text" name="action" value=(v(&lq.action)) placeholder="action (tenant.suspend)";
            button type="submit" { "Filter" }
            " " a.button href="/console/audit/verify" { "Verify the chain" }
        }
        (table(&page.items))
        @if let Some(next) = &page.next_cursor {
            p { a href={"/console/audit?tenant=" (q(&v(&lq.tenant))) "&actor=" (q(&v(&lq.actor)))
                "&action=" (q(&v(&lq.action))) "&cursor=" (q(next))} { "Next page" } }
        }
    };
    view::page(&session, "Audit", "Audit log", body)
}

/// Verifies the hash chain and the latest checkpoint (a read, as `GET /v1/audit/verify`).
pub async fn verify(State(s): State<Arc<Console>>, session: Session) -> Response {
    let v = match s.app.audit_verify(&session.ctx).await {
        Ok(v) => v,
        Err(e) => return view::error_page(&e),
    };
    let body = html! {
        p #verify-result { (badge(if v.ok { "success" } else { "failed" })) " "
            @if v.ok { "The audit chain verifies." } @else { "The audit chain does not verify." } }
        dl.facts {
            dt { "Sealed records" } dd { (v.records) }
            dt { "Pending" } dd { (v.pending) }
            dt { "Head" } dd { code { (v.head.as_deref().unwrap_or("—")) } }
            @if let Some(c) = &v.checkpoint {
                dt { "Checkpoint" } dd { (c.tree_size) " records, root " code { (c.root) } ", " (time(c.time)) " " (badge(if c.ok { "success" } else { "failed" })) }
            }
            @if let Some(r) = &v.reason { dt { "Reason" } dd.error { (r) } }
        }
        p { a href="/console/audit" { "Back to the audit log" } }
    };
    view::page(&session, "Audit", "Audit verification", body)
}
