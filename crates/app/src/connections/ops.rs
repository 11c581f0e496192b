//! Connections: put (create or replace, with a new credential), get, list, delete.
//!
//! The metadata (auth type, header, username, token URL, client id, scope,
//! description) is a row of `connections`; the credential (api key value, basic
//! password, OAuth client secret) is a new version of the platform secret
//! `connection.<name>`, envelope-encrypted like every secret
//! ([`tenancy_adapters::keys::envelope`]) and written in the same transaction. The
//! `connection.` prefix is reserved: `/v1/secrets` refuses to write, delete, restore
//! or read those secrets (400 `invalid-connection`), so the only way to a credential is
//! through a request that uses it. No answer, audit entry, event or error carries it.
//!
//! Roles (checked again by the route table): admins and operators write; viewers read
//! metadata; services and tenant keys nothing (403).

use serde_json::json;
use tenancy_adapters::keys::envelope::{self, KeyProvider};
use tenancy_domain::connection::{self, Connection, ConnectionSpec};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};
use tenancy_store::{Effects, SealedVersion};

use crate::context::Permission as P;
use crate::{App, OpContext};

/// Times a put re-seals for the next version when another put won the race.
const PUT_ATTEMPTS: usize = 5;

fn target(name: &str) -> String {
    format!("connection/{name}")
}

impl App {
    fn connection_keks(&self) -> Result<&dyn KeyProvider> {
        self.services.keks.as_deref().ok_or_else(|| Error::Unavailable("no master key configured".into()))
    }

    /// Creates or replaces a connection, sealing its credential as a new version of
    /// its platform secret; whether it was created.
    pub async fn connection_put(
        &self,
        ctx: &OpContext,
        name: &str,
        spec: ConnectionSpec,
    ) -> Result<(Connection, bool)> {
        ctx.authorize(P::ConnectionAdmin)?;
        spec.validate(name)?;
        let kek = self.connection_keks()?;
        let now = Timestamp::now();
        let auth = spec.auth.meta();
        let conn = Connection {
            name: name.to_owned(),
            auth: auth.clone(),
            description: spec.description.clone(),
            created_at: now,
            updated_at: now,
        };
        let secret = connection::secret_name(name);
        let mut last = None;
        for _ in 0..PUT_ATTEMPTS {
            let existing = match self.store().secrets().secret_get(None, &secret).await {
                Ok(rec) => Some(rec),
                Err(Error::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
            let expected = existing.as_ref().map(|r| r.current_version);
            let newest = existing.as_ref().and_then(|r| r.versions.first().map(|v| v.0)).unwrap_or(0);
            let version = newest.max(expected.unwrap_or(0)) + 1;
            let sealed =
                envelope::seal(kek, &envelope::binding(None, &secret, version), spec.auth.credential().as_bytes())?;
            let stored = SealedVersion {
                version,
                ciphertext: sealed.ciphertext,
                wrapped_key: sealed.key.wrapped,
                kek_id: sealed.key.kek_id,
                created_at: now,
            };
            let audit = ctx.audit(
                "connection.put",
                target(name),
                None,
                json!({"auth": auth, "description": conn.description, "credential_version": version}),
            );
            let fx = Effects::none().with_audit(audit);
            match self.store().connections().connection_put(&conn, expected, &stored, &fx).await {
                Ok(done) => return Ok(done),
                Err(e @ Error::PreconditionFailed { .. }) => last = Some(e),
                // Two first puts of one name: the loser's insert hits a primary key.
                Err(e) if expected.is_none() && self.store().connections().connection_get(name).await.is_ok() => {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.map_or_else(
            || Error::internal("connection put did not converge"),
            |_| Error::conflict(format!("connection {name:?} is being written concurrently: retry")),
        ))
    }

    pub async fn connection_get(&self, ctx: &OpContext, name: &str) -> Result<Connection> {
        ctx.authorize(P::ConnectionRead)?;
        self.store().connections().connection_get(name).await
    }

    pub async fn connection_list(&self, ctx: &OpContext) -> Result<Vec<Connection>> {
        ctx.authorize(P::ConnectionRead)?;
        self.store().connections().connection_list().await
    }

    /// Deletes a connection and its credential (every version, at once: no recovery
    /// window). 409 `connection-in-use` while hooks or subscriptions name it; state
    /// machines naming it are not checked (their tasks then fail at run time).
    pub async fn connection_delete(&self, ctx: &OpContext, name: &str) -> Result<()> {
        ctx.authorize(P::ConnectionAdmin)?;
        let audit = ctx.audit("connection.delete", target(name), None, json!({}));
        self.store().connections().connection_delete(name, &Effects::none().with_audit(audit)).await
    }

    /// 400 `invalid-connection` unless connection `name` exists (for hooks and
    /// subscriptions naming one; the store checks again in the write's transaction).
    pub(crate) async fn connection_must_exist(&self, name: &str) -> Result<()> {
        match self.store().connections().connection_get(name).await {
            Ok(_) => Ok(()),
            Err(Error::NotFound { .. }) => Err(Error::InvalidRequest {
                code: tenancy_domain::ErrorCode::InvalidConnection,
                message: format!("connection {name:?} does not exist: create it with PUT /v1/connections/{{name}}"),
            }),
            Err(e) => Err(e),
        }
    }
}
