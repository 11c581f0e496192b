//! Extractors that turn bad input into problem+json instead of axum's plain text.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use tenancy_app::OpContext;

use crate::problem::ApiError;
use crate::server::ServerState;

/// A JSON body. Malformed JSON is `malformed-json`; JSON of the wrong shape (unknown
/// field, wrong type, missing field) is `invalid-body` naming the offending path.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
            let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
        });
        if !is_json {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "expected a request body with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            ApiError::new(e.status(), "invalid-body", format!("failed to read the request body: {}", e.body_text()))
        })?;
        parse_json(&bytes).map(Json)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax
            | serde_json::error::Category::Eof
            | serde_json::error::Category::Io => {
                ApiError::bad_request("malformed-json", format!("the request body is not valid JSON: {inner}"))
            }
            serde_json::error::Category::Data if path == "." => {
                ApiError::bad_request("invalid-body", format!("invalid request body: {inner}"))
            }
            serde_json::error::Category::Data => {
                ApiError::bad_request("invalid-body", format!("invalid request body at {path}: {inner}"))
            }
        }
    })
}

/// Path parameters; a value that does not parse is `invalid-path`.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::bad_request("invalid-path", e.body_text()))
    }
}

/// Query parameters; unknown or malformed parameters are `invalid-query`.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|v| Query(v.0))
            .map_err(|e| ApiError::bad_request("invalid-query", e.body_text()))
    }
}

/// The authenticated caller of a request, as the app's operation context.
pub struct Caller(pub OpContext);

pub fn request_id(parts: &Parts) -> Option<String> {
    parts.headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

impl FromRequestParts<Arc<ServerState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ServerState>) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(|| ApiError::from(tenancy_domain::Error::Unauthenticated))?;
        let principal = state.app.auth.authenticate(token).await?;
        let source_ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
        if let Some(t) = &principal.tenant_id {
            tracing::Span::current().record("tenant_id", t.as_str());
        }
        Ok(Caller(OpContext { principal, request_id: request_id(parts), source_ip }))
    }
}

/// The version an `If-Match` header demands: `"3"`, `W/"3"` or `3`; `*` demands none.
pub struct IfMatch(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(v) = parts.headers.get(header::IF_MATCH) else { return Ok(IfMatch(None)) };
        let s = v.to_str().unwrap_or("").trim();
        if s == "*" {
            return Ok(IfMatch(None));
        }
        let s = s.strip_prefix("W/").unwrap_or(s).trim_matches('"');
        s.parse::<i64>().map(|n| IfMatch(Some(n))).map_err(|_| {
            ApiError::bad_request("invalid-header", format!("If-Match must be an ETag such as \"3\", got {s:?}"))
        })
    }
}

/// The `ETag` of a resource at `version`.
pub fn etag(version: i64) -> (axum::http::HeaderName, String) {
    (header::ETAG, format!("\"{version}\""))
}

/// Records the tenant a request is about on its span.
pub fn record_tenant(id: &str) {
    tracing::Span::current().record("tenant_id", id);
}
