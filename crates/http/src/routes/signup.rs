//! `/v1/signup`: self-service sign-up, the unauthenticated routes.
//!
//! Each request first takes a token from its client address's bucket (429
//! `rate-limited`, before the body is read); a sign-up whose body is valid then takes
//! one from its email domain's bucket. Every answer carries the `RateLimit` and
//! `RateLimit-Policy` headers of the buckets it took from (`"signup:address"`,
//! `"signup:domain"`), as the authenticated routes do with theirs. No idempotency
//! keys: there is no caller to scope them to (a repeated sign-up makes another token,
//! a repeated activation is refused).

use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tenancy_app::signup::ops::Visitor;
use tenancy_domain::signup::{ActivateRequest, Activated, SignupAccepted, SignupRequest};
use tenancy_domain::ErrorCode;

use crate::extract::{request_id_of, Json};
use crate::problem::ApiError;
use crate::ratelimit::{set_headers, Checked};
use crate::server::ServerState;

/// The caller's address and request id, and its address bucket's verdict.
fn visitor(s: &ServerState, req: &Request) -> (Visitor, Checked) {
    let source_ip = req.extensions().get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string());
    let checked = s.signup_limits.check_address(source_ip.as_deref().unwrap_or("unknown"));
    (Visitor { request_id: request_id_of(req.headers()), source_ip }, checked)
}

/// The answer with the buckets' headers (and `Retry-After` on a refusal).
fn with_limits(mut res: Response, checked: &Checked) -> Response {
    if let Some(refusal) = &checked.refusal {
        res = ApiError::new(ErrorCode::RateLimited, refusal.detail()).into_response();
        res.headers_mut().insert(header::RETRY_AFTER, refusal.retry_after_s().into());
    }
    set_headers(res.headers_mut(), &checked.verdicts);
    res
}

/// Sign up: asks for an activation token for a new tenant. The answer is 202 and the
/// same whatever the email; the token goes out only in a `SignupRequested` event.
#[utoipa::path(post, path = "/v1/signup", tag = "signup", request_body = SignupRequest, security(()),
    responses((status = 202, body = SignupAccepted)))]
pub async fn signup(State(s): State<Arc<ServerState>>, req: Request) -> Response {
    let (visitor, mut checked) = visitor(&s, &req);
    if checked.refusal.is_some() {
        return with_limits(Response::default(), &checked);
    }
    let body = match Json::<SignupRequest>::from_request(req, &()).await {
        Ok(Json(b)) => b,
        Err(e) => return with_limits(e.into_response(), &checked),
    };
    let domain = match body.validate() {
        Ok((_, domain)) => domain,
        Err(e) => return with_limits(ApiError::from(e).into_response(), &checked),
    };
    s.signup_limits.check_domain(&mut checked, &domain);
    if checked.refusal.is_some() {
        return with_limits(Response::default(), &checked);
    }
    let res = match s.app.signup(&visitor, body).await {
        Ok(accepted) => (StatusCode::ACCEPTED, axum::Json(accepted)).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    };
    with_limits(res, &checked)
}

/// Activate a sign-up: provisions the tenant and returns it with its first tenant key,
/// shown this once. An unknown, used or expired token is 400 `activation-invalid`.
#[utoipa::path(post, path = "/v1/signup/activate", tag = "signup", request_body = ActivateRequest, security(()),
    responses((status = 201, body = Activated)))]
pub async fn activate(State(s): State<Arc<ServerState>>, req: Request) -> Response {
    let (visitor, checked) = visitor(&s, &req);
    if checked.refusal.is_some() {
        return with_limits(Response::default(), &checked);
    }
    let body = match Json::<ActivateRequest>::from_request(req, &()).await {
        Ok(Json(b)) => b,
        Err(e) => return with_limits(e.into_response(), &checked),
    };
    let res = match s.app.signup_activate(&visitor, body).await {
        Ok(activated) => (StatusCode::CREATED, axum::Json(activated)).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    };
    with_limits(res, &checked)
}
