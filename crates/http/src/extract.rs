//! Extractors that turn bad input into problem+json instead of axum's plain text.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use tenancy_app::OpContext;

use crate::problem::ApiError;
use tenancy_domain::ErrorCode;

/// A JSON body. Malformed JSON is `malformed-json`; JSON of the wrong shape (unknown
/// field, wrong type, missing field) is `invalid-body` naming the offending path.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(req, state).await?;
        parse_json(&bytes).map(Json)
    }
}

/// A JSON body holding an event pattern: as [`Json`], and a number literal that a
/// 64-bit float cannot hold (`1E-325` silently parses as 0) is `invalid-pattern`.
pub struct PatternJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for PatternJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(req, state).await?;
        tenancy_app::subscriptions::ops::check_pattern_numbers(&bytes)?;
        parse_json(&bytes).map(PatternJson)
    }
}

/// The body of a request that must be JSON (`unsupported-media-type` otherwise).
async fn json_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let is_json = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
        let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
    });
    if !is_json {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "expected a request body with Content-Type: application/json",
        ));
    }
    Bytes::from_request(req, state).await.map_err(|e| match e.status() {
        axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large(),
        status => ApiError::with_status(
            status,
            ErrorCode::InvalidBody,
            format!("failed to read the request body: {}", e.body_text()),
        ),
    })
}

/// A raw request body (for optional bodies); one too large is `payload-too-large`.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state).await.map(RawBody).map_err(|e| match e.status() {
            axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large(),
            status => ApiError::with_status(
                status,
                ErrorCode::InvalidBody,
                format!("failed to read the request body: {}", e.body_text()),
            ),
        })
    }
}

/// Whether JSON text holds the escape `\u0000` (a raw NUL is not valid JSON anyway).
/// Escapes are skipped pairwise, so `\\u0000` (a backslash, then `u0000`) is not one.
pub fn has_escaped_nul(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) == Some(&b'u') && bytes.get(i + 2..i + 6) == Some(b"0000") {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// Parses a JSON body; `\u0000` anywhere in it is `invalid-request` (PostgreSQL cannot
/// store NUL in text, and no name or value of ours needs it).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if has_escaped_nul(bytes) {
        return Err(ApiError::new(ErrorCode::InvalidRequest, "the request body contains a NUL character (\\u0000)"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax
            | serde_json::error::Category::Eof
            | serde_json::error::Category::Io => {
                ApiError::new(ErrorCode::MalformedJson, format!("the request body is not valid JSON: {inner}"))
            }
            serde_json::error::Category::Data if path == "." => {
                ApiError::new(ErrorCode::InvalidBody, format!("invalid request body: {inner}"))
            }
            serde_json::error::Category::Data => {
                ApiError::new(ErrorCode::InvalidBody, format!("invalid request body at {path}: {inner}"))
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
            .map_err(|e| ApiError::new(ErrorCode::InvalidPath, e.body_text()))
    }
}

/// Query parameters; unknown or malformed parameters are `invalid-query`.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|v| Query(v.0))
            .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e.body_text()))
    }
}

/// The authenticated caller of a request, as the app's operation context: the one the
/// access middleware (`crate::access`) authenticated and authorized before the body was read.
pub struct Caller(pub OpContext);

/// The request id a request carries (set or replaced by the server's request-id layers).
pub fn request_id_of(headers: &axum::http::HeaderMap) -> Option<String> {
    headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Every /v1 route is behind the access middleware; without it, nobody is let in.
        parts
            .extensions
            .get::<OpContext>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| ApiError::from(tenancy_domain::Error::Unauthenticated))
    }
}

/// The version an `If-Match` header demands (RFC 9110 §13.1.1): `"3"` (also `W/"3"`
/// or a bare `3`) demands version 3; `*` demands none. A well-formed entity tag that
/// is not one of our versions (`"stale-0"`) matches no version: the write is 412, not
/// 400; only a malformed header is 400. Of a list, the first version in it counts.
pub struct IfMatch(pub Option<i64>);

/// What a well-formed `If-Match` without a version of ours demands: versions start
/// at 1 (0 is "does not exist yet"), so this one is never current.
const NO_VERSION: i64 = -1;

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(v) = parts.headers.get(header::IF_MATCH) else { return Ok(IfMatch(None)) };
        let malformed = |s: &str| {
            ApiError::new(ErrorCode::InvalidHeader, format!("If-Match must be an ETag such as \"3\", got {s:?}"))
        };
        let Ok(s) = v.to_str() else { return Err(malformed(&String::from_utf8_lossy(v.as_bytes()))) };
        parse_if_match(s).map(IfMatch).ok_or_else(|| malformed(s))
    }
}

/// `None` when malformed; `Some(None)` for `*`; else the first version named.
fn parse_if_match(s: &str) -> Option<Option<i64>> {
    let s = s.trim();
    if s == "*" {
        return Some(None);
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok().map(Some); // a bare number, as earlier versions accepted
    }
    let mut first = None;
    for tag in s.split(',') {
        let tag = tag.trim();
        let opaque = tag.strip_prefix("W/").unwrap_or(tag);
        let inner = opaque.strip_prefix('"').and_then(|o| o.strip_suffix('"'))?;
        // etagc: %x21 / %x23-7E / obs-text
        if !inner.bytes().all(|b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80) {
            return None;
        }
        if first.is_none() {
            first = inner.parse::<i64>().ok().filter(|v| *v > 0);
        }
    }
    Some(Some(first.unwrap_or(NO_VERSION)))
}

/// The `ETag` of a resource at `version`.
pub fn etag(version: i64) -> (axum::http::HeaderName, String) {
    (header::ETAG, format!("\"{version}\""))
}

/// Records the tenant a request is about on its span.
pub fn record_tenant(id: &str) {
    tracing::Span::current().record("tenant_id", id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_forms() {
        assert_eq!(parse_if_match("\"3\""), Some(Some(3)));
        assert_eq!(parse_if_match("W/\"3\""), Some(Some(3)));
        assert_eq!(parse_if_match("3"), Some(Some(3)));
        assert_eq!(parse_if_match("*"), Some(None));
        assert_eq!(parse_if_match("\"stale-0\""), Some(Some(NO_VERSION)), "well-formed, matches nothing");
        assert_eq!(parse_if_match("\"x\", \"4\""), Some(Some(4)));
        assert_eq!(parse_if_match("not-a-version"), None);
        assert_eq!(parse_if_match("\"unterminated"), None);
        assert_eq!(parse_if_match("\"a b\""), None);
    }

    #[test]
    fn escaped_nul() {
        assert!(has_escaped_nul(br#"{"name": "a\u0000b"}"#));
        assert!(!has_escaped_nul(br#"{"name": "a\\u0000b"}"#), "an escaped backslash, then u0000");
        assert!(has_escaped_nul(br#"{"name": "a\\\u0000b"}"#));
        assert!(!has_escaped_nul(br#"{"name": "\u0001"}"#));
    }
}
