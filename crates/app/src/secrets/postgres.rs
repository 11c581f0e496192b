//! The PostgreSQL side of credential rotation: what the rotation workflow's `create`,
//! `set` and `test` steps do to a tenant's database login (its `finish` moves the
//! stages in the secret store and touches no database).
//!
//! The secret rotated is a tenant's `tenancy.database` (the silo database's
//! credentials, written by provisioning, see `crate::dataplane::credentials`), whose
//! value is [`PostgresCredentials`], Secrets Manager's shape for RDS:
//! `{"engine": "postgres", "host", "port", "dbname", "username", "password"}`.
//!
//! Strategies ([`PostgresStrategy`], docs/secrets.md "Rotating database credentials"):
//!
//! * `single_user`: `create` keeps the username and makes a new password; `set`
//!   replaces the login's password. From `set` until every client has read the new
//!   version, connections opened with the old password fail (open ones stay open).
//! * `alternating_users`: two logins take turns, the tenant's role and its alternate
//!   (`<prefix>_tc_<id>`, created by the first `set` that names it: a member of the
//!   role whose sessions start as the role, so both own and use the same objects, see
//!   `tenancy_adapters::dataplane::postgres`). `create` picks the login the current
//!   version does not use and makes a new password for it; `set` changes only that
//!   login. The current version's login and password stay valid through the next
//!   rotation, which is the grace window for clients still holding it; a version two
//!   rotations old is refused (its login has had a new password since).
//!
//! Each step is idempotent: `create` only computes a value (the caller stores it as
//! the pending version before `set`), `set` sets the same password again, `test` only
//! logs in. Passwords are 32 letters and digits from the operating system's generator,
//! reach PostgreSQL only as SCRAM verifiers, and are wiped from memory when a value is
//! dropped; they are never logged nor part of an error.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tenancy_adapters::dataplane::{DatabaseProvisioner, LoginTarget};
use tenancy_adapters::keys::envelope::Zeroizing;
use tenancy_domain::plan::Isolation;
use tenancy_domain::secret::{Generator, PostgresStrategy};
use tenancy_domain::{Error, Result};

/// Length of generated database passwords (letters and digits).
pub const PASSWORD_LEN: u32 = 32;

/// A tenant database's credentials: the value of its `tenancy.database` secret.
/// `Debug` hides the password; dropping the value wipes it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresCredentials {
    /// Always `postgres`.
    pub engine: String,
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub username: String,
    pub password: String,
}

impl PostgresCredentials {
    /// The credentials of `target`'s login `username` with `password`.
    pub fn of(target: &LoginTarget, username: &str, password: &str) -> Self {
        PostgresCredentials {
            engine: "postgres".into(),
            host: target.host.clone(),
            port: target.port,
            dbname: target.database.clone(),
            username: username.to_owned(),
            password: password.to_owned(),
        }
    }

    /// The value as stored: JSON text, in a buffer wiped when dropped.
    pub fn to_secret_text(&self) -> Zeroizing<String> {
        Zeroizing::new(serde_json::to_string(self).expect("credentials serialize"))
    }

    /// A stored value; an error (without the text) when it is not this shape.
    pub fn from_secret_text(text: &str) -> Result<Self> {
        let creds: PostgresCredentials = serde_json::from_str(text)
            .map_err(|_| Error::internal("a stored database credentials value is not the expected JSON object"))?;
        if creds.engine != "postgres" {
            return Err(Error::internal(format!("stored database credentials are for engine {:?}", creds.engine)));
        }
        Ok(creds)
    }

    /// `postgres://user:password@host:port/dbname`.
    pub fn url(&self) -> String {
        format!("postgres://{}:{}@{}:{}/{}", self.username, self.password, self.host, self.port, self.dbname)
    }
}

impl std::fmt::Debug for PostgresCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresCredentials")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Drop for PostgresCredentials {
    fn drop(&mut self) {
        tenancy_domain::secret::wipe(std::mem::take(&mut self.password));
    }
}

/// A new database password: [`PASSWORD_LEN`] letters and digits.
pub fn generate_password() -> Zeroizing<String> {
    crate::secrets::ops::generate(&Generator::RandomString { length: PASSWORD_LEN, charset: None })
}

/// Rotates tenants' PostgreSQL logins on the data plane (see the module docs).
#[derive(Clone)]
pub struct PostgresRotation {
    provisioner: Arc<dyn DatabaseProvisioner>,
}

impl PostgresRotation {
    /// Rotation on `provisioner`'s databases, which must have logins (the PostgreSQL
    /// data plane); else `invalid`.
    pub fn new(provisioner: Arc<dyn DatabaseProvisioner>) -> Result<Self> {
        if !provisioner.uses_credentials() {
            return Err(Error::invalid(
                "the data plane's databases have no logins to rotate (SQLite files): run the server with \
                 --data-plane-url postgres://...",
            ));
        }
        Ok(PostgresRotation { provisioner })
    }

    /// The tenant's database whose logins include `username`: its isolation and target.
    fn target_of(&self, tenant_id: &str, username: &str) -> Result<(Isolation, LoginTarget)> {
        for isolation in [Isolation::Silo, Isolation::Pool] {
            if let Some(t) = self.provisioner.login_target(tenant_id, isolation)? {
                if t.user == username || t.alternate == username {
                    return Ok((isolation, t));
                }
            }
        }
        Err(Error::invalid(format!(
            "{username:?} is not a login of tenant {tenant_id:?}'s database: the credentials cannot be rotated"
        )))
    }

    /// The pending value after `current`: a new password for the same login
    /// (`single_user`) or for the other login (`alternating_users`); host, port and
    /// database as the data plane names them now. No IO on the database.
    pub async fn create(
        &self,
        tenant_id: &str,
        strategy: PostgresStrategy,
        current: &PostgresCredentials,
    ) -> Result<PostgresCredentials> {
        let (_, target) = self.target_of(tenant_id, &current.username)?;
        let username = match strategy {
            PostgresStrategy::SingleUser => current.username.clone(),
            PostgresStrategy::AlternatingUsers if current.username == target.user => target.alternate.clone(),
            PostgresStrategy::AlternatingUsers => target.user.clone(),
        };
        Ok(PostgresCredentials::of(&target, &username, &generate_password()))
    }

    /// Gives `pending`'s login `pending`'s password on the database (creating the
    /// alternate login on its first use). The strategy is the one `create` used: it
    /// chose the login; with `alternating_users` the login must not be the current
    /// one's, which `create` guarantees.
    pub async fn set(&self, tenant_id: &str, strategy: PostgresStrategy, pending: &PostgresCredentials) -> Result<()> {
        let (isolation, _) = self.target_of(tenant_id, &pending.username)?;
        tracing::debug!(tenant_id, username = %pending.username, strategy = ?strategy, "setting a database password");
        self.provisioner.login_set_password(tenant_id, isolation, &pending.username, &pending.password).await
    }

    /// Logs in to the tenant's database with `pending` and runs `SELECT 1`.
    pub async fn test(&self, tenant_id: &str, pending: &PostgresCredentials) -> Result<()> {
        let (isolation, _) = self.target_of(tenant_id, &pending.username)?;
        self.provisioner.login_test(tenant_id, isolation, &pending.username, &pending.password).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenancy_adapters::dataplane::postgres::PostgresDataPlane;
    use tenancy_adapters::dataplane::SqliteFiles;

    fn creds(username: &str) -> PostgresCredentials {
        PostgresCredentials {
            engine: "postgres".into(),
            host: "db".into(),
            port: 5432,
            dbname: "tenancy_t_acme".into(),
            username: username.into(),
            password: "s3cret-Password".into(),
        }
    }

    #[test]
    fn the_value_is_secrets_managers_rds_shape_and_hides_its_password() {
        let c = creds("tenancy_t_acme");
        let text = c.to_secret_text();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"engine": "postgres", "host": "db", "port": 5432, "dbname": "tenancy_t_acme",
                               "username": "tenancy_t_acme", "password": "s3cret-Password"})
        );
        assert_eq!(PostgresCredentials::from_secret_text(&text).unwrap(), c);
        assert!(!format!("{c:?}").contains("s3cret"), "{c:?}");
        let err = PostgresCredentials::from_secret_text(r#"{"password": "s3cret-Password"}"#).unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let p = generate_password();
        assert!(p.len() == 32 && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[tokio::test]
    async fn create_picks_the_login_by_strategy_and_refuses_strangers() {
        let plane = PostgresDataPlane::new("postgres://u:p@db:5432/postgres", "tenancy").unwrap();
        let r = PostgresRotation::new(Arc::new(plane)).unwrap();
        let single = r.create("acme", PostgresStrategy::SingleUser, &creds("tenancy_t_acme")).await.unwrap();
        assert_eq!(single.username, "tenancy_t_acme");
        assert_ne!(single.password, "s3cret-Password");
        let alt = r.create("acme", PostgresStrategy::AlternatingUsers, &creds("tenancy_t_acme")).await.unwrap();
        assert_eq!(alt.username, "tenancy_tc_acme");
        let back = r.create("acme", PostgresStrategy::AlternatingUsers, &alt).await.unwrap();
        assert_eq!(back.username, "tenancy_t_acme");
        let pool = r.create("acme", PostgresStrategy::AlternatingUsers, &creds("tenancy_p_acme")).await.unwrap();
        assert_eq!((pool.username.as_str(), pool.dbname.as_str()), ("tenancy_pc_acme", "tenancy_pool"));
        for stranger in ["postgres", "tenancy_t_globex"] {
            let err = r.create("acme", PostgresStrategy::SingleUser, &creds(stranger)).await.unwrap_err();
            assert_eq!(err.code(), tenancy_domain::ErrorCode::InvalidRequest, "{err}");
        }
        let files = SqliteFiles::new(std::env::temp_dir().join("no-logins"));
        assert!(PostgresRotation::new(Arc::new(files)).is_err(), "SQLite files have no logins");
    }
}
