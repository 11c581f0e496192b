//! `tenancy`: the control plane server (`tenancy serve`) and its operator CLI.

use std::process::ExitCode;

use clap::Parser;
use secrecy::SecretString;
use tenancy::cli::{run_client, Cli, Command, ServeArgs};
use tenancy::config::{FileConfig, LogFormat, DEFAULT_DATA_DIR, DEFAULT_LISTEN};
use tenancy::serve::{start, ServeOptions};
use tracing_subscriber::EnvFilter;

/// mimalloc rather than glibc's malloc: the server allocates many small, short-lived
/// buffers across threads, and glibc's arenas spent a fifth of the `provision`
/// benchmark's CPU in malloc/free and consolidation (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    init_tracing(args.log_format.or(file.log_format).unwrap_or(LogFormat::Text));
    let roles = args.roles.or(file.roles).unwrap_or_else(|| vec!["api".into(), "worker".into()]);
    for r in &roles {
        anyhow::ensure!(matches!(r.as_str(), "api" | "worker"), "unknown role {r:?}: use api, worker");
    }
    let opts = ServeOptions {
        listen: args.listen.or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default")),
        data_dir: args.data_dir.or(file.data_dir).unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
        database_url: args.database_url.or(file.database_url),
        admin_token: std::env::var("TENANCY_ADMIN_TOKEN").ok().filter(|t| !t.is_empty()).map(SecretString::from),
        api: roles.iter().any(|r| r == "api"),
        worker: roles.iter().any(|r| r == "worker"),
        node_id: std::env::var("TENANCY_NODE_ID").ok(),
        event_retention_days: args.event_retention_days,
        blob_url: args.blob_url,
        delivery_retry_window: tenancy_events::backoff::Schedule::DEFAULT_WINDOW,
        master_key: std::env::var("TENANCY_MASTER_KEY").ok().filter(|k| !k.is_empty()).map(SecretString::from),
        data_plane_url: args.data_plane_url.map(SecretString::from),
        data_plane_prefix: args.data_plane_prefix,
    };
    let server = start(opts).await?;
    let token = server.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: draining in-flight work");
        token.cancel();
    });
    server.wait().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => match serve(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        _ => match run_client(cli).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(e.exit_code() as u8)
            }
        },
    }
}
