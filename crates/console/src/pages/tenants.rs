//! Tenants: the filtered list, one tenant's detail, its lifecycle actions.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde::Deserialize;
use tenancy_app::{ExecutionQuery, Permission as P};
use tenancy_domain::tenant::{TenantFilter, TenantStatus};
use tenancy_store::{AuditFilter, EventFilter};

use super::{done, page_of, set, Fields};
use crate::session::Session;
use crate::view::{self, action_button, badge, csrf, notice, q, time, unavailable};
use crate::Console;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    plan: Option<String>,
    status: Option<String>,
    region: Option<String>,
    version: Option<String>,
    /// Search by id or name (a substring, any case), within the filtered page.
    q: Option<String>,
    cursor: Option<String>,
}

/// Tenants listed per page (the search looks within it).
const PAGE: u32 = 500;

pub async fn list(State(s): State<Arc<Console>>, session: Session, Query(lq): Query<ListQuery>) -> Response {
    let status = match set(&lq.status).map(|st| serde_json::from_value::<TenantStatus>(serde_json::Value::String(st))) {
        None => None,
        Some(Ok(st)) => Some(st),
        Some(Err(_)) => {
            return view::error_page(&tenancy_domain::Error::invalid("unknown tenant status"));
        }
    };
    let filter = TenantFilter { plan: set(&lq.plan), status, region: set(&lq.region), release: set(&lq.version) };
    let page = match s.app.tenant_list(&session.ctx, &filter, &page_of(PAGE, set(&lq.cursor))).await {
        Ok(p) => p,
        Err(e) => return view::error_page(&e),
    };
    let needle = set(&lq.q).map(|n| n.to_lowercase());
    let items: Vec<_> = page
        .items
        .iter()
        .filter(|t| {
            needle.as_ref().is_none_or(|n| t.id.to_lowercase().contains(n) || t.name.to_lowercase().contains(n))
        })
        .collect();
    let plans = s.app.plan_list(&session.ctx, &page_of(1000, None)).await.map(|p| p.items).unwrap_or_default();
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let body = html! {
        form #tenant-filter.filters method="get" action="/console/tenants" {
            input #search type="search" name="q" value=(v(&lq.q)) placeholder="id or name"
                hx-get="/console/tenants" hx-trigger="input changed delay:300ms" hx-target="#tenant-rows"
                hx-select="#tenant-rows" hx-swap="outerHTML" hx-include="#tenant-filter";
            select name="plan" {
                option value="" { "any plan" }
                @for p in &plans { option value=(p.id) selected[lq.plan.as_deref() == Some(&p.id)] { (p.id) } }
            }
            select name="status" {
                option value="" { "any status" }
                @for st in TenantStatus::ALL {
                    option value=(st.as_str()) selected[lq.status.as_deref() == Some(st.as_str())] { (st.as_str()) }
                }
            }
            input type="text" name="region" value=(v(&lq.region)) placeholder="region";
            input type="text" name="version" value=(v(&lq.version)) placeholder="release";
            button type="submit" { "Filter" }
        }
        table #tenant-rows {
            tr { th { "id" } th { "name" } th { "plan" } th { "region" } th { "release" } th { "status" } th { "updated" } }
            @for t in &items {
                tr data-tenant=(t.id) {
                    td { a href={"/console/tenants/" (q(&t.id))} { (t.id) } }
                    td { (t.name) }
                    td { (t.plan) }
                    td { (t.region) }
                    td { (t.release.as_deref().unwrap_or("—")) }
                    td { (badge(t.status.as_str())) }
                    td { (time(t.updated_at)) }
                }
            }
            @if items.is_empty() { tr { td colspan="7" .muted { "No tenant matches." } } }
        }
        @if let Some(next) = &page.next_cursor {
            p { a href={"/console/tenants?plan=" (q(&v(&lq.plan))) "&status=" (q(&v(&lq.status))) "&region=" (q(&v(&lq.region)))
                "&version=" (q(&v(&lq.version))) "&q=" (q(&v(&lq.q))) "&cursor=" (q(next))} { "Next page" } }
        }
    };
    view::page(&session, "Tenants", "Tenants", body)
}

#[derive(Debug, Default, Deserialize)]
pub struct DetailQuery {
    notice: Option<String>,
}

pub async fn detail(
    State(s): State<Arc<Console>>,
    session: Session,
    Path(id): Path<String>,
    Query(dq): Query<DetailQuery>,
) -> Response {
    let ctx = &session.ctx;
    let t = match s.app.tenant_get(ctx, &id).await {
        Ok(t) => t,
        Err(e) => return view::error_page(&e),
    };
    let resources = s.app.tenant_resources(ctx, &id).await;
    let entitlements = s.app.entitlements_get(ctx, &id).await;
    let quotas = s.app.quota_list(ctx, &id).await;
    let executions = s
        .app
        .execution_list(ctx, ExecutionQuery { tenant_id: Some(id.clone()), ..Default::default() }, &page_of(20, None))
        .await;
    let events = s
        .app
        .event_list(ctx, EventFilter { tenant_id: Some(id.clone()), ..Default::default() }, &page_of(50, None))
        .await;
    let secrets = s.app.secret_list(ctx, Some(&id), &page_of(100, None)).await;
    let audit = s
        .app
        .audit_list(ctx, AuditFilter { tenant_id: Some(id.clone()), ..Default::default() }, &page_of(50, None))
        .await;
    let plans = s.app.plan_list(ctx, &page_of(1000, None)).await.map(|p| p.items).unwrap_or_default();
    let base = format!("/console/tenants/{}", q(&id));
    let admin = session.can(P::TenantAdmin);
    let body = html! {
        (notice(dq.notice.as_deref()))
        dl.facts #tenant-facts {
            dt { "Name" } dd #tenant-name { (t.name) }
            dt { "Status" } dd #tenant-status { (badge(t.status.as_str())) }
            dt { "Plan" } dd { (t.plan) }
            dt { "Region" } dd { (t.region) }
            dt { "Release" } dd { (t.release.as_deref().unwrap_or("—")) @if t.pinned.is_some() { " (pinned)" } }
            dt { "Created" } dd { (time(t.created_at)) }
            dt { "Updated" } dd { (time(t.updated_at)) " (version " (t.version) ")" }
        }
        @if admin || session.can(P::PlanChange) {
            section #actions.actions {
                h2 { "Actions" }
                @if admin && t.status == TenantStatus::Active { (action_button(&session, &format!("{base}/suspend"), "Suspend", "warn")) }
                @if admin && t.status == TenantStatus::Suspended { (action_button(&session, &format!("{base}/resume"), "Resume", "")) }
                @if admin && t.status == TenantStatus::Failed { (action_button(&session, &format!("{base}/retry"), "Retry provisioning", "")) }
                @if t.status == TenantStatus::Active && session.can(P::PlanChange) {
                    form.inline method="post" action={(base) "/plan"} {
                        (csrf(&session))
                        select name="plan" {
                            @for p in &plans { option value=(p.id) selected[p.id == t.plan] { (p.id) } }
                        }
                        button type="submit" data-action="Change plan" { "Change plan" }
                    }
                }
                @if admin && matches!(t.status, TenantStatus::Active | TenantStatus::Suspended | TenantStatus::Failed) {
                    form.inline method="post" action={(base) "/offboard"} {
                        (csrf(&session))
                        input type="text" name="confirm" required placeholder="type the tenant id to offboard";
                        button.danger type="submit" data-action="Offboard" { "Offboard" }
                    }
                }
            }
        }
        section #usage {
            h2 { "Entitlements and usage" }
            @match &quotas {
                Ok(list) if list.is_empty() => p.muted { "No quotas." },
                Ok(list) => table.compact {
                    tr { th { "quota" } th { "usage" } th { "period" } }
                    @for u in list {
                        tr { td { (u.name) @if u.soft { " (soft)" } } td { (view::usage(u.used, u.limit)) }
                             td { (u.period.map(|p| format!("{p:?}").to_lowercase()).unwrap_or_else(|| "—".into())) } }
                    }
                },
                Err(e) => (unavailable(e)),
            }
            @match &entitlements {
                Ok(e) => {
                    p { "Features: "
                        @for (f, on) in &e.features { span class={"badge " (if *on { "ok" } else { "muted" })} { (f) } " " }
                        @if e.features.is_empty() { "none" }
                    }
                    @if !e.config.is_empty() { details { summary { "Configuration" } (view::json(&serde_json::to_value(&e.config).unwrap_or_default())) } }
                }
                Err(e) => (unavailable(e)),
            }
        }
        section #resources {
            h2 { "Resources" }
            @match &resources {
                Ok(r) if r.items.is_empty() => p.muted { "None." },
                Ok(r) => table { @for item in &r.items { tr { td { (view::json(&serde_json::to_value(item).unwrap_or_default())) } } } },
                Err(e) => (unavailable(e)),
            }
        }
        section #executions {
            h2 { "Executions" }
            @match &executions {
                Ok(p) => table {
                    tr { th { "execution" } th { "state machine" } th { "status" } th { "started" } }
                    @for e in &p.items {
                        tr { td { a href={"/console/executions/" (q(&e.id))} { (e.id) } } td { (e.state_machine) }
                             td { (badge(&e.status)) } td { (time(e.started_at)) } }
                    }
                },
                Err(e) => (unavailable(e)),
            }
        }
        section #secrets {
            h2 { "Secrets (metadata)" }
            @match &secrets {
                Ok(p) if p.items.is_empty() => p.muted { "None." },
                Ok(p) => table {
                    tr { th { "name" } th { "version" } th { "updated" } th { "next rotation" } }
                    @for m in &p.items {
                        tr { td { (m.name) } td.num { (m.current_version) } td { (time(m.updated_at)) } td { (view::opt_time(m.next_rotation_at)) } }
                    }
                },
                Err(e) => (unavailable(e)),
            }
        }
        section #events {
            h2 { "Events" }
            @match &events {
                Ok(p) => table {
                    tr { th { "time" } th { "type" } th { "detail" } }
                    @for e in &p.items {
                        tr { td { (time(e.event.time)) } td { (e.event.detail_type) }
                             td { details { summary { "detail" } (view::json(&e.event.detail)) } } }
                    }
                },
                Err(e) => (unavailable(e)),
            }
        }
        section #audit {
            h2 { "Audit trail" }
            @match &audit {
                Ok(p) => (super::audit::table(&p.items)),
                Err(e) => (unavailable(e)),
            }
        }
    };
    view::page(&session, "Tenants", &format!("Tenant {}", t.id), body)
}

/// `POST /console/tenants/{id}/{action}`: the API's lifecycle operations.
pub async fn act(
    State(s): State<Arc<Console>>,
    session: Session,
    Path((id, action)): Path<(String, String)>,
    axum::Form(form): Fields,
) -> Response {
    if let Some(res) = session.csrf_refusal(&form) {
        return res;
    }
    let ctx = &session.ctx;
    // The permission of the API route each action stands for (access.rs), then the app's own checks.
    let perm = if action == "plan" { P::PlanChange } else { P::TenantAdmin };
    if let Err(e) = ctx.authorize_tenant(perm, &id) {
        return view::error_page(&e);
    }
    let result = match action.as_str() {
        "suspend" => s.app.tenant_suspend(ctx, &id, None).await.map(|_| "suspended"),
        "resume" => s.app.tenant_resume(ctx, &id, None).await.map(|_| "resumed"),
        "retry" => s.app.tenant_retry(ctx, &id, None).await.map(|_| "retried"),
        "plan" => {
            let plan = form.get("plan").map(String::as_str).unwrap_or_default();
            s.app.tenant_change_plan(ctx, &id, plan, false, None).await.map(|_| "plan")
        }
        "offboard" => {
            if form.get("confirm").map(|c| c.trim()) != Some(id.as_str()) {
                return view::message_page(
                    StatusCode::BAD_REQUEST,
                    "Not offboarded",
                    "Type the tenant's id to confirm the offboarding.",
                );
            }
            s.app.tenant_offboard(ctx, &id, None).await.map(|_| "offboarded")
        }
        _ => return view::message_page(StatusCode::NOT_FOUND, "Not found", "There is no such action."),
    };
    match result {
        Ok(n) => done(&format!("/console/tenants/{}", q(&id)), n),
        Err(e) => view::error_page(&e),
    }
}
