//! Writing [`Effects`] inside the transaction of the change that causes them.

use sqlx::{Any, Transaction};
use tenancy_domain::{Error, Result};

use super::{db_err, json_text};
use crate::store::Effects;

pub(super) async fn apply_effects(tx: &mut Transaction<'static, Any>, fx: &Effects) -> Result<()> {
    if let Some(done) = &fx.complete_job {
        let res = sqlx::query("DELETE FROM jobs WHERE id = $1 AND lease_owner = $2")
            .bind(&done.job_id)
            .bind(&done.lease_owner)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
        if res.rows_affected() == 0 {
            return Err(Error::Conflict {
                code: "lease-lost",
                message: format!("job {:?} is no longer leased by {:?}", done.job_id, done.lease_owner),
            });
        }
    }
    for e in &fx.events {
        sqlx::query(
            "INSERT INTO events (id, source, detail_type, time, tenant_id, resources, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&e.id)
        .bind(&e.source)
        .bind(&e.detail_type)
        .bind(e.time.millis())
        .bind(e.tenant_id.as_deref())
        .bind(json_text(&e.resources))
        .bind(json_text(&e.detail))
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    }
    for a in &fx.audit {
        sqlx::query(
            "INSERT INTO audit_log (id, time, actor_key_id, actor_role, action, target, tenant_id, request_id, \
             source_ip, outcome, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&a.id)
        .bind(a.time.millis())
        .bind(a.actor_key_id.as_deref())
        .bind(&a.actor_role)
        .bind(&a.action)
        .bind(&a.target)
        .bind(a.tenant_id.as_deref())
        .bind(a.request_id.as_deref())
        .bind(a.source_ip.as_deref())
        .bind(&a.outcome)
        .bind(json_text(&a.detail))
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    }
    if !fx.events.is_empty() || !fx.audit.is_empty() {
        // Wake the dispatcher and the audit sealer: here, now (they queue behind this
        // transaction for the writer), and on PostgreSQL every replica at commit.
        if tx.backend_name().eq_ignore_ascii_case("postgresql") {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(super::wakeup::CHANNEL)
                .execute(&mut **tx)
                .await
                .map_err(db_err)?;
        }
        super::wakeup::bump();
    }
    for j in &fx.jobs {
        sqlx::query(
            "INSERT INTO jobs (id, kind, tenant_id, payload, attempts, run_at, created_at) \
             VALUES ($1, $2, $3, $4, 0, $5, $6)",
        )
        .bind(&j.id)
        .bind(&j.kind)
        .bind(j.tenant_id.as_deref())
        .bind(json_text(&j.payload))
        .bind(j.run_at.millis())
        .bind(tenancy_domain::time::Timestamp::now().millis())
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    }
    Ok(())
}
