//! Secrets: put (a new version), get by stage or version, list metadata, delete with a
//! recovery window, restore. Tenant secrets (`/v1/tenants/{id}/secrets`) and platform
//! secrets (`/v1/secrets`, scope `None`).
//!
//! Every operation writes an audit entry (reads too, as `secret.read`), never with the
//! value. Values are sealed by envelope encryption
//! ([`tenancy_adapters::keys::envelope`]): a fresh data key per version, the tenant,
//! name and version as associated data, the data key wrapped by the key provider's
//! key-encryption key. Plaintext stays in [`Zeroizing`] buffers inside the app and in
//! [`SecretValue`] (wiped on drop, redacted in `Debug`) on its way out.
//!
//! Who may do what (checked again by the route table, `crates/http/src/access.rs`):
//!
//! | role | tenant secrets: metadata | values | put, delete, restore, rotate | platform secrets: metadata | values, writes, rotate |
//! |---|---|---|---|---|---|
//! | admin, operator | yes | yes | yes | yes | yes |
//! | viewer | yes | 403 | 403 | yes | 403 |
//! | service | yes | yes (data-plane services read their credentials) | 403 | 403 | 403 |
//! | tenant | its own (others 404) | its own | its own | 403 | 403 |
//!
//! Names starting with `tenancy.` are Tenancy's own (`tenancy.database`, a silo
//! tenant's database credentials): read and listed like any secret, but a put, delete
//! or restore is 403 `forbidden` whatever the role.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::Rng;
use serde_json::json;
use tenancy_adapters::keys::envelope::{self, KeyProvider, Sealed, WrappedKey, Zeroizing};
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::secret::{self, Generator, SecretMeta, SecretPut, SecretValue, SecretVersionMeta, Stage};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_store::{Effects, SealedVersion, SecretConfig, SecretRecord};

use crate::context::Permission as P;
use crate::{App, OpContext};

/// Times a put re-seals for the next version number when another put won the race.
const PUT_ATTEMPTS: usize = 5;

/// What a put did.
#[derive(Debug, Clone)]
pub struct PutOutcome {
    pub secret: SecretMeta,
    pub version: i64,
    pub created: bool,
}

/// Where a read looks: a stage, a version, or both (the version must carry the stage).
#[derive(Debug, Clone, Copy, Default)]
pub struct Selector {
    pub stage: Option<Stage>,
    pub version: Option<i64>,
}

pub(crate) fn target(scope: Option<&str>, name: &str) -> String {
    match scope {
        Some(t) => format!("tenant/{t}/secret/{name}"),
        None => format!("secret/{name}"),
    }
}

/// The labels of `version` in `rec`.
fn stages_of(rec: &SecretRecord, version: i64) -> Vec<Stage> {
    let mut out = Vec::new();
    if rec.current_version == version {
        out.push(Stage::Current);
    }
    if rec.previous_version == Some(version) {
        out.push(Stage::Previous);
    }
    if rec.pending_version == Some(version) {
        out.push(Stage::Pending);
    }
    out
}

/// The API's metadata of a stored secret.
pub fn meta_of(rec: &SecretRecord) -> SecretMeta {
    SecretMeta {
        name: rec.name.clone(),
        tenant_id: rec.tenant_id.clone(),
        current_version: rec.current_version,
        versions: rec
            .versions
            .iter()
            .map(|(v, at)| SecretVersionMeta { version: *v, stages: stages_of(rec, *v), created_at: *at })
            .collect(),
        created_at: rec.created_at,
        updated_at: rec.updated_at,
        deleted_at: rec.deleted_at,
        purge_at: rec.purge_at,
        generator: rec.generator.as_deref().and_then(|g| serde_json::from_str(g).ok()),
        rotation: rec.rotation.as_deref().and_then(|r| serde_json::from_str(r).ok()),
        next_rotation_at: rec.next_rotation_at,
        last_rotation: rec.last_rotation.as_deref().and_then(|r| serde_json::from_str(r).ok()),
    }
}

/// `value` sealed as `version` of the secret (a fresh data key, the binding as
/// associated data).
pub(crate) fn seal_version(
    kek: &dyn KeyProvider,
    scope: Option<&str>,
    name: &str,
    version: i64,
    value: &str,
) -> Result<SealedVersion> {
    let sealed = envelope::seal(kek, &envelope::binding(scope, name, version), value.as_bytes())?;
    Ok(SealedVersion {
        version,
        ciphertext: sealed.ciphertext,
        wrapped_key: sealed.key.wrapped,
        kek_id: sealed.key.kek_id,
        created_at: Timestamp::now(),
    })
}

/// The plaintext of a stored version.
pub(crate) fn open_version(
    kek: &dyn KeyProvider,
    scope: Option<&str>,
    name: &str,
    stored: SealedVersion,
) -> Result<Zeroizing<String>> {
    let version = stored.version;
    let sealed = Sealed {
        ciphertext: stored.ciphertext,
        key: WrappedKey { kek_id: stored.kek_id, wrapped: stored.wrapped_key },
    };
    let binding = envelope::binding(scope, name, version);
    let plain = envelope::open(kek, &binding, &sealed).map_err(|e| {
        Error::internal(format!("secret {:?} version {version} does not open: {e}", target(scope, name)))
    })?;
    let value = String::from_utf8(plain.to_vec())
        .map_err(|_| Error::internal(format!("secret {:?} version {version} is not UTF-8", target(scope, name))))?;
    Ok(Zeroizing::new(value))
}

pub(crate) fn deleted_error(rec: &SecretRecord) -> Error {
    Error::Conflict {
        code: ErrorCode::SecretDeleted,
        message: format!(
            "secret {:?} is scheduled for deletion (purged at {}): restore it with POST .../restore first",
            rec.name,
            rec.purge_at.map(|t| t.to_rfc3339()).unwrap_or_default()
        ),
    }
}

/// A generated value (from the operating system's generator).
pub fn generate(g: &Generator) -> Zeroizing<String> {
    let mut rng = rand::rngs::OsRng;
    match g {
        Generator::RandomString { length, charset } => {
            let chars = charset.as_deref().unwrap_or(secret::ALPHANUMERIC).as_bytes();
            Zeroizing::new((0..*length).map(|_| chars[rng.gen_range(0..chars.len())] as char).collect())
        }
        Generator::RandomBytes { length } => {
            let mut bytes = Zeroizing::new(vec![0u8; *length as usize]);
            rng.fill(&mut bytes[..]);
            Zeroizing::new(B64.encode(&bytes[..]))
        }
        Generator::HmacKey {} => {
            let mut bytes = Zeroizing::new([0u8; 32]);
            rng.fill(&mut bytes[..]);
            Zeroizing::new(B64.encode(&bytes[..]))
        }
        Generator::Ed25519 {} => ed25519_pair(),
        Generator::PostgresPassword {} => {
            let chars = secret::ALPHANUMERIC.as_bytes();
            Zeroizing::new(
                (0..secret::POSTGRES_PASSWORD_LEN).map(|_| chars[rng.gen_range(0..chars.len())] as char).collect(),
            )
        }
    }
}

/// A fresh Ed25519 key pair as `{"private_key": PKCS#8 PEM, "public_key": SPKI PEM}`.
fn ed25519_pair() -> Zeroizing<String> {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    // Encoding a valid key into PEM cannot fail (no I/O, fixed sizes).
    let private = key.to_pkcs8_pem(LineEnding::LF).expect("PKCS#8 encoding of an Ed25519 key");
    let public = key.verifying_key().to_public_key_pem(LineEnding::LF).expect("SPKI encoding of an Ed25519 key");
    let json = serde_json::json!({"private_key": private.as_str(), "public_key": public});
    Zeroizing::new(json.to_string())
}

impl App {
    pub(crate) fn key_provider(&self) -> Result<&dyn KeyProvider> {
        self.services.keks.as_deref().ok_or_else(|| Error::Unavailable("no master key configured".into()))
    }

    /// Authorizes `p` (tenant scope) or `platform` (no tenant), and checks the tenant
    /// exists.
    pub(crate) async fn secret_scope(&self, ctx: &OpContext, scope: Option<&str>, p: P, platform: P) -> Result<()> {
        match scope {
            Some(t) => {
                ctx.authorize_tenant(p, t)?;
                self.store().tenant_get(t).await.map(|_| ())
            }
            None => ctx.authorize(platform),
        }
    }

    /// 400 `invalid-connection` for the platform secrets holding connections'
    /// credentials (`connection.*`): only connections' own operations touch them.
    fn not_a_connection(scope: Option<&str>, name: &str) -> Result<()> {
        if scope.is_none() && tenancy_domain::connection::is_reserved_secret(name) {
            return Err(Error::InvalidRequest {
                code: ErrorCode::InvalidConnection,
                message: format!(
                    "the platform secrets {:?}* hold connections' credentials: use /v1/connections",
                    tenancy_domain::connection::SECRET_PREFIX
                ),
            });
        }
        Ok(())
    }

    /// Creates a new version of the secret (the secret itself when it is new) from
    /// `body`'s value or generator; it becomes current, the old current previous.
    pub async fn secret_put(
        &self,
        ctx: &OpContext,
        scope: Option<&str>,
        name: &str,
        mut body: SecretPut,
    ) -> Result<PutOutcome> {
        self.secret_scope(ctx, scope, P::SecretWrite, P::PlatformSecretAdmin).await?;
        secret::check_writable(name)?;
        secret::validate_name(name)?;
        Self::not_a_connection(scope, name)?;
        let rotation = match body.rotation.take() {
            Some(spec) => {
                super::rotation::check_caller(ctx, &spec)?;
                super::rotation::check_spec(&**self.store(), &spec).await?;
                let next = super::rotation::next_rotation(&spec, Timestamp::now())?;
                Some((serde_json::to_string(&spec).map_err(Error::internal)?, next))
            }
            None => None,
        };
        let generator = body.generate.as_ref().map(serde_json::to_string).transpose().map_err(Error::internal)?;
        let config = SecretConfig { generator: generator.clone(), rotation };
        let (value, generated) = match (body.value.take(), &body.generate) {
            (Some(v), None) => (Zeroizing::new(v), None),
            (None, Some(g)) => {
                g.validate()?;
                (generate(g), Some(serde_json::to_value(g).unwrap_or_default()["type"].clone()))
            }
            (v, _) => {
                drop(v.map(Zeroizing::new));
                return Err(Error::InvalidRequest {
                    code: ErrorCode::InvalidSecret,
                    message: "give exactly one of value and generate".into(),
                });
            }
        };
        secret::check_value(&value)?;
        let kek = self.key_provider()?;
        let secrets = self.store().secrets();
        let mut last = None;
        for _ in 0..PUT_ATTEMPTS {
            let existing = match secrets.secret_get(scope, name).await {
                Ok(rec) => Some(rec),
                Err(Error::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
            if let Some(rec) = existing.as_ref().filter(|r| r.deleted_at.is_some()) {
                return Err(deleted_error(rec));
            }
            if config.rotation.is_some()
                && generator.is_none()
                && existing.as_ref().is_none_or(|r| r.generator.is_none())
            {
                return Err(Error::InvalidRequest {
                    code: ErrorCode::InvalidRotation,
                    message: format!(
                        "secret {name:?} has no generator to rotate with: put it with generate (and rotation) once"
                    ),
                });
            }
            let expected = existing.as_ref().map(|r| r.current_version);
            let newest = existing.as_ref().and_then(|r| r.versions.first().map(|v| v.0)).unwrap_or(0);
            let version = newest.max(expected.unwrap_or(0)) + 1;
            let stored = seal_version(kek, scope, name, version, &value)?;
            let audit = ctx.audit(
                "secret.put",
                target(scope, name),
                scope,
                json!({"version": version, "generated": generated, "rotation": config.rotation.as_ref().map(|r| &r.0)}),
            );
            let fx = Effects::none().with_audit(audit);
            match secrets.secret_put_configured(scope, name, expected, &stored, &config, &fx).await {
                Ok(rec) => return Ok(PutOutcome { secret: meta_of(&rec), version, created: expected.is_none() }),
                Err(e @ Error::PreconditionFailed { .. }) => last = Some(e),
                // Two first puts of one name: the loser's insert hits the primary key.
                Err(e) if expected.is_none() && secrets.secret_get(scope, name).await.is_ok() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.map_or_else(
            || Error::internal("secret put did not converge"),
            |_| Error::conflict(format!("secret {name:?} is being written concurrently: retry")),
        ))
    }

    /// The value of one version: `sel`'s stage or version, the current one by default.
    pub async fn secret_get(
        &self,
        ctx: &OpContext,
        scope: Option<&str>,
        name: &str,
        sel: Selector,
    ) -> Result<SecretValue> {
        self.secret_scope(ctx, scope, P::SecretValue, P::PlatformSecretAdmin).await?;
        Self::not_a_connection(scope, name)?;
        let secrets = self.store().secrets();
        // One query reads the record and the asked version (the current one unless a
        // version is named); a stage other than current needs its number first.
        let (rec, read) = secrets.secret_read(scope, name, sel.version).await?;
        if rec.deleted_at.is_some() {
            return Err(deleted_error(&rec));
        }
        let labelled = |stage: Stage| match stage {
            Stage::Current => Some(rec.current_version),
            Stage::Previous => rec.previous_version,
            Stage::Pending => rec.pending_version,
        };
        let version = match (sel.stage, sel.version) {
            (None, None) => rec.current_version,
            (None, Some(v)) => v,
            (Some(stage), v) => match labelled(stage) {
                Some(l) if v.is_none_or(|v| v == l) => l,
                _ => {
                    let what = v.map_or(String::new(), |v| format!(" on version {v}"));
                    return Err(Error::not_found("secret stage", format!("{name}:{}{what}", stage.as_str())));
                }
            },
        };
        let stored = match read {
            Some(v) if v.version == version => v,
            _ => secrets.secret_version_get(scope, name, version).await?,
        };
        let created_at = stored.created_at;
        let value = std::mem::take(&mut *open_version(self.key_provider()?, scope, name, stored)?);
        let stages = stages_of(&rec, version);
        let audit = ctx.audit("secret.read", target(scope, name), scope, json!({"version": version, "stages": stages}));
        self.store().commit_effects(&Effects::none().with_audit(audit)).await?;
        Ok(SecretValue { name: name.to_owned(), version, stages, value, created_at })
    }

    /// Metadata of the scope's secrets (never values), by name; deleted ones too.
    pub async fn secret_list(
        &self,
        ctx: &OpContext,
        scope: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<SecretMeta>> {
        self.secret_scope(ctx, scope, P::SecretRead, P::PlatformSecretRead).await?;
        Ok(self.store().secrets().secret_list(scope, page).await?.map(|r| meta_of(&r)))
    }

    /// Schedules the secret's deletion after `recovery_days` (1-30, default 7), or
    /// deletes it now with `force`. Returns the scheduled secret, `None` when forced.
    pub async fn secret_delete(
        &self,
        ctx: &OpContext,
        scope: Option<&str>,
        name: &str,
        recovery_days: Option<u32>,
        force: bool,
    ) -> Result<Option<SecretMeta>> {
        self.secret_scope(ctx, scope, P::SecretWrite, P::PlatformSecretAdmin).await?;
        secret::check_writable(name)?;
        Self::not_a_connection(scope, name)?;
        let days = secret::recovery_window(recovery_days, force)?;
        let now = Timestamp::now();
        let purge_at = days.map(|d| now.plus_millis(i64::from(d) * 86_400_000));
        let audit = ctx.audit(
            "secret.delete",
            target(scope, name),
            scope,
            json!({"recovery_days": days, "force": force, "purge_at": purge_at}),
        );
        let secrets = self.store().secrets();
        secrets.secret_delete(scope, name, now, purge_at, &Effects::none().with_audit(audit)).await?;
        match purge_at {
            Some(_) => Ok(Some(meta_of(&secrets.secret_get(scope, name).await?))),
            None => Ok(None),
        }
    }

    /// Cancels a scheduled deletion.
    pub async fn secret_restore(&self, ctx: &OpContext, scope: Option<&str>, name: &str) -> Result<SecretMeta> {
        self.secret_scope(ctx, scope, P::SecretWrite, P::PlatformSecretAdmin).await?;
        secret::check_writable(name)?;
        Self::not_a_connection(scope, name)?;
        let audit = ctx.audit("secret.restore", target(scope, name), scope, json!({}));
        let rec = self.store().secrets().secret_restore(scope, name, &Effects::none().with_audit(audit)).await?;
        Ok(meta_of(&rec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ed25519_pair_loads_and_its_halves_match() {
        use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
        use ed25519_dalek::{Signer, Verifier};
        let text = generate(&Generator::Ed25519 {});
        let pair: serde_json::Value = serde_json::from_str(&text).unwrap();
        let private = ed25519_dalek::SigningKey::from_pkcs8_pem(pair["private_key"].as_str().unwrap()).unwrap();
        let public = ed25519_dalek::VerifyingKey::from_public_key_pem(pair["public_key"].as_str().unwrap()).unwrap();
        let signature = private.sign(b"tenancy");
        public.verify(b"tenancy", &signature).unwrap();
        assert_ne!(*generate(&Generator::Ed25519 {}), *text, "a fresh pair each time");
    }

    #[test]
    fn postgres_passwords_are_safe_in_connection_strings_and_literals() {
        let a = generate(&Generator::PostgresPassword {});
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()), "{}", a.as_str());
        assert_ne!(*a, *generate(&Generator::PostgresPassword {}));
    }
}
