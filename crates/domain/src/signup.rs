//! Self-service sign-up: the request, the activation token and the stored sign-up.
//!
//! An activation token is `act_` + the base64url (no padding) of 32 random bytes. Only
//! its SHA-256 is stored (a sign-up row is looked up by it, as API keys are); the token
//! itself leaves the server once, in the `SignupRequested` event, and is single use
//! and short-lived (docs/self-service.md).

use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::api::CreatedKey;
use crate::tenant::Tenant;
use crate::time::Timestamp;
use crate::{Error, ErrorCode, Result};

pub const TOKEN_PREFIX: &str = "act_";
/// The default time an activation token works: 24 hours.
pub const DEFAULT_TOKEN_TTL_S: u64 = 86_400;

/// The body of `POST /v1/signup`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    /// Where the product sends the activation message.
    pub email: String,
    /// The organisation: the new tenant's name.
    pub org_name: String,
    /// A plan marked `self_service`; absent: the only such plan (400 when there are
    /// several or none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

impl SignupRequest {
    /// Checks the fields and returns the email normalized (trimmed, its domain in
    /// lower case) with its domain.
    pub fn validate(&self) -> Result<(String, String)> {
        let email = self.email.trim();
        let invalid = || Error::invalid("email must be an address like name@example.com (at most 254 characters)");
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = email.rsplit_once('@').ok_or_else(invalid)?;
        if local.is_empty() || local.len() > 64 || local.contains('@') {
            return Err(invalid());
        }
        let domain = domain.to_ascii_lowercase();
        let labels_ok = domain.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80)
        });
        if !domain.contains('.') || !labels_ok {
            return Err(invalid());
        }
        let org = self.org_name.trim();
        if org.is_empty() || org.len() > 200 {
            return Err(Error::invalid("org_name must be 1-200 characters"));
        }
        if let Some(plan) = &self.plan {
            crate::ids::validate_slug("plan", plan)?;
        }
        Ok((format!("{local}@{domain}"), domain))
    }
}

/// The answer to `POST /v1/signup`: the same whatever the email.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SignupAccepted {
    pub status: String,
    pub message: String,
}

impl SignupAccepted {
    pub fn new() -> Self {
        SignupAccepted {
            status: "accepted".into(),
            message: "if this address may sign up, an activation message is on its way".into(),
        }
    }
}

impl Default for SignupAccepted {
    fn default() -> Self {
        SignupAccepted::new()
    }
}

/// The body of `POST /v1/signup/activate`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    pub token: String,
}

/// The answer to an activation: the new tenant (provisioning), its provisioning
/// execution and its tenant key, shown this once.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Activated {
    pub tenant: Tenant,
    pub execution_id: Option<String>,
    pub api_key: CreatedKey,
}

/// A stored sign-up: never the token, only its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct Signup {
    /// The hex SHA-256 of the activation token.
    pub token_hash: String,
    pub email: String,
    pub org_name: String,
    pub plan: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// Set once the token was used.
    pub activated_at: Option<Timestamp>,
    pub tenant_id: Option<String>,
}

/// A fresh activation token and its hash.
pub struct GeneratedToken {
    pub token: String,
    pub hash: String,
}

pub fn generate_token(rng: &mut impl RngCore) -> GeneratedToken {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    let token = format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    GeneratedToken { hash: crate::apikey::hash_key(&token), token }
}

/// The hash a presented token is looked up by, or `None` when it is not of the shape
/// of a token (refused without touching storage).
pub fn token_hash(token: &str) -> Option<String> {
    let body = token.strip_prefix(TOKEN_PREFIX)?;
    let ok = body.len() == 43 && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| crate::apikey::hash_key(token))
}

/// The one refusal of an unknown or used token (the same words for both).
pub fn invalid_token() -> Error {
    Error::InvalidRequest {
        code: ErrorCode::ActivationInvalid,
        message: "the activation token is unknown or already used; sign up again".into(),
    }
}

/// The refusal of an expired token (while its row is kept: the sweeper purges it).
pub fn expired_token(at: Timestamp) -> Error {
    Error::InvalidRequest {
        code: ErrorCode::ActivationInvalid,
        message: format!("the activation token expired at {}; sign up again", at.to_rfc3339()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_their_shape_and_hash() {
        let t = generate_token(&mut rand::thread_rng());
        assert!(t.token.starts_with("act_") && t.token.len() == 47, "{}", t.token);
        assert_eq!(token_hash(&t.token), Some(t.hash.clone()));
        assert_eq!(token_hash("act_short"), None);
        assert_eq!(token_hash(&t.token.replace("act_", "tny_")), None);
    }

    #[test]
    fn emails_are_checked_and_normalized() {
        let req = |e: &str| SignupRequest { email: e.into(), org_name: "Acme".into(), plan: None };
        assert_eq!(req(" Ann@Example.COM ").validate().unwrap(), ("Ann@example.com".into(), "example.com".into()));
        for bad in ["", "ann", "ann@", "@example.com", "ann@localhost", "a b@example.com", "ann@exa mple.com"] {
            assert!(req(bad).validate().is_err(), "{bad}");
        }
        let r = SignupRequest { email: "a@b.co".into(), org_name: " ".into(), plan: None };
        assert!(r.validate().is_err());
    }
}
