//! The server's configuration: one typed [`Config`], every setting layered in one
//! place: a flag beats its environment variable, which beats the config file's key,
//! which beats the default.
//!
//! Each setting is declared once, in [`Settings`]: the flag `--x-y`, the variable
//! `TENANCY_X_Y` and the file key `x_y` (tests hold that naming and README's settings
//! table equal to it). Values that do not parse are start-up errors naming where they
//! came from; unknown file keys are errors. The secrets `TENANCY_ADMIN_TOKEN` and
//! `TENANCY_MASTER_KEY` come from the environment only (a flag would show them in
//! `ps`, a file key invites committing them); they and the database URLs are
//! [`SecretString`]s, which `Debug` prints redacted.
//!
//! This module is the only place that reads the environment (`clippy.toml` forbids
//! `std::env::var` elsewhere): settings through clap, anything else through [`env_var`].

#![allow(clippy::disallowed_methods)] // the one module allowed to read the environment

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{ArgMatches, FromArgMatches};
use secrecy::SecretString;
use serde::Deserialize;

use crate::serve::{ServeOptions, WorkflowSettings};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./tenancy-data";
/// What a process runs when neither `--roles`, `TENANCY_ROLES` nor the file says.
pub const DEFAULT_ROLES: [&str; 2] = ["api", "worker"];
/// The prefix of every setting's environment variable.
pub const ENV_PREFIX: &str = "TENANCY_";
/// Settings the environment alone sets: secrets (no flag shows them in `ps`, no file
/// key invites committing them).
pub const ENV_ONLY: [&str; 2] = ["TENANCY_ADMIN_TOKEN", "TENANCY_MASTER_KEY"];

/// Reads an environment variable that is not a setting of [`Settings`] (test hooks,
/// the operator CLI's data directory): `None` when unset or empty. The only way code
/// outside this module reads the environment.
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Whether an environment variable is set at all (test hooks such as
/// `UPDATE_OPENAPI=1`).
pub fn env_flag(name: &str) -> bool {
    std::env::var_os(name).is_some()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

fn secret(s: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(s.to_owned()))
}

fn de_secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(SecretString::from))
}

// Defaults are clap's (the `--help` text and README's table show them); those that
// are the engine's, the HTTP server's or the app's own constants are held equal to
// them by `defaults_are_the_components_own`.

/// Declares [`Settings`] (clap flags + environment, and the file's keys, from one
/// list) and its layering: a setting given by flag or environment wins, else the
/// file's, else the default clap holds.
macro_rules! settings {
    ($( $(#[$meta:meta])* $name:ident : $ty:ty, )*) => {
        /// Every setting of `tenancy serve`, as flag, environment variable and config
        /// file key. `None` after layering: no value and no default.
        #[derive(Debug, Default, Clone, clap::Args, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Settings {
            $( $(#[$meta])* pub $name: Option<$ty>, )*
        }

        impl Settings {
            /// The file's key names, which are the flags' ids.
            pub const KEYS: &'static [&'static str] = &[$( stringify!($name), )*];

            /// `self` (from clap, `matches` telling where each value came from) over
            /// `file`: clap's default only where the file has no value.
            fn over(self, matches: &ArgMatches, file: Settings) -> Settings {
                let given = |id: &str| {
                    matches!(matches.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable))
                };
                Settings {
                    $( $name: if given(stringify!($name)) { self.$name } else { file.$name.or(self.$name) }, )*
                }
            }
        }
    };
}

settings! {
    /// Address to listen on.
    #[arg(long, env = "TENANCY_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Data directory: SQLite database, blobs, admin token.
    #[arg(long, env = "TENANCY_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// `postgres://...` to run on PostgreSQL instead of SQLite in the data directory.
    #[arg(long, env = "TENANCY_DATABASE_URL", hide_env_values = true, value_parser = secret)]
    #[serde(default, deserialize_with = "de_secret")]
    database_url: SecretString,
    /// SQLite only: MiB of page cache for all the store's connections together (three
    /// quarters to the writer, the rest shared by the readers; at least 1 MiB each).
    #[arg(long, env = "TENANCY_SQLITE_CACHE_MIB", default_value = "32",
          value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    sqlite_cache_mib: u64,
    /// Log format.
    #[arg(long, env = "TENANCY_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Roles to run, comma separated: api, worker.
    #[arg(long, env = "TENANCY_ROLES", value_delimiter = ',', default_value = "api,worker")]
    roles: Vec<String>,
    /// Days archived events and finished deliveries are kept.
    #[arg(long, env = "TENANCY_EVENT_RETENTION_DAYS", default_value = "30")]
    event_retention_days: u32,
    /// Days finished workflow executions and their history are kept (a state machine's
    /// own `retention_days` wins).
    #[arg(long, env = "TENANCY_EXECUTION_RETENTION_DAYS", default_value = "90")]
    execution_retention_days: u32,
    /// Seconds between the leased pruner's passes (shared by the replicas running the
    /// worker).
    #[arg(long, env = "TENANCY_PRUNE_INTERVAL_S", default_value = "600")]
    prune_interval_s: u64,
    /// Seconds between the leased archiver's passes, which write sealed audit records
    /// and events to the blob store as Parquet; 0 turns archiving off (events past
    /// their retention are then pruned unarchived).
    #[arg(long, env = "TENANCY_ARCHIVE_INTERVAL_S", default_value = "300")]
    archive_interval_s: u64,
    /// Days an offboarded tenant's export is kept before its id may be purged
    /// (`tenants purge`).
    #[arg(long, env = "TENANCY_EXPORT_RETENTION_DAYS", default_value = "30")]
    export_retention_days: u32,
    /// The largest release bundle accepted (`PUT /v1/releases/{version}/bundle`), in MiB.
    #[arg(long, env = "TENANCY_BUNDLE_MAX_MIB", default_value = "512")]
    bundle_max_mib: u64,
    /// Kinds of missing resources the reconciler recreates on its own, comma separated:
    /// database, schema, role, record, or none; the others are only reported, for
    /// `reconciliation repair`.
    #[arg(long, env = "TENANCY_RECONCILE_REPAIR", value_delimiter = ',', default_value = "role,record")]
    reconcile_repair: Vec<String>,
    /// Seconds between reconciliation passes (shared by the replicas running the worker).
    #[arg(long, env = "TENANCY_RECONCILE_INTERVAL_S", default_value = "60")]
    reconcile_interval_s: u64,
    /// Blob store for audit exports: file:///path or s3://bucket/prefix [default: <data dir>/blobs].
    #[arg(long, env = "TENANCY_BLOB_URL")]
    blob_url: String,
    /// `postgres://...` where tenants' databases are created (a database per silo tenant,
    /// a schema per pool tenant) [default: the control-plane server on PostgreSQL,
    /// SQLite files under <data dir>/tenants on SQLite].
    #[arg(long, env = "TENANCY_DATA_PLANE_URL", hide_env_values = true, value_parser = secret)]
    #[serde(default, deserialize_with = "de_secret")]
    data_plane_url: SecretString,
    /// Prefix of data-plane database, schema and role names.
    #[arg(long, env = "TENANCY_DATA_PLANE_PREFIX", default_value = tenancy_adapters::dataplane::postgres::DEFAULT_PREFIX)]
    data_plane_prefix: String,
    /// Destinations http:invoke, webhooks and hooks may reach although the outbound
    /// policy refuses them (loopback, private, link-local, ...): CIDRs, addresses or
    /// host names, comma separated or repeated (e.g. 127.0.0.0/8,::1) [default: none].
    #[arg(long, env = "TENANCY_OUTBOUND_ALLOW", value_delimiter = ',')]
    outbound_allow: Vec<String>,
    /// File holding the master key that seals stored secrets (base64 of 32 bytes);
    /// replicas share it [default: <data dir>/master.key, generated for a new database].
    #[arg(long, env = "TENANCY_MASTER_KEY_FILE")]
    master_key_file: PathBuf,
    /// Client connections served at once; more wait until one closes.
    #[arg(long, env = "TENANCY_MAX_CONNECTIONS", default_value = "1024",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_connections: u32,
    /// Names this process in leases [default: a random id].
    #[arg(long, env = "TENANCY_NODE_ID")]
    node_id: String,
    /// Seconds a crashed worker's executions stay leased before another takes them.
    #[arg(long, env = "TENANCY_WORKFLOW_LEASE_S", default_value = "60")]
    workflow_lease_s: u64,
    /// Seconds a crashed worker's claimed webhook deliveries stay leased before another
    /// worker sends them (a shorter lease: a delivery waiting longer in a slow worker may
    /// be sent twice, which receivers deduplicate on `webhook-id`).
    #[arg(long, env = "TENANCY_DELIVERY_LEASE_S", default_value = "300")]
    delivery_lease_s: u64,
    /// Executions the engine claims at once.
    #[arg(long, env = "TENANCY_WORKFLOW_BATCH", default_value = "32")]
    workflow_batch: u32,
    /// Executions this process advances concurrently.
    #[arg(long, env = "TENANCY_WORKFLOW_IN_FLIGHT", default_value = "128")]
    workflow_in_flight: usize,
    /// Of those, slots only lifecycle executions take (at most half).
    #[arg(long, env = "TENANCY_WORKFLOW_LIFECYCLE_SLOTS", default_value = "32")]
    workflow_lifecycle_slots: usize,
    /// RUNNING user executions per state machine; beyond, starts are refused (429).
    #[arg(long, env = "TENANCY_WORKFLOW_MAX_RUNNING_PER_MACHINE",
          default_value = "10000")]
    workflow_max_running_per_machine: u64,
    /// RUNNING user executions per tenant; beyond, starts are refused (429).
    #[arg(long, env = "TENANCY_WORKFLOW_MAX_RUNNING_PER_TENANT",
          default_value = "1000")]
    workflow_max_running_per_tenant: u64,
    /// Requests per second per key of admin keys and the admin token (0: no limit; docs/rate-limits.md).
    #[arg(long, env = "TENANCY_RATE_LIMIT_ADMIN_PER_S", default_value = "10000")]
    rate_limit_admin_per_s: u32,
    /// Requests a full bucket allows at once per key of admin keys and the admin token (0: no limit).
    #[arg(long, env = "TENANCY_RATE_LIMIT_ADMIN_BURST", default_value = "20000")]
    rate_limit_admin_burst: u32,
    /// Requests per second per key of operator keys (0: no limit; docs/rate-limits.md).
    #[arg(long, env = "TENANCY_RATE_LIMIT_OPERATOR_PER_S", default_value = "10000")]
    rate_limit_operator_per_s: u32,
    /// Requests a full bucket allows at once per key of operator keys (0: no limit).
    #[arg(long, env = "TENANCY_RATE_LIMIT_OPERATOR_BURST", default_value = "20000")]
    rate_limit_operator_burst: u32,
    /// Requests per second per key of viewer keys (0: no limit; docs/rate-limits.md).
    #[arg(long, env = "TENANCY_RATE_LIMIT_VIEWER_PER_S", default_value = "100")]
    rate_limit_viewer_per_s: u32,
    /// Requests a full bucket allows at once per key of viewer keys (0: no limit).
    #[arg(long, env = "TENANCY_RATE_LIMIT_VIEWER_BURST", default_value = "200")]
    rate_limit_viewer_burst: u32,
    /// Requests per second per key of service keys (data-plane checks for every tenant) (0: no limit; docs/rate-limits.md).
    #[arg(long, env = "TENANCY_RATE_LIMIT_SERVICE_PER_S", default_value = "10000")]
    rate_limit_service_per_s: u32,
    /// Requests a full bucket allows at once per key of service keys (data-plane checks for every tenant) (0: no limit).
    #[arg(long, env = "TENANCY_RATE_LIMIT_SERVICE_BURST", default_value = "20000")]
    rate_limit_service_burst: u32,
    /// Requests per second per key of tenant-scoped keys (0: no limit; docs/rate-limits.md).
    #[arg(long, env = "TENANCY_RATE_LIMIT_TENANT_KEY_PER_S", default_value = "100")]
    rate_limit_tenant_key_per_s: u32,
    /// Requests a full bucket allows at once per key of tenant-scoped keys (0: no limit).
    #[arg(long, env = "TENANCY_RATE_LIMIT_TENANT_KEY_BURST", default_value = "200")]
    rate_limit_tenant_key_burst: u32,
    /// Requests per second per tenant, all of one tenant's keys together (0: no limit; docs/rate-limits.md).
    #[arg(long, env = "TENANCY_RATE_LIMIT_TENANT_PER_S", default_value = "1000")]
    rate_limit_tenant_per_s: u32,
    /// Requests a full bucket allows at once per tenant, all of one tenant's keys together (0: no limit).
    #[arg(long, env = "TENANCY_RATE_LIMIT_TENANT_BURST", default_value = "2000")]
    rate_limit_tenant_burst: u32,
    /// Seconds a self-service sign-up's activation token works (docs/self-service.md).
    #[arg(long, env = "TENANCY_SIGNUP_TOKEN_TTL_S", default_value = "86400")]
    signup_token_ttl_s: u64,
    /// Sign-up and activation requests per hour from one client address (0: no limit; docs/self-service.md).
    #[arg(long, env = "TENANCY_SIGNUP_RATE_PER_ADDRESS", default_value = "20")]
    signup_rate_per_address: u32,
    /// Sign-ups per hour for addresses of one email domain (0: no limit; docs/self-service.md).
    #[arg(long, env = "TENANCY_SIGNUP_RATE_PER_DOMAIN", default_value = "50")]
    signup_rate_per_domain: u32,
}

/// `tenancy serve`'s arguments: the config file, and every setting.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// TOML config file: a key per flag of `serve`, `-` written `_` (e.g. data_plane_url,
    /// event_retention_days; lists for roles, reconcile_repair and outbound_allow). Flags
    /// beat the environment, which beats the file.
    #[arg(long, env = "TENANCY_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Settings,
}

/// The config file's settings: the keys of [`Settings`], unknown keys an error.
pub fn load_file(path: &Path) -> anyhow::Result<Settings> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("failed to read config file {}", path.display()))?;
    parse_file(&text).with_context(|| format!("invalid config file {}", path.display()))
}

pub fn parse_file(text: &str) -> anyhow::Result<Settings> {
    Ok(toml::from_str(text)?)
}

/// Every setting of the server, layered and checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub log_format: LogFormat,
    /// What the server is started with.
    pub serve: ServeOptions,
}

impl Config {
    /// The configuration from `args` and the `matches` clap parsed them from (flags and
    /// environment), over the config file `args.config` names, over the defaults;
    /// the secrets from the environment.
    pub fn load(args: ServeArgs, matches: &ArgMatches) -> anyhow::Result<Config> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => Settings::default(),
        };
        Config::resolve(args.settings.over(matches, file), env_var)
    }

    /// The configuration of a `tenancy serve` given `argv` (without the program and
    /// subcommand names): flags, then the environment, then the file. Clap's errors
    /// (a bad value, from a flag or a variable) are errors naming their source.
    pub fn parse_from<I, T>(argv: I) -> anyhow::Result<Config>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let argv: Vec<std::ffi::OsString> =
            std::iter::once("serve".into()).chain(argv.into_iter().map(Into::into)).collect();
        let matches = command().try_get_matches_from(&argv).map_err(|e| explain(e, &argv))?;
        let args = ServeArgs::from_arg_matches(&matches).map_err(|e| explain(e, &argv))?;
        Config::load(args, &matches)
    }

    /// The layered `settings` checked and typed; `env` gives the environment-only
    /// secrets.
    fn resolve(s: Settings, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
        let roles = s.roles.unwrap_or_default();
        for r in &roles {
            anyhow::ensure!(DEFAULT_ROLES.contains(&r.as_str()), "unknown role {r:?}: use api, worker");
        }
        let reconcile_repair =
            tenancy_app::reconcile::ops::DriftKind::parse_list(&s.reconcile_repair.unwrap_or_default())
                .map_err(anyhow::Error::msg)?;
        let defaults = WorkflowSettings::default();
        let d = tenancy_http::RateLimits::default();
        let limit = |per_s: Option<u32>, burst: Option<u32>, default: tenancy_http::Limit| tenancy_http::Limit {
            per_second: per_s.unwrap_or(default.per_second),
            burst: burst.unwrap_or(default.burst),
        };
        let serve = ServeOptions {
            listen: s.listen.expect("clap holds a default"),
            data_dir: s.data_dir.expect("clap holds a default"),
            database_url: s.database_url,
            sqlite_cache_mib: s.sqlite_cache_mib.expect("clap holds a default"),
            admin_token: env("TENANCY_ADMIN_TOKEN").map(SecretString::from),
            api: roles.iter().any(|r| r == "api"),
            worker: roles.iter().any(|r| r == "worker"),
            node_id: s.node_id.filter(|n| !n.is_empty()),
            event_retention_days: s.event_retention_days.expect("clap holds a default"),
            execution_retention_days: s.execution_retention_days.expect("clap holds a default"),
            prune_interval: Duration::from_secs(s.prune_interval_s.expect("clap holds a default").max(1)),
            archive_interval: match s.archive_interval_s.expect("clap holds a default") {
                0 => None,
                n => Some(Duration::from_secs(n)),
            },
            export_retention_days: s.export_retention_days.expect("clap holds a default"),
            bundle_max_bytes: s.bundle_max_mib.expect("clap holds a default").saturating_mul(1024 * 1024),
            reconcile_repair,
            reconcile_interval: Duration::from_secs(s.reconcile_interval_s.expect("clap holds a default").max(1)),
            blob_url: s.blob_url,
            delivery_retry_window: tenancy_events::backoff::Schedule::DEFAULT_WINDOW,
            delivery_lease: Duration::from_secs(s.delivery_lease_s.expect("clap holds a default").max(1)),
            master_key: env("TENANCY_MASTER_KEY").map(SecretString::from),
            master_key_file: s.master_key_file,
            data_plane_url: s.data_plane_url,
            data_plane_prefix: s.data_plane_prefix,
            outbound_allow: s.outbound_allow.unwrap_or_default(),
            connections: tenancy_http::ConnectionLimits {
                max_connections: s.max_connections.map_or(tenancy_http::DEFAULT_MAX_CONNECTIONS, |n| n.max(1) as usize),
                ..Default::default()
            },
            rate_limits: tenancy_http::RateLimits {
                admin: limit(s.rate_limit_admin_per_s, s.rate_limit_admin_burst, d.admin),
                operator: limit(s.rate_limit_operator_per_s, s.rate_limit_operator_burst, d.operator),
                viewer: limit(s.rate_limit_viewer_per_s, s.rate_limit_viewer_burst, d.viewer),
                service: limit(s.rate_limit_service_per_s, s.rate_limit_service_burst, d.service),
                tenant_key: limit(s.rate_limit_tenant_key_per_s, s.rate_limit_tenant_key_burst, d.tenant_key),
                tenant: limit(s.rate_limit_tenant_per_s, s.rate_limit_tenant_burst, d.tenant),
            },
            workflow: WorkflowSettings {
                lease: s.workflow_lease_s.map_or(defaults.lease, |n| Duration::from_secs(n.max(1))),
                batch: s.workflow_batch.map_or(defaults.batch, |n| n.max(1)),
                max_in_flight: s.workflow_in_flight.map_or(defaults.max_in_flight, |n| n.max(1)),
                lifecycle_slots: s.workflow_lifecycle_slots.unwrap_or(defaults.lifecycle_slots),
                max_running_per_machine: s.workflow_max_running_per_machine.unwrap_or(defaults.max_running_per_machine),
                max_running_per_tenant: s.workflow_max_running_per_tenant.unwrap_or(defaults.max_running_per_tenant),
            },
            secret_sweep_interval: Duration::from_secs(60),
            rotation_schedule_interval: Duration::from_secs(30),
            rotation_min_interval: None,
            signup: crate::serve::SignupSettings {
                token_ttl: Duration::from_secs(s.signup_token_ttl_s.expect("clap holds a default").max(1)),
                limits: tenancy_http::SignupLimits {
                    per_address_per_hour: s.signup_rate_per_address.expect("clap holds a default"),
                    per_domain_per_hour: s.signup_rate_per_domain.expect("clap holds a default"),
                },
                sweep_interval: Duration::from_secs(60),
            },
            clock: None,
        };
        Ok(Config { log_format: s.log_format.expect("clap holds a default"), serve })
    }
}

/// The engine settings (`--workflow-*`) the environment (and `TENANCY_CONFIG`) sets,
/// over the defaults: for servers started in-process, such as the bench's, to honour
/// `TENANCY_WORKFLOW_IN_FLIGHT=64 cargo run -p tenancy-bench -- provision`.
pub fn workflow_from_env() -> anyhow::Result<WorkflowSettings> {
    Ok(Config::parse_from(Vec::<String>::new())?.serve.workflow)
}

/// `tenancy serve` as a command of its own.
pub fn command() -> clap::Command {
    use clap::Args;
    ServeArgs::augment_args(clap::Command::new("serve"))
}

/// The environment variable that held the bad value clap's error `e` reports, when
/// the value came from the environment rather than from `argv` (clap names only the
/// flag).
pub fn env_source(e: &clap::Error, argv: &[std::ffi::OsString]) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(e.kind(), ErrorKind::ValueValidation | ErrorKind::InvalidValue) {
        return None;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = arg.split_whitespace().next()?.strip_prefix("--")?;
    let on_command_line = argv.iter().any(|a| {
        let a = a.to_string_lossy();
        a == format!("--{long}") || a.starts_with(&format!("--{long}="))
    });
    let cmd = command();
    let var = cmd.get_arguments().find(|a| a.get_long() == Some(long))?.get_env()?;
    (!on_command_line && std::env::var_os(var).is_some()).then(|| var.to_string_lossy().into_owned())
}

/// Clap's error as one line, naming the environment variable that held a bad value.
pub fn explain(e: clap::Error, argv: &[std::ffi::OsString]) -> anyhow::Error {
    let rendered = e.render().to_string();
    let line = rendered.lines().next().unwrap_or_default();
    let line = line.strip_prefix("error: ").unwrap_or(line);
    match env_source(&e, argv) {
        Some(var) => anyhow::anyhow!("{line} (from the environment variable {var})"),
        None => anyhow::Error::msg(line.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use secrecy::ExposeSecret;

    use super::*;

    /// Tests that read or set `TENANCY_*` variables (clap reads them) run one at a time.
    static ENV: Mutex<()> = Mutex::new(());

    fn lock() -> std::sync::MutexGuard<'static, ()> {
        ENV.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets variables for the life of the guard.
    struct Vars(Vec<&'static str>);

    impl Vars {
        fn set(pairs: &[(&'static str, &str)]) -> Vars {
            for (k, v) in pairs {
                std::env::set_var(k, v);
            }
            Vars(pairs.iter().map(|(k, _)| *k).collect())
        }
    }

    impl Drop for Vars {
        fn drop(&mut self) {
            for k in &self.0 {
                std::env::remove_var(k);
            }
        }
    }

    /// A config file with every key.
    const EVERY_KEY: &str = r#"
        listen = "127.0.0.1:9191"
        data_dir = "/srv/tenancy"
        database_url = "postgres://db/control"
        sqlite_cache_mib = 48
        data_plane_url = "postgres://db/plane"
        data_plane_prefix = "acme"
        log_format = "json"
        roles = ["worker"]
        outbound_allow = ["10.0.0.0/8"]
        max_connections = 64
        master_key_file = "/run/secrets/master.key"
        event_retention_days = 7
        execution_retention_days = 30
        prune_interval_s = 120
        archive_interval_s = 0
        export_retention_days = 90
        bundle_max_mib = 64
        reconcile_repair = ["record", "database"]
        reconcile_interval_s = 15
        blob_url = "s3://bucket/exports"
        node_id = "n1"
        workflow_lease_s = 5
        delivery_lease_s = 7
        workflow_batch = 8
        workflow_in_flight = 64
        workflow_lifecycle_slots = 4
        workflow_max_running_per_machine = 50
        workflow_max_running_per_tenant = 5
        rate_limit_admin_per_s = 50
        rate_limit_admin_burst = 60
        rate_limit_operator_per_s = 51
        rate_limit_operator_burst = 61
        rate_limit_viewer_per_s = 52
        rate_limit_viewer_burst = 62
        rate_limit_service_per_s = 53
        rate_limit_service_burst = 63
        rate_limit_tenant_key_per_s = 3
        rate_limit_tenant_key_burst = 5
        rate_limit_tenant_per_s = 7
        rate_limit_tenant_burst = 9
        signup_token_ttl_s = 600
        signup_rate_per_address = 4
        signup_rate_per_domain = 6
    "#;

    fn with_file(text: &str, flags: &[&str]) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenancy.toml");
        std::fs::write(&path, text).unwrap();
        let mut argv = vec![format!("--config={}", path.display())];
        argv.extend(flags.iter().map(|f| f.to_string()));
        Config::parse_from(argv)
    }

    /// One row of README's settings table: flag (empty for environment-only), variable,
    /// default cell.
    fn readme_rows() -> Vec<(String, String, String)> {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
        let start = readme.find("| flag | env | default |").expect("README's settings table");
        let rows: Vec<(String, String, String)> = readme[start..]
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let code = |c: &str| c.trim_matches('`').to_owned();
                (code(cells[1]), code(cells[2]), cells[3].to_owned())
            })
            .collect();
        assert!(rows.len() >= 20, "README's settings table was not found: {rows:?}");
        rows
    }

    /// README's settings table is the configuration: every flag with its variable and
    /// default, nothing documented that does not exist, the environment-only secrets;
    /// and each flag `--x-y` is the variable `TENANCY_X_Y` and the file key `x_y`.
    #[test]
    fn readme_settings_table_is_the_config() {
        let rows = readme_rows();
        let cmd = command();
        let mut documented: Vec<&str> = rows.iter().map(|r| r.0.as_str()).filter(|f| !f.is_empty()).collect();
        let mut flags: Vec<String> =
            cmd.get_arguments().filter_map(|a| a.get_long()).map(|l| format!("--{l}")).collect();
        documented.sort();
        flags.sort();
        assert_eq!(documented, flags, "README's table lists exactly the flags of `serve`");
        for (flag, var, default) in &rows {
            if flag.is_empty() {
                assert!(ENV_ONLY.contains(&var.as_str()), "{var} is documented but not read");
                continue;
            }
            let arg = cmd.get_arguments().find(|a| a.get_long() == flag.strip_prefix("--")).unwrap();
            let id = arg.get_id().as_str();
            assert_eq!(
                arg.get_env().map(|e| e.to_string_lossy().into_owned()).as_deref(),
                Some(var.as_str()),
                "{flag}"
            );
            assert_eq!(*var, format!("{ENV_PREFIX}{}", id.to_uppercase()), "{flag}: the variable is named after it");
            assert_eq!(format!("--{}", id.replace('_', "-")), *flag, "{flag}: the file key is named after it");
            assert!(id == "config" || Settings::KEYS.contains(&id), "{flag} is a file key");
            let defaults: Vec<String> =
                arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
            if defaults.is_empty() {
                let lone_code = default.starts_with('`') && default.ends_with('`') && default.matches('`').count() == 2;
                assert!(!lone_code, "{flag}: README gives the default {default} but there is none");
            } else {
                assert_eq!(*default, format!("`{}`", defaults.join(",")), "{flag}: README's default");
            }
        }
        for var in ENV_ONLY {
            assert!(rows.iter().any(|r| r.0.is_empty() && r.1 == var), "{var} is documented");
        }
        assert_eq!(Settings::KEYS.len() + 1, flags.len(), "a file key per flag but --config");
    }

    #[test]
    fn every_key_is_accepted_and_an_unknown_key_is_an_error() {
        let table: toml::Table = toml::from_str(EVERY_KEY).unwrap();
        let mut in_file: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut keys = Settings::KEYS.to_vec();
        in_file.sort();
        keys.sort();
        assert_eq!(in_file, keys, "EVERY_KEY has every key");
        parse_file(EVERY_KEY).unwrap();
        let typo = parse_file("blob_ur = \"file:///x\"").unwrap_err();
        assert!(format!("{typo:#}").contains("unknown field `blob_ur`"), "{typo:#}");
        let _env = lock();
        let typo = with_file("workflow_bach = 3\n", &[]).unwrap_err();
        assert!(format!("{typo:#}").contains("unknown field `workflow_bach`"), "{typo:#}");
        assert!(format!("{typo:#}").contains("invalid config file"), "{typo:#}");
        let bad = with_file("workflow_batch = \"many\"\n", &[]).unwrap_err();
        assert!(format!("{bad:#}").contains("workflow_batch"), "{bad:#}");
    }

    #[test]
    fn the_file_is_wired_and_flags_win() {
        let _env = lock();
        let c = with_file(EVERY_KEY, &[]).unwrap();
        let o = &c.serve;
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(o.listen.to_string(), "127.0.0.1:9191");
        assert_eq!(o.data_dir, PathBuf::from("/srv/tenancy"));
        assert_eq!(o.database_url.as_ref().map(|s| s.expose_secret()), Some("postgres://db/control"));
        assert_eq!(o.sqlite_cache_mib, 48);
        assert_eq!(o.data_plane_url.as_ref().map(|s| s.expose_secret()), Some("postgres://db/plane"));
        assert_eq!(o.data_plane_prefix.as_deref(), Some("acme"));
        assert_eq!((o.api, o.worker), (false, true));
        assert_eq!(o.outbound_allow, ["10.0.0.0/8"]);
        assert_eq!(o.connections.max_connections, 64);
        assert_eq!(o.master_key_file, Some(PathBuf::from("/run/secrets/master.key")));
        assert_eq!(o.event_retention_days, 7);
        assert_eq!(o.execution_retention_days, 30);
        assert_eq!(o.prune_interval, Duration::from_secs(120));
        assert_eq!(o.delivery_lease, Duration::from_secs(7));
        assert_eq!(o.archive_interval, None);
        assert_eq!(o.export_retention_days, 90);
        assert_eq!(o.bundle_max_bytes, 64 * 1024 * 1024);
        {
            use tenancy_app::reconcile::ops::DriftKind;
            assert_eq!(o.reconcile_repair, [DriftKind::Record, DriftKind::Database]);
        }
        assert_eq!(o.reconcile_interval, Duration::from_secs(15));
        assert_eq!(o.blob_url.as_deref(), Some("s3://bucket/exports"));
        assert_eq!(o.node_id.as_deref(), Some("n1"));
        assert_eq!(
            o.workflow,
            WorkflowSettings {
                lease: Duration::from_secs(5),
                batch: 8,
                max_in_flight: 64,
                lifecycle_slots: 4,
                max_running_per_machine: 50,
                max_running_per_tenant: 5,
            }
        );

        assert_eq!(
            o.rate_limits,
            tenancy_http::RateLimits {
                admin: tenancy_http::Limit::new(50, 60),
                operator: tenancy_http::Limit::new(51, 61),
                viewer: tenancy_http::Limit::new(52, 62),
                service: tenancy_http::Limit::new(53, 63),
                tenant_key: tenancy_http::Limit::new(3, 5),
                tenant: tenancy_http::Limit::new(7, 9),
            }
        );
        assert_eq!(o.signup.token_ttl, Duration::from_secs(600));
        assert_eq!(o.signup.limits, tenancy_http::SignupLimits { per_address_per_hour: 4, per_domain_per_hour: 6 });

        let flags = [
            "--rate-limit-tenant-key-per-s=0",
            "--listen=127.0.0.1:1",
            "--data-plane-prefix=flag",
            "--event-retention-days=3",
            "--export-retention-days=0",
            "--reconcile-repair=none",
            "--blob-url=file:///tmp/b",
            "--roles=api",
            "--log-format=text",
            "--workflow-in-flight=9",
        ];
        let c = with_file(EVERY_KEY, &flags).unwrap();
        let o = &c.serve;
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(o.listen.to_string(), "127.0.0.1:1");
        assert_eq!(o.data_plane_prefix.as_deref(), Some("flag"));
        assert_eq!(o.event_retention_days, 3);
        assert_eq!(o.export_retention_days, 0);
        assert!(o.reconcile_repair.is_empty());
        assert_eq!(o.blob_url.as_deref(), Some("file:///tmp/b"));
        assert_eq!((o.api, o.worker), (true, false));
        assert_eq!((o.workflow.max_in_flight, o.workflow.batch), (9, 8));
        assert_eq!(o.rate_limits.tenant_key, tenancy_http::Limit::new(0, 5), "0 from the flag: no limit");

        assert!(Config::parse_from(["--roles=api,cron"]).is_err());
        let bad = Config::parse_from(["--reconcile-repair=databases"]).unwrap_err();
        assert!(bad.to_string().contains("databases"), "{bad}");
        let bad = Config::parse_from(["--sqlite-cache-mib=0"]).unwrap_err();
        assert!(format!("{bad:#}").contains("sqlite-cache-mib"), "{bad:#}");
    }

    /// A flag beats its variable, which beats the file's key, which beats the default.
    #[test]
    fn precedence_is_flag_then_environment_then_file() {
        let _env = lock();
        let _vars = Vars::set(&[("TENANCY_EVENT_RETENTION_DAYS", "2"), ("TENANCY_RECONCILE_INTERVAL_S", "6")]);
        let file = "event_retention_days = 1\nreconcile_interval_s = 5\nworkflow_batch = 7\n";
        let o = with_file(file, &["--event-retention-days=3"]).unwrap().serve;
        assert_eq!(o.event_retention_days, 3, "the flag beats the variable and the file");
        assert_eq!(o.reconcile_interval, Duration::from_secs(6), "the variable beats the file");
        assert_eq!(o.workflow.batch, 7, "the file beats the default");
        assert_eq!(o.workflow.max_in_flight, WorkflowSettings::default().max_in_flight, "the default");
    }

    /// A value that does not parse is an error naming where it came from, not ignored.
    #[test]
    fn a_bad_value_is_an_error_naming_its_source() {
        let _env = lock();
        {
            let _vars = Vars::set(&[("TENANCY_RECONCILE_INTERVAL_S", "abc")]);
            let e = Config::parse_from(Vec::<String>::new()).unwrap_err().to_string();
            assert!(e.contains("TENANCY_RECONCILE_INTERVAL_S") && e.contains("'abc'"), "{e}");
            // The same value from the flag names the flag only.
            let e = Config::parse_from(["--reconcile-interval-s=x1"]).unwrap_err().to_string();
            assert!(e.contains("--reconcile-interval-s") && !e.contains("TENANCY_"), "{e}");
        }
        let _vars = Vars::set(&[("TENANCY_WORKFLOW_BATCH", "-1")]);
        let e = Config::parse_from(Vec::<String>::new()).unwrap_err().to_string();
        assert!(e.contains("TENANCY_WORKFLOW_BATCH"), "{e}");
    }

    /// The secrets and the database URLs never appear in `Debug` output.
    #[test]
    fn secrets_are_not_in_debug_output() {
        let _env = lock();
        let _vars = Vars::set(&[
            ("TENANCY_ADMIN_TOKEN", "admin-token-secret-0123456789abcdef"),
            ("TENANCY_MASTER_KEY", "master-key-secret"),
            ("TENANCY_DATABASE_URL", "postgres://u:pw-secret@db/control"),
        ]);
        let c = Config::parse_from(["--data-plane-url=postgres://u:plane-secret@db/plane"]).unwrap();
        assert_eq!(
            c.serve.admin_token.as_ref().map(|s| s.expose_secret()),
            Some("admin-token-secret-0123456789abcdef")
        );
        assert_eq!(c.serve.master_key.as_ref().map(|s| s.expose_secret()), Some("master-key-secret"));
        let debug = format!("{c:?}");
        for secret in ["admin-token-secret", "master-key-secret", "pw-secret", "plane-secret"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }

    /// The defaults clap holds are the components' own.
    #[test]
    fn defaults_are_the_components_own() {
        let _env = lock();
        let c = Config::parse_from(Vec::<String>::new()).unwrap();
        let o = &c.serve;
        assert_eq!((c.log_format, o.api, o.worker), (LogFormat::Text, true, true));
        assert_eq!(o.workflow, WorkflowSettings::default());
        assert_eq!(o.rate_limits, tenancy_http::RateLimits::default());
        assert_eq!(o.signup.limits, tenancy_http::SignupLimits::default());
        assert_eq!(o.signup.token_ttl.as_secs(), tenancy_domain::signup::DEFAULT_TOKEN_TTL_S);
        assert_eq!(o.connections.max_connections, tenancy_http::DEFAULT_MAX_CONNECTIONS);
        assert_eq!(o.data_plane_prefix.as_deref(), Some(tenancy_adapters::dataplane::postgres::DEFAULT_PREFIX));
        assert_eq!(o.event_retention_days, crate::serve::DEFAULT_EVENT_RETENTION_DAYS);
        assert_eq!(o.export_retention_days, crate::serve::DEFAULT_EXPORT_RETENTION_DAYS);
        assert_eq!(o.bundle_max_bytes, tenancy_app::releases::bundle::DEFAULT_MAX_BYTES);
        assert_eq!(o.reconcile_repair, tenancy_app::reconcile::ops::DriftKind::DEFAULT_REPAIR);
        assert_eq!(o.reconcile_interval, ServeOptions::for_tests(PathBuf::new(), None, "").reconcile_interval);
        assert_eq!(o.delivery_lease, ServeOptions::for_tests(PathBuf::new(), None, "").delivery_lease);
        assert_eq!(o.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(o.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(DEFAULT_ROLES.join(","), "api,worker");
    }
}
