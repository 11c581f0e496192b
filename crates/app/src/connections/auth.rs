//! [`Connector`]: a connection's credential as a request header, at call time.
//!
//! | auth type | header |
//! |---|---|
//! | `api_key` | `<header>: <value>` |
//! | `basic` | `Authorization: Basic base64(username:password)` (RFC 7617) |
//! | `oauth_client_credentials` | `Authorization: Bearer <access_token>` |
//!
//! OAuth tokens come from the connection's `token_url` by the client credentials grant
//! (RFC 6749 section 4.4): a `POST` with the form body `grant_type=client_credentials`
//! (and `scope` when the connection has one), the client authenticated with HTTP Basic
//! (section 2.3.1: `client_id` and `client_secret` form-encoded, then base64; the
//! method every authorization server must support), `Accept: application/json`. The
//! token endpoint obeys the outbound policy like any other request. A token is kept in
//! this process's memory (never stored, never in history) until shortly before its
//! `expires_in` ends (a tenth of its lifetime, at most 30 s, before; 5 minutes when the
//! answer has no `expires_in`), and fetched once per connection at a time. A changed
//! connection (its `updated_at`) drops its token. Callers that get a `401` with a
//! cached token call [`Connector::refresh`] and retry once.
//!
//! Uses of a connection are not audited one by one (a workflow may call thousands of
//! times); its changes are.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use reqwest::header::{HeaderName, HeaderValue};
use tenancy_adapters::keys::envelope::{self, KeyProvider, Sealed, WrappedKey, Zeroizing};
use tenancy_adapters::outbound::{self, OutboundPolicy, ReadError};
use tenancy_asl::Failure;
use tenancy_domain::connection::{self, AuthMeta, Connection};
use tenancy_domain::Error;
use tenancy_store::Store;

/// How long a token without `expires_in` is used.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// The most a token is refreshed before it expires.
pub const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// The largest token endpoint answer read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;
/// A token endpoint's longest answer time.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

/// A header carrying a credential (marked sensitive: never printed by `Debug`).
#[derive(Debug, Clone)]
pub struct Credential {
    pub header: HeaderName,
    pub value: HeaderValue,
    /// An OAuth token from the cache: worth a [`Connector::refresh`] after a 401.
    pub cached_token: bool,
}

/// Why a connection could not be used. Its texts name the connection, never the
/// credential nor the network behind the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// No such connection.
    NotFound(String),
    /// The connection exists but could not be used (its secret does not open, the
    /// token endpoint failed or was refused).
    Failed(String),
}

impl ConnectError {
    /// As a task failure: `Tenancy.ConnectionNotFound` or `Tenancy.ConnectionFailed`.
    pub fn failure(&self) -> Failure {
        match self {
            ConnectError::NotFound(m) => tenancy_engine::failure("Tenancy.ConnectionNotFound", m.clone()),
            ConnectError::Failed(m) => tenancy_engine::failure("Tenancy.ConnectionFailed", m.clone()),
        }
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::NotFound(m) | ConnectError::Failed(m) => f.write_str(m),
        }
    }
}

struct Token {
    value: Zeroizing<String>,
    /// The connection's `updated_at` it was fetched for.
    stamp: i64,
    refresh_at: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Token>>>;

/// Resolves connections into credentials; one per process, shared by every caller so
/// OAuth tokens are fetched once.
pub struct Connector {
    store: Arc<dyn Store>,
    keks: Option<Arc<dyn KeyProvider>>,
    policy: Arc<OutboundPolicy>,
    client: reqwest::Client,
    tokens: Mutex<HashMap<String, Slot>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").finish_non_exhaustive()
    }
}

impl Connector {
    pub fn new(store: Arc<dyn Store>, keks: Option<Arc<dyn KeyProvider>>, policy: Arc<OutboundPolicy>) -> Self {
        Connector { client: policy.client(), store, keks, policy, tokens: Mutex::default() }
    }

    /// The credential of the connection `name`.
    pub async fn credential(&self, name: &str) -> Result<Credential, ConnectError> {
        let conn = match self.store.connections().connection_get(name).await {
            Ok(c) => c,
            Err(Error::NotFound { .. }) => {
                return Err(ConnectError::NotFound(format!("connection {name:?} does not exist")))
            }
            Err(e) => return Err(failed(name, &format!("it could not be read ({})", e.code()))),
        };
        match &conn.auth {
            AuthMeta::ApiKey { header } => {
                let value = self.open(name).await?;
                Ok(Credential {
                    header: header_name(name, header)?,
                    value: sensitive(name, &value)?,
                    cached_token: false,
                })
            }
            AuthMeta::Basic { username } => {
                let password = self.open(name).await?;
                let pair = Zeroizing::new(format!("{username}:{}", &*password));
                let value = Zeroizing::new(format!("Basic {}", B64.encode(pair.as_bytes())));
                Ok(Credential {
                    header: reqwest::header::AUTHORIZATION,
                    value: sensitive(name, &value)?,
                    cached_token: false,
                })
            }
            AuthMeta::OauthClientCredentials { .. } => self.bearer(&conn).await,
        }
    }

    /// After a `401` answered a request carrying `stale`: forgets the cached token (if
    /// it is still the one cached) and returns a fresh credential.
    pub async fn refresh(&self, name: &str, stale: &Credential) -> Result<Credential, ConnectError> {
        let slot = self.slot(name);
        {
            let mut cached = slot.lock().await;
            if cached.as_ref().is_some_and(|t| format!("Bearer {}", &*t.value).as_bytes() == stale.value.as_bytes()) {
                *cached = None;
            }
        }
        self.credential(name).await
    }

    fn slot(&self, name: &str) -> Slot {
        let mut tokens = self.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        tokens.entry(name.to_owned()).or_default().clone()
    }

    async fn bearer(&self, conn: &Connection) -> Result<Credential, ConnectError> {
        let name = conn.name.as_str();
        let slot = self.slot(name);
        let mut cached = slot.lock().await;
        let stamp = conn.updated_at.millis();
        let fresh = cached.as_ref().filter(|t| t.stamp == stamp && Instant::now() < t.refresh_at);
        let token = match fresh {
            Some(t) => (t.value.clone(), true),
            None => {
                *cached = None;
                let t = self.fetch_token(conn).await?;
                let value = t.value.clone();
                *cached = Some(t);
                (value, false)
            }
        };
        let value = Zeroizing::new(format!("Bearer {}", &*token.0));
        Ok(Credential {
            header: reqwest::header::AUTHORIZATION,
            value: sensitive(name, &value)?,
            cached_token: token.1,
        })
    }

    async fn fetch_token(&self, conn: &Connection) -> Result<Token, ConnectError> {
        let name = conn.name.as_str();
        let AuthMeta::OauthClientCredentials { token_url, client_id, scope } = &conn.auth else {
            return Err(failed(name, "it is not an OAuth connection"));
        };
        let why = |what: &str| failed(name, &format!("its token endpoint {what}"));
        let url = reqwest::Url::parse(token_url).map_err(|_| why("is not a valid URL"))?;
        self.policy.check_url(&url).map_err(|_| why(&format!("failed: {}", outbound::REFUSED)))?;
        let secret = self.open(name).await?;
        let basic = Zeroizing::new(format!("{}:{}", form_encode(client_id), form_encode(&secret)));
        let auth = Zeroizing::new(format!("Basic {}", B64.encode(basic.as_bytes())));
        let mut body = String::from("grant_type=client_credentials");
        if let Some(scope) = scope {
            body.push_str("&scope=");
            body.push_str(&form_encode(scope));
        }
        let mut auth = HeaderValue::from_str(&auth).map_err(|_| why("cannot be authenticated"))?;
        auth.set_sensitive(true);
        let started = Instant::now();
        let res = self
            .client
            .post(url)
            .timeout(TOKEN_TIMEOUT)
            .header(reqwest::header::AUTHORIZATION, auth)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| why(&format!("failed: {}", outbound::describe(&e))))?;
        let status = res.status();
        if !status.is_success() {
            return Err(why(&format!("answered HTTP {}", status.as_u16())));
        }
        let bytes = match outbound::read_capped(res, MAX_TOKEN_RESPONSE).await {
            Ok(b) => Zeroizing::new(b),
            Err(ReadError::TooLarge) => return Err(why("answered more than 64 KiB")),
            Err(ReadError::Transport(e)) => return Err(why(&format!("failed: {}", outbound::describe(&e)))),
        };
        let answer: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|_| why("answered something other than JSON"))?;
        let Some(token) = answer.get("access_token").and_then(|t| t.as_str()).filter(|t| !t.is_empty()) else {
            return Err(why("answered without an access_token"));
        };
        if let Some(kind) = answer.get("token_type").and_then(|t| t.as_str()) {
            if !kind.eq_ignore_ascii_case("bearer") {
                return Err(why(&format!(
                    "answered a token of type {:?}, not Bearer",
                    kind.chars().take(32).collect::<String>()
                )));
            }
        }
        let lifetime = match answer.get("expires_in") {
            Some(serde_json::Value::Number(n)) => n.as_f64().map(|s| Duration::from_secs_f64(s.clamp(0.0, 1e9))),
            Some(serde_json::Value::String(s)) => {
                s.parse::<f64>().ok().map(|s| Duration::from_secs_f64(s.clamp(0.0, 1e9)))
            }
            _ => None,
        }
        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        let margin = (lifetime / 10).min(MAX_REFRESH_MARGIN);
        let value = Zeroizing::new(token.to_owned());
        Ok(Token { value, stamp: conn.updated_at.millis(), refresh_at: started + lifetime.saturating_sub(margin) })
    }

    /// The connection's credential, opened from its platform secret.
    async fn open(&self, name: &str) -> Result<Zeroizing<String>, ConnectError> {
        let kek = self.keks.as_deref().ok_or_else(|| failed(name, "no master key is configured"))?;
        let secret = connection::secret_name(name);
        let secrets = self.store.secrets();
        let unreadable = |e: Error| failed(name, &format!("its credential could not be read ({})", e.code()));
        let rec = secrets.secret_get(None, &secret).await.map_err(unreadable)?;
        let stored = secrets.secret_version_get(None, &secret, rec.current_version).await.map_err(unreadable)?;
        let sealed = Sealed {
            ciphertext: stored.ciphertext,
            key: WrappedKey { kek_id: stored.kek_id, wrapped: stored.wrapped_key },
        };
        let plain =
            envelope::open(kek, &envelope::binding(None, &secret, rec.current_version), &sealed).map_err(|e| {
                tracing::error!(connection = name, error = %e, "a connection's credential does not open");
                failed(name, "its credential does not open")
            })?;
        String::from_utf8(plain.to_vec()).map(Zeroizing::new).map_err(|_| failed(name, "its credential is not UTF-8"))
    }
}

fn failed(name: &str, why: &str) -> ConnectError {
    ConnectError::Failed(format!("connection {name:?}: {why}"))
}

fn header_name(name: &str, header: &str) -> Result<HeaderName, ConnectError> {
    HeaderName::from_bytes(header.as_bytes()).map_err(|_| failed(name, "its header name is invalid"))
}

fn sensitive(name: &str, value: &str) -> Result<HeaderValue, ConnectError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| failed(name, "its credential is not a valid header value"))?;
    v.set_sensitive(true);
    Ok(v)
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 appendix B).
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_follows_appendix_b() {
        assert_eq!(form_encode("a b+c/d:é"), "a+b%2Bc%2Fd%3A%C3%A9");
        assert_eq!(form_encode("Az09-._*"), "Az09-._*");
    }
}
