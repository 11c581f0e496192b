//! Server configuration: defaults, then an optional TOML file, then `TENANCY_*`
//! environment variables and flags (clap reads both; flags win).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use secrecy::SecretString;
use serde::Deserialize;

use crate::cli::ServeArgs;
use crate::serve::{ServeOptions, DEFAULT_EVENT_RETENTION_DAYS, DEFAULT_EXPORT_RETENTION_DAYS};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./tenancy-data";
/// What a process runs when neither `--roles`, `TENANCY_ROLES` nor the file says.
pub const DEFAULT_ROLES: [&str; 2] = ["api", "worker"];

/// The config file: one key per `serve` flag (`--data-plane-url` is `data_plane_url`).
/// Unknown keys are an error, so a typo never goes unnoticed. Secrets given only by
/// environment (`TENANCY_ADMIN_TOKEN`, `TENANCY_MASTER_KEY`) have no key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub log_format: Option<LogFormat>,
    /// Roles this process runs: any of `api`, `worker` (all by default).
    pub roles: Option<Vec<String>>,
    /// Days archived events and finished deliveries are kept (30 by default).
    pub event_retention_days: Option<u32>,
    /// Days an offboarded tenant's export is kept before its id may be purged (30 by
    /// default).
    pub export_retention_days: Option<u32>,
    /// Kinds of missing resources the reconciler recreates on its own (`role`,
    /// `record` by default).
    pub reconcile_repair: Option<Vec<String>>,
    /// Blob store for exports: `file:///path` or `s3://bucket/prefix`.
    pub blob_url: Option<String>,
    /// `postgres://...` where tenants' databases are created.
    pub data_plane_url: Option<String>,
    /// Prefix of data-plane database, schema and role names (`tenancy` by default).
    pub data_plane_prefix: Option<String>,
    /// Destinations outbound requests may reach beyond the default policy (CIDRs,
    /// addresses, host names).
    pub outbound_allow: Option<Vec<String>>,
    /// The file holding the master key.
    pub master_key_file: Option<PathBuf>,
    /// Client connections served at once (1024 by default).
    pub max_connections: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("failed to read config file {}", path.display()))?;
        FileConfig::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<FileConfig> {
        Ok(toml::from_str(text)?)
    }
}

/// The server's options from the flags and environment clap read (`args`), then the
/// config file, then the defaults; `env` reads the variables that only the
/// environment sets (`TENANCY_ADMIN_TOKEN`, `TENANCY_MASTER_KEY`, `TENANCY_NODE_ID`).
/// Also the log format. Unknown roles are an error.
pub fn resolve(
    args: ServeArgs,
    file: FileConfig,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<(ServeOptions, LogFormat)> {
    let env = |k: &str| env(k).filter(|v| !v.is_empty());
    let log_format = args.log_format.or(file.log_format).unwrap_or(LogFormat::Text);
    let roles = args.roles.or(file.roles).unwrap_or_else(|| DEFAULT_ROLES.map(String::from).to_vec());
    for r in &roles {
        anyhow::ensure!(DEFAULT_ROLES.contains(&r.as_str()), "unknown role {r:?}: use api, worker");
    }
    let opts = ServeOptions {
        listen: args.listen.or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default")),
        data_dir: args.data_dir.or(file.data_dir).unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
        database_url: args.database_url.or(file.database_url),
        admin_token: env("TENANCY_ADMIN_TOKEN").map(SecretString::from),
        api: roles.iter().any(|r| r == "api"),
        worker: roles.iter().any(|r| r == "worker"),
        node_id: env("TENANCY_NODE_ID"),
        event_retention_days: args
            .event_retention_days
            .or(file.event_retention_days)
            .unwrap_or(DEFAULT_EVENT_RETENTION_DAYS),
        export_retention_days: args
            .export_retention_days
            .or(file.export_retention_days)
            .unwrap_or(DEFAULT_EXPORT_RETENTION_DAYS),
        reconcile_repair: match args.reconcile_repair.or(file.reconcile_repair) {
            Some(kinds) => tenancy_app::reconcile::DriftKind::parse_list(&kinds).map_err(anyhow::Error::msg)?,
            None => tenancy_app::reconcile::DriftKind::DEFAULT_REPAIR.to_vec(),
        },
        blob_url: args.blob_url.or(file.blob_url),
        delivery_retry_window: tenancy_events::backoff::Schedule::DEFAULT_WINDOW,
        master_key: env("TENANCY_MASTER_KEY").map(SecretString::from),
        master_key_file: args.master_key_file.or(file.master_key_file),
        data_plane_url: args.data_plane_url.or(file.data_plane_url).map(SecretString::from),
        data_plane_prefix: args.data_plane_prefix.or(file.data_plane_prefix),
        outbound_allow: args.outbound_allow.or(file.outbound_allow).unwrap_or_default(),
        connections: tenancy_http::ConnectionLimits {
            max_connections: args
                .max_connections
                .or(file.max_connections)
                .map_or(tenancy_http::DEFAULT_MAX_CONNECTIONS, |n| n.max(1) as usize),
            ..Default::default()
        },
    };
    Ok((opts, log_format))
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use secrecy::ExposeSecret;

    use super::*;
    use crate::cli::{Cli, Command};

    /// A config file with every key the README documents.
    const EVERY_KEY: &str = r#"
        listen = "127.0.0.1:9191"
        data_dir = "/srv/tenancy"
        database_url = "postgres://db/control"
        data_plane_url = "postgres://db/plane"
        data_plane_prefix = "acme"
        log_format = "json"
        roles = ["worker"]
        outbound_allow = ["10.0.0.0/8"]
        max_connections = 64
        master_key_file = "/run/secrets/master.key"
        event_retention_days = 7
        export_retention_days = 90
        reconcile_repair = ["record", "database"]
        blob_url = "s3://bucket/exports"
    "#;

    fn args(flags: &[&str]) -> ServeArgs {
        let cli = Cli::try_parse_from(["tenancy", "serve"].iter().chain(flags)).unwrap();
        match cli.command {
            Command::Serve(a) => a,
            _ => unreachable!(),
        }
    }

    /// The flags the README's Running table documents, as config keys.
    fn readme_keys() -> Vec<String> {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
        let keys: Vec<String> = readme
            .lines()
            .filter_map(|l| l.strip_prefix("| `--")?.split('`').next().map(|f| f.replace('-', "_")))
            .collect();
        assert!(keys.len() >= 10, "the README's flag table was not found: {keys:?}");
        keys
    }

    #[test]
    fn every_documented_key_is_accepted() {
        let table: toml::Table = toml::from_str(EVERY_KEY).unwrap();
        let mut in_file: Vec<&String> = table.keys().collect();
        let mut documented = readme_keys();
        in_file.sort();
        documented.sort();
        assert_eq!(in_file, documented.iter().collect::<Vec<_>>(), "every README flag is a config key");
        FileConfig::parse(EVERY_KEY).unwrap();
        let typo = FileConfig::parse("blob_ur = \"file:///x\"").unwrap_err();
        assert!(format!("{typo:#}").contains("unknown field"), "{typo:#}");
    }

    #[test]
    fn the_file_is_wired_and_flags_win() {
        // Everything from the file (no flags; clap would read TENANCY_* too, which the
        // test environment does not set for these).
        let (o, format) = resolve(args(&[]), FileConfig::parse(EVERY_KEY).unwrap(), |_| None).unwrap();
        assert_eq!(format, LogFormat::Json);
        assert_eq!(o.listen.to_string(), "127.0.0.1:9191");
        assert_eq!(o.data_dir, PathBuf::from("/srv/tenancy"));
        assert_eq!(o.database_url.as_deref(), Some("postgres://db/control"));
        assert_eq!(
            o.data_plane_url.as_ref().map(|s| s.expose_secret().to_owned()).as_deref(),
            Some("postgres://db/plane")
        );
        assert_eq!(o.data_plane_prefix.as_deref(), Some("acme"));
        assert_eq!((o.api, o.worker), (false, true));
        assert_eq!(o.outbound_allow, ["10.0.0.0/8"]);
        assert_eq!(o.connections.max_connections, 64);
        assert_eq!(o.master_key_file, Some(PathBuf::from("/run/secrets/master.key")));
        assert_eq!(o.event_retention_days, 7);
        assert_eq!(o.export_retention_days, 90);
        {
            use tenancy_app::reconcile::DriftKind;
            assert_eq!(o.reconcile_repair, [DriftKind::Record, DriftKind::Database]);
        }
        assert_eq!(o.blob_url.as_deref(), Some("s3://bucket/exports"));

        let flags = args(&[
            "--listen=127.0.0.1:1",
            "--data-plane-prefix=flag",
            "--event-retention-days=3",
            "--export-retention-days=0",
            "--reconcile-repair=none",
            "--blob-url=file:///tmp/b",
            "--roles=api",
            "--log-format=text",
        ]);
        let (o, format) = resolve(flags, FileConfig::parse(EVERY_KEY).unwrap(), |_| None).unwrap();
        assert_eq!(format, LogFormat::Text);
        assert_eq!(o.listen.to_string(), "127.0.0.1:1");
        assert_eq!(o.data_plane_prefix.as_deref(), Some("flag"));
        assert_eq!(o.event_retention_days, 3);
        assert_eq!(o.export_retention_days, 0);
        assert!(o.reconcile_repair.is_empty());
        assert_eq!(o.blob_url.as_deref(), Some("file:///tmp/b"));
        assert_eq!((o.api, o.worker), (true, false));

        // Defaults.
        let (o, format) = resolve(args(&[]), FileConfig::default(), |_| None).unwrap();
        assert_eq!((format, o.api, o.worker), (LogFormat::Text, true, true));
        assert_eq!(o.event_retention_days, DEFAULT_EVENT_RETENTION_DAYS);
        assert_eq!(o.export_retention_days, DEFAULT_EXPORT_RETENTION_DAYS);
        assert_eq!(o.reconcile_repair, tenancy_app::reconcile::DriftKind::DEFAULT_REPAIR);
        assert_eq!(o.listen.to_string(), DEFAULT_LISTEN);
        assert!(resolve(args(&["--roles=api,cron"]), FileConfig::default(), |_| None).is_err());
        let bad = resolve(args(&["--reconcile-repair=databases"]), FileConfig::default(), |_| None).unwrap_err();
        assert!(bad.to_string().contains("databases"), "{bad}");
    }

    /// `--help` states the real defaults.
    #[test]
    fn help_states_the_defaults() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        let help = cmd.find_subcommand_mut("serve").unwrap().render_long_help().to_string();
        assert!(help.contains(&format!("[default: {}]", DEFAULT_ROLES.join(","))), "{help}");
        assert!(help.contains(&format!("[default: {DEFAULT_EVENT_RETENTION_DAYS}]")), "{help}");
        assert!(help.contains("[default: role,record]"), "{help}");
        assert!(help.contains(&format!("[default: {DEFAULT_LISTEN}]")), "{help}");
    }
}
