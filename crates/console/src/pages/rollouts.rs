//! Rollouts: waves, progress, pause / resume / abort.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde::Deserialize;
use tenancy_app::Permission as P;

use super::{done, Fields};
use crate::session::Session;
use crate::view::{self, action_button, badge, notice, q, time};
use crate::Console;

/// What a rollout moves its tenants to: a release, or a plan (a bulk plan change).
pub(crate) fn target(r: &tenancy_domain::rollout::Rollout) -> String {
    match (&r.release, &r.plan) {
        (Some(release), _) => format!("release {release}"),
        (None, Some(plan)) => format!("plan {plan}"),
        (None, None) => String::new(),
    }
}

pub async fn list(State(s): State<Arc<Console>>, session: Session) -> Response {
    let list = match s.app.rollout_list(&session.ctx).await {
        Ok(l) => l,
        Err(e) => return view::error_page(&e),
    };
    let body = html! {
        table #rollout-rows {
            tr { th { "rollout" } th { "target" } th { "status" } th { "progress" } th { "created" } }
            @for r in &list {
                @let total: u64 = r.waves.iter().map(|w| w.tenants.len() as u64).sum();
                @let finished: u64 = r.waves.iter().map(|w| w.counts.succeeded + w.counts.failed + w.counts.skipped + w.counts.rolled_back).sum();
                tr {
                    td { a href={"/console/rollouts/" (q(&r.id))} { (r.id) } }
                    td { (target(r)) }
                    td { (badge(&r.status)) }
                    td { (view::usage(finished, total)) }
                    td { (time(r.created_at)) }
                }
            }
            @if list.is_empty() { tr { td colspan="5" .muted { "No rollouts." } } }
        }
    };
    view::page(&session, "Rollouts", "Rollouts", body)
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
    let r = match s.app.rollout_get(&session.ctx, &id).await {
        Ok(r) => r,
        Err(e) => return view::error_page(&e),
    };
    let base = format!("/console/rollouts/{}", q(&id));
    let admin = session.can(P::ReleaseAdmin);
    let body = html! {
        (notice(dq.notice.as_deref()))
        dl.facts {
            dt { "Target" } dd { (target(&r)) }
            dt { "Status" } dd #rollout-status { (badge(&r.status)) }
            dt { "Current wave" } dd { (r.waves.get(r.current_wave).map(|w| w.name.as_str()).unwrap_or("—")) }
            dt { "Bake until" } dd { (view::opt_time(r.bake_until)) }
            @if let Some(h) = &r.halted_reason { dt { "Halted" } dd.error { (h) } }
        }
        @if admin {
            section.actions #actions {
                @if r.status == "running" { (action_button(&session, &format!("{base}/pause"), "Pause", "warn")) }
                @if r.status == "paused" || r.status == "halted" { (action_button(&session, &format!("{base}/resume"), "Resume", "")) }
                @if matches!(r.status.as_str(), "running" | "paused" | "halted") { (action_button(&session, &format!("{base}/abort"), "Abort", "danger")) }
            }
        }
        @for w in &r.waves {
            section.wave {
                h2 { (w.name) " " (badge(&w.status)) }
                @let c = &w.counts;
                p { (view::usage(c.succeeded + c.failed + c.skipped + c.rolled_back, w.tenants.len() as u64))
                    " — pending " (c.pending) ", upgrading " (c.upgrading) ", succeeded " (c.succeeded)
                    ", failed " (c.failed) ", skipped " (c.skipped) ", rolled back " (c.rolled_back) }
                details {
                    summary { (w.tenants.len()) " tenants" }
                    table.compact {
                        @for t in &w.tenants {
                            tr { td { a href={"/console/tenants/" (q(&t.tenant_id))} { (t.tenant_id) } } td { (badge(&t.state)) }
                                 td { @if let Some(x) = &t.execution_id { a href={"/console/executions/" (q(x))} { (x) } } } }
                        }
                    }
                }
            }
        }
        @if !r.failed.is_empty() {
            section { h2 { "Failed tenants" } (view::json(&serde_json::to_value(&r.failed).unwrap_or_default())) }
        }
    };
    view::page(&session, "Rollouts", &format!("Rollout {}", r.id), body)
}

pub async fn act(
    State(s): State<Arc<Console>>,
    session: Session,
    Path((id, action)): Path<(String, String)>,
    axum::Form(form): Fields,
) -> Response {
    if let Some(res) = session.csrf_refusal(&form) {
        return res;
    }
    if let Err(e) = session.ctx.authorize(P::ReleaseAdmin) {
        return view::error_page(&e);
    }
    let result = match action.as_str() {
        "pause" => s.app.rollout_pause(&session.ctx, &id).await.map(|_| "paused"),
        "resume" => s.app.rollout_resume(&session.ctx, &id).await.map(|_| "rollout-resumed"),
        "abort" => s.app.rollout_abort(&session.ctx, &id).await.map(|_| "aborted"),
        _ => return view::message_page(StatusCode::NOT_FOUND, "Not found", "There is no such action."),
    };
    match result {
        Ok(n) => done(&format!("/console/rollouts/{}", q(&id)), n),
        Err(e) => view::error_page(&e),
    }
}
