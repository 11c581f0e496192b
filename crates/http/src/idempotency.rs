//! `Idempotency-Key` for mutating requests.
//!
//! The first request with a key runs and its response (status, body and the headers
//! that matter) is stored; a repeat with the same key and the same request replays it
//! with `Idempotent-Replayed: true`; the same key with another request is 422
//! `idempotency-key-reused`; a repeat while the first is still running is 409
//! `idempotency-key-in-use`. Keys are scoped to the caller's credential (by a hash of
//! it), so two callers never share a key space. 5xx and 429 responses are not stored:
//! those requests may be retried with the same key.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tenancy_store::IdempotencyState;

use crate::problem::ApiError;
use crate::server::{ServerState, MAX_BODY_BYTES};

const HEADER: &str = "idempotency-key";
const KEPT_HEADERS: [header::HeaderName; 3] = [header::CONTENT_TYPE, header::ETAG, header::LOCATION];

#[derive(Serialize, Deserialize)]
struct StoredResponse {
    headers: Vec<(String, String)>,
    body: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn scope_of(headers: &HeaderMap) -> String {
    let credential = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()).unwrap_or(b"");
    hex(&Sha256::digest(credential)[..16])
}

pub async fn middleware(State(state): State<Arc<ServerState>>, req: Request, next: Next) -> Response {
    if !matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH | Method::DELETE) {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get(HEADER).cloned() else {
        return next.run(req).await;
    };
    let key = match key.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 255 => k.to_owned(),
        _ => {
            return ApiError::bad_request("invalid-header", "Idempotency-Key must be 1-255 visible ASCII characters")
                .into_response()
        }
    };
    let scope = scope_of(req.headers());
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body-too-large", "request body too large")
                .into_response()
        }
    };
    let mut h = Sha256::new();
    h.update(parts.method.as_str());
    h.update([0]);
    h.update(parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or(""));
    h.update([0]);
    h.update(&bytes);
    let request_hash = hex(&h.finalize());

    match state.app.store().idempotency_begin(&scope, &key, &request_hash).await {
        Err(e) => return ApiError::from(e).into_response(),
        Ok(IdempotencyState::InProgress { request_hash: first })
        | Ok(IdempotencyState::Completed { request_hash: first, .. })
            if first != request_hash =>
        {
            return ApiError::from(tenancy_domain::Error::Unprocessable(
                "this Idempotency-Key was used with a different request".into(),
            ))
            .into_response()
        }
        Ok(IdempotencyState::InProgress { .. }) => {
            return ApiError::new(
                StatusCode::CONFLICT,
                "idempotency-key-in-use",
                "a request with this Idempotency-Key is still in progress",
            )
            .into_response()
        }
        Ok(IdempotencyState::Completed { status, response, .. }) => return replay(status, &response),
        Ok(IdempotencyState::Started) => {}
    }

    let res = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let status = res.status();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        if let Err(e) = state.app.store().idempotency_abandon(&scope, &key).await {
            tracing::warn!(error = %e, "failed to release an idempotency key");
        }
        return res;
    }
    let (parts, body) = res.into_parts();
    let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
    let stored = StoredResponse {
        headers: KEPT_HEADERS
            .iter()
            .filter_map(|h| parts.headers.get(h).and_then(|v| v.to_str().ok()).map(|v| (h.to_string(), v.to_owned())))
            .collect(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    };
    let json = serde_json::to_string(&stored).expect("stored response serializes");
    if let Err(e) = state.app.store().idempotency_finish(&scope, &key, status.as_u16(), &json).await {
        tracing::warn!(error = %e, "failed to record an idempotent response");
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn replay(status: u16, stored: &str) -> Response {
    let Ok(stored) = serde_json::from_str::<StoredResponse>(stored) else {
        return ApiError::from(tenancy_domain::Error::internal("corrupt idempotent response")).into_response();
    };
    let mut res = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), stored.body).into_response();
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (header::HeaderName::try_from(name), HeaderValue::try_from(value)) {
            res.headers_mut().insert(name, value);
        }
    }
    res.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    res
}
