//! Sign-in, the session cookie, CSRF tokens.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tenancy_app::{OpContext, Permission};

use crate::view;
use crate::Console;

/// The session cookie: the API key, base64url-encoded (cookie-safe whatever the key).
pub const COOKIE: &str = "tenancy_console";
/// A session lasts 12 hours in the browser (the key may be revoked sooner: every
/// request authenticates it again).
const MAX_AGE_S: u64 = 12 * 3600;

/// A signed-in caller: the operation context every app call takes, and the CSRF
/// token its forms carry.
pub struct Session {
    pub ctx: OpContext,
    pub csrf: String,
}

impl Session {
    /// Whether the caller holds a permission: decides which action buttons a page shows.
    pub fn can(&self, p: Permission) -> bool {
        self.ctx.authorize(p).is_ok()
    }

    /// Checks a form's CSRF token (constant time): `None` when it is right, else the
    /// 403 page to answer with.
    pub fn csrf_refusal(&self, form: &HashMap<String, String>) -> Option<Response> {
        let sent = form.get("csrf").map(String::as_bytes).unwrap_or_default();
        if bool::from(sent.ct_eq(self.csrf.as_bytes())) {
            None
        } else {
            Some(view::message_page(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "The form's CSRF token is missing or wrong: reload the page and try again.",
            ))
        }
    }
}

/// The CSRF token of a session: HMAC-SHA256 keyed by its API key. A page's script
/// cannot read the HttpOnly cookie, another site can neither read the page nor the
/// cookie, so neither can forge it; every replica computes the same token.
pub fn csrf_token(api_key: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(api_key.as_bytes()).expect("HMAC takes any key length");
    mac.update(b"tenancy-console-csrf-v1");
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .and_then(|(_, v)| URL_SAFE_NO_PAD.decode(v).ok())
        .and_then(|b| String::from_utf8(b).ok())
}

/// Whether the request reached a loopback host (`localhost`, `127.0.0.1`, `[::1]`):
/// browsers there speak plain HTTP, and the cookie goes without `Secure`.
fn loopback(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let name = if host.starts_with('[') {
        host.split(']').next().map(|h| h.trim_start_matches('[')).unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    name == "localhost" || name == "::1" || name.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

fn set_cookie(headers: &HeaderMap, value: &str, max_age: u64) -> HeaderValue {
    let secure = if loopback(headers) { "" } else { "; Secure" };
    let c = format!("{COOKIE}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&c).expect("cookie text is visible ASCII")
}

fn to_login() -> Response {
    Redirect::to("/console/login").into_response()
}

impl FromRequestParts<Arc<Console>> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<Console>) -> Result<Self, Response> {
        let Some(key) = cookie_value(&parts.headers) else { return Err(to_login()) };
        let principal = match state.app.auth.authenticate(&key).await {
            Ok(p) => p,
            Err(tenancy_domain::Error::Unauthenticated) => {
                // A revoked or unknown key: drop the cookie and sign in again.
                let mut res = to_login();
                res.headers_mut().insert(header::SET_COOKIE, set_cookie(&parts.headers, "", 0));
                return Err(res);
            }
            Err(e) => return Err(view::error_page(&e)),
        };
        let source_ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
        let request_id = parts.headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(Session { ctx: OpContext { principal, request_id, source_ip }, csrf: csrf_token(&key) })
    }
}

pub async fn login_page() -> Response {
    view::login(None, StatusCode::OK)
}

/// Signs in: the key must authenticate as the API would take it.
pub async fn login(
    State(s): State<Arc<Console>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let key = form.get("key").map(|k| k.trim()).unwrap_or_default();
    if key.is_empty() {
        return view::login(Some("Enter an API key."), StatusCode::BAD_REQUEST);
    }
    match s.app.auth.authenticate(key).await {
        Ok(_) => {
            let mut res = Redirect::to("/console").into_response();
            let value = URL_SAFE_NO_PAD.encode(key.as_bytes());
            res.headers_mut().insert(header::SET_COOKIE, set_cookie(&headers, &value, MAX_AGE_S));
            res
        }
        Err(tenancy_domain::Error::Unauthenticated) => {
            view::login(Some("That API key is unknown, revoked or expired."), StatusCode::UNAUTHORIZED)
        }
        Err(e) => view::error_page(&e),
    }
}

/// Signs out (a POST with the CSRF token: another site cannot sign you out).
pub async fn logout(session: Session, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    if let Some(res) = session.csrf_refusal(&form) {
        return res;
    }
    let mut res = Redirect::to("/console/login").into_response();
    res.headers_mut().insert(header::SET_COOKIE, set_cookie(&headers, "", 0));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_differ_per_key_and_are_stable() {
        assert_eq!(csrf_token("a"), csrf_token("a"));
        assert_ne!(csrf_token("a"), csrf_token("b"));
    }

    #[test]
    fn secure_cookies_off_loopback_only() {
        let h = |host: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, HeaderValue::from_str(host).unwrap());
            m
        };
        for host in ["localhost:8080", "127.0.0.1:3000", "[::1]:80", "localhost"] {
            assert!(loopback(&h(host)), "{host}");
        }
        for host in ["console.example.com", "10.0.0.1:8080", "localhost.evil.com"] {
            assert!(!loopback(&h(host)), "{host}");
            assert!(set_cookie(&h(host), "x", 1).to_str().unwrap().ends_with("; Secure"));
        }
    }

    #[test]
    fn cookie_round_trip() {
        let mut m = HeaderMap::new();
        let v = URL_SAFE_NO_PAD.encode("key; with=odd chars");
        m.insert(header::COOKIE, HeaderValue::from_str(&format!("other=1; {COOKIE}={v}")).unwrap());
        assert_eq!(cookie_value(&m).as_deref(), Some("key; with=odd chars"));
    }
}
