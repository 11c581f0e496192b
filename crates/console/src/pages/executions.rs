//! Executions: by status; one execution's state-by-state timeline; stop and redrive.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde::Deserialize;
use tenancy_app::{ExecutionQuery, Permission as P};
use tenancy_domain::api::{HistoryEventView, StopExecution};

use super::{done, page_of, set, Fields};
use crate::session::Session;
use crate::view::{self, action_button, badge, notice, q, time};
use crate::Console;

const STATUSES: [&str; 5] = ["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"];

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    tenant: Option<String>,
    state_machine: Option<String>,
    stuck: Option<bool>,
    cursor: Option<String>,
}

pub async fn list(State(s): State<Arc<Console>>, session: Session, Query(lq): Query<ListQuery>) -> Response {
    let query = ExecutionQuery {
        status: set(&lq.status),
        tenant_id: set(&lq.tenant),
        state_machine: set(&lq.state_machine),
        stuck: lq.stuck.unwrap_or(false),
    };
    let page = match s.app.execution_list(&session.ctx, query, &page_of(100, set(&lq.cursor))).await {
        Ok(p) => p,
        Err(e) => return view::error_page(&e),
    };
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let body = html! {
        p.tabs {
            a href="/console/executions" class=[lq.status.as_deref().unwrap_or("").is_empty().then_some("active")] { "all" }
            @for st in STATUSES {
                a href={"/console/executions?status=" (st)} class=[(lq.status.as_deref() == Some(st)).then_some("active")] { (st) }
            }
        }
        form.filters method="get" action="/console/executions" {
            input type="hidden" name="status" value=(v(&lq.status));
            input type="text" name="tenant" value=(v(&lq.tenant)) placeholder="tenant id";
            input type="text" name="state_machine" value=(v(&lq.state_machine)) placeholder="state machine";
            button type="submit" { "Filter" }
        }
        table #execution-rows {
            tr { th { "execution" } th { "state machine" } th { "tenant" } th { "status" } th { "started" } th { "updated" } }
            @for e in &page.items {
                tr data-execution=(e.id) {
                    td { a href={"/console/executions/" (q(&e.id))} { (e.id) } }
                    td { (e.state_machine) }
                    td { @if let Some(t) = &e.tenant_id { a href={"/console/tenants/" (q(t))} { (t) } } @else { "—" } }
                    td { (badge(&e.status)) }
                    td { (time(e.started_at)) }
                    td { (time(e.updated_at)) }
                }
            }
            @if page.items.is_empty() { tr { td colspan="6" .muted { "No execution matches." } } }
        }
        @if let Some(next) = &page.next_cursor {
            p { a href={"/console/executions?status=" (q(&v(&lq.status))) "&tenant=" (q(&v(&lq.tenant)))
                "&state_machine=" (q(&v(&lq.state_machine))) "&cursor=" (q(next))} { "Next page" } }
        }
    };
    view::page(&session, "Executions", "Executions", body)
}

/// A state in the timeline: the history events from entering it to leaving it.
struct Step<'a> {
    state: Option<&'a str>,
    events: Vec<&'a HistoryEventView>,
}

impl Step<'_> {
    fn outcome(&self) -> &'static str {
        if self.events.iter().any(|e| e.kind.ends_with("Failed") || e.kind.ends_with("TimedOut")) {
            "failed"
        } else if self.events.iter().any(|e| e.kind.ends_with("Exited") || e.kind.ends_with("Succeeded")) {
            "succeeded"
        } else {
            "running"
        }
    }
}

/// Groups history into states: a new step at each `...StateEntered` (and at a change
/// of state name), execution-level events in steps of their own.
fn timeline(history: &[HistoryEventView]) -> Vec<Step<'_>> {
    let mut steps: Vec<Step<'_>> = Vec::new();
    for e in history {
        let state = e.state.as_deref();
        let new = e.kind.ends_with("StateEntered")
            || steps.last().is_none_or(|last| last.state != state || (state.is_none() && !e.kind.is_empty()));
        if new {
            steps.push(Step { state, events: vec![e] });
        } else if let Some(last) = steps.last_mut() {
            last.events.push(e);
        }
    }
    steps
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
    let e = match s.app.execution_get(&session.ctx, &id).await {
        Ok(e) => e,
        Err(e) => return view::error_page(&e),
    };
    let history = match s.app.execution_history(&session.ctx, &id, &page_of(1000, None)).await {
        Ok(p) => p.items,
        Err(e) => return view::error_page(&e),
    };
    let steps = timeline(&history);
    let base = format!("/console/executions/{}", q(&id));
    let write = session.can(P::WorkflowWrite);
    let body = html! {
        (notice(dq.notice.as_deref()))
        dl.facts #execution-facts {
            dt { "Status" } dd #execution-status { (badge(&e.status)) }
            dt { "State machine" } dd { (e.state_machine) " (version " (e.version) ")" }
            dt { "Tenant" } dd { @if let Some(t) = &e.tenant_id { a href={"/console/tenants/" (q(t))} { (t) } } @else { "—" } }
            dt { "Started" } dd { (time(e.started_at)) }
            dt { "Stopped" } dd { (view::opt_time(e.stopped_at)) }
            dt { "Redriven" } dd #redrive-count { (e.redrive_count) " times" }
        }
        @if e.error.is_some() || e.cause.is_some() {
            section.failure #execution-error {
                h2 { "Error" }
                p { code { (e.error.as_deref().unwrap_or("")) } }
                @if let Some(c) = &e.cause { pre.json { (c) } }
            }
        }
        @if write {
            section.actions #actions {
                @if e.status == "FAILED" { (action_button(&session, &format!("{base}/redrive"), "Redrive", "")) }
                @if e.status == "RUNNING" { (action_button(&session, &format!("{base}/stop"), "Stop", "danger")) }
            }
        }
        section #timeline {
            h2 { "Timeline" }
            ol.timeline {
                @for step in &steps {
                    li class=(step.outcome()) data-state=(step.state.unwrap_or("")) {
                        div.step-head {
                            strong { (step.state.unwrap_or("execution")) }
                            " " (badge(step.outcome()))
                            " " span.muted { (time(step.events[0].timestamp)) }
                        }
                        ul.events {
                            @for ev in &step.events {
                                li {
                                    span.kind { (ev.kind) } " " span.muted { (time(ev.timestamp)) }
                                    @if !ev.details.is_null() && ev.details != serde_json::json!({}) {
                                        details { summary { "details" } (view::json(&ev.details)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.io {
            div { h2 { "Input" } (view::json(&e.input)) }
            div { h2 { "Output" } @if let Some(o) = &e.output { (view::json(o)) } @else { p.muted { "None yet." } } }
        }
    };
    view::page(&session, "Executions", &format!("Execution {}", e.name), body)
}

/// `POST /console/executions/{id}/{stop|redrive}`.
pub async fn act(
    State(s): State<Arc<Console>>,
    session: Session,
    Path((id, action)): Path<(String, String)>,
    axum::Form(form): Fields,
) -> Response {
    if let Some(res) = session.csrf_refusal(&form) {
        return res;
    }
    if let Err(e) = session.ctx.authorize(P::WorkflowWrite) {
        return view::error_page(&e);
    }
    let result = match action.as_str() {
        "redrive" => s.app.execution_redrive(&session.ctx, &id).await.map(|_| "redriven"),
        "stop" => {
            let req =
                StopExecution { error: Some("Console.Stopped".into()), cause: Some("stopped from the console".into()) };
            s.app.execution_stop(&session.ctx, &id, req).await.map(|_| "stopped")
        }
        _ => return view::message_page(StatusCode::NOT_FOUND, "Not found", "There is no such action."),
    };
    match result {
        Ok(n) => done(&format!("/console/executions/{}", q(&id)), n),
        Err(e) => view::error_page(&e),
    }
}
