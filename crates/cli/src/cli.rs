//! The command line: `tenancy serve` and the operator commands.

use std::path::PathBuf;

use crate::commands::audit::{self, AuditCmd};
use crate::commands::connections::{self, ConnectionCmd};
use crate::commands::entitlements::{self, EntitlementCmd, OverrideCmd};
use crate::commands::events::EventCmd;
use crate::commands::functions::{self, FunctionCmd};
use crate::commands::hooks::{self, HookCmd};
use crate::commands::keys::{self, KeyCmd};
use crate::commands::plans::{self, PlanCmd};
use crate::commands::policies::{self, PolicyCmd};
use crate::commands::queues::{self, QueueCmd};
use crate::commands::quotas::{self, QuotaCmd};
use crate::commands::reconciliation::{self, ReconciliationCmd};
use crate::commands::releases::{self, ReleaseCmd};
use crate::commands::rollouts::{self, RolloutCmd};
use crate::commands::secrets::{self, SecretCmd};
use crate::commands::signup::{self, SignupArgs};
use crate::commands::tenants::{self, TenantCmd};
use crate::commands::workflows::{self, ExecutionCmd, StateMachineCmd};
pub use crate::config::ServeArgs;
use crate::support::{print_value, to_json, CliError, Output};
use clap::{Parser, Subcommand};
use serde_json::Value;
use tenancy_client::{AuditListParams, Client, EventListParams};

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
    /// Self-service sign-up (no credentials): `--email E --org NAME [--plan P]`, or
    /// `activate TOKEN`.
    Signup(SignupArgs),
    /// Read the event archive.
    #[command(subcommand)]
    Events(EventCmd),
    /// Read and verify the audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Manage state machines (ASL definitions).
    #[command(subcommand, name = "state-machines")]
    StateMachines(StateMachineCmd),
    /// Start, inspect, stop and redrive workflow executions.
    #[command(subcommand)]
    Executions(ExecutionCmd),
    /// Queues: settings, depth, messages, redrive.
    #[command(subcommand)]
    Queues(QueueCmd),
    /// A tenant's quotas: usage, consume, release.
    #[command(subcommand)]
    Quotas(QuotaCmd),
    /// Provisioning hooks of product services.
    #[command(subcommand)]
    Hooks(HookCmd),
    /// A tenant's effective entitlements (plan and overrides).
    #[command(subcommand)]
    Entitlements(EntitlementCmd),
    /// A tenant's overrides of its plan: features, quota limits, config values.
    #[command(subcommand)]
    Overrides(OverrideCmd),
    /// Functions (the Lambda role) that Task states invoke.
    #[command(subcommand)]
    Functions(FunctionCmd),
    /// Releases (versions tenants are on) and their bundles.
    #[command(subcommand)]
    Releases(ReleaseCmd),
    /// Rollouts of a release across tenants: canary, waves, bake time, halting.
    #[command(subcommand)]
    Rollouts(RolloutCmd),
    /// The secret store: tenants' secrets (--tenant) and the platform's.
    #[command(subcommand)]
    Secrets(SecretCmd),
    /// Policies: operators' Cedar authorization policies, and checking a decision.
    #[command(subcommand)]
    Policies(PolicyCmd),
    /// Connections: named credentials for http:invoke, hooks and webhook subscriptions.
    #[command(subcommand)]
    Connections(ConnectionCmd),
    /// The reconciler's last pass, or a pass now.
    #[command(subcommand)]
    Reconciliation(ReconciliationCmd),
    /// The master key: `rotate` (offline, with the servers stopped).
    #[command(subcommand, name = "master-key")]
    MasterKey(MasterKeyCmd),
    /// Print the OpenAPI document.
    Openapi,
}

#[derive(Debug, Subcommand)]
pub enum MasterKeyCmd {
    /// Re-wrap every secret's data key and re-seal every sealed value under a new
    /// master key, in one transaction, on the database `serve` would open with these
    /// settings; stop the servers first. A key file is replaced (the new key is written
    /// to `<file>.new` first); a key from TENANCY_MASTER_KEY is replaced by one printed
    /// on stdout.
    Rotate(Box<ServeArgs>),
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
        Command::Serve(_) | Command::MasterKey(_) => unreachable!("serve and master-key are not client commands"),
        Command::Openapi => {
            println!("{}", tenancy_http::openapi_json());
            return Ok(());
        }
        Command::Audit(AuditCmd::Verify { file }) => return audit::verify_audit(&file, output),
        Command::Audit(AuditCmd::Export { from, to }) => return audit::export_audit(&client, from, to).await,
        Command::Tenants(TenantCmd::Resources { id }) => {
            (tenants::tenant_resources(&client, &id, output == Output::Json).await?, tenants::RESOURCE_COLUMNS)
        }
        Command::Tenants(cmd) => (tenants::tenants(&client, cmd).await?, tenants::TENANT_COLUMNS),
        Command::Queues(cmd) => queues::queues(&client, cmd).await?,
        Command::Quotas(cmd) => (quotas::quotas(&client, cmd).await?, quotas::QUOTA_COLUMNS),
        Command::Hooks(cmd) => (hooks::hooks(&client, cmd).await?, hooks::HOOK_COLUMNS),
        Command::Entitlements(cmd) => {
            (entitlements::entitlements(&client, cmd, output == Output::Json).await?, entitlements::ENTITLEMENT_COLUMNS)
        }
        Command::Overrides(cmd) => (entitlements::overrides(&client, cmd).await?, entitlements::OVERRIDE_COLUMNS),
        Command::Functions(cmd) => (functions::functions(&client, cmd).await?, functions::FUNCTION_COLUMNS),
        Command::Releases(cmd) => (releases::releases(&client, cmd).await?, releases::RELEASE_COLUMNS),
        Command::Rollouts(cmd) => (rollouts::rollouts(&client, cmd).await?, rollouts::ROLLOUT_COLUMNS),
        Command::Secrets(cmd) => match secrets::secrets(&client, cmd, output).await? {
            Some(v) => (v, secrets::SECRET_COLUMNS),
            None => return Ok(()),
        },
        Command::Connections(cmd) => (connections::connections(&client, cmd).await?, connections::CONNECTION_COLUMNS),
        Command::Policies(cmd) => (policies::policies(&client, cmd).await?, policies::POLICY_COLUMNS),
        Command::Reconciliation(cmd) => {
            (reconciliation::reconciliation(&client, cmd, output == Output::Json).await?, reconciliation::DRIFT_COLUMNS)
        }
        Command::StateMachines(cmd) => {
            (workflows::state_machines(&client, cmd).await?, workflows::STATE_MACHINE_COLUMNS)
        }
        Command::Executions(cmd) => workflows::executions(&client, cmd).await?,
        Command::Plans(cmd) => {
            let columns = match &cmd {
                PlanCmd::Get { .. } => plans::PLAN_COLUMNS,
                PlanCmd::List => plans::PLAN_LIST_COLUMNS,
                _ => &["id", "name", "isolation", "regions", "max_tenants", "self_service", "features", "version"],
            };
            (plans::plans(&client, cmd, output == Output::Json).await?, columns)
        }
        Command::Keys(cmd) => (keys::keys(&client, cmd).await?, keys::KEY_COLUMNS),
        Command::Signup(args) => signup::signup(&client, args, output == Output::Json).await?,
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
