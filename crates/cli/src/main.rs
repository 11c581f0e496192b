//! `tenancy`: the control plane server (`tenancy serve`) and its operator CLI.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use secrecy::ExposeSecret;
use tenancy::cli::{run_client, Cli, Command, MasterKeyCmd};
use tenancy::config::{Config, LogFormat};
use tenancy::serve::start;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// mimalloc rather than glibc's malloc: the server allocates many small, short-lived
/// buffers across threads, and glibc's arenas spent a fifth of the `provision`
/// benchmark's CPU in malloc/free and consolidation (docs/BENCHMARKS.md).
///
/// Built without transparent huge pages (the `no_thp` feature, in the workspace's
/// Cargo.toml): with them, mimalloc asks the kernel for 2 MiB pages, so the resident
/// memory moves in 2 MiB steps and memory mimalloc purges stays resident inside a huge
/// page. In the soak (docs/BENCHMARKS.md, 2026-12-07) the server started at 64 MiB
/// instead of 86, and the archiver's pass lifted it by 16 MiB instead of 33.
///
/// The `system-alloc` feature leaves it out, for heap profilers that interpose the
/// system's malloc (heaptrack; docs/operations.md "Memory").
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The log subscriber, and with `OTEL_EXPORTER_OTLP_ENDPOINT` (or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set a layer exporting spans over OTLP/HTTP
/// (docs/operations.md "Traces"). Returns the trace provider to shut down (flush) on exit.
fn init_tracing(format: LogFormat) -> Option<SdkTracerProvider> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    // Colours only for a terminal: piped or redirected logs stay plain text.
    let ansi = std::io::stderr().is_terminal();
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let fmt = match format {
        LogFormat::Json => fmt.json().flatten_event(true).with_current_span(true).boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    let (provider, failed) = match otlp_provider() {
        Ok(p) => (p, None),
        Err(e) => (None, Some(e)),
    };
    let otel = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("tenancy")));
    tracing_subscriber::registry().with(fmt).with(otel).with(filter).init();
    if let Some(e) = failed {
        tracing::error!(error = %e, "cannot export traces: check the OTEL_EXPORTER_OTLP_* variables");
    }
    provider
}

/// The OTLP trace pipeline the standard `OTEL_*` variables describe, or `None` when no
/// endpoint is set. The exporter and the batch processor read their own variables
/// (`OTEL_EXPORTER_OTLP_HEADERS`, `_TIMEOUT`, `OTEL_BSP_SCHEDULE_DELAY`, ...), the
/// sampler `OTEL_TRACES_SAMPLER` (parent-based, always on by default), the resource
/// `OTEL_RESOURCE_ATTRIBUTES`; the service is `OTEL_SERVICE_NAME`, else `tenancy`.
fn otlp_provider() -> anyhow::Result<Option<SdkTracerProvider>> {
    use tenancy::config::env_var;
    if env_var("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() && env_var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none() {
        return Ok(None);
    }
    if let Some(p) = env_var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| env_var("OTEL_EXPORTER_OTLP_PROTOCOL")) {
        anyhow::ensure!(p == "http/protobuf", "OTEL_EXPORTER_OTLP_PROTOCOL {p:?} is not supported: use http/protobuf");
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build()?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if env_var("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("tenancy");
    }
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build();
    Ok(Some(provider))
}

/// Flushes the spans not exported yet and stops the exporter (blocking: off the runtime).
async fn shutdown_traces(provider: Option<SdkTracerProvider>) {
    if let Some(p) = provider {
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = p.shutdown() {
                eprintln!("error: flushing traces: {e}");
            }
        })
        .await;
    }
}

/// The shortest `TENANCY_ADMIN_TOKEN` accepted (a generated key has 43 random characters).
const MIN_ADMIN_TOKEN_CHARS: usize = 32;

async fn serve(config: Config) -> anyhow::Result<()> {
    let Config { log_format, serve: opts } = config;
    let traces = init_tracing(log_format);
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
    shutdown_traces(traces).await;
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
                let traces = init_tracing(config.log_format);
                let out = tenancy::serve::rotate_master_key(&config.serve).await;
                shutdown_traces(traces).await;
                out
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
