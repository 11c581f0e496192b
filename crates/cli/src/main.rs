//! `tenancy`: the control plane server (`tenancy serve`) and its operator CLI.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use secrecy::ExposeSecret;
use tenancy::cli::{run_client, Cli, Command, MasterKeyCmd};
use tenancy::config::{Config, LogFormat};
use tenancy::serve::start;
use tracing_subscriber::EnvFilter;

/// mimalloc rather than glibc's malloc: the server allocates many small, short-lived
/// buffers across threads, and glibc's arenas spent a fifth of the `provision`
/// benchmark's CPU in malloc/free and consolidation (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    // Colours only for a terminal: piped or redirected logs stay plain text.
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
        LogFormat::Text => builder.init(),
    }
}

/// The shortest `TENANCY_ADMIN_TOKEN` accepted (a generated key has 43 random characters).
const MIN_ADMIN_TOKEN_CHARS: usize = 32;

async fn serve(config: Config) -> anyhow::Result<()> {
    let Config { log_format, serve: opts } = config;
    init_tracing(log_format);
    if let Some(t) = &opts.admin_token {
        anyhow::ensure!(
            t.expose_secret().chars().count() >= MIN_ADMIN_TOKEN_CHARS,
            "TENANCY_ADMIN_TOKEN is too short: it is an admin credential, use at least {MIN_ADMIN_TOKEN_CHARS} \
             random characters (e.g. `openssl rand -base64 32`)"
        );
    }
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
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Clap's errors exit 2; a bad value from the environment names its variable.
    let matches = match Cli::command().try_get_matches_from(&argv) {
        Ok(m) => m,
        Err(e) if tenancy::config::env_source(&e, &argv).is_some() => {
            eprintln!("error: {}", tenancy::config::explain(e, &argv));
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Serve(args) => match Config::load(*args, matches.subcommand_matches("serve").expect("serve")) {
            Ok(config) => match serve(config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::MasterKey(MasterKeyCmd::Rotate(args)) => {
            let m = matches.subcommand_matches("master-key").and_then(|m| m.subcommand_matches("rotate"));
            let config = Config::load(*args, m.expect("master-key rotate"));
            let run = async {
                let config = config?;
                init_tracing(config.log_format);
                tenancy::serve::rotate_master_key(&config.serve).await
            };
            match run.await {
                Ok(message) => {
                    eprintln!("{message}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => match run_client(cli).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(e.exit_code() as u8)
            }
        },
    }
}
