//! [`SignupStore`] on SQL: one row per sign-up, keyed by its token's hash.

use async_trait::async_trait;
use sqlx::Row;
use tenancy_domain::signup::Signup;
use tenancy_domain::time::Timestamp;
use tenancy_domain::Result;

use super::{db_err, SqlStore};
use tenancy_store::{Effects, SignupStore};

fn signup(row: &sqlx::any::AnyRow) -> Result<Signup> {
    let get_i = |c: &str| row.try_get::<i64, _>(c).map_err(db_err);
    Ok(Signup {
        token_hash: row.try_get("token_hash").map_err(db_err)?,
        email: row.try_get("email").map_err(db_err)?,
        org_name: row.try_get("org_name").map_err(db_err)?,
        plan: row.try_get("plan").map_err(db_err)?,
        created_at: Timestamp(get_i("created_at")?),
        expires_at: Timestamp(get_i("expires_at")?),
        activated_at: row.try_get::<Option<i64>, _>("activated_at").map_err(db_err)?.map(Timestamp),
        tenant_id: row.try_get("tenant_id").map_err(db_err)?,
    })
}

#[async_trait]
impl SignupStore for SqlStore {
    async fn signup_create(&self, s: &Signup, fx: &Effects) -> Result<()> {
        let s = s.clone();
        self.writer
            .write(fx, move |c| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO signups (token_hash, email, org_name, plan, created_at, expires_at, \
                         activated_at, tenant_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(&s.token_hash)
                    .bind(&s.email)
                    .bind(&s.org_name)
                    .bind(&s.plan)
                    .bind(s.created_at.millis())
                    .bind(s.expires_at.millis())
                    .bind(s.activated_at.map(Timestamp::millis))
                    .bind(s.tenant_id.as_deref())
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                    Ok(())
                })
            })
            .await
    }

    async fn signup_get(&self, token_hash: &str) -> Result<Option<Signup>> {
        let row = sqlx::query("SELECT * FROM signups WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        row.as_ref().map(signup).transpose()
    }

    async fn signup_claim(&self, token_hash: &str, tenant_id: &str, now: Timestamp) -> Result<bool> {
        let (hash, tenant) = (token_hash.to_owned(), tenant_id.to_owned());
        self.writer
            .write(&Effects::none(), move |c| {
                Box::pin(async move {
                    let res = sqlx::query(
                        "UPDATE signups SET activated_at = $2, tenant_id = $3 \
                         WHERE token_hash = $1 AND activated_at IS NULL AND expires_at > $2",
                    )
                    .bind(&hash)
                    .bind(now.millis())
                    .bind(&tenant)
                    .execute(&mut *c)
                    .await
                    .map_err(db_err)?;
                    Ok(res.rows_affected() == 1)
                })
            })
            .await
    }

    async fn signup_unclaim(&self, token_hash: &str) -> Result<()> {
        let hash = token_hash.to_owned();
        self.writer
            .write(&Effects::none(), move |c| {
                Box::pin(async move {
                    sqlx::query("UPDATE signups SET activated_at = NULL, tenant_id = NULL WHERE token_hash = $1")
                        .bind(&hash)
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    Ok(())
                })
            })
            .await
    }

    async fn signup_purge_expired(&self, now: Timestamp) -> Result<u64> {
        self.writer
            .write(&Effects::none(), move |c| {
                Box::pin(async move {
                    let res = sqlx::query("DELETE FROM signups WHERE expires_at <= $1")
                        .bind(now.millis())
                        .execute(&mut *c)
                        .await
                        .map_err(db_err)?;
                    Ok(res.rows_affected())
                })
            })
            .await
    }
}
