//! Standard Webhooks (<https://www.standardwebhooks.com>) signing and verification.
//!
//! The signed content is `"{msg_id}.{timestamp}.{body}"`, signed with HMAC-SHA256 under
//! the secret's raw bytes. The `webhook-signature` header carries one or more
//! space-separated `v1,<base64 signature>` entries, one per active secret, so receivers
//! keep verifying while a secret is rotated.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;

/// Header carrying the unique message id.
pub const HEADER_ID: &str = "webhook-id";
/// Header carrying the send time in Unix seconds.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying the space-separated signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// Default tolerance between the message timestamp and the receiver's clock.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

const SECRET_PREFIX: &str = "whsec_";
const SECRET_LEN: usize = 32;

/// A webhook signing secret: raw key bytes, written as `whsec_<base64>`.
///
/// `Debug` does not print the key; [`WebhookSecret::expose`] gives the encoded form.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

/// The three Standard Webhooks headers of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookHeaders<'a> {
    /// `webhook-id`.
    pub id: &'a str,
    /// `webhook-timestamp`, Unix seconds as decimal text.
    pub timestamp: &'a str,
    /// `webhook-signature`, space-separated `v1,<base64>` entries.
    pub signature: &'a str,
}

/// Why a secret or a delivery was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WebhookError {
    #[error("secret is not valid base64")]
    SecretEncoding,
    #[error("secret is empty")]
    SecretEmpty,
    #[error("timestamp header is not an integer number of seconds")]
    InvalidTimestamp,
    #[error("message timestamp is too old")]
    TimestampTooOld,
    #[error("message timestamp is too far in the future")]
    TimestampTooNew,
    #[error("no secret to verify with")]
    NoSecrets,
    #[error("no matching signature found")]
    NoMatchingSignature,
}

impl WebhookSecret {
    /// A new secret of 32 random bytes.
    pub fn generate() -> WebhookSecret {
        let mut key = vec![0u8; SECRET_LEN];
        rand::thread_rng().fill_bytes(&mut key);
        WebhookSecret(key)
    }

    /// A secret from raw key bytes.
    pub fn from_bytes(key: impl Into<Vec<u8>>) -> Result<WebhookSecret, WebhookError> {
        let key = key.into();
        if key.is_empty() {
            return Err(WebhookError::SecretEmpty);
        }
        Ok(WebhookSecret(key))
    }

    /// Parses `whsec_<base64>`; the prefix is optional, as the spec's libraries accept.
    pub fn parse(s: &str) -> Result<WebhookSecret, WebhookError> {
        let encoded = s.strip_prefix(SECRET_PREFIX).unwrap_or(s);
        let key = B64.decode(encoded).map_err(|_| WebhookError::SecretEncoding)?;
        WebhookSecret::from_bytes(key)
    }

    /// The encoded secret, `whsec_<base64>`, to show once to its owner.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", B64.encode(&self.0))
    }

    fn mac(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("hmac takes any key length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl FromStr for WebhookSecret {
    type Err = WebhookError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WebhookSecret::parse(s)
    }
}

/// One secret is a list of one, so [`verify`] and [`sign_all`] take either.
impl AsRef<[WebhookSecret]> for WebhookSecret {
    fn as_ref(&self) -> &[WebhookSecret] {
        std::slice::from_ref(self)
    }
}

/// The signature of one message under one secret: `v1,<base64 HMAC-SHA256>`.
pub fn sign(secret: &WebhookSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    format!("v1,{}", B64.encode(secret.mac(msg_id, timestamp, body)))
}

/// The `webhook-signature` header value under every secret (for rotation): the
/// signatures joined by single spaces, in the order of `secrets`.
pub fn sign_all<S>(secrets: &S, msg_id: &str, timestamp: i64, body: &[u8]) -> String
where
    S: AsRef<[WebhookSecret]> + ?Sized,
{
    secrets.as_ref().iter().map(|s| sign(s, msg_id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

/// Verifies a delivery against one or more secrets.
///
/// Accepts when the timestamp is within `tolerance` of `now` (Unix seconds, both
/// directions) and any `v1` signature in the header equals the signature under any of
/// the secrets. Entries of other versions are ignored. Comparison is constant time.
pub fn verify<S>(
    secrets: &S,
    headers: &WebhookHeaders<'_>,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), WebhookError>
where
    S: AsRef<[WebhookSecret]> + ?Sized,
{
    let secrets = secrets.as_ref();
    if secrets.is_empty() {
        return Err(WebhookError::NoSecrets);
    }
    let timestamp: i64 = headers.timestamp.trim().parse().map_err(|_| WebhookError::InvalidTimestamp)?;
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if timestamp < now.saturating_sub(tolerance) {
        return Err(WebhookError::TimestampTooOld);
    }
    if timestamp > now.saturating_add(tolerance) {
        return Err(WebhookError::TimestampTooNew);
    }
    let expected: Vec<[u8; 32]> = secrets.iter().map(|s| s.mac(headers.id, timestamp, body)).collect();
    let mut matched = subtle::Choice::from(0u8);
    for entry in headers.signature.split(' ').filter(|e| !e.is_empty()) {
        let Some(encoded) = entry.strip_prefix("v1,") else {
            continue;
        };
        let Ok(given) = B64.decode(encoded) else {
            continue;
        };
        for want in &expected {
            matched |= want.as_slice().ct_eq(&given);
        }
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(WebhookError::NoMatchingSignature)
    }
}
