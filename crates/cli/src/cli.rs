//! The command line: `tenancy serve` and the operator commands.

use std::path::PathBuf;

use crate::commands::audit::{self, AuditCmd};
use crate::commands::backup::{self, BackupArgs, RestoreArgs};
use crate::commands::connections::{self, ConnectionCmd};
use crate::commands::entitlements::{self, EntitlementCmd, OverrideCmd};
use crate::commands::events::{self, EventCmd};
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
use crate::commands::storage::{self, StorageCmd};
use crate::commands::subscriptions::{self, SubscriptionCmd};
use crate::commands::task_tokens::{self, TaskTokenCmd};
use crate::commands::tenants::{self, TenantCmd};
use crate::commands::workflows::{self, ExecutionCmd, StateMachineCmd};
pub use crate::config::ServeArgs;
use crate::support::{print_value, CliError, Output};
use clap::{Parser, Subcommand};
use serde_json::Value;
use tenancy_client::{Client, ClientError};

#[derive(Debug, Parser)]
#[command(name = "tenancy", version, about = "Control plane for multi-tenant SaaS")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Server URL for the operator commands.
    #[arg(long, global = true, env = "TENANCY_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// API key for the operator commands [default: the admin-token file in
    /// TENANCY_DATA_DIR (./tenancy-data), the one `serve` writes, when readable].
    #[arg(long, global = true, env = "TENANCY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// How the operator commands print their answer.
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
    /// The event archive (with a cursor, or followed), custom events, pattern tests.
    #[command(subcommand)]
    Events(EventCmd),
    /// Event subscriptions (webhooks, queues), their deliveries, retries and replays.
    #[command(subcommand)]
    Subscriptions(SubscriptionCmd),
    /// Answer a waiting task through its task token: success, failure, heartbeat.
    #[command(subcommand, name = "task-tokens")]
    TaskTokens(TaskTokenCmd),
    /// Read, export and verify the audit log.
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
    /// The control plane's storage: `stats` (tables' rows and bytes, the next prune).
    #[command(subcommand)]
    Storage(StorageCmd),
    /// The master key: `rotate` (offline, with the servers stopped).
    #[command(subcommand, name = "master-key")]
    MasterKey(MasterKeyCmd),
    /// Back up a SQLite data directory (online: the server may be running) with a
    /// verifiable manifest, or `verify` a backup (docs/backup.md).
    Backup(Box<BackupArgs>),
    /// Restore a verified backup into a new, empty data directory.
    Restore(RestoreArgs),
    /// Print the OpenAPI document.
    Openapi,
    /// Print a shell completion script: `source <(tenancy completions bash)`, or write
    /// it where the shell loads completions from.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
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

/// Where the API key of an operator command came from, for the hint of a 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `--token` or `TENANCY_TOKEN`.
    Given,
    /// The admin-token file of the data dir.
    File(PathBuf),
    /// None: no flag, no variable, and no readable file at this path.
    Missing(PathBuf),
}

/// The admin-token file the CLI reads when no token is given, and whether the data
/// dir came from `TENANCY_DATA_DIR`.
fn admin_token_file() -> (PathBuf, bool) {
    match crate::config::env_var("TENANCY_DATA_DIR") {
        Some(dir) => (PathBuf::from(dir).join("admin-token"), true),
        None => (PathBuf::from(crate::config::DEFAULT_DATA_DIR).join("admin-token"), false),
    }
}

/// The token to use: the flag/env, else the generated admin key of the local data dir.
pub fn resolve_token(token: Option<String>) -> Option<String> {
    resolve_token_source(token).0
}

/// [`resolve_token`] with where it looked.
pub fn resolve_token_source(token: Option<String>) -> (Option<String>, TokenSource) {
    if token.is_some() {
        return (token, TokenSource::Given);
    }
    let (file, _) = admin_token_file();
    match std::fs::read_to_string(&file) {
        Ok(s) => (Some(s.trim().to_owned()), TokenSource::File(file)),
        Err(_) => (None, TokenSource::Missing(file)),
    }
}

/// What a 401 means given where the token came from: where to look, what to set.
pub fn unauthorized_hint(source: &TokenSource) -> String {
    let (_, from_env) = admin_token_file();
    let dir = if from_env {
        "TENANCY_DATA_DIR".to_owned()
    } else {
        format!("TENANCY_DATA_DIR (unset: {})", crate::config::DEFAULT_DATA_DIR)
    };
    match source {
        TokenSource::Given => "the token given with --token or TENANCY_TOKEN is not a valid API key of this server \
             (revoked, expired, or of another server)"
            .to_owned(),
        TokenSource::File(f) => format!(
            "no --token or TENANCY_TOKEN was given, so the token was read from {} (the admin-token file in {dir}); \
             it is not a valid key of this server: point TENANCY_DATA_DIR at the data dir of the server you call, \
             or pass --token",
            f.display()
        ),
        TokenSource::Missing(f) => format!(
            "no token was sent: no --token, no TENANCY_TOKEN, and no readable admin-token file at {} \
             (the data dir is {dir}); pass --token or set TENANCY_TOKEN, or set TENANCY_DATA_DIR to the \
             server's data dir",
            f.display()
        ),
    }
}

/// Runs an operator command (anything but `serve`), printing to stdout. A 401 says
/// where the token was looked for.
pub async fn run_client(cli: Cli) -> Result<(), CliError> {
    let (token, source) = resolve_token_source(cli.token.clone());
    match run(cli, token).await {
        Err(CliError::Api(e @ ClientError::Api { .. })) if e.status().map(|s| s.as_u16()) == Some(401) => {
            Err(CliError::Other(anyhow::anyhow!("{e}\nhint: {}", unauthorized_hint(&source))))
        }
        other => other,
    }
}

// The CLI's client lets go of idle connections before the server closes them (a
// request on a connection the server is closing gets no answer).
const _: () = assert!(tenancy_client::POOL_IDLE_TIMEOUT.as_millis() < tenancy_http::HEADER_READ_TIMEOUT.as_millis());

async fn run(cli: Cli, token: Option<String>) -> Result<(), CliError> {
    let output = cli.output;
    let client = Client::new(&cli.server, token);
    let (value, columns): (Value, &[&str]) = match cli.command {
        Command::Serve(_) | Command::MasterKey(_) => unreachable!("serve and master-key are not client commands"),
        Command::Openapi => {
            println!("{}", tenancy_http::openapi_json());
            return Ok(());
        }
        Command::Backup(args) => return backup::backup(*args).await,
        Command::Restore(args) => return backup::restore(args).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "tenancy", &mut std::io::stdout());
            return Ok(());
        }
        Command::Audit(AuditCmd::Verify { file, expect_head, complete }) => {
            return audit::verify_audit(&file, expect_head.as_deref(), complete, output)
        }
        Command::Audit(AuditCmd::Export { from, to }) => return audit::export_audit(&client, from, to).await,
        Command::Audit(cmd) => audit::audit(&client, cmd).await?,
        Command::Tenants(TenantCmd::Resources { id }) => {
            (tenants::tenant_resources(&client, &id, output.raw()).await?, tenants::RESOURCE_COLUMNS)
        }
        Command::Tenants(TenantCmd::Import { file, wait }) => {
            return tenants::import(&client, &file, wait, output).await
        }
        Command::Tenants(cmd @ TenantCmd::DatabaseCredentials { .. }) => {
            (tenants::tenants(&client, cmd).await?, tenants::CREDENTIAL_COLUMNS)
        }
        Command::Tenants(cmd) => (tenants::tenants(&client, cmd).await?, tenants::TENANT_COLUMNS),
        Command::Subscriptions(cmd) => subscriptions::subscriptions(&client, cmd, output.raw()).await?,
        Command::TaskTokens(cmd) => (task_tokens::task_tokens(&client, cmd).await?, task_tokens::TASK_TOKEN_COLUMNS),
        Command::Events(cmd) => match events::events(&client, cmd, output).await? {
            Some(v) => v,
            None => return Ok(()),
        },
        Command::Queues(cmd) => queues::queues(&client, cmd).await?,
        Command::Quotas(cmd) => (quotas::quotas(&client, cmd).await?, quotas::QUOTA_COLUMNS),
        Command::Hooks(cmd) => (hooks::hooks(&client, cmd).await?, hooks::HOOK_COLUMNS),
        Command::Entitlements(cmd) => {
            (entitlements::entitlements(&client, cmd, output.raw()).await?, entitlements::ENTITLEMENT_COLUMNS)
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
            (reconciliation::reconciliation(&client, cmd, output.raw()).await?, reconciliation::DRIFT_COLUMNS)
        }
        Command::Storage(cmd) => (storage::storage(&client, cmd, output.raw()).await?, storage::TABLE_COLUMNS),
        Command::StateMachines(cmd) => {
            (workflows::state_machines(&client, cmd).await?, workflows::STATE_MACHINE_COLUMNS)
        }
        Command::Executions(cmd) => workflows::executions(&client, cmd, output).await?,
        Command::Plans(cmd) => {
            let columns = match &cmd {
                PlanCmd::Get { .. } => plans::PLAN_COLUMNS,
                PlanCmd::List => plans::PLAN_LIST_COLUMNS,
                _ => &["id", "name", "isolation", "regions", "max_tenants", "self_service", "features", "version"],
            };
            (plans::plans(&client, cmd, output.raw()).await?, columns)
        }
        Command::Keys(cmd) => (keys::keys(&client, cmd).await?, keys::KEY_COLUMNS),
        Command::Signup(args) => signup::signup(&client, args, output.raw()).await?,
    };
    if !value.is_null() {
        print_value(&value, columns, output);
    }
    Ok(())
}
