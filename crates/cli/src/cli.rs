//! The command line: `tenancy serve` and the operator commands.

use std::path::PathBuf;

use std::collections::BTreeMap;

pub use crate::config::ServeArgs;
use crate::provisioning_cli;
use clap::{Parser, Subcommand, ValueEnum};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};
use tenancy_client::{
    AuditExportParams, AuditListParams, Client, ClientError, EventListParams, PageParams, TenantListParams,
};
use tenancy_domain::api::PlanChange;
use tenancy_domain::apikey::{NewApiKey, Role};
use tenancy_domain::plan::{
    Isolation, PlanPatch, PlanSpec, PlanWorkflows, PlanWorkflowsPatch, Quota, QuotaPeriod, QuotaSpec,
};
use tenancy_domain::tenant::{NewTenant, TenantPatch};
use tenancy_domain::time::Timestamp;

#[derive(Debug, Parser)]
#[command(name = "tenancy", version, about = "Control plane for multi-tenant SaaS")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Server URL for the operator commands.
    #[arg(long, global = true, env = "TENANCY_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// API key for the operator commands (default: <data dir>/admin-token when readable).
    #[arg(long, global = true, env = "TENANCY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output of the operator commands.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane.
    Serve(Box<ServeArgs>),
    /// Manage tenants.
    #[command(subcommand)]
    Tenants(TenantCmd),
    /// Manage plans.
    #[command(subcommand)]
    Plans(PlanCmd),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeyCmd),
    /// Read the event archive.
    #[command(subcommand)]
    Events(EventCmd),
    /// Read and verify the audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Manage state machines (ASL definitions).
    #[command(subcommand, name = "state-machines")]
    StateMachines(crate::workflows_cli::StateMachineCmd),
    /// Start, inspect, stop and redrive workflow executions.
    #[command(subcommand)]
    Executions(crate::workflows_cli::ExecutionCmd),
    /// Queues: settings, depth, messages, redrive.
    #[command(subcommand)]
    Queues(crate::provisioning_cli::QueueCmd),
    /// Provisioning hooks of product services.
    #[command(subcommand)]
    Hooks(crate::provisioning_cli::HookCmd),
    /// Functions (the Lambda role) that Task states invoke.
    #[command(subcommand)]
    Functions(crate::functions_cli::FunctionCmd),
    /// The reconciler's last pass, or a pass now.
    #[command(subcommand)]
    Reconciliation(crate::provisioning_cli::ReconciliationCmd),
    /// Print the OpenAPI document.
    Openapi,
}

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
    /// What the lifecycle workflows created for a tenant (namespace, database, ...),
    /// with what the data plane sees of its database now.
    Resources {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PlanCmd {
    /// Create or replace a plan: a full replacement, so features and quotas not given
    /// are removed (use `plans patch` to change only some).
    Put {
        id: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "pool")]
        isolation: String,
        /// A feature; repeat for several.
        #[arg(long = "feature")]
        features: Vec<String>,
        /// A quota as NAME=LIMIT[/day|/month][/soft]; repeat for several.
        #[arg(long = "quota")]
        quotas: Vec<String>,
        /// The plan's own lifecycle state machine as KIND=NAME (KIND: provision,
        /// change_plan or offboard; NAME a tenancy.lifecycle.* state machine); repeat for
        /// several. Admin-only.
        #[arg(long = "workflow")]
        workflows: Vec<String>,
    },
    /// Change only the fields given (PATCH); the others keep their values.
    Patch {
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// pool or silo; refused while tenants use the plan.
        #[arg(long)]
        isolation: Option<String>,
        /// Replace the features with these; repeat for several.
        #[arg(long = "feature", conflicts_with = "no_features")]
        features: Vec<String>,
        /// Remove every feature.
        #[arg(long)]
        no_features: bool,
        /// Add or replace a quota, NAME=LIMIT[/day|/month][/soft]; repeat for several.
        #[arg(long = "quota")]
        quotas: Vec<String>,
        /// Remove a quota by name; repeat for several.
        #[arg(long = "remove-quota")]
        remove_quotas: Vec<String>,
        /// Set a lifecycle state machine, KIND=NAME (see `plans put`); admin-only.
        #[arg(long = "workflow")]
        workflows: Vec<String>,
        /// Go back to the built-in state machine of KIND (provision, change_plan,
        /// offboard); repeat for several. Admin-only.
        #[arg(long = "remove-workflow")]
        remove_workflows: Vec<String>,
    },
    List,
    Get {
        id: String,
    },
    Delete {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Create an API key; the key is printed once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: String,
        #[arg(long)]
        tenant: Option<String>,
        /// RFC 3339 expiry time.
        #[arg(long)]
        expires_at: Option<String>,
    },
    List,
    Delete {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventCmd {
    List {
        #[arg(long)]
        detail_type: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Verify an NDJSON audit export offline: rejects changed, dropped or reordered records.
    Verify { file: PathBuf },
    /// Write sealed audit records as NDJSON to stdout (`> file`, then `audit verify file`).
    Export {
        /// RFC 3339: from the first record at or after this time.
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339: to the last record before this time.
        #[arg(long)]
        to: Option<String>,
    },
}

/// Why a command failed, with the exit code it maps to.
#[derive(Debug)]
pub enum CliError {
    /// Bad arguments (exit 2).
    Usage(String),
    /// The server said no (exit 1).
    Api(ClientError),
    /// The server could not be reached (exit 3).
    Unreachable(ClientError),
    /// Anything else (exit 1).
    Other(anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Unreachable(_) => 3,
            CliError::Api(_) | CliError::Other(_) => 1,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Usage(m) => f.write_str(m),
            CliError::Api(e) | CliError::Unreachable(e) => e.fmt(f),
            CliError::Other(e) => write!(f, "{e:#}"),
        }
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Unreachable(_) => CliError::Unreachable(e),
            ClientError::Api { .. } | ClientError::Decode(_) => CliError::Api(e),
        }
    }
}

/// A typed API answer as the JSON the CLI prints (the server's own shape: the types
/// are the server's).
pub(crate) fn to_json(v: impl Serialize) -> Value {
    serde_json::to_value(v).expect("API types serialize")
}

/// A flag's value as one of an API enum's wire names (`flag` and `expected` for the
/// usage error).
pub(crate) fn parse_wire<T: DeserializeOwned>(flag: &str, s: &str, expected: &str) -> Result<T, CliError> {
    serde_json::from_value(Value::String(s.to_owned()))
        .map_err(|_| CliError::Usage(format!("{flag} {s:?}: use {expected}")))
}

fn parse_object(flag: &str, s: &str) -> Result<Map<String, Value>, CliError> {
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(CliError::Usage(format!("{flag} must be a JSON object, e.g. '{{\"tier\": \"gold\"}}'"))),
    }
}

/// Parses `NAME=LIMIT[/day|/month][/soft]`.
pub fn parse_quota(s: &str) -> Result<(String, Quota), CliError> {
    let usage = || CliError::Usage(format!("invalid quota {s:?}: use NAME=LIMIT[/day|/month][/soft]"));
    let (name, rest) = s.split_once('=').ok_or_else(usage)?;
    let mut parts = rest.split('/');
    let limit: u64 = parts.next().and_then(|l| l.parse().ok()).ok_or_else(usage)?;
    let mut q = Quota { limit, period: None, soft: false };
    for p in parts {
        match p {
            "day" => q.period = Some(QuotaPeriod::Day),
            "month" => q.period = Some(QuotaPeriod::Month),
            "soft" => q.soft = true,
            _ => return Err(usage()),
        }
    }
    Ok((name.to_owned(), q))
}

fn parse_isolation(s: &str) -> Result<Isolation, CliError> {
    Isolation::parse(s).ok_or_else(|| CliError::Usage(format!("--isolation {s:?}: use pool or silo")))
}

/// The token to use: the flag/env, else the generated admin key of the local data dir.
pub fn resolve_token(token: Option<String>) -> Option<String> {
    token.or_else(|| {
        let dir = crate::config::env_var("TENANCY_DATA_DIR").unwrap_or_else(|| crate::config::DEFAULT_DATA_DIR.into());
        std::fs::read_to_string(PathBuf::from(dir).join("admin-token")).ok().map(|s| s.trim().to_owned())
    })
}

/// Runs an operator command (anything but `serve`), printing to stdout.
pub async fn run_client(cli: Cli) -> Result<(), CliError> {
    let output = cli.output;
    let token = resolve_token(cli.token);
    let client = Client::new(&cli.server, token);
    let (value, columns): (Value, &[&str]) = match cli.command {
        Command::Serve(_) => unreachable!("serve is not a client command"),
        Command::Openapi => {
            println!("{}", tenancy_http::openapi_json());
            return Ok(());
        }
        Command::Audit(AuditCmd::Verify { file }) => return verify_audit(&file, output),
        Command::Audit(AuditCmd::Export { from, to }) => return export_audit(&client, from, to).await,
        Command::Tenants(TenantCmd::Resources { id }) => (
            provisioning_cli::tenant_resources(&client, &id, output == Output::Json).await?,
            provisioning_cli::RESOURCE_COLUMNS,
        ),
        Command::Tenants(cmd) => (tenants(&client, cmd).await?, TENANT_COLUMNS),
        Command::Queues(cmd) => provisioning_cli::queues(&client, cmd).await?,
        Command::Hooks(cmd) => (provisioning_cli::hooks(&client, cmd).await?, provisioning_cli::HOOK_COLUMNS),
        Command::Functions(cmd) => {
            (crate::functions_cli::functions(&client, cmd).await?, crate::functions_cli::FUNCTION_COLUMNS)
        }
        Command::Reconciliation(cmd) => (
            provisioning_cli::reconciliation(&client, cmd, output == Output::Json).await?,
            provisioning_cli::DRIFT_COLUMNS,
        ),
        Command::StateMachines(cmd) => {
            (crate::workflows_cli::state_machines(&client, cmd).await?, crate::workflows_cli::STATE_MACHINE_COLUMNS)
        }
        Command::Executions(cmd) => crate::workflows_cli::executions(&client, cmd).await?,
        Command::Plans(cmd) => (plans(&client, cmd).await?, &["id", "name", "isolation", "features", "version"]),
        Command::Keys(cmd) => (keys(&client, cmd).await?, &["id", "name", "role", "tenant_id", "expires_at", "key"]),
        Command::Events(EventCmd::List { detail_type, tenant, limit }) => {
            let params = EventListParams { detail_type, tenant_id: tenant, limit, ..Default::default() };
            (to_json(client.event_list(&params).await?), &["id", "time", "detail-type", "tenant_id"])
        }
        Command::Audit(AuditCmd::List { tenant, action, limit }) => {
            let params = AuditListParams { tenant_id: tenant, action, limit, ..Default::default() };
            (
                to_json(client.audit_list(&params).await?),
                &["time", "actor_role", "actor_key_id", "action", "target", "outcome"],
            )
        }
    };
    print_value(&value, columns, output);
    Ok(())
}

const TENANT_COLUMNS: &[&str] = &["id", "name", "plan", "region", "status", "version", "execution_id"];

async fn tenants(c: &Client, cmd: TenantCmd) -> Result<Value, CliError> {
    Ok(match cmd {
        TenantCmd::Create { id, name, plan, region, metadata } => {
            let metadata = metadata.map(|m| parse_object("--metadata", &m)).transpose()?;
            to_json(c.tenant_create(&NewTenant { id, name, plan, region, metadata }).await?)
        }
        TenantCmd::List { plan, status, region, limit, cursor } => {
            to_json(c.tenant_list(&TenantListParams { plan, status, region, limit, cursor }).await?)
        }
        TenantCmd::Get { id } => to_json(c.tenant_get(&id).await?),
        TenantCmd::Update { id, name, region, metadata } => {
            let metadata = metadata.map(|m| parse_object("--metadata", &m)).transpose()?;
            to_json(c.tenant_update(&id, &TenantPatch { name, region, metadata }).await?)
        }
        TenantCmd::Suspend { id } => to_json(c.tenant_suspend(&id).await?),
        TenantCmd::Resume { id } => to_json(c.tenant_resume(&id).await?),
        TenantCmd::Retry { id } => to_json(c.tenant_retry(&id).await?),
        TenantCmd::ChangePlan { id, plan } => to_json(c.tenant_change_plan(&id, &PlanChange { plan }).await?),
        TenantCmd::Delete { id } => to_json(c.tenant_offboard(&id).await?),
        TenantCmd::Purge { id } => {
            c.tenant_purge(&id).await?;
            json!({"id": id, "purged": true})
        }
        TenantCmd::Resources { .. } => unreachable!("handled by run_client"),
    })
}

/// `KIND=NAME` flags as the lifecycle state machines a plan names.
fn parse_workflows(set: &[String]) -> Result<Vec<(String, String)>, CliError> {
    let mut w = Vec::new();
    for s in set {
        let (kind, name) = s.split_once('=').ok_or_else(|| {
            CliError::Usage(format!("--workflow {s:?}: use KIND=NAME, e.g. provision=tenancy.lifecycle.acme"))
        })?;
        w.push((kind.to_owned(), name.to_owned()));
    }
    Ok(w)
}

/// The member of a plan's `workflows` a KIND names.
fn workflow_member<'a, T>(
    kind: &str,
    provision: &'a mut T,
    change_plan: &'a mut T,
    offboard: &'a mut T,
) -> Result<&'a mut T, CliError> {
    match kind {
        "provision" => Ok(provision),
        "change_plan" => Ok(change_plan),
        "offboard" => Ok(offboard),
        _ => Err(CliError::Usage(format!("workflow kind {kind:?}: use provision, change_plan or offboard"))),
    }
}

async fn plans(c: &Client, cmd: PlanCmd) -> Result<Value, CliError> {
    Ok(match cmd {
        PlanCmd::Put { id, name, isolation, features, quotas, workflows } => {
            let mut q = BTreeMap::new();
            for s in &quotas {
                let (name, quota) = parse_quota(s)?;
                q.insert(name, QuotaSpec::Full(quota));
            }
            let mut w = PlanWorkflows::default();
            for (kind, name) in parse_workflows(&workflows)? {
                let PlanWorkflows { provision, change_plan, offboard } = &mut w;
                *workflow_member(&kind, provision, change_plan, offboard)? = Some(name);
            }
            let spec = PlanSpec { name, isolation: parse_isolation(&isolation)?, features, quotas: q, workflows: w };
            to_json(c.plan_put(&id, &spec).await?)
        }
        PlanCmd::Patch {
            id,
            name,
            isolation,
            features,
            no_features,
            quotas,
            remove_quotas,
            workflows,
            remove_workflows,
        } => {
            let mut patch = PlanPatch {
                name: name.map(Some),
                isolation: isolation.map(|i| parse_isolation(&i)).transpose()?.map(Some),
                ..Default::default()
            };
            if no_features || !features.is_empty() {
                patch.features = Some(Some(features));
            }
            let mut q = BTreeMap::new();
            for s in &quotas {
                let (name, quota) = parse_quota(s)?;
                q.insert(name, Some(QuotaSpec::Full(quota)));
            }
            for name in remove_quotas {
                q.insert(name, None);
            }
            if !q.is_empty() {
                patch.quotas = Some(Some(q));
            }
            let set = parse_workflows(&workflows)?;
            if !set.is_empty() || !remove_workflows.is_empty() {
                let mut w = PlanWorkflowsPatch::default();
                let PlanWorkflowsPatch { provision, change_plan, offboard } = &mut w;
                for (kind, name) in set {
                    *workflow_member(&kind, provision, change_plan, offboard)? = Some(Some(name));
                }
                for kind in &remove_workflows {
                    *workflow_member(kind, provision, change_plan, offboard)? = Some(None);
                }
                patch.workflows = Some(Some(w));
            }
            to_json(c.plan_patch(&id, &patch).await?)
        }
        PlanCmd::List => to_json(c.plan_list(&PageParams::default()).await?),
        PlanCmd::Get { id } => to_json(c.plan_get(&id).await?),
        PlanCmd::Delete { id } => {
            c.plan_delete(&id).await?;
            json!({"id": id, "deleted": true})
        }
    })
}

async fn keys(c: &Client, cmd: KeyCmd) -> Result<Value, CliError> {
    Ok(match cmd {
        KeyCmd::Create { name, role, tenant, expires_at } => {
            let role = Role::parse(&role).ok_or_else(|| {
                CliError::Usage(format!("--role {role:?}: use admin, operator, viewer, service or tenant"))
            })?;
            let expires_at = expires_at
                .map(|e| {
                    Timestamp::parse_rfc3339(&e)
                        .ok_or_else(|| CliError::Usage(format!("--expires-at {e:?}: use an RFC 3339 time")))
                })
                .transpose()?;
            to_json(c.key_create(&NewApiKey { name, role, tenant_id: tenant, expires_at }).await?)
        }
        KeyCmd::List => to_json(c.key_list(&PageParams::default()).await?),
        KeyCmd::Delete { id } => {
            c.key_delete(&id).await?;
            json!({"id": id, "deleted": true})
        }
    })
}

/// Streams `GET /v1/audit/export` to stdout as it arrives.
async fn export_audit(c: &Client, from: Option<String>, to: Option<String>) -> Result<(), CliError> {
    use std::io::Write;
    let mut export = c.audit_export(&AuditExportParams { from, to }).await?;
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = export.chunk().await? {
        out.write_all(&chunk).map_err(|e| CliError::Other(anyhow::anyhow!("failed to write the export: {e}")))?;
    }
    out.flush().map_err(|e| CliError::Other(anyhow::anyhow!("failed to write the export: {e}")))?;
    Ok(())
}

fn verify_audit(file: &std::path::Path, output: Output) -> Result<(), CliError> {
    let f = std::fs::File::open(file).map_err(|e| CliError::Usage(format!("cannot open {}: {e}", file.display())))?;
    match tenancy_audit::verify_ndjson(std::io::BufReader::new(f)) {
        Ok(summary) => {
            let v = json!({"ok": true, "records": summary.records, "first_seq": summary.first_seq, "last_seq": summary.last_seq, "head": summary.head});
            match output {
                Output::Json => println!("{v}"),
                Output::Table => println!("ok: {} records verified, head {}", summary.records, summary.head),
            }
            Ok(())
        }
        Err(e) => Err(CliError::Other(anyhow::anyhow!("audit export {} failed verification: {e}", file.display()))),
    }
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a.iter().map(|x| cell(Some(x))).collect::<Vec<_>>().join(","),
        Some(other) => other.to_string(),
    }
}

/// Prints a value: JSON as is, or a table of `columns` for a list (`items`) or object.
pub fn print_value(v: &Value, columns: &[&str], output: Output) {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(v).expect("JSON prints"));
        return;
    }
    let rows: Vec<&Value> = match v.get("items").and_then(Value::as_array) {
        Some(items) => items.iter().collect(),
        None => vec![v],
    };
    let used: Vec<&str> = columns.iter().copied().filter(|c| rows.iter().any(|r| r.get(*c).is_some())).collect();
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(used.iter().map(|c| c.to_uppercase()));
    for r in &rows {
        table.add_row(used.iter().map(|c| cell(r.get(*c))));
    }
    println!("{table}");
    if let Some(next) = v.get("next_cursor").and_then(Value::as_str) {
        eprintln!("more: --cursor {next}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_parse() {
        assert_eq!(parse_quota("seats=10").unwrap(), ("seats".into(), Quota { limit: 10, period: None, soft: false }));
        assert_eq!(
            parse_quota("calls=5/month/soft").unwrap(),
            ("calls".into(), Quota { limit: 5, period: Some(QuotaPeriod::Month), soft: true })
        );
        assert!(parse_quota("seats").is_err());
        assert!(parse_quota("seats=x").is_err());
        assert!(parse_quota("seats=1/week").is_err());
    }
}
