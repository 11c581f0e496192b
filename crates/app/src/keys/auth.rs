//! Authentication: API keys, the bootstrap admin token, and a short-lived cache.
//!
//! Presented keys are checked for shape and checksum before storage is touched, then
//! looked up by their id and compared in constant time with the stored hash (and, after
//! a rotation, with the replaced secret's hash until its grace ends). Verified
//! keys are cached for [`CACHE_TTL`] so the data-plane check endpoints do not pay a
//! database round trip per request; a key deleted or rotated through this process is
//! evicted at once, one deleted through another replica stops working within the TTL
//! (a secret that does not match a cached key is looked up again once, so a key
//! rotated on another replica works here at once).
//!
//! Only a key presented with its right secret learns that it expired (401
//! `key-expired`); a wrong, unknown or malformed key is the generic 401
//! `unauthenticated`, so the distinction tells a stranger nothing.
//!
//! `last_used_at`: the hot path never waits for it. Each process remembers when it last
//! recorded each key's use and records it again at most once per [`TOUCH_EVERY`], in a
//! task of its own (one small conditional UPDATE that never moves the time back), so a
//! key's `last_used_at` is right to the minute per replica.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use tenancy_domain::apikey::{self, ApiKey, Role};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_store::{Effects, Store};

use crate::Principal;

pub const CACHE_TTL: Duration = Duration::from_secs(10);
/// How often one process records a key's use (`last_used_at`) at most.
pub const TOUCH_EVERY: Duration = Duration::from_secs(60);
const BOOTSTRAP_KEY_NAME: &str = "bootstrap-admin";

#[derive(Clone)]
struct Cached {
    key: ApiKey,
    at: Instant,
}

pub struct Authenticator {
    store: Arc<dyn Store>,
    admin_token: Option<SecretString>,
    cache: Mutex<HashMap<String, Cached>>,
    /// When this process last recorded each key's use.
    touched: Mutex<HashMap<String, Instant>>,
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>, admin_token: Option<SecretString>) -> Self {
        Authenticator { store, admin_token, cache: Mutex::new(HashMap::new()), touched: Mutex::new(HashMap::new()) }
    }

    /// Resolves a bearer token to a principal.
    pub async fn authenticate(&self, token: &str) -> Result<Principal> {
        if let Some(admin) = &self.admin_token {
            if apikey::secrets_equal(token, admin.expose_secret()) {
                return Ok(Principal {
                    key_id: None,
                    role: Role::Admin,
                    tenant_id: None,
                    rate_limit: None,
                    labels: vec![],
                    region: None,
                });
            }
        }
        let id = apikey::parse(token).ok_or(Error::Unauthenticated)?;
        let cached = self.cache.lock().expect("auth cache poisoned").get(&id).cloned();
        let now = Timestamp::now();
        let key = match cached {
            Some(c) if c.at.elapsed() < CACHE_TTL && matches(token, &c.key, now) => c.key,
            _ => {
                let key = match self.store.api_key_get(&id).await {
                    Ok(k) => k,
                    Err(Error::NotFound { .. }) => return Err(Error::Unauthenticated),
                    Err(e) => return Err(e),
                };
                let mut cache = self.cache.lock().expect("auth cache poisoned");
                if cache.len() > 100_000 {
                    cache.clear();
                }
                cache.insert(id, Cached { key: key.clone(), at: Instant::now() });
                key
            }
        };
        if !matches(token, &key, now) {
            return Err(Error::Unauthenticated);
        }
        if let Some(at) = key.expires_at.filter(|t| *t <= now) {
            return Err(Error::InvalidRequest {
                code: ErrorCode::KeyExpired,
                message: format!("the API key {} expired at {}", key.id, at.to_rfc3339()),
            });
        }
        self.touch(&key.id);
        // A key's rate limit is fixed at its creation, so the cached key carries the
        // right one: the bucket's size comes with the principal, no read per request.
        Ok(Principal {
            key_id: Some(key.id),
            role: key.role,
            tenant_id: key.tenant_id,
            rate_limit: key.rate_limit,
            labels: key.labels,
            region: key.region,
        })
    }

    /// Records the use of key `id` unless this process did within [`TOUCH_EVERY`]: in
    /// a task of its own, never waited for (a failure is only logged).
    fn touch(&self, id: &str) {
        {
            let mut touched = self.touched.lock().expect("auth touch map poisoned");
            if touched.get(id).is_some_and(|at| at.elapsed() < TOUCH_EVERY) {
                return;
            }
            if touched.len() > 100_000 {
                touched.retain(|_, at| at.elapsed() < TOUCH_EVERY);
            }
            touched.insert(id.to_owned(), Instant::now());
        }
        let (store, id) = (self.store.clone(), id.to_owned());
        tokio::spawn(async move {
            if let Err(e) = store.api_key_touch(&id, Timestamp::now()).await {
                tracing::debug!(error = %e, key_id = %id, "failed to record an API key's use");
            }
        });
    }

    pub fn evict(&self, key_id: &str) {
        self.cache.lock().expect("auth cache poisoned").remove(key_id);
    }

    pub fn has_admin_token(&self) -> bool {
        self.admin_token.is_some()
    }
}

/// Whether `token` is `key`'s secret, or the secret a rotation replaced while its grace
/// lasts.
fn matches(token: &str, key: &ApiKey, now: Timestamp) -> bool {
    if apikey::verify(token, &key.hash) {
        return true;
    }
    match (&key.previous_hash, key.previous_secret_expires_at) {
        (Some(hash), Some(until)) => now < until && apikey::verify(token, hash),
        _ => false,
    }
}

/// Makes sure an operator can get in on first start.
///
/// With `TENANCY_ADMIN_TOKEN` set there is nothing to do. Otherwise the admin key in
/// `<data dir>/admin-token` is reused when it is still valid, else a new admin key is
/// generated, stored hashed and written there with mode 0600. Returns the file's path
/// when it was (re)written; the key itself is never logged.
pub async fn bootstrap_admin(auth: &Authenticator, store: &dyn Store, data_dir: &Path) -> Result<Option<PathBuf>> {
    if auth.has_admin_token() {
        return Ok(None);
    }
    let path = data_dir.join("admin-token");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        if auth.authenticate(existing.trim()).await.is_ok_and(|p| p.role == Role::Admin) {
            return Ok(None);
        }
    }
    let generated = apikey::generate(&mut rand::thread_rng());
    let key = ApiKey {
        id: generated.id.clone(),
        name: BOOTSTRAP_KEY_NAME.into(),
        role: Role::Admin,
        tenant_id: None,
        created_at: Timestamp::now(),
        expires_at: None,
        rate_limit: None,
        labels: vec![],
        region: None,
        last_used_at: None,
        previous_secret_expires_at: None,
        hash: generated.hash,
        previous_hash: None,
    };
    let audit = crate::OpContext::system().audit(
        "api_key.create",
        format!("api-key/{}", key.id),
        None,
        serde_json::json!({"name": key.name, "role": "admin"}),
    );
    store.api_key_create(&key, &Effects::none().with_audit(audit)).await?;
    write_secret_file(&path, &generated.plaintext)
        .map_err(|e| Error::internal(format!("failed to write {}: {e}", path.display())))?;
    Ok(Some(path))
}

fn write_secret_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(f, "{contents}")
}
