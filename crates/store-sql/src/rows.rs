//! Decoding rows into domain records.

use serde::de::DeserializeOwned;
use sqlx::any::AnyRow;
use sqlx::Row;
use tenancy_audit::{AuditEntry, AuditRecord};
use tenancy_domain::apikey::{ApiKey, Role};
use tenancy_domain::event::Event;
use tenancy_domain::plan::{Isolation, Plan};
use tenancy_domain::tenant::{Tenant, TenantStatus};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};

use super::db_err;
use tenancy_store::{StoredAudit, StoredEvent};

fn get<T>(row: &AnyRow, col: &str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(col).map_err(db_err)
}

fn json<T: DeserializeOwned>(row: &AnyRow, col: &str) -> Result<T> {
    let text: String = get(row, col)?;
    serde_json::from_str(&text).map_err(|e| Error::internal(format!("corrupt JSON in column {col}: {e}")))
}

/// A nullable JSON column: `None` when NULL.
fn json_opt<T: DeserializeOwned>(row: &AnyRow, col: &str) -> Result<Option<T>> {
    get::<Option<String>>(row, col)?
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|e| Error::internal(format!("corrupt JSON in column {col}: {e}")))
}

fn corrupt(what: &str, value: &str) -> Error {
    Error::internal(format!("corrupt {what} {value:?} in the store"))
}

pub(super) fn plan(row: &AnyRow) -> Result<Plan> {
    let isolation: String = get(row, "isolation")?;
    Ok(Plan {
        id: get(row, "id")?,
        name: get(row, "name")?,
        isolation: Isolation::parse(&isolation).ok_or_else(|| corrupt("isolation", &isolation))?,
        features: json(row, "features")?,
        quotas: json(row, "quotas")?,
        config: json(row, "config")?,
        workflows: match get::<Option<String>>(row, "workflows")? {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| Error::internal(format!("corrupt JSON in column workflows: {e}")))?,
            None => Default::default(),
        },
        rate_limit: json_opt(row, "rate_limit")?,
        regions: json(row, "regions")?,
        max_tenants: get::<Option<i64>>(row, "max_tenants")?.map(|m| m.max(0) as u64),
        self_service: get::<i64>(row, "self_service")? != 0,
        version: get(row, "version")?,
        created_at: Timestamp(get(row, "created_at")?),
        updated_at: Timestamp(get(row, "updated_at")?),
    })
}

pub(super) fn tenant(row: &AnyRow) -> Result<Tenant> {
    let status: String = get(row, "status")?;
    Ok(Tenant {
        id: get(row, "id")?,
        name: get(row, "name")?,
        plan: get(row, "plan_id")?,
        region: get(row, "region")?,
        status: TenantStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        metadata: json(row, "metadata")?,
        version: get(row, "version")?,
        created_at: Timestamp(get(row, "created_at")?),
        updated_at: Timestamp(get(row, "updated_at")?),
        lifecycle_execution_id: get(row, "lifecycle_execution_id")?,
        release: get(row, "release")?,
        pinned: json_opt(row, "pinned")?,
    })
}

pub(super) fn api_key(row: &AnyRow) -> Result<ApiKey> {
    let role: String = get(row, "role")?;
    Ok(ApiKey {
        id: get(row, "id")?,
        name: get(row, "name")?,
        role: Role::parse(&role).ok_or_else(|| corrupt("role", &role))?,
        tenant_id: get(row, "tenant_id")?,
        created_at: Timestamp(get(row, "created_at")?),
        expires_at: get::<Option<i64>>(row, "expires_at")?.map(Timestamp),
        rate_limit: json_opt(row, "rate_limit")?,
        labels: json_opt::<Vec<String>>(row, "labels")?.unwrap_or_default(),
        region: get(row, "region")?,
        last_used_at: get::<Option<i64>>(row, "last_used_at")?.map(Timestamp),
        previous_secret_expires_at: get::<Option<i64>>(row, "previous_expires_at")?.map(Timestamp),
        hash: get(row, "hash")?,
        previous_hash: get(row, "previous_hash")?,
    })
}

pub(super) fn event(row: &AnyRow) -> Result<StoredEvent> {
    Ok(StoredEvent {
        seq: get(row, "seq")?,
        event: Event {
            id: get(row, "id")?,
            source: get(row, "source")?,
            detail_type: get(row, "detail_type")?,
            time: Timestamp(get(row, "time")?),
            tenant_id: get(row, "tenant_id")?,
            resources: json(row, "resources")?,
            detail: json(row, "detail")?,
        },
    })
}

fn audit_entry(row: &AnyRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        id: get(row, "id")?,
        time: Timestamp(get(row, "time")?),
        actor_key_id: get(row, "actor_key_id")?,
        actor_role: get(row, "actor_role")?,
        action: get(row, "action")?,
        target: get(row, "target")?,
        tenant_id: get(row, "tenant_id")?,
        request_id: get(row, "request_id")?,
        source_ip: get(row, "source_ip")?,
        outcome: get(row, "outcome")?,
        detail: json(row, "detail")?,
    })
}

pub(super) fn audit(row: &AnyRow) -> Result<StoredAudit> {
    Ok(StoredAudit {
        pos: get(row, "pos")?,
        entry: audit_entry(row)?,
        seq: get(row, "seq")?,
        prev_hash: get(row, "prev_hash")?,
        hash: get(row, "hash")?,
    })
}

/// A row the sealer sealed.
pub(super) fn sealed_audit(row: &AnyRow) -> Result<AuditRecord> {
    let unsealed = || Error::internal("an audit record read as sealed is not sealed");
    Ok(AuditRecord {
        seq: get::<Option<i64>>(row, "seq")?.ok_or_else(unsealed)?,
        entry: audit_entry(row)?,
        prev_hash: get::<Option<String>>(row, "prev_hash")?.ok_or_else(unsealed)?,
        hash: get::<Option<String>>(row, "hash")?.ok_or_else(unsealed)?,
    })
}
