//! `tenancy tenants ...`: create, read, list, change, suspend, resume, change plan,
//! offboard and purge tenants, import many from a CSV file, and list their resources
//! and database credentials.
//!
//! `--wait` on the commands that start a lifecycle workflow (create, retry,
//! change-plan, delete) waits with a spinner until the workflow ends and fails with its error and
//! cause when it failed; `get --watch` prints each change of the tenant until it
//! settles (active, suspended, failed or offboarded).

use clap::Subcommand;
use serde_json::{json, Value};
use tenancy_client::{Client, TenantListParams};
use tenancy_domain::api::{PlanChange, TenantOperation};
use tenancy_domain::release::UpgradeRequest;
use tenancy_domain::tenant::{NewTenant, TenantPatch};

use crate::support::*;

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Create a tenant (provisioning starts in the background; --wait waits for it).
    Create {
        /// The tenant's id: 1-63 lowercase letters, digits and '-' [default: generated].
        #[arg(long)]
        id: Option<String>,
        /// A name for people.
        #[arg(long)]
        name: String,
        /// The plan's id (tenancy plans list).
        #[arg(long)]
        plan: String,
        /// The region (one the plan is offered in) [default: the server's].
        #[arg(long)]
        region: Option<String>,
        /// Metadata as a JSON object, e.g. '{"crm": "123"}'.
        #[arg(long)]
        metadata: Option<String>,
        /// Wait until provisioning ends (a spinner on a terminal); exit 1 with the cause
        /// when it failed.
        #[arg(long)]
        wait: bool,
    },
    /// Create many tenants from a CSV file with a header row: id,name,plan,region,metadata
    /// (name and plan required; metadata a JSON object). Prints a summary of failures
    /// (exit 1 when any failed).
    Import {
        /// The CSV file ("-": standard input).
        file: std::path::PathBuf,
        /// Wait until each tenant's provisioning ends (a provisioning that fails counts
        /// as a failure).
        #[arg(long)]
        wait: bool,
    },
    /// List tenants.
    List {
        /// Only tenants on this plan.
        #[arg(long)]
        plan: Option<String>,
        /// Only tenants in this status.
        #[arg(long, value_parser = ["provisioning", "active", "updating", "suspended", "offboarding", "offboarded", "failed"])]
        status: Option<String>,
        /// Only tenants in this region.
        #[arg(long)]
        region: Option<String>,
        /// The tenants on this release.
        #[arg(long)]
        release: Option<String>,
        /// Items per page, 1-1000 [default: 100].
        #[arg(long)]
        limit: Option<u32>,
        /// The cursor printed after the previous page ("more: --cursor ...").
        #[arg(long)]
        cursor: Option<String>,
    },
    /// A tenant: plan, region, status, release and its last workflow.
    Get {
        /// The tenant's id.
        id: String,
        /// Print each change of the tenant (status, plan, release) until it settles:
        /// active, suspended, failed or offboarded.
        #[arg(long, short = 'w')]
        watch: bool,
    },
    /// Change name, region or metadata.
    Update {
        /// The tenant's id.
        id: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// A new region.
        #[arg(long)]
        region: Option<String>,
        /// New metadata as a JSON object (replaces the old).
        #[arg(long)]
        metadata: Option<String>,
    },
    /// Suspend a tenant (its suspend hooks run; its keys are refused).
    Suspend {
        /// The tenant's id.
        id: String,
        /// Wait until its suspension (the suspend hooks) ends; exit 1 with the cause when it failed.
        #[arg(long)]
        wait: bool,
    },
    /// Resume a suspended tenant.
    Resume {
        /// The tenant's id.
        id: String,
        /// Wait until its resumption ends; exit 1 with the cause when it failed.
        #[arg(long)]
        wait: bool,
    },
    /// Provision a failed tenant again (after fixing what failed, e.g. a hook).
    Retry {
        /// The tenant's id.
        id: String,
        /// Wait until provisioning ends (a spinner on a terminal); exit 1 with the cause when it failed.
        #[arg(long)]
        wait: bool,
    },
    /// Move a tenant to another plan.
    ChangePlan {
        /// The tenant's id.
        id: String,
        /// The new plan's id.
        #[arg(long)]
        plan: String,
        /// Move even when the tenant's usage is over a hard quota of the new plan (the
        /// audit record notes it).
        #[arg(long)]
        force: bool,
        /// Wait until the plan change ends; exit 1 with the cause when it failed.
        #[arg(long)]
        wait: bool,
    },
    /// Offboard a tenant: its offboard workflow removes its resources (asks first).
    #[command(visible_alias = "offboard")]
    Delete {
        /// The tenant's id.
        id: String,
        /// Wait until offboarding ends; exit 1 with the cause when it failed.
        #[arg(long)]
        wait: bool,
        /// The export's events and audit records: ndjson (verifiable offline with
        /// `tenancy audit verify`) or parquet (for Athena, DuckDB).
        #[arg(long, value_parser = ["ndjson", "parquet"], default_value = "ndjson")]
        format: String,
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Release an offboarded tenant's id once the export retention has passed (admins;
    /// the tombstone and its resources go, events and audit records stay; asks first).
    Purge {
        /// The tenant's id.
        id: String,
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Upgrade a tenant to a release (in the background; --wait waits for the end).
    Upgrade {
        /// The tenant's id.
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
        /// The tenant's id.
        id: String,
        /// Why (shown with the pin, e.g. "waiting for their QA").
        #[arg(long)]
        reason: String,
    },
    /// Remove a tenant's pin: upgrades and rollouts reach it again.
    Unpin {
        /// The tenant's id.
        id: String,
    },
    /// What the lifecycle workflows created for a tenant (namespace, database, ...),
    /// with what the data plane sees of its database now.
    Resources {
        /// The tenant's id.
        id: String,
    },
    /// How the tenant's service connects to its database: host, port, database, user
    /// and password (every read is audited; PostgreSQL data plane only).
    DatabaseCredentials {
        /// The tenant's id.
        id: String,
    },
}

pub const CREDENTIAL_COLUMNS: &[&str] = &["host", "port", "database", "schema", "user", "password"];

pub const TENANT_COLUMNS: &[&str] =
    &["id", "name", "plan", "region", "status", "release", "pinned", "version", "execution_id"];

/// Waits, when `wait`, for the workflow a tenant operation started; the tenant as it
/// is then, with the execution's id.
async fn settle(c: &Client, op: TenantOperation, wait: bool, what: &str) -> Result<Value, CliError> {
    let Some(execution) = op.execution_id.clone().filter(|_| wait) else {
        return Ok(to_json(op));
    };
    let id = op.tenant.id.clone();
    wait_execution(c, &execution, &format!("the {what} of tenant {id}")).await?;
    let tenant = c.tenant_get(&id).await?;
    if tenant.status == tenancy_domain::tenant::TenantStatus::Failed {
        // A plan's machine that ended SUCCEEDED without activating the tenant.
        return Err(CliError::Other(anyhow::anyhow!(
            "the {what} of tenant {id} ended with the tenant failed (execution {execution}; \
             `tenancy events list --tenant {id}` shows why)"
        )));
    }
    let mut v = to_json(tenant);
    v["execution_id"] = execution.into();
    Ok(v)
}

pub async fn tenants(c: &Client, cmd: TenantCmd) -> Result<Value, CliError> {
    Ok(match cmd {
        TenantCmd::Create { id, name, plan, region, metadata, wait } => {
            let metadata = metadata.map(|m| parse_object("--metadata", &m)).transpose()?;
            let op = c.tenant_create(&NewTenant { id, name, plan, region, metadata }).await?;
            settle(c, op, wait, "provisioning").await?
        }
        TenantCmd::Import { .. } => unreachable!("run by run_client"),
        TenantCmd::Get { id, watch: true } => watch(c, &id).await?,
        TenantCmd::DatabaseCredentials { id } => c.tenant_database_credentials(&id).await?,
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
        TenantCmd::Get { id, watch: false } => to_json(c.tenant_get(&id).await?),
        TenantCmd::Update { id, name, region, metadata } => {
            let metadata = metadata.map(|m| parse_object("--metadata", &m)).transpose()?;
            to_json(c.tenant_update(&id, &TenantPatch { name, region, metadata }).await?)
        }
        TenantCmd::Suspend { id, wait } => settle(c, c.tenant_suspend(&id).await?, wait, "suspension").await?,
        TenantCmd::Resume { id, wait } => settle(c, c.tenant_resume(&id).await?, wait, "resumption").await?,
        TenantCmd::Retry { id, wait } => settle(c, c.tenant_retry(&id).await?, wait, "provisioning").await?,
        TenantCmd::ChangePlan { id, plan, force, wait } => {
            let op = c.tenant_change_plan(&id, &PlanChange { plan, force }).await?;
            settle(c, op, wait, "plan change").await?
        }
        TenantCmd::Delete { id, wait, format, confirm: yes } => {
            confirm(yes, &format!("offboard tenant {id} (its resources are removed)"))?;
            let op = c.tenant_offboard_as(&id, &format).await?;
            settle(c, op, wait, "offboarding").await?
        }
        TenantCmd::Purge { id, confirm: yes } => {
            confirm(yes, &format!("purge tenant {id} (its tombstone and resources go for good)"))?;
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

/// A status from which a tenant moves on by itself (a workflow is running).
fn transitional(status: &str) -> bool {
    matches!(status, "provisioning" | "updating" | "offboarding")
}

/// Prints (on stderr) the tenant's status, then each change of its status, plan or
/// release, until it settles; the tenant as it is then (printed on stdout as any `get`).
async fn watch(c: &Client, id: &str) -> Result<Value, CliError> {
    let deadline = std::time::Instant::now() + WAIT_LIMIT;
    let mut last: Option<(String, String, Option<String>)> = None;
    loop {
        let t = c.tenant_get(id).await?;
        let status = to_json(t.status).as_str().unwrap_or_default().to_owned();
        let now = (status.clone(), t.plan.clone(), t.release.clone());
        if last.as_ref() != Some(&now) {
            eprintln!(
                "{} {id}: {status} on plan {}{}",
                tenancy_domain::time::Timestamp::now().to_rfc3339(),
                t.plan,
                t.release.as_deref().map(|r| format!(", release {r}")).unwrap_or_default()
            );
            last = Some(now);
        }
        if !transitional(&status) {
            return Ok(to_json(t));
        }
        if std::time::Instant::now() > deadline {
            return Err(CliError::Other(anyhow::anyhow!("tenant {id} is still {status}")));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// One row of an import file.
#[derive(Debug, serde::Deserialize)]
struct ImportRow {
    id: Option<String>,
    name: String,
    plan: String,
    region: Option<String>,
    metadata: Option<String>,
}

pub const IMPORT_COLUMNS: &[&str] = &["line", "id", "status", "error"];

/// Creates the tenants of a CSV file one by one with a progress bar; the answer lists
/// every row that failed (its line, id and why), and the command fails when any did.
pub async fn import(c: &Client, file: &std::path::Path, wait: bool, output: Output) -> Result<(), CliError> {
    let text = if file.as_os_str() == "-" {
        read_secret_input(None, "the CSV")?
    } else {
        std::fs::read_to_string(file).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?
    };
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
    // Every row is read before anything is created: a malformed file changes nothing.
    let mut rows = Vec::new();
    for record in reader.deserialize::<ImportRow>() {
        match record {
            Ok(r) => rows.push(r),
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                return Err(CliError::Usage(format!(
                    "{} line {line}: {e} (the header is id,name,plan,region,metadata; name and plan are required)",
                    file.display()
                )));
            }
        }
    }
    let bar = indicatif::ProgressBar::new(rows.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("importing [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut failures = Vec::new();
    let mut created = 0u64;
    for (i, row) in rows.into_iter().enumerate() {
        // Line 1 is the header.
        let line = i + 2;
        let shown = row.id.clone().unwrap_or_else(|| row.name.clone());
        bar.set_message(shown.clone());
        let result = async {
            let metadata = match row.metadata.as_deref().filter(|m| !m.is_empty()) {
                Some(m) => Some(parse_object("metadata", m)?),
                None => None,
            };
            let region = row.region.filter(|r| !r.is_empty());
            let id = row.id.filter(|r| !r.is_empty());
            let op = c.tenant_create(&NewTenant { id, name: row.name, plan: row.plan, region, metadata }).await?;
            if let (true, Some(execution)) = (wait, &op.execution_id) {
                let what = format!("the provisioning of tenant {}", op.tenant.id);
                wait_execution_quietly(c, execution, &what).await?;
            }
            Ok::<_, CliError>(op.tenant.id)
        }
        .await;
        match result {
            Ok(_) => created += 1,
            Err(e @ CliError::Unreachable(_)) => {
                bar.abandon();
                return Err(e);
            }
            Err(e) => failures.push(json!({"line": line, "id": shown, "status": "failed", "error": e.to_string()})),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let total = created + failures.len() as u64;
    let failed = failures.len();
    let summary = json!({"created": created, "failed": failed, "items": failures});
    // A table lists the failures only; JSON and YAML print the summary always.
    if output.raw() || failed > 0 {
        print_value(&summary, IMPORT_COLUMNS, output);
    }
    if failed == 0 {
        eprintln!("imported {created} of {total} tenants");
        return Ok(());
    }
    Err(CliError::Other(anyhow::anyhow!(
        "{} of {total} tenants failed to import (listed above by line); {created} created",
        total - created
    )))
}
