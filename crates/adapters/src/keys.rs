//! Encryption of stored secrets (webhook signing secrets) under the master key.
//!
//! AES-256-GCM with a random 96-bit nonce per value and the owning record's id as
//! associated data (a sealed value copied to another record does not open). Sealed
//! values are `v1:<base64(nonce || ciphertext)>`. The master key is 32 random bytes
//! from the OS, base64 in `TENANCY_MASTER_KEY`, in the file of `--master-key-file`, or
//! in `<data dir>/master.key` (created with mode 0600 on the first start of a new
//! database). Replicas sharing a database must share the key.
//!
//! The database records the key's [`SecretBox::fingerprint`]: `v1:` and the base64 of
//! HMAC-SHA256 under the key of a fixed label. It tells whether a server has the key
//! the stored values were sealed with, and reveals nothing about the key (guessing it
//! from the fingerprint is guessing 256 random bits).

pub mod envelope;

use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use tenancy_domain::{Error, Result};

const PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;
/// What the fingerprint authenticates under the key.
const FINGERPRINT_LABEL: &[u8] = b"tenancy master key fingerprint v1";

pub struct SecretBox {
    cipher: Aes256Gcm,
    fingerprint: String,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    pub fn from_key(key: &[u8; 32]) -> SecretBox {
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(FINGERPRINT_LABEL);
        let fingerprint = format!("v1:{}", B64.encode(mac.finalize().into_bytes()));
        SecretBox { cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)), fingerprint }
    }

    /// A new random key (from the operating system's generator) and its base64 text.
    pub fn generate() -> (SecretBox, String) {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        (SecretBox::from_key(&key), B64.encode(key))
    }

    /// A key from its base64 text (as in `TENANCY_MASTER_KEY` or `master.key`).
    pub fn from_base64(text: &str) -> Result<SecretBox> {
        let bytes = B64.decode(text.trim()).map_err(|_| Error::invalid("the master key is not valid base64"))?;
        let key: [u8; 32] =
            bytes.try_into().map_err(|_| Error::invalid("the master key must be 32 bytes (44 base64 characters)"))?;
        Ok(SecretBox::from_key(&key))
    }

    /// The key's fingerprint, recorded in the database (see the module docs).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Reads the key file at `path`; `None` when there is none.
    pub fn read_file(path: &Path) -> Result<Option<SecretBox>> {
        match std::fs::read_to_string(path) {
            Ok(text) => SecretBox::from_base64(&text)
                .map(Some)
                .map_err(|e| Error::invalid(format!("the master key file {}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::internal(format!("failed to read the master key file {}: {e}", path.display()))),
        }
    }

    /// Writes a new random key to `path` (mode 0600), which must not exist.
    pub fn create_file(path: &Path) -> Result<SecretBox> {
        let fail = |e: std::io::Error| Error::internal(format!("failed to create {}: {e}", path.display()));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(fail)?;
        let (b, text) = SecretBox::generate();
        writeln!(f, "{text}").map_err(fail)?;
        f.sync_all().map_err(fail)?;
        Ok(b)
    }

    /// Encrypts `plaintext` for the record `owner`.
    pub fn seal(&self, owner: &str, plaintext: &str) -> String {
        self.seal_bytes(owner.as_bytes(), plaintext.as_bytes())
    }

    /// Encrypts `plaintext` with `aad` as associated data.
    pub fn seal_bytes(&self, aad: &[u8], plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad })
            .expect("AES-GCM encryption of a short value cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!("{PREFIX}{}", B64.encode(out))
    }

    /// Decrypts a value sealed for `owner`.
    pub fn open(&self, owner: &str, sealed: &str) -> Result<String> {
        let corrupt = || Error::internal(format!("a stored secret of {owner:?} does not decrypt under the master key"));
        let plain = self.open_bytes(owner.as_bytes(), sealed).map_err(|_| corrupt())?;
        String::from_utf8(plain.to_vec()).map_err(|_| corrupt())
    }

    /// Decrypts a value sealed with `aad` as associated data.
    pub fn open_bytes(&self, aad: &[u8], sealed: &str) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let corrupt = || Error::internal("a sealed value does not decrypt under the master key");
        let bytes = sealed.strip_prefix(PREFIX).and_then(|b| B64.decode(b).ok()).ok_or_else(corrupt)?;
        if bytes.len() < NONCE_LEN {
            return Err(corrupt());
        }
        let (nonce, ct) = bytes.split_at(NONCE_LEN);
        let plain = self.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad }).map_err(|_| corrupt())?;
        Ok(zeroize::Zeroizing::new(plain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_for_its_owner_only() {
        let b = SecretBox::from_key(&[7; 32]);
        let sealed = b.seal("sub_1", "whsec_abc");
        assert!(sealed.starts_with("v1:") && !sealed.contains("whsec_abc"));
        assert_ne!(b.seal("sub_1", "whsec_abc"), sealed, "fresh nonce per value");
        assert_eq!(b.open("sub_1", &sealed).unwrap(), "whsec_abc");
        assert!(b.open("sub_2", &sealed).is_err(), "bound to its record");
        assert!(SecretBox::from_key(&[8; 32]).open("sub_1", &sealed).is_err());
        assert!(b.open("sub_1", "whsec_abc").is_err(), "plaintext is not accepted");
    }

    #[test]
    fn key_file_is_created_once_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("tenancy-secretbox-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("master.key");
        let _ = std::fs::remove_file(&path);
        assert!(SecretBox::read_file(&path).unwrap().is_none());
        let a = SecretBox::create_file(&path).unwrap();
        assert!(SecretBox::create_file(&path).is_err(), "an existing key is never replaced");
        let b = SecretBox::read_file(&path).unwrap().unwrap();
        assert_eq!(b.open("x", &a.seal("x", "v")).unwrap(), "v");
        assert_eq!(a.fingerprint(), b.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fingerprints_tell_keys_apart_and_hide_them() {
        let a = SecretBox::from_key(&[7; 32]);
        assert_eq!(a.fingerprint(), SecretBox::from_key(&[7; 32]).fingerprint());
        assert_ne!(a.fingerprint(), SecretBox::from_key(&[8; 32]).fingerprint());
        assert!(a.fingerprint().starts_with("v1:"));
        let key_b64 = B64.encode([7u8; 32]);
        assert!(!a.fingerprint().contains(&key_b64));
        use sha2::Digest as _;
        let plain_hash = B64.encode(sha2::Sha256::digest([7u8; 32]));
        assert!(!a.fingerprint().contains(&plain_hash), "not a plain hash of the key");
    }
}
