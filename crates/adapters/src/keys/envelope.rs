//! Envelope encryption of the secret store (docs/secrets.md).
//!
//! Every secret version has its own random 256-bit *data key*. The value is sealed
//! under it with AES-256-GCM (a random 96-bit nonce) and the version's *binding* as
//! associated data: the tenant (empty for a platform secret), the secret's name and
//! the version number, so a ciphertext copied to another row, secret, tenant or
//! version does not open. The data key itself is stored only *wrapped* by a
//! key-encryption key (KEK) of a [`KeyProvider`], with the same binding as associated
//! data, beside the id of the KEK that wrapped it.
//!
//! Rotating the KEK ([`rewrap`]) unwraps each data key under the old KEK and wraps it
//! under the new one: the value ciphertexts are not touched, and once every data key
//! is re-wrapped the old KEK is no longer needed.
//!
//! Plaintext (values and data keys) lives in [`Zeroizing`] buffers, wiped when
//! dropped; failures are reported in fixed texts that name the secret's binding,
//! never its value.

use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::RngCore;
use tenancy_domain::{Error, Result};
pub use zeroize::Zeroizing;

use super::SecretBox;

const PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;

/// A data key: 32 random bytes, wiped when dropped.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    /// A new random data key (from the operating system's generator).
    pub fn generate() -> DataKey {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        DataKey(key)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.0.as_ref()))
    }
}

/// A data key wrapped by a KEK, and the KEK's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub kek_id: String,
    pub wrapped: String,
}

/// A sealed secret version: the value's ciphertext under its data key, and the data
/// key wrapped by a KEK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub ciphertext: String,
    pub key: WrappedKey,
}

/// The port of key-encryption keys: wraps and unwraps data keys. The local adapter is
/// [`MasterKeyProvider`] (the master key, from the key file in the data directory or
/// `TENANCY_MASTER_KEY`); a KMS adapter would call the KMS here.
pub trait KeyProvider: Send + Sync {
    /// The id of the KEK new data keys are wrapped under.
    fn kek_id(&self) -> &str;
    /// Where the KEK comes from, for messages (a file's path, a variable's name).
    fn source(&self) -> &str;
    /// Wraps `key` under the current KEK, `binding` as associated data.
    fn wrap(&self, key: &DataKey, binding: &[u8]) -> Result<WrappedKey>;
    /// Unwraps a data key wrapped under the KEK it names.
    fn unwrap(&self, key: &WrappedKey, binding: &[u8]) -> Result<DataKey>;
}

/// The master key as the KEK: its id is the key's fingerprint
/// ([`SecretBox::fingerprint`]). It may also hold older keys that it only unwraps
/// with (during `tenancy master-key rotate`).
pub struct MasterKeyProvider {
    current: Arc<SecretBox>,
    older: Vec<Arc<SecretBox>>,
    source: String,
}

impl std::fmt::Debug for MasterKeyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKeyProvider").field("kek_id", &self.kek_id()).field("source", &self.source).finish()
    }
}

impl MasterKeyProvider {
    /// The master key `current` from `source` (e.g. "the master key file /data/master.key").
    pub fn new(current: Arc<SecretBox>, source: impl Into<String>) -> Self {
        MasterKeyProvider { current, older: Vec::new(), source: source.into() }
    }

    /// Also unwraps data keys wrapped under `older`.
    pub fn with_older(mut self, older: Arc<SecretBox>) -> Self {
        self.older.push(older);
        self
    }

    fn kek(&self, id: &str) -> Option<&SecretBox> {
        std::iter::once(&self.current).chain(self.older.iter()).find(|b| b.fingerprint() == id).map(|b| b.as_ref())
    }
}

/// The associated data of the wrapped key of a binding (never the value's).
fn key_aad(binding: &[u8]) -> Vec<u8> {
    let mut aad = b"tenancy data key v1\0".to_vec();
    aad.extend_from_slice(binding);
    aad
}

impl KeyProvider for MasterKeyProvider {
    fn kek_id(&self) -> &str {
        self.current.fingerprint()
    }

    fn source(&self) -> &str {
        &self.source
    }

    fn wrap(&self, key: &DataKey, binding: &[u8]) -> Result<WrappedKey> {
        let wrapped = self.current.seal_bytes(&key_aad(binding), key.0.as_ref());
        Ok(WrappedKey { kek_id: self.kek_id().to_owned(), wrapped })
    }

    fn unwrap(&self, key: &WrappedKey, binding: &[u8]) -> Result<DataKey> {
        let kek = self.kek(&key.kek_id).ok_or_else(|| {
            Error::internal(format!(
                "a data key is wrapped under the key-encryption key {:?}, which {} is not",
                key.kek_id, self.source
            ))
        })?;
        let bytes = kek
            .open_bytes(&key_aad(binding), &key.wrapped)
            .map_err(|_| Error::internal("a wrapped data key does not open: it was altered or moved"))?;
        let mut out = Zeroizing::new([0u8; 32]);
        if bytes.len() != 32 {
            return Err(Error::internal("a wrapped data key has the wrong length"));
        }
        out.copy_from_slice(&bytes);
        Ok(DataKey(out))
    }
}

/// The binding of a secret version: tenant (empty for the platform), name, version.
pub fn binding(tenant_id: Option<&str>, name: &str, version: i64) -> Vec<u8> {
    format!("tenancy secret v1\0{}\0{name}\0{version}", tenant_id.unwrap_or("")).into_bytes()
}

/// Seals `plaintext` under a new data key, wrapped by `kek`.
pub fn seal(kek: &dyn KeyProvider, binding: &[u8], plaintext: &[u8]) -> Result<Sealed> {
    let key = DataKey::generate();
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ct = key
        .cipher()
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: binding })
        .map_err(|_| Error::internal("failed to encrypt a secret value"))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    Ok(Sealed { ciphertext: format!("{PREFIX}{}", B64.encode(out)), key: kek.wrap(&key, binding)? })
}

/// Opens a sealed version whose binding is `binding`. A ciphertext or wrapped key that
/// belongs to another binding, or was altered, is an internal error that says so.
pub fn open(kek: &dyn KeyProvider, binding: &[u8], sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>> {
    let key = kek.unwrap(&sealed.key, binding)?;
    let corrupt = || Error::internal("a secret's ciphertext does not open under its data key: it was altered or moved");
    let bytes = sealed.ciphertext.strip_prefix(PREFIX).and_then(|b| B64.decode(b).ok()).ok_or_else(corrupt)?;
    if bytes.len() < NONCE_LEN {
        return Err(corrupt());
    }
    let (nonce, ct) = bytes.split_at(NONCE_LEN);
    let plain =
        key.cipher().decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: binding }).map_err(|_| corrupt())?;
    Ok(Zeroizing::new(plain))
}

/// Re-wraps a data key from the KEK it is under (which `from` holds) to `to`'s current
/// KEK; the value's ciphertext stays as it is.
pub fn rewrap(from: &dyn KeyProvider, to: &dyn KeyProvider, binding: &[u8], key: &WrappedKey) -> Result<WrappedKey> {
    to.wrap(&from.unwrap(key, binding)?, binding)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(byte: u8) -> MasterKeyProvider {
        MasterKeyProvider::new(Arc::new(SecretBox::from_key(&[byte; 32])), "test key")
    }

    #[test]
    fn seals_per_version_and_binds_the_row() {
        let p = provider(1);
        let b = binding(Some("acme"), "db", 1);
        let s = seal(&p, &b, b"hunter2").unwrap();
        assert!(!s.ciphertext.contains("hunter2"));
        assert_eq!(s.key.kek_id, p.kek_id());
        assert_eq!(&open(&p, &b, &s).unwrap()[..], b"hunter2");
        let again = seal(&p, &b, b"hunter2").unwrap();
        assert_ne!(again.key.wrapped, s.key.wrapped, "a fresh data key per version");
        for other in [binding(Some("globex"), "db", 1), binding(Some("acme"), "db2", 1), binding(Some("acme"), "db", 2)]
        {
            assert!(open(&p, &other, &s).is_err());
        }
        assert!(open(&p, &binding(None, "db", 1), &s).is_err(), "a tenant's secret is not a platform one");
        // The ciphertext of one version under another's data key.
        let mixed = Sealed { ciphertext: again.ciphertext.clone(), key: s.key.clone() };
        let err = open(&p, &b, &mixed).unwrap_err();
        assert!(err.to_string().contains("altered or moved"), "{err}");
        assert!(open(&provider(2), &b, &s).is_err(), "another KEK");
    }

    #[test]
    fn rewrap_keeps_the_ciphertext_and_drops_the_old_kek() {
        let (old, new) = (provider(1), provider(2));
        let b = binding(None, "crm-token", 3);
        let s = seal(&old, &b, b"token").unwrap();
        let key = rewrap(&old, &new, &b, &s.key).unwrap();
        assert_eq!(key.kek_id, new.kek_id());
        let moved = Sealed { ciphertext: s.ciphertext.clone(), key };
        assert_eq!(&open(&new, &b, &moved).unwrap()[..], b"token", "opens with the new KEK alone");
        assert!(open(&old, &b, &moved).is_err());
        let err = open(&new, &b, &s).unwrap_err().to_string();
        assert!(err.contains("test key") && err.contains(&old.kek_id().to_string()), "{err}");
        let both = MasterKeyProvider::new(Arc::new(SecretBox::from_key(&[2; 32])), "k")
            .with_older(Arc::new(SecretBox::from_key(&[1; 32])));
        assert_eq!(&open(&both, &b, &s).unwrap()[..], b"token");
    }
}
