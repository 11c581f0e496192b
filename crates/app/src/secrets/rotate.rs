//! Rotation of the master key (the key-encryption key): `tenancy master-key rotate`.
//!
//! Every data key of the secret store is unwrapped under the old key and wrapped under
//! the new one (the value ciphertexts are not touched), the values sealed directly with
//! the master key (webhook, hook and function signing secrets, data-plane passwords)
//! are re-sealed, and the database's record of the key's fingerprint moves to the new
//! key, all in one transaction: afterwards the old key is no longer needed. Run it with
//! the servers stopped (they hold the old key in memory), then start them with the new
//! key.

use std::sync::Arc;

use tenancy_adapters::keys::envelope::{self, MasterKeyProvider, WrappedKey};
use tenancy_adapters::keys::SecretBox;
use tenancy_domain::{Error, Result};
use tenancy_store::Store;

/// What a rotation changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotated {
    /// Data keys re-wrapped.
    pub data_keys: usize,
    /// Values sealed directly with the master key, re-sealed.
    pub sealed_values: usize,
}

/// The owner (associated data) a directly sealed value was sealed for.
fn owner_of(r: &tenancy_store::Resealed) -> Result<String> {
    let key = |i: usize| r.key.get(i).map(|k| k.1.as_str()).unwrap_or("");
    Ok(match r.table {
        "subscriptions" => key(0).to_owned(),
        "hooks" => crate::hooks::tasks::secret_owner(key(0)),
        "functions" => crate::functions::tasks::secret_owner(key(0)),
        "tenant_secrets" => format!("tenant/{}/{}", key(0), key(1)),
        other => return Err(Error::internal(format!("unknown sealed table {other}"))),
    })
}

/// Moves everything sealed under `old` to `new` (see the module docs).
pub async fn rotate_master_key(store: &Arc<dyn Store>, old: Arc<SecretBox>, new: Arc<SecretBox>) -> Result<Rotated> {
    let (from, to) = (
        MasterKeyProvider::new(old.clone(), "the old master key"),
        MasterKeyProvider::new(new.clone(), "the new master key"),
    );
    let secrets = store.secrets();
    let mut keys = secrets.secret_wrapped_keys().await?;
    for k in keys.iter_mut() {
        let binding = envelope::binding(k.tenant_id.as_deref(), &k.name, k.version);
        let wrapped = WrappedKey { kek_id: k.kek_id.clone(), wrapped: k.wrapped_key.clone() };
        let moved = envelope::rewrap(&from, &to, &binding, &wrapped)?;
        (k.kek_id, k.wrapped_key) = (moved.kek_id, moved.wrapped);
    }
    let mut sealed = secrets.sealed_values().await?;
    for r in sealed.iter_mut() {
        let owner = owner_of(r)?;
        let plain = old.open_bytes(owner.as_bytes(), &r.sealed)?;
        r.sealed = new.seal_bytes(owner.as_bytes(), &plain);
    }
    secrets.secret_rewrap(&keys, &sealed, old.fingerprint(), new.fingerprint()).await?;
    Ok(Rotated { data_keys: keys.len(), sealed_values: sealed.len() })
}
