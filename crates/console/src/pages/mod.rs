//! One module per console page.

pub mod audit;
pub mod executions;
pub mod overview;
pub mod queues;
pub mod rollouts;
pub mod subscriptions;
pub mod tenants;

use std::collections::HashMap;

use axum::response::{IntoResponse, Redirect, Response};
use tenancy_domain::page::PageRequest;

/// A posted form: its fields by name (the CSRF token among them).
pub type Fields = axum::Form<HashMap<String, String>>;

/// After an action: back to `path` with a notice (303, so a reload does not post again).
pub fn done(path: &str, notice: &str) -> Response {
    Redirect::to(&format!("{path}?notice={notice}")).into_response()
}

pub fn page_of(limit: u32, cursor: Option<String>) -> PageRequest {
    PageRequest { limit, after: cursor.filter(|c| !c.is_empty()) }
}

/// A query value, `None` when empty (an unset filter of a form).
pub fn set(v: &Option<String>) -> Option<String> {
    v.as_ref().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}
