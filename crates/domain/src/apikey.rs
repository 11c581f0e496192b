//! API keys and roles.
//!
//! A key looks like `tny_` + 12 characters of lookup id + 30 characters of secret +
//! 6 characters of CRC-32 checksum, all base62 (`tny_3xK...`). The prefix makes leaked
//! keys recognisable to secret scanners, the checksum rejects typos without a database
//! round trip, and only the SHA-256 of the whole key is stored. Keys carry 178 bits of
//! randomness, so a fast hash is the right tool (as for GitHub's tokens); comparison is
//! constant time.

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ratelimit::RateLimit;
use crate::time::Timestamp;
use crate::{Error, Result};

pub const KEY_PREFIX: &str = "tny_";
const ID_LEN: usize = 12;
const SECRET_LEN: usize = 30;
const CHECKSUM_LEN: usize = 6;
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including API keys.
    Admin,
    /// Everything about tenants, plans and workflows; not API keys.
    Operator,
    /// Read only; never secret values.
    Viewer,
    /// Data-plane checks (quotas, flags, secrets) for any tenant.
    Service,
    /// Everything about its own tenant and nothing else.
    Tenant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Service => "service",
            Role::Tenant => "tenant",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Admin, Role::Operator, Role::Viewer, Role::Service, Role::Tenant].into_iter().find(|r| r.as_str() == s)
    }
}

/// A stored API key: never the key itself, only its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub tenant_id: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    /// The key's own API rate limit, instead of its role's (`--rate-limit-<role>-*`);
    /// absent: its role's (docs/rate-limits.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Labels policies can match (`principal.labels`, docs/policies.md); set at creation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The region policies can scope the key to (`principal.region`); set at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// When the key was last used, to the minute: each replica records a key's use at
    /// most once a minute, off the request path (docs/api.md, "API keys").
    #[serde(default)]
    pub last_used_at: Option<Timestamp>,
    /// After a rotation: until when the secret it replaced still works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<Timestamp>,
    #[serde(skip)]
    pub hash: String,
    /// The hash of the secret a rotation replaced, valid until
    /// `previous_secret_expires_at`.
    #[serde(skip)]
    pub previous_hash: Option<String>,
}

/// The default grace of a rotation: the old secret works for an hour more.
pub const DEFAULT_ROTATION_GRACE_S: u64 = 3_600;
/// The longest grace of a rotation: 7 days.
pub const MAX_ROTATION_GRACE_S: u64 = 7 * 86_400;

/// The body of `POST /v1/api-keys/{id}/rotate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// Seconds the old secret keeps working (0 to 604800; default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_s: Option<u64>,
}

impl RotateKey {
    /// The grace in seconds, checked.
    pub fn grace_s(&self) -> Result<u64> {
        let g = self.grace_s.unwrap_or(DEFAULT_ROTATION_GRACE_S);
        if g > MAX_ROTATION_GRACE_S {
            return Err(Error::invalid(format!("grace_s must be at most {MAX_ROTATION_GRACE_S} (7 days)")));
        }
        Ok(g)
    }
}

/// The body of `POST /v1/api-keys`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    pub name: String,
    pub role: Role,
    pub tenant_id: Option<String>,
    pub expires_at: Option<Timestamp>,
    /// The key's own API rate limit (its bucket's size), instead of its role's. Any size
    /// within the bounds, above the role's default too: only admins create keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Labels policies can match (`principal.labels`): up to 32 of 1-64 characters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The region policies can scope the key to (`principal.region`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl NewApiKey {
    pub fn validate(&self, now: Timestamp) -> Result<()> {
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err(Error::invalid("key name must be 1-200 characters"));
        }
        match (self.role, &self.tenant_id) {
            (Role::Tenant, None) => return Err(Error::invalid("a tenant key needs tenant_id")),
            (Role::Tenant, Some(id)) => crate::ids::validate_slug("tenant", id)?,
            (_, Some(_)) => return Err(Error::invalid("only keys with role \"tenant\" take tenant_id")),
            _ => {}
        }
        if matches!(self.expires_at, Some(t) if t <= now) {
            return Err(Error::invalid("expires_at must be in the future"));
        }
        if let Some(limit) = &self.rate_limit {
            limit.validate("rate_limit")?;
        }
        if self.labels.len() > 32 {
            return Err(Error::invalid("a key takes at most 32 labels"));
        }
        for l in self.labels.iter().chain(self.region.iter()) {
            if l.is_empty() || l.len() > 64 || l.chars().any(char::is_control) {
                return Err(Error::invalid(format!("labels and region must be 1-64 printable characters, not {l:?}")));
            }
        }
        Ok(())
    }
}

/// A freshly generated key: the plaintext (shown once) and what is stored.
pub struct GeneratedKey {
    pub plaintext: String,
    pub id: String,
    pub hash: String,
}

fn base62(rng: &mut impl Rng, n: usize) -> String {
    (0..n).map(|_| BASE62[rng.gen_range(0..BASE62.len())] as char).collect()
}

fn checksum(body: &str) -> String {
    let mut c = crc32fast::hash(body.as_bytes()) as u64;
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(c % 62) as usize];
        c /= 62;
    }
    String::from_utf8(out.to_vec()).expect("base62 is ascii")
}

pub fn hash_key(plaintext: &str) -> String {
    hex(&Sha256::digest(plaintext.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn generate(rng: &mut impl Rng) -> GeneratedKey {
    let lookup = base62(rng, ID_LEN);
    with_lookup(rng, &lookup)
}

fn with_lookup(rng: &mut impl Rng, lookup: &str) -> GeneratedKey {
    let body = format!("{KEY_PREFIX}{lookup}{}", base62(rng, SECRET_LEN));
    let plaintext = format!("{body}{}", checksum(&body));
    let id = format!("key_{}", &body[KEY_PREFIX.len()..KEY_PREFIX.len() + ID_LEN]);
    GeneratedKey { hash: hash_key(&plaintext), plaintext, id }
}

/// A new secret for the key `id` (a rotation): the same lookup id, a fresh secret.
/// `None` when `id` is not the id of a generated key.
pub fn regenerate(rng: &mut impl Rng, id: &str) -> Option<GeneratedKey> {
    let lookup = id.strip_prefix("key_")?;
    if lookup.len() != ID_LEN || !lookup.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    Some(with_lookup(rng, lookup))
}

/// Checks the shape and checksum of a presented key and returns its key id, without
/// touching storage.
pub fn parse(plaintext: &str) -> Option<String> {
    let rest = plaintext.strip_prefix(KEY_PREFIX)?;
    if rest.len() != ID_LEN + SECRET_LEN + CHECKSUM_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let split = plaintext.len() - CHECKSUM_LEN;
    if checksum(&plaintext[..split]) != plaintext[split..] {
        return None;
    }
    Some(format!("key_{}", &rest[..ID_LEN]))
}

/// Constant-time comparison of a presented key with a stored hash.
pub fn verify(plaintext: &str, stored_hash: &str) -> bool {
    hash_key(plaintext).as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

/// Constant-time comparison of two secrets of any length (for the bootstrap token).
pub fn secrets_equal(a: &str, b: &str) -> bool {
    let (ha, hb) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    ha.ct_eq(&hb).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_verify() {
        let mut rng = rand::thread_rng();
        let k = generate(&mut rng);
        assert!(k.plaintext.starts_with("tny_"));
        assert_eq!(parse(&k.plaintext).as_deref(), Some(k.id.as_str()));
        assert!(verify(&k.plaintext, &k.hash));
        assert!(!k.hash.contains(&k.plaintext[4..20]));
    }

    #[test]
    fn a_regenerated_key_keeps_its_id_with_a_new_secret() {
        let mut rng = rand::thread_rng();
        let k = generate(&mut rng);
        let r = regenerate(&mut rng, &k.id).unwrap();
        assert_eq!(parse(&r.plaintext).as_deref(), Some(k.id.as_str()));
        assert_ne!(r.plaintext, k.plaintext);
        assert!(verify(&r.plaintext, &r.hash) && !verify(&k.plaintext, &r.hash));
        assert!(regenerate(&mut rng, "key_short").is_none());
        assert!(RotateKey { grace_s: Some(MAX_ROTATION_GRACE_S + 1) }.grace_s().is_err());
        assert_eq!(RotateKey::default().grace_s().unwrap(), 3600);
    }

    #[test]
    fn typos_fail_the_checksum() {
        let k = generate(&mut rand::thread_rng());
        let mut chars: Vec<char> = k.plaintext.chars().collect();
        chars[10] = if chars[10] == 'a' { 'b' } else { 'a' };
        let typo: String = chars.into_iter().collect();
        assert_eq!(parse(&typo), None);
        assert!(!verify(&typo, &k.hash));
        assert_eq!(parse("tny_short"), None);
        assert_eq!(parse("Bearer"), None);
    }

    #[test]
    fn tenant_keys_need_a_tenant() {
        let now = Timestamp(0);
        let k = NewApiKey {
            name: "x".into(),
            role: Role::Tenant,
            tenant_id: None,
            expires_at: None,
            rate_limit: None,
            labels: vec![],
            region: None,
        };
        assert!(k.validate(now).is_err());
        let k = NewApiKey {
            name: "x".into(),
            role: Role::Admin,
            tenant_id: Some("acme".into()),
            expires_at: None,
            rate_limit: None,
            labels: vec![],
            region: None,
        };
        assert!(k.validate(now).is_err());
    }
}
