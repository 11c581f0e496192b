//! Authentication: API keys, the bootstrap admin token, and a short-lived cache.
//!
//! Presented keys are checked for shape and checksum before storage is touched, then
//! looked up by their id and compared in constant time with the stored hash. Verified
//! keys are cached for [`CACHE_TTL`] so the data-plane check endpoints do not pay a
//! database round trip per request; a key deleted through this process is evicted at
//! once, one deleted through another replica stops working within the TTL.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use tenancy_domain::apikey::{self, ApiKey, Role};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};
use tenancy_store::{Effects, Store};

use crate::Principal;

pub const CACHE_TTL: Duration = Duration::from_secs(10);
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
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>, admin_token: Option<SecretString>) -> Self {
        Authenticator { store, admin_token, cache: Mutex::new(HashMap::new()) }
    }

    /// Resolves a bearer token to a principal.
    pub async fn authenticate(&self, token: &str) -> Result<Principal> {
        if let Some(admin) = &self.admin_token {
            if apikey::secrets_equal(token, admin.expose_secret()) {
                return Ok(Principal { key_id: None, role: Role::Admin, tenant_id: None, rate_limit: None });
            }
        }
        let id = apikey::parse(token).ok_or(Error::Unauthenticated)?;
        let cached = self.cache.lock().expect("auth cache poisoned").get(&id).cloned();
        let key = match cached {
            Some(c) if c.at.elapsed() < CACHE_TTL => c.key,
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
        if !apikey::verify(token, &key.hash) {
            return Err(Error::Unauthenticated);
        }
        if matches!(key.expires_at, Some(t) if t <= Timestamp::now()) {
            return Err(Error::Unauthenticated);
        }
        // A key's rate limit is fixed at its creation, so the cached key carries the
        // right one: the bucket's size comes with the principal, no read per request.
        Ok(Principal { key_id: Some(key.id), role: key.role, tenant_id: key.tenant_id, rate_limit: key.rate_limit })
    }

    pub fn evict(&self, key_id: &str) {
        self.cache.lock().expect("auth cache poisoned").remove(key_id);
    }

    pub fn has_admin_token(&self) -> bool {
        self.admin_token.is_some()
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
        hash: generated.hash,
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
