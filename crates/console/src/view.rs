//! The page layout and the small pieces every page uses.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use tenancy_domain::time::Timestamp;
use tenancy_domain::Error;

use crate::session::Session;

/// The main navigation: (path, label).
const NAV: [(&str, &str); 7] = [
    ("/console", "Overview"),
    ("/console/tenants", "Tenants"),
    ("/console/executions", "Executions"),
    ("/console/queues", "Queues"),
    ("/console/subscriptions", "Subscriptions"),
    ("/console/rollouts", "Rollouts"),
    ("/console/audit", "Audit"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            // htmx must not add its own <style> element (the CSP allows none) nor evaluate code.
            meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false}"#;
            title { (title) " · Tenancy" }
            link rel="stylesheet" href="/console/static/console.css";
            script src="/console/static/htmx.min.js" defer {}
        }
    }
}

/// A page of a signed-in caller.
pub fn page(session: &Session, active: &str, title: &str, body: Markup) -> Response {
    let who = match (&session.ctx.principal.key_id, &session.ctx.principal.tenant_id) {
        (Some(k), Some(t)) => format!("{k} ({}, {t})", session.ctx.principal.role.as_str()),
        (Some(k), None) => format!("{k} ({})", session.ctx.principal.role.as_str()),
        (None, _) => format!("bootstrap token ({})", session.ctx.principal.role.as_str()),
    };
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top {
                    a.brand href="/console" { "Tenancy" }
                    nav {
                        @for (href, label) in NAV {
                            a href=(href) class=[(label == active).then_some("active")] { (label) }
                        }
                    }
                    div.who {
                        span #whoami data-role=(session.ctx.principal.role.as_str()) { (who) }
                        form method="post" action="/console/logout" {
                            (csrf(session))
                            button.link #sign-out type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    Html(markup.into_string()).into_response()
}

/// A page without a session (sign-in, errors before one).
pub fn bare(status: StatusCode, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare {
                main.narrow {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    (status, Html(markup.into_string())).into_response()
}

pub fn login(error: Option<&str>, status: StatusCode) -> Response {
    bare(
        status,
        "Sign in",
        html! {
            p { "Sign in to the Tenancy console with an API key. Your key's role decides what you may see and do." }
            @if let Some(e) = error { p.error #login-error { (e) } }
            form #login method="post" action="/console/login" {
                label for="key" { "API key" }
                input #key type="password" name="key" autocomplete="off" required autofocus;
                button type="submit" { "Sign in" }
            }
        },
    )
}

pub fn message_page(status: StatusCode, title: &str, message: &str) -> Response {
    bare(status, title, html! { p.error #message { (message) } p { a href="/console" { "Back to the console" } } })
}

/// The page of an app error, with the API's status and code.
pub fn error_page(e: &Error) -> Response {
    let code = e.code();
    let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let title = match status {
        StatusCode::FORBIDDEN => "Forbidden",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::CONFLICT => "Conflict",
        s if s.is_client_error() => "Refused",
        _ => "Error",
    };
    let detail = match e {
        Error::Internal(_) => "An internal error; see the server log.".to_owned(),
        e => e.to_string(),
    };
    bare(
        status,
        title,
        html! {
            p.error #message { (detail) }
            p { "Code: " code #error-code { (code.as_str()) } }
            p { a href="/console" { "Back to the console" } }
        },
    )
}

/// The hidden CSRF field of a form.
pub fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// A one-button form posting to `action`.
pub fn action_button(session: &Session, action: &str, label: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf(session))
            button type="submit" class=(class) data-action=(label) { (label) }
        }
    }
}

pub fn time(t: Timestamp) -> Markup {
    let s = t.to_rfc3339();
    let short = s.get(..19).unwrap_or(&s).replace('T', " ");
    html! { time datetime=(s) { (short) } }
}

pub fn opt_time(t: Option<Timestamp>) -> Markup {
    match t {
        Some(t) => time(t),
        None => html! { "—" },
    }
}

pub fn badge(status: &str) -> Markup {
    let class = match status.to_ascii_lowercase().as_str() {
        "active" | "succeeded" | "delivered" | "completed" | "success" => "ok",
        "failed" | "dead" | "timed_out" | "aborted" | "halted" => "bad",
        "suspended" | "paused" | "offboarded" => "muted",
        _ => "busy",
    };
    html! { span class={"badge " (class)} { (status) } }
}

pub fn json(v: &serde_json::Value) -> Markup {
    html! { pre.json { (serde_json::to_string_pretty(v).unwrap_or_default()) } }
}

/// A section whose data could not be read (for example not allowed for this role).
pub fn unavailable(e: &Error) -> Markup {
    html! { p.muted { "Not available: " (e.to_string()) } }
}

/// A notice after an action (a fixed text per known action, never echoed input).
pub fn notice(n: Option<&str>) -> Markup {
    let text = match n {
        Some("suspended") => "Tenant suspended.",
        Some("resumed") => "Tenant resumed.",
        Some("retried") => "Provisioning started again.",
        Some("plan") => "Plan change started.",
        Some("offboarded") => "Offboarding started.",
        Some("redriven") => "Execution redriven: it goes on from the state that failed.",
        Some("stopped") => "Execution stopped.",
        Some("queue-redriven") => "Dead-letter messages moved back to their queues.",
        Some("paused") => "Rollout paused.",
        Some("rollout-resumed") => "Rollout resumed.",
        Some("aborted") => "Rollout aborted.",
        Some("retry") => "Delivery queued again.",
        Some("replayed") => "Events queued for replay.",
        _ => return html! {},
    };
    html! { p.notice #notice { (text) } }
}

/// A `<meter>` of usage: no inline style needed (the CSP allows none).
pub fn usage(used: u64, limit: u64) -> Markup {
    let high = (limit as f64 * 0.8).max(0.0);
    html! {
        meter min="0" max=(limit) low=(high) high=(high) optimum="0" value=(used.min(limit)) { (used) " / " (limit) }
        " " span.num { (used) " / " (limit) }
    }
}

/// Query-string escaping for a value in a link.
pub fn q(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
