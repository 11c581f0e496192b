//! `Idempotency-Key` for mutating requests.
//!
//! Runs after the access middleware: a request that is not authenticated and
//! authorized for its route never reaches this, never writes a key, and a replay is
//! re-checked like any request (a deleted key's replay is 401).
//!
//! The first request with a key runs and its response (status, body and the headers
//! that matter) is stored, sealed with the master key (stored responses hold API keys
//! and webhook secrets); a repeat with the same key and the same request replays it
//! with `Idempotent-Replayed: true`; the same key with another request is 422
//! `idempotency-key-reused`; a repeat while the first is still running is 409
//! `idempotency-key-in-use`. Keys are scoped to the caller's credential (by a hash of
//! it), so two callers never share a key space. 5xx and 429 responses are not stored:
//! those requests may be retried with the same key.
//!
//! Once its key is claimed, a request runs to its end even when its client goes away
//! (it is detached from the connection), so a retry finds its outcome rather than
//! running it twice. A claim is leased for [`LEASE`]: the key of a request that died
//! with its process is taken over by a retry after that. A claim whose request ended
//! without an outcome (a panic) is released at once by a drop guard.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tenancy_store::{IdempotencyState, Store};
use tracing::Instrument;

use crate::problem::ApiError;
use crate::server::{ServerState, MAX_BODY_BYTES};
use tenancy_domain::ErrorCode;

const HEADER: &str = "idempotency-key";
const KEPT_HEADERS: [header::HeaderName; 3] = [header::CONTENT_TYPE, header::ETAG, header::LOCATION];

/// How long a claimed key stays claimed by a request that neither finished nor was
/// released (its process died). Longer than the request timeout (30 s), so a live
/// request never loses its key.
pub const LEASE: Duration = Duration::from_secs(60);

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

/// What a stored response is sealed for: its key in its scope (a sealed response
/// copied to another key does not open).
fn owner(scope: &str, key: &str) -> String {
    format!("idempotency/{scope}/{key}")
}

/// A claimed key: released (its row deleted) when dropped before it was settled.
struct Claim {
    store: Arc<dyn Store>,
    scope: String,
    key: String,
    settled: bool,
}

impl Claim {
    async fn release(mut self) {
        self.settled = true;
        if let Err(e) = self.store.idempotency_abandon(&self.scope, &self.key).await {
            tracing::warn!(error = %e, "failed to release an idempotency key");
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (store, scope, key) = (self.store.clone(), std::mem::take(&mut self.scope), std::mem::take(&mut self.key));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = store.idempotency_abandon(&scope, &key).await {
                    tracing::warn!(error = %e, "failed to release an idempotency key");
                }
            });
        }
    }
}

pub async fn middleware(State(state): State<Arc<ServerState>>, req: Request, next: Next) -> Response {
    if !matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH | Method::DELETE) {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get(HEADER).cloned() else {
        return next.run(req).await;
    };
    // A bundle upload streams its body (hundreds of MB) and is idempotent by itself
    // (the same bytes give the same bundle): the key is not recorded for it.
    if crate::routes::releases::is_bundle_path(req.uri().path()) {
        return next.run(req).await;
    }
    let key = match key.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 255 => k.to_owned(),
        _ => {
            return ApiError::new(ErrorCode::InvalidHeader, "Idempotency-Key must be 1-255 visible ASCII characters")
                .into_response()
        }
    };
    let scope = scope_of(req.headers());
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => return ApiError::payload_too_large().into_response(),
    };
    let mut h = Sha256::new();
    h.update(parts.method.as_str());
    h.update([0]);
    h.update(parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or(""));
    h.update([0]);
    h.update(&bytes);
    let request_hash = hex(&h.finalize());

    let store = state.app.store().clone();
    match store.idempotency_begin(&scope, &key, &request_hash, LEASE.as_millis() as i64).await {
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
                ErrorCode::IdempotencyKeyInUse,
                "a request with this Idempotency-Key is still in progress",
            )
            .into_response()
        }
        Ok(IdempotencyState::Completed { status, response, .. }) => {
            return replay(&state, &owner(&scope, &key), status, &response)
        }
        Ok(IdempotencyState::Started) => {}
    }

    let claim = Claim { store, scope, key, settled: false };
    let req = Request::from_parts(parts, Body::from(bytes));
    let run = async move {
        let res = next.run(req).await;
        settle(&state, claim, res).await
    };
    // Detached from the connection: a client that goes away does not cancel it halfway.
    match tokio::spawn(run.instrument(tracing::Span::current())).await {
        Ok(res) => res,
        Err(e) => {
            tracing::error!(error = %e, "an idempotent request failed");
            ApiError::new(ErrorCode::Internal, "internal error").into_response()
        }
    }
}

/// Stores the response of a claimed key (sealed), or releases the key when the
/// response is worth retrying (5xx, 429) or cannot be kept safely (no master key).
async fn settle(state: &ServerState, mut claim: Claim, res: Response) -> Response {
    let status = res.status();
    let secrets = state.app.secrets();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || secrets.is_none() {
        claim.release().await;
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
    let sealed = secrets.expect("checked above").seal(&owner(&claim.scope, &claim.key), &json);
    match state.app.store().idempotency_finish(&claim.scope, &claim.key, status.as_u16(), &sealed).await {
        Ok(()) => claim.settled = true,
        Err(e) => tracing::warn!(error = %e, "failed to record an idempotent response"),
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn replay(state: &ServerState, owner: &str, status: u16, stored: &str) -> Response {
    // Responses stored before they were sealed are plain JSON (kept 24 hours at most).
    let json = match state.app.secrets() {
        _ if stored.starts_with('{') => Ok(stored.to_owned()),
        Some(b) => b.open(owner, stored),
        None => Err(tenancy_domain::Error::Unavailable("no master key configured".into())),
    };
    let stored = match json.map(|j| serde_json::from_str::<StoredResponse>(&j)) {
        Ok(Ok(stored)) => stored,
        Ok(Err(_)) => {
            return ApiError::from(tenancy_domain::Error::internal("corrupt idempotent response")).into_response()
        }
        Err(e) => return ApiError::from(e).into_response(),
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
