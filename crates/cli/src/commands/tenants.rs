//! `tenancy tenants ...`: create, read, list, change, suspend, resume, change plan,
//! offboard and purge tenants, and list their resources.

use clap::Subcommand;
use serde_json::{json, Value};
use tenancy_client::{Client, TenantListParams};
use tenancy_domain::api::PlanChange;
use tenancy_domain::release::UpgradeRequest;
use tenancy_domain::tenant::{NewTenant, TenantPatch};

use crate::support::*;

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Create a tenant (provisioning starts in the background).
    Create {
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        name: String,
        #[arg(long)]
        plan: String,
        #[arg(long)]
        region: Option<String>,
        /// Metadata as a JSON object.
        #[arg(long)]
        metadata: Option<String>,
    },
    /// List tenants.
    List {
        #[arg(long)]
        plan: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        region: Option<String>,
        /// The tenants on this release.
        #[arg(long)]
        release: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
    },
    Get {
        id: String,
    },
    /// Change name, region or metadata.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        metadata: Option<String>,
    },
    Suspend {
        id: String,
    },
    Resume {
        id: String,
    },
    /// Provision a failed tenant again (after fixing what failed, e.g. a hook).
    Retry {
        id: String,
    },
    /// Move a tenant to another plan.
    ChangePlan {
        id: String,
        #[arg(long)]
        plan: String,
        /// Move even when the tenant's usage is over a hard quota of the new plan (the
        /// audit record notes it).
        #[arg(long)]
        force: bool,
    },
    /// Offboard a tenant.
    Delete {
        id: String,
    },
    /// Release an offboarded tenant's id once the export retention has passed (admins;
    /// the tombstone and its resources go, events and audit records stay).
    Purge {
        id: String,
    },
    /// Upgrade a tenant to a release (in the background; --wait waits for the end).
    Upgrade {
        id: String,
        /// The release to upgrade to.
        #[arg(long)]
        version: String,
        /// Upgrade a pinned tenant anyway.
        #[arg(long)]
        force: bool,
        /// Wait until the upgrade ends (the tenant active on the new release, or rolled
        /// back: exit 1 then).
        #[arg(long)]
        wait: bool,
    },
    /// Pin a tenant to its release: upgrades are refused unless forced.
    Pin {
        id: String,
        #[arg(long)]
        reason: String,
    },
    Unpin {
        id: String,
    },
    /// What the lifecycle workflows created for a tenant (namespace, database, ...),
    /// with what the data plane sees of its database now.
    Resources {
        id: String,
    },
}

pub const TENANT_COLUMNS: &[&str] =
    &["id", "name", "plan", "region", "status", "release", "pinned", "version", "execution_id"];

pub async fn tenants(c: &Client, cmd: TenantCmd) -> Result<Value, CliError> {
    Ok(match cmd {
        TenantCmd::Create { id, name, plan, region, metadata } => {
            let metadata = metadata.map(|m| parse_object("--metadata", &m)).transpose()?;
            to_json(c.tenant_create(&NewTenant { id, name, plan, region, metadata }).await?)
        }
        TenantCmd::List { plan, status, region, release, limit, cursor } => {
            to_json(c.tenant_list(&TenantListParams { plan, status, region, release, limit, cursor }).await?)
        }
        TenantCmd::Upgrade { id, version, force, wait } => {
            let op = c.tenant_upgrade(&id, &UpgradeRequest { version: version.clone(), force }).await?;
            if !wait {
                return Ok(to_json(op));
            }
            let execution = op.execution_id.clone().unwrap_or_default();
            let t = wait_for_upgrade(c, &id, &execution).await?;
            if t.release.as_deref() != Some(version.as_str()) {
                return Err(CliError::Other(anyhow::anyhow!(
                    "the upgrade of tenant {id:?} to {version:?} failed and was rolled back: it is on release {:?} \
                     (execution {execution}; the TenantUpgradeFailed event names the step)",
                    t.release
                )));
            }
            let mut v = to_json(t);
            v["execution_id"] = execution.into();
            v
        }
        TenantCmd::Pin { id, reason } => to_json(c.tenant_pin(&id, &reason).await?),
        TenantCmd::Unpin { id } => to_json(c.tenant_unpin(&id).await?),
        TenantCmd::Get { id } => to_json(c.tenant_get(&id).await?),
        TenantCmd::Update { id, name, region, metadata } => {
            let metadata = metadata.map(|m| parse_object("--metadata", &m)).transpose()?;
            to_json(c.tenant_update(&id, &TenantPatch { name, region, metadata }).await?)
        }
        TenantCmd::Suspend { id } => to_json(c.tenant_suspend(&id).await?),
        TenantCmd::Resume { id } => to_json(c.tenant_resume(&id).await?),
        TenantCmd::Retry { id } => to_json(c.tenant_retry(&id).await?),
        TenantCmd::ChangePlan { id, plan, force } => {
            to_json(c.tenant_change_plan(&id, &PlanChange { plan, force }).await?)
        }
        TenantCmd::Delete { id } => to_json(c.tenant_offboard(&id).await?),
        TenantCmd::Purge { id } => {
            c.tenant_purge(&id).await?;
            json!({"id": id, "purged": true})
        }
        TenantCmd::Resources { .. } => unreachable!("handled by run_client"),
    })
}

/// Polls the upgrade's execution until it ends (a 10 minute deadline), then the tenant.
async fn wait_for_upgrade(c: &Client, id: &str, execution: &str) -> Result<tenancy_domain::tenant::Tenant, CliError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    loop {
        let e = c.execution_get(execution).await?;
        if e.status != "RUNNING" {
            return Ok(c.tenant_get(id).await?);
        }
        if std::time::Instant::now() > deadline {
            return Err(CliError::Other(anyhow::anyhow!(
                "the upgrade of tenant {id:?} is still running (execution {execution})"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

pub const RESOURCE_COLUMNS: &[&str] = &["kind", "isolation", "location", "exists", "created_at"];

/// A tenant's resources, flattened for the table: a database's key, location and
/// whether the provisioner sees it now (from the resources' free-form `detail` and
/// `observed`).
pub async fn tenant_resources(c: &Client, id: &str, json_output: bool) -> Result<Value, CliError> {
    let got = c.tenant_resources(id).await?;
    if json_output {
        return Ok(to_json(got));
    }
    let items: Vec<Value> = got
        .items
        .iter()
        .map(|r| {
            let observed = r.observed.as_ref();
            json!({
                "kind": r.kind,
                "isolation": r.detail.get("isolation"),
                "location": observed.and_then(|o| o.get("location")).or(r.detail.get("location")),
                "exists": observed.and_then(|o| o.get("exists")),
                "created_at": r.created_at,
            })
        })
        .collect();
    Ok(json!({"items": items}))
}
