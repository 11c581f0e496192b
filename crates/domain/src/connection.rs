//! Connections (Step Functions' HTTP task connections, EventBridge's connections):
//! named credentials for outbound HTTP that `http:invoke`, provisioning hooks and
//! webhook subscriptions name instead of carrying the credential themselves.
//!
//! A connection is its metadata (this module's [`Connection`]: the auth type, the
//! header, username, token URL, client id and scope, a description) and one
//! credential (the api key's value, the basic password or the OAuth client secret),
//! which is sealed as the platform secret [`secret_name`] (`connection.<name>`) of the
//! secret store and never leaves the server again (docs/connections.md).

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;
use crate::{Error, ErrorCode, Result};

/// The longest connection name (EventBridge's).
pub const MAX_NAME_LEN: usize = 64;
/// The longest credential (value, password, client secret).
pub const MAX_CREDENTIAL_LEN: usize = 8 * 1024;
/// The longest description.
pub const MAX_DESCRIPTION_LEN: usize = 512;
/// The prefix of the platform secrets holding connections' credentials: reserved,
/// callers of `/v1/secrets` cannot write, delete, restore or read them.
pub const SECRET_PREFIX: &str = "connection.";

/// Headers a connection cannot set: they belong to the request's framing or to
/// Tenancy's own signature and idempotency headers.
pub const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "idempotency-key",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// The platform secret holding `name`'s credential.
pub fn secret_name(name: &str) -> String {
    format!("{SECRET_PREFIX}{name}")
}

/// Whether a platform secret name is a connection's (reserved).
pub fn is_reserved_secret(name: &str) -> bool {
    name.starts_with(SECRET_PREFIX)
}

/// The credential part of a `PUT /v1/connections/{name}` body.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthSpec {
    /// `header: value` on every request (an API key).
    ApiKey { header: String, value: String },
    /// `Authorization: Basic base64(username:password)` (RFC 7617).
    Basic { username: String, password: String },
    /// A bearer token from `token_url` by the client credentials grant (RFC 6749
    /// section 4.4), the client authenticated with HTTP Basic.
    OauthClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
    },
}

impl std::fmt::Debug for AuthSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSpec").field("auth", &self.meta()).field("credential", &"<redacted>").finish()
    }
}

impl Drop for AuthSpec {
    fn drop(&mut self) {
        let s = match self {
            AuthSpec::ApiKey { value, .. } => value,
            AuthSpec::Basic { password, .. } => password,
            AuthSpec::OauthClientCredentials { client_secret, .. } => client_secret,
        };
        zeroize::Zeroize::zeroize(s);
    }
}

impl AuthSpec {
    /// The metadata (everything but the credential).
    pub fn meta(&self) -> AuthMeta {
        match self {
            AuthSpec::ApiKey { header, .. } => AuthMeta::ApiKey { header: header.clone() },
            AuthSpec::Basic { username, .. } => AuthMeta::Basic { username: username.clone() },
            AuthSpec::OauthClientCredentials { token_url, client_id, scope, .. } => AuthMeta::OauthClientCredentials {
                token_url: token_url.clone(),
                client_id: client_id.clone(),
                scope: scope.clone(),
            },
        }
    }

    /// The credential (to be sealed).
    pub fn credential(&self) -> &str {
        match self {
            AuthSpec::ApiKey { value, .. } => value,
            AuthSpec::Basic { password, .. } => password,
            AuthSpec::OauthClientCredentials { client_secret, .. } => client_secret,
        }
    }

    /// Checks the metadata and the credential.
    pub fn validate(&self) -> Result<()> {
        self.meta().validate()?;
        let what = match self {
            AuthSpec::ApiKey { .. } => "value",
            AuthSpec::Basic { .. } => "password",
            AuthSpec::OauthClientCredentials { .. } => "client_secret",
        };
        let c = self.credential();
        if c.is_empty() || c.len() > MAX_CREDENTIAL_LEN {
            return Err(invalid(format!("{what} must be 1 to {MAX_CREDENTIAL_LEN} bytes")));
        }
        // A header value: visible ASCII, spaces and tabs inside (RFC 9110 field-value),
        // never CR, LF or NUL (no header injection).
        let visible = c.bytes().all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic());
        if matches!(self, AuthSpec::ApiKey { .. })
            && (!visible || c.starts_with([' ', '\t']) || c.ends_with([' ', '\t']))
        {
            return Err(invalid(format!(
                "{what} must be a header value: visible ASCII characters, with spaces or tabs only inside"
            )));
        }
        if c.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(invalid(format!("{what} must not contain control characters")));
        }
        Ok(())
    }
}

/// A connection's auth as the API shows it: never the credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuthMeta {
    ApiKey {
        header: String,
    },
    Basic {
        username: String,
    },
    OauthClientCredentials {
        token_url: String,
        client_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
    },
}

impl AuthMeta {
    pub fn type_name(&self) -> &'static str {
        match self {
            AuthMeta::ApiKey { .. } => "api_key",
            AuthMeta::Basic { .. } => "basic",
            AuthMeta::OauthClientCredentials { .. } => "oauth_client_credentials",
        }
    }

    /// The header the credential goes in (`Authorization` for basic and OAuth).
    pub fn header(&self) -> &str {
        match self {
            AuthMeta::ApiKey { header } => header,
            _ => "Authorization",
        }
    }

    pub fn validate(&self) -> Result<()> {
        match self {
            AuthMeta::ApiKey { header } => {
                validate_header_name(header)?;
                if RESERVED_HEADERS.contains(&header.to_ascii_lowercase().as_str()) {
                    return Err(invalid(format!("header {header:?} is reserved: Tenancy sets it itself")));
                }
            }
            AuthMeta::Basic { username } => {
                if username.is_empty() || username.len() > 256 {
                    return Err(invalid("username must be 1 to 256 bytes".into()));
                }
                if username.contains(':') || username.chars().any(char::is_control) {
                    return Err(invalid("username must not contain ':' nor control characters (RFC 7617)".into()));
                }
            }
            AuthMeta::OauthClientCredentials { token_url, client_id, scope } => {
                validate_token_url(token_url)?;
                if client_id.is_empty() || client_id.len() > 256 || client_id.chars().any(char::is_control) {
                    return Err(invalid("client_id must be 1 to 256 bytes without control characters".into()));
                }
                if let Some(scope) = scope {
                    // RFC 6749 3.3: scope tokens are %x21 / %x23-5B / %x5D-7E, space separated.
                    let ok = !scope.is_empty()
                        && scope.len() <= 1024
                        && scope.bytes().all(|b| b == b' ' || (b.is_ascii_graphic() && b != b'"' && b != b'\\'));
                    if !ok {
                        return Err(invalid(
                            "scope must be space-separated scope tokens (RFC 6749 section 3.3)".into(),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The body of `PUT /v1/connections/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSpec {
    pub auth: AuthSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl ConnectionSpec {
    pub fn validate(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        self.auth.validate()?;
        if let Some(d) = &self.description {
            if d.len() > MAX_DESCRIPTION_LEN || d.chars().any(|c| c.is_control() && c != '\n') {
                return Err(invalid(format!(
                    "description must be at most {MAX_DESCRIPTION_LEN} bytes without control characters"
                )));
            }
        }
        Ok(())
    }
}

/// A connection as the API shows it (metadata only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Connection {
    pub name: String,
    pub auth: AuthMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

fn invalid(message: String) -> Error {
    Error::InvalidRequest { code: ErrorCode::InvalidConnection, message }
}

/// A connection name as EventBridge's: 1-64 letters, digits, `.`, `-` and `_`.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "connection name {name:?} is invalid: use 1-{MAX_NAME_LEN} letters, digits, '.', '-' and '_'"
        )))
    }
}

/// A header name: an RFC 9110 `token` (`tchar`s), at most 128 bytes.
pub fn validate_header_name(h: &str) -> Result<()> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if h.is_empty() || h.len() > 128 || !h.bytes().all(tchar) {
        return Err(invalid(format!("header {h:?} is not a valid header name (an RFC 9110 token)")));
    }
    Ok(())
}

/// An absolute `http` or `https` URL with a host (the outbound policy checks where it
/// points at call time).
fn validate_token_url(url: &str) -> Result<()> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    match host {
        Some(h) if !h.is_empty() && !h.starts_with(':') && !h.contains('@') && !url.contains(char::is_whitespace) => {
            Ok(())
        }
        _ => Err(invalid(format!("token_url must be an absolute http or https URL without credentials, got {url:?}"))),
    }
}

/// The connection name in `ConnectionArn`: a bare name, or an EventBridge connection
/// ARN `arn:aws:events:REGION:ACCOUNT:connection/NAME[/ID]`.
pub fn name_of_arn(arn: &str) -> Option<&str> {
    let name = match arn.strip_prefix("arn:") {
        None => arn,
        Some(rest) => {
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            let [_partition, service, _region, _account, resource] = parts[..] else { return None };
            if service != "events" {
                return None;
            }
            let path = resource.strip_prefix("connection/")?;
            path.split('/').next()?
        }
    };
    validate_name(name).ok().map(|_| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> Result<()> {
        serde_json::from_value::<ConnectionSpec>(v).map_err(|e| Error::invalid(e.to_string()))?.validate("c")
    }

    #[test]
    fn names_and_arns() {
        assert_eq!(name_of_arn("crm"), Some("crm"));
        assert_eq!(name_of_arn("arn:aws:events:us-east-1:123456789012:connection/crm/81210c42-8af1"), Some("crm"));
        assert_eq!(name_of_arn("arn:aws:events:us-east-1:123456789012:connection/crm.v2"), Some("crm.v2"));
        assert_eq!(name_of_arn("arn:aws:lambda:us-east-1:123:function:crm"), None);
        assert_eq!(name_of_arn("arn:aws:events:us-east-1:123:rule/crm"), None);
        assert_eq!(name_of_arn("a b"), None);
        assert_eq!(name_of_arn(""), None);
    }

    #[test]
    fn validation_refuses_bad_headers_urls_and_credentials() {
        let code = |r: Result<()>| r.unwrap_err().code();
        assert!(spec(serde_json::json!({"auth": {"type": "api_key", "header": "X-Api-Key", "value": "k1"}})).is_ok());
        for (auth, why) in [
            (serde_json::json!({"type": "api_key", "header": "X Api", "value": "k"}), "space in header"),
            (serde_json::json!({"type": "api_key", "header": "X-A:", "value": "k"}), "colon in header"),
            (serde_json::json!({"type": "api_key", "header": "Host", "value": "k"}), "reserved header"),
            (serde_json::json!({"type": "api_key", "header": "X-A", "value": "a\r\nB: c"}), "CRLF value"),
            (serde_json::json!({"type": "api_key", "header": "X-A", "value": ""}), "empty value"),
            (serde_json::json!({"type": "basic", "username": "a:b", "password": "p"}), "colon in username"),
            (
                serde_json::json!({"type": "oauth_client_credentials", "token_url": "ftp://x/t",
                                   "client_id": "c", "client_secret": "s"}),
                "ftp token url",
            ),
            (
                serde_json::json!({"type": "oauth_client_credentials", "token_url": "https://u:p@x/t",
                                   "client_id": "c", "client_secret": "s"}),
                "credentials in url",
            ),
        ] {
            assert_eq!(code(spec(serde_json::json!({ "auth": auth }))), ErrorCode::InvalidConnection, "{why}");
        }
        assert!(validate_name("crm.prod-1_a").is_ok());
        assert!(validate_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn debug_never_shows_the_credential() {
        let s: AuthSpec =
            serde_json::from_value(serde_json::json!({"type": "basic", "username": "u", "password": "hunter2-x"}))
                .unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
