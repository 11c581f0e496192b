//! Tenancy's web console: server-rendered HTML pages (maud) over the application
//! layer, served by the binary at `/console` (docs/console.md).
//!
//! Every page and every action calls the same `App` operations as the v1 API with the
//! caller's [`OpContext`], so the app's authorization and audit trail are the API's.
//! The console adds only what a browser needs:
//!
//! - **Sign-in** with an API key, kept in an `HttpOnly`, `SameSite=Strict` cookie
//!   scoped to `/console` (`Secure` unless the console is reached on a loopback
//!   host); each request authenticates it with the API's own
//!   [`tenancy_app::Authenticator::authenticate`], so a revoked key signs its
//!   sessions out at once.
//! - **CSRF**: every form carries a token derived from the session's key (HMAC-SHA256
//!   keyed by it), checked in constant time on every POST. No server state, the same
//!   on every replica, and unforgeable without the cookie the page cannot read.
//! - **A strict Content-Security-Policy** ([`CSP`]): no inline script or style; the
//!   only script is htmx, vendored into the binary and served from `/console/static`.
//! - Actions check the permission of the API route they stand for (as
//!   `crates/http/src/access.rs` does) and the app checks again: a viewer sees no
//!   action buttons and a forged POST gets the 403 page, writing nothing.

mod pages;
mod session;
mod view;

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tenancy_app::App;

pub use session::{csrf_token, COOKIE};

/// The Content-Security-Policy of every console response.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// What the console's handlers share.
pub struct Console {
    pub(crate) app: Arc<App>,
}

/// The console's routes, to be nested at `/console` (outside the v1 access middleware:
/// the console authenticates its own cookie).
pub fn router(app: Arc<App>) -> Router {
    let state = Arc::new(Console { app });
    Router::new()
        .route("/", get(pages::overview::page))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/tenants", get(pages::tenants::list))
        .route("/tenants/{id}", get(pages::tenants::detail))
        .route("/tenants/{id}/{action}", post(pages::tenants::act))
        .route("/executions", get(pages::executions::list))
        .route("/executions/{id}", get(pages::executions::detail))
        .route("/executions/{id}/{action}", post(pages::executions::act))
        .route("/queues", get(pages::queues::list))
        .route("/queues/{name}", get(pages::queues::detail))
        .route("/queues/{name}/redrive", post(pages::queues::redrive))
        .route("/audit", get(pages::audit::list))
        .route("/audit/verify", get(pages::audit::verify))
        .route("/rollouts", get(pages::rollouts::list))
        .route("/rollouts/{id}", get(pages::rollouts::detail))
        .route("/rollouts/{id}/{action}", post(pages::rollouts::act))
        .route("/subscriptions", get(pages::subscriptions::list))
        .route("/subscriptions/{id}", get(pages::subscriptions::detail))
        .route("/subscriptions/{id}/deliveries/{delivery}/retry", post(pages::subscriptions::retry))
        .route("/subscriptions/{id}/replay", post(pages::subscriptions::replay))
        .route("/static/console.css", get(css))
        .route("/static/htmx.min.js", get(htmx))
        .fallback(not_found)
        .layer(axum::middleware::map_response(secure_headers))
        .with_state(state)
}

/// The console's stylesheet.
const CSS: &str = include_str!("../static/console.css");
/// htmx 2 (0BSD, `static/htmx.LICENSE`), from the npm package `htmx.org`.
const HTMX: &str = include_str!("../static/htmx.min.js");

/// Static files change only with the binary: cached for a day.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400")),
        ],
        body,
    )
        .into_response()
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn htmx() -> Response {
    asset("text/javascript; charset=utf-8", HTMX)
}

async fn not_found() -> Response {
    view::message_page(StatusCode::NOT_FOUND, "Not found", "There is no such page.")
}

/// The security headers of every console response.
async fn secure_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    res
}
