//! `tenancy serve`: the control plane process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use secrecy::SecretString;
use tenancy_app::{App, Services};
use tenancy_http::ServerState;
use tenancy_store::Store;
use tenancy_store_sql::{redact_url, SqlOptions, SqlStore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Everything `serve` needs, resolved from flags, environment and config file
/// ([`crate::config::Config`]).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `None`: SQLite in the data directory. A secret: the URL may hold a password.
    pub database_url: Option<SecretString>,
    /// SQLite only: the page cache of all the store's connections together, in MiB.
    pub sqlite_cache_mib: u64,
    pub admin_token: Option<SecretString>,
    /// Serve the HTTP API.
    pub api: bool,
    /// Run the background work: the workflow engine, event dispatch and delivery, the
    /// audit sealer, queue sweeps and the reconciler.
    pub worker: bool,
    /// Names this process in leases; a random id by default.
    pub node_id: Option<String>,
    /// Events and finished deliveries older than this many days are deleted.
    pub event_retention_days: u32,
    /// Finished executions and their history older than this many days are deleted
    /// (a state machine's own `retention_days` wins; docs/storage.md, "Retention").
    pub execution_retention_days: u32,
    /// Time between the leased pruner's passes (10 minutes).
    pub prune_interval: std::time::Duration,
    /// Time between the leased archiver's passes (5 minutes); `None`: no archiving,
    /// and the pruner drops events past their retention unarchived.
    pub archive_interval: Option<std::time::Duration>,
    /// An offboarded tenant's id may be purged this many days after its offboarding.
    pub export_retention_days: u32,
    /// The largest release bundle accepted, in bytes (512 MiB).
    pub bundle_max_bytes: u64,
    /// Kinds of missing resources the reconciler recreates on its own; the others
    /// are reported for an operator's repair.
    pub reconcile_repair: Vec<tenancy_app::reconcile::ops::DriftKind>,
    /// Time between reconciliation passes (60 s).
    pub reconcile_interval: std::time::Duration,
    /// Where audit exports go: `None` for `<data dir>/blobs`, or `file:///path`.
    pub blob_url: Option<String>,
    /// Retries of a failed delivery are spread over at most this window (24 hours).
    pub delivery_retry_window: std::time::Duration,
    /// How long a claimed webhook delivery stays leased (300 s): the longest a crashed
    /// worker's deliveries wait before another worker sends them.
    pub delivery_lease: std::time::Duration,
    /// The master key (base64 of 32 bytes) sealing stored secrets
    /// (`TENANCY_MASTER_KEY`); `None`: read from `master_key_file`. Replicas must
    /// share it.
    pub master_key: Option<SecretString>,
    /// The file holding the master key (`--master-key-file`); `None`:
    /// `<data dir>/master.key`. Generated there only on the first start of a new
    /// database (see [`open_secret_box`]).
    pub master_key_file: Option<PathBuf>,
    /// `postgres://...` of the data plane: the server tenants' databases are created
    /// on. `None`: the control-plane server when it is PostgreSQL, else SQLite files
    /// under `<data dir>/tenants` (see [`open_data_plane`]).
    pub data_plane_url: Option<SecretString>,
    /// The prefix of the names of data-plane databases, schemas and roles
    /// (`tenancy` by default); installations sharing a PostgreSQL server need their own.
    pub data_plane_prefix: Option<String>,
    /// Destinations outbound requests (`http:invoke`, webhooks, hooks) may reach
    /// beyond the default policy, which refuses loopback, private, link-local and
    /// other internal addresses: CIDRs, addresses or host names.
    pub outbound_allow: Vec<String>,
    /// The connection cap and the header read (and keep-alive idle) timeout.
    pub connections: tenancy_http::ConnectionLimits,
    /// The rate-limit buckets' sizes (`--rate-limit-*`, docs/rate-limits.md).
    pub rate_limits: tenancy_http::RateLimits,
    /// The workflow engine's lease, batch and concurrency, and the caps on running
    /// executions.
    pub workflow: WorkflowSettings,
    /// How often deleted secrets past their recovery window are purged (60 s; not a
    /// setting: tests shorten it).
    pub secret_sweep_interval: std::time::Duration,
    /// How often the rotation scheduler looks for due rotations (30 s; not a setting:
    /// tests shorten it).
    pub rotation_schedule_interval: std::time::Duration,
    /// For test servers only: a shorter minimum for `rotation.every` than 1 hour, so a
    /// schedule runs within a test (`None`: the 1 hour minimum; not a setting).
    pub rotation_min_interval: Option<std::time::Duration>,
    /// Self-service sign-up: the tokens' lifetime, the rate limits, the sweep.
    pub signup: SignupSettings,
    /// The app's clock for calendar decisions (rollouts' maintenance windows); the
    /// system's when `None`. Tests only: no flag sets it.
    pub clock: Option<tenancy_app::Clock>,
}

/// Self-service sign-up's settings (`--signup-*`, docs/self-service.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignupSettings {
    /// How long an activation token works (24 h).
    pub token_ttl: std::time::Duration,
    /// Requests an hour per client address and sign-ups an hour per email domain.
    pub limits: tenancy_http::SignupLimits,
    /// How often expired sign-ups are purged (60 s; not a setting: tests shorten it).
    pub sweep_interval: std::time::Duration,
}

impl Default for SignupSettings {
    fn default() -> Self {
        SignupSettings {
            token_ttl: std::time::Duration::from_secs(tenancy_domain::signup::DEFAULT_TOKEN_TTL_S),
            limits: tenancy_http::SignupLimits::default(),
            sweep_interval: std::time::Duration::from_secs(60),
        }
    }
}

/// The workflow engine's settings (`--workflow-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkflowSettings {
    /// How long a crashed worker's executions stay leased.
    pub lease: std::time::Duration,
    /// Executions claimed at once.
    pub batch: u32,
    /// Executions this process advances concurrently.
    pub max_in_flight: usize,
    /// Of those, slots only lifecycle executions take (at most half).
    pub lifecycle_slots: usize,
    /// RUNNING user executions per state machine (429 beyond).
    pub max_running_per_machine: u64,
    /// RUNNING user executions per tenant (429 beyond).
    pub max_running_per_tenant: u64,
}

impl Default for WorkflowSettings {
    /// The engine's own defaults.
    fn default() -> Self {
        let e = tenancy_app::engine::EngineOptions::new("");
        WorkflowSettings {
            lease: e.lease,
            batch: e.batch,
            max_in_flight: e.max_in_flight,
            lifecycle_slots: e.lifecycle_slots,
            max_running_per_machine: tenancy_app::engine::MAX_RUNNING_PER_STATE_MACHINE,
            max_running_per_tenant: tenancy_app::engine::MAX_RUNNING_PER_TENANT,
        }
    }
}

impl ServeOptions {
    /// Options for a throwaway server: port 0, everything on.
    pub fn for_tests(data_dir: PathBuf, database_url: Option<String>, admin_token: &str) -> Self {
        // Test servers share one PostgreSQL cluster: names stable per database (a
        // restart finds its tenants' databases), distinct between databases.
        let data_plane_prefix = database_url.as_deref().map(test_prefix);
        ServeOptions {
            listen: "127.0.0.1:0".parse().expect("valid address"),
            data_dir,
            database_url: database_url.map(SecretString::from),
            sqlite_cache_mib: tenancy_store_sql::DEFAULT_SQLITE_CACHE_KIB / 1024,
            admin_token: Some(SecretString::from(admin_token.to_owned())),
            api: true,
            worker: true,
            node_id: None,
            event_retention_days: DEFAULT_EVENT_RETENTION_DAYS,
            execution_retention_days: tenancy_app::retention::DEFAULT_EXECUTION_RETENTION_DAYS,
            prune_interval: tenancy_app::retention::pruner::DEFAULT_INTERVAL,
            archive_interval: Some(tenancy_app::archive::worker::DEFAULT_INTERVAL),
            export_retention_days: DEFAULT_EXPORT_RETENTION_DAYS,
            bundle_max_bytes: tenancy_app::releases::bundle::DEFAULT_MAX_BYTES,
            reconcile_repair: tenancy_app::reconcile::ops::DriftKind::DEFAULT_REPAIR.to_vec(),
            reconcile_interval: std::time::Duration::from_secs(60),
            blob_url: None,
            delivery_retry_window: tenancy_events_window(),
            delivery_lease: tenancy_app::subscriptions::worker::DeliveryOptions::new(String::new()).lease,
            master_key: None,
            master_key_file: None,
            data_plane_url: None,
            data_plane_prefix,
            // Test servers' webhook receivers, hooks and HTTP endpoints run on loopback.
            outbound_allow: vec!["127.0.0.0/8".into(), "::1".into()],
            connections: tenancy_http::ConnectionLimits::default(),
            rate_limits: tenancy_http::RateLimits::default(),
            workflow: WorkflowSettings::default(),
            secret_sweep_interval: std::time::Duration::from_secs(60),
            rotation_schedule_interval: std::time::Duration::from_secs(30),
            rotation_min_interval: None,
            signup: SignupSettings::default(),
            clock: None,
        }
    }
}

/// The data-plane prefix of a test server on `database_url`: `tt` and 12 hex digits of
/// the URL's hash, so test servers on different databases of one PostgreSQL server
/// (the suite runs side by side) never share tenant databases, roles or the DDL lock,
/// and a server restarted on the same database finds its own again. `scripts/test`
/// drops what earlier runs left under such prefixes.
pub fn test_prefix(database_url: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    database_url.hash(&mut h);
    format!("tt{:012x}", h.finish() & 0xffff_ffff_ffff)
}

pub const DEFAULT_EVENT_RETENTION_DAYS: u32 = 30;
pub use tenancy_app::DEFAULT_EXPORT_RETENTION_DAYS;

fn tenancy_events_window() -> std::time::Duration {
    tenancy_app::subscriptions::worker::DeliveryOptions::new("").retry_window
}

/// The blob store of `--blob-url`: a local directory (default `<data dir>/blobs`,
/// or `file:///path`), or `s3://bucket[/prefix]` (credentials from `AWS_*`).
pub fn open_blob_store(opts: &ServeOptions) -> anyhow::Result<tenancy_adapters::blob::BlobStore> {
    let dir = match opts.blob_url.as_deref() {
        None => opts.data_dir.join("blobs"),
        Some(url) if url.starts_with("file://") => PathBuf::from(&url["file://".len()..]),
        Some(url) if url.starts_with("s3://") => return Ok(tenancy_adapters::blob::BlobStore::s3(url)?),
        Some(url) => anyhow::bail!("unsupported blob URL {url:?}: use file:///path or s3://bucket/prefix"),
    };
    Ok(tenancy_adapters::blob::BlobStore::local(&dir)?)
}

/// The master key: `TENANCY_MASTER_KEY`, else the file of `--master-key-file`, else
/// `<data dir>/master.key`; checked against the fingerprint the database records.
///
/// A key file is generated only for a new database (no fingerprint recorded, no sealed
/// value stored). Otherwise a missing key, or one whose fingerprint is not the recorded
/// one (another replica's key, a replaced file), is an error: the server refuses to
/// start rather than run with secrets it cannot open or seal new ones under a second
/// key. The first server on a database records its key's fingerprint.
pub async fn open_secret_box(
    opts: &ServeOptions,
    store: &dyn Store,
) -> anyhow::Result<Arc<tenancy_adapters::keys::SecretBox>> {
    use secrecy::ExposeSecret;
    use tenancy_adapters::keys::SecretBox;
    const HOW: &str = "give every server on this database the same master key (TENANCY_MASTER_KEY, or \
                       --master-key-file / TENANCY_MASTER_KEY_FILE)";
    let state = store.master_key_state().await.context("failed to read the master key's fingerprint")?;
    let in_use = state.fingerprint.is_some() || state.sealed_values;
    let (b, source) = match (&opts.master_key, &opts.master_key_file) {
        (Some(_), Some(_)) => {
            anyhow::bail!("both TENANCY_MASTER_KEY and --master-key-file (TENANCY_MASTER_KEY_FILE) are set: use one")
        }
        (Some(key), None) => {
            let b = SecretBox::from_base64(key.expose_secret()).context("invalid TENANCY_MASTER_KEY")?;
            (b, "TENANCY_MASTER_KEY".to_owned())
        }
        (None, file) => {
            let path = file.clone().unwrap_or_else(|| opts.data_dir.join("master.key"));
            let source = format!("the master key file {}", path.display());
            match SecretBox::read_file(&path)? {
                Some(b) => (b, source),
                None if in_use => anyhow::bail!(
                    "{source} is missing, but this database {}: refusing to start (a new key could not open its \
                     secrets); restore the file, or {HOW}",
                    if state.fingerprint.is_some() {
                        "records the fingerprint of the master key its secrets are sealed with"
                    } else {
                        "holds secrets sealed with a master key"
                    }
                ),
                None => {
                    let b = SecretBox::create_file(&path)?;
                    tracing::info!(path = %path.display(), "generated the master key (back it up: sealed secrets need it)");
                    (b, source)
                }
            }
        }
    };
    let recorded =
        store.master_key_record(b.fingerprint()).await.context("failed to record the master key's fingerprint")?;
    if recorded != b.fingerprint() {
        anyhow::bail!(
            "the master key from {source} is not the key of this database (its fingerprint differs from the one \
             recorded by the first server): refusing to start; {HOW}"
        );
    }
    Ok(Arc::new(b))
}

/// `tenancy master-key rotate`: a new master key (the key-encryption key) for the
/// database of `opts`, with the servers stopped (they hold the old key in memory).
///
/// The old key is read and checked as `serve` does. With a key file, the new key is
/// written beside it as `<file>.new` (mode 0600) before anything changes; one
/// transaction then re-wraps every data key of the secret store (the ciphertexts stay
/// as they are), re-seals the values sealed directly with the master key and records
/// the new key's fingerprint; then `<file>.new` replaces the file. (Stopped between
/// the commit and the rename, the server refuses to start with the old file: move
/// `<file>.new` over it.) With `TENANCY_MASTER_KEY`, the new key is printed on stdout
/// for the operator to store where the old one was. Either way the old key is no
/// longer needed afterwards. Returns what to tell the operator.
pub async fn rotate_master_key(opts: &ServeOptions) -> anyhow::Result<String> {
    use tenancy_adapters::keys::SecretBox;
    restrict_file_modes();
    let store = open_store(opts).await?;
    let old = open_secret_box(opts, &*store).await?;
    let file = match (&opts.master_key, &opts.master_key_file) {
        (Some(_), _) => None,
        (None, file) => Some(file.clone().unwrap_or_else(|| opts.data_dir.join("master.key"))),
    };
    let (new, printed) = match &file {
        Some(path) => {
            let next = PathBuf::from(format!("{}.new", path.display()));
            anyhow::ensure!(
                !next.exists(),
                "{} exists (left by an unfinished rotation?): if the server refuses the key in {}, move it over \
                 that file; else delete it, then rotate again",
                next.display(),
                path.display()
            );
            (SecretBox::create_file(&next)?, None)
        }
        None => {
            let (b, text) = SecretBox::generate();
            (b, Some(text))
        }
    };
    let rotated = tenancy_app::secrets::rotate::rotate_master_key(&store, old, Arc::new(new))
        .await
        .context("failed to rotate the master key (nothing was changed)")?;
    let done = format!(
        "re-wrapped {} data keys and re-sealed {} values under the new master key",
        rotated.data_keys, rotated.sealed_values
    );
    match (file, printed) {
        (Some(path), _) => {
            let next = PathBuf::from(format!("{}.new", path.display()));
            std::fs::rename(&next, &path)
                .with_context(|| format!("failed to move {} over {}", next.display(), path.display()))?;
            Ok(format!("{done}; it is in {} (the old key is no longer needed)", path.display()))
        }
        (None, Some(text)) => {
            println!("{text}");
            Ok(format!(
                "{done}; set TENANCY_MASTER_KEY to the key printed on stdout on every server (the old key is no \
                 longer needed)"
            ))
        }
        (None, None) => unreachable!("a key is either a file or printed"),
    }
}

/// The data plane tenants' databases live on:
///
/// * `--data-plane-url postgres://...`: that PostgreSQL server (a database and role per
///   silo tenant, a schema and role per pool tenant in `<prefix>_pool`);
/// * else, when the control plane runs on PostgreSQL: the same server, through the
///   control plane's URL (one server to run; give the data plane its own server with
///   `--data-plane-url` when tenants' load must not touch the control plane);
/// * else (SQLite): a SQLite file per silo tenant under `<data dir>/tenants`; pool
///   tenants keep only their resource record.
pub fn open_data_plane(
    opts: &ServeOptions,
) -> anyhow::Result<Arc<dyn tenancy_adapters::dataplane::DatabaseProvisioner>> {
    use secrecy::ExposeSecret;
    use tenancy_adapters::dataplane::postgres::{PostgresDataPlane, DEFAULT_PREFIX};
    let prefix = opts.data_plane_prefix.as_deref().unwrap_or(DEFAULT_PREFIX);
    let is_pg = |u: &str| u.starts_with("postgres://") || u.starts_with("postgresql://");
    if let Some(url) = &opts.data_plane_url {
        let url = url.expose_secret();
        anyhow::ensure!(is_pg(url), "the data-plane URL must be postgres://..., got {}", redact_url(url));
        tracing::info!(url = %redact_url(url), prefix, "data plane: PostgreSQL");
        return Ok(Arc::new(PostgresDataPlane::new(url, prefix)?));
    }
    match opts.database_url.as_ref().map(|u| u.expose_secret()) {
        Some(url) if is_pg(url) => {
            tracing::info!(url = %redact_url(url), prefix, "data plane: the control plane's PostgreSQL server");
            Ok(Arc::new(PostgresDataPlane::new(url, prefix)?))
        }
        _ => Ok(Arc::new(tenancy_adapters::dataplane::SqliteFiles::new(opts.data_dir.join("tenants")))),
    }
}

/// The retention of finished executions and of events, as configured.
fn retention_policy(opts: &ServeOptions) -> tenancy_app::retention::RetentionPolicy {
    use tenancy_app::retention::{days, RetentionPolicy};
    RetentionPolicy { executions: days(opts.execution_retention_days), events: days(opts.event_retention_days) }
}

/// Starts event delivery (dispatcher, delivery worker), the leased pruner, the audit
/// sealer, the queue sweeper and the sign-up and secret sweepers.
fn start_event_loops(
    secrets: &Arc<tenancy_adapters::keys::SecretBox>,
    services: &Services,
    store: &Arc<dyn Store>,
    opts: &ServeOptions,
    node_id: &str,
    shutdown: &CancellationToken,
    tasks: &mut Vec<JoinHandle<()>>,
) {
    use tenancy_app::audit::worker::{Sealer, SealerOptions};
    use tenancy_app::retention::pruner::{Pruner, PrunerOptions};
    use tenancy_app::subscriptions::worker::{DeliveryOptions, DeliveryWorker, Dispatcher, DispatcherOptions};
    let dispatcher = Dispatcher::new(store.clone(), DispatcherOptions::default());
    tasks.push(tokio::spawn(dispatcher.run(shutdown.clone())));
    let mut delivery = DeliveryOptions::new(format!("{node_id}/delivery"));
    delivery.retry_window = opts.delivery_retry_window;
    delivery.lease = opts.delivery_lease;
    delivery.secrets = Some(secrets.clone());
    delivery.outbound = services.outbound.clone();
    delivery.connector = Some(services.connector.clone());
    tasks.push(tokio::spawn(DeliveryWorker::new(store.clone(), delivery).run(shutdown.clone())));
    // The one leased pruner: executions, idempotency keys, events and deliveries, queue
    // messages, the quota ledger and sign-ups past their retention.
    let mut prune = PrunerOptions::new(format!("{node_id}/prune-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    prune.policy = retention_policy(opts);
    prune.interval = opts.prune_interval;
    // The leased archiver: sealed audit records and events to the blob store as
    // Parquet; with it, the pruner drops only archived events.
    if let (Some(interval), Some(blobs)) = (opts.archive_interval, services.blobs.clone()) {
        use tenancy_app::archive::worker::{Archiver, ArchiverOptions};
        let mut archive =
            ArchiverOptions::new(format!("{node_id}/archive-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
        archive.interval = interval;
        tasks.push(tokio::spawn(Archiver::new(store.clone(), blobs, archive).run(shutdown.clone())));
        prune.archived_events_only = true;
    }
    tasks.push(tokio::spawn(Pruner::new(store.clone(), prune).run(shutdown.clone())));
    tasks.push(tokio::spawn(Sealer::new(store.clone(), SealerOptions::default()).run(shutdown.clone())));
    let sweeper = tenancy_app::queues::worker::QueueSweeper::new(store.clone(), std::time::Duration::from_secs(60));
    tasks.push(tokio::spawn(sweeper.run(shutdown.clone())));
    let sweeper = tenancy_app::secrets::worker::SecretSweeper::new(store.clone(), opts.secret_sweep_interval);
    tasks.push(tokio::spawn(sweeper.run(shutdown.clone())));
    let sweeper = tenancy_app::signup::worker::SignupSweeper::new(store.clone(), opts.signup.sweep_interval);
    tasks.push(tokio::spawn(sweeper.run(shutdown.clone())));
}

/// A started server.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting requests, lets in-flight requests and jobs finish, and returns.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the server stopped (after `shutdown_token().cancel()`).
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Files this process creates are for its user only, whatever the umask it was
/// started with: mode 0600 (SQLite databases with their WAL and shared-memory files,
/// silo tenants' databases, exports, blobs, keys), directories 0700.
pub fn restrict_file_modes() {
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Creates the data directory with mode 0700, or takes group and other access away
/// from an existing one.
fn create_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    let fail = || format!("failed to create data directory {}", dir.display());
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir).with_context(fail)?;
        let mode = std::fs::metadata(dir).with_context(fail)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %dir.display(), mode = format!("{:o}", mode & 0o777), "data directory open to others: setting it to 0700");
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("failed to set the mode of {} to 0700", dir.display()))?;
        }
    }
    #[cfg(not(unix))]
    builder.create(dir).with_context(fail)?;
    Ok(())
}

pub async fn open_store(opts: &ServeOptions) -> anyhow::Result<Arc<dyn Store>> {
    create_data_dir(&opts.data_dir)?;
    let url = match &opts.database_url {
        Some(url) => secrecy::ExposeSecret::expose_secret(url).to_owned(),
        None => format!("sqlite://{}", opts.data_dir.join("tenancy.db").display()),
    };
    let store =
        SqlStore::connect(&SqlOptions { sqlite_cache_kib: opts.sqlite_cache_mib * 1024, ..SqlOptions::new(&url) })
            .await
            .with_context(|| format!("failed to open the store at {}", redact_url(&url)))?;
    tracing::info!(backend = store.backend().as_str(), url = %redact_url(&url), "store ready");
    Ok(Arc::new(store))
}

/// Opens the store, bootstraps the admin key, binds the listener and starts the API
/// and the worker.
pub async fn start(opts: ServeOptions) -> anyhow::Result<RunningServer> {
    restrict_file_modes();
    let outbound = Arc::new(
        tenancy_adapters::outbound::OutboundPolicy::with_allowed(&opts.outbound_allow).map_err(anyhow::Error::msg)?,
    );
    let store = open_store(&opts).await?;
    // Before anything else touches the database: a server with the wrong key stops here.
    let secrets = open_secret_box(&opts, &*store).await?;
    // The composition root: every service the app runs on, built once.
    let services = Services::new(store.clone())
        .with_blobs(open_blob_store(&opts)?)
        .with_secrets(secrets.clone())
        .with_outbound(outbound.clone())
        .with_data_plane(open_data_plane(&opts)?);
    let node_id =
        opts.node_id.clone().unwrap_or_else(|| format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
    let mut app = App::new(services);
    app.set_admin_token(opts.admin_token.clone());
    app.set_policy_actions(tenancy_http::policy_actions());
    app.set_node_id(node_id.clone());
    // Caps on RUNNING user executions per state machine and per tenant (429 beyond).
    app.set_execution_caps(opts.workflow.max_running_per_machine, opts.workflow.max_running_per_tenant);
    app.set_bundle_max_bytes(opts.bundle_max_bytes);
    app.set_retention(retention_policy(&opts));
    app.set_export_retention(std::time::Duration::from_secs(u64::from(opts.export_retention_days) * 86_400));
    app.set_signup_token_ttl(opts.signup.token_ttl);
    app.set_reconcile_repair(&opts.reconcile_repair);
    if let Some(clock) = &opts.clock {
        app.set_clock(clock.clone());
    }
    if let Some(min) = opts.rotation_min_interval {
        tenancy_app::secrets::rotation::set_min_interval(min);
    }
    let app = Arc::new(app);
    tracing::info!(allowed = ?outbound.allow_list(), "outbound policy: internal addresses refused except those allowed");
    if let Some(path) = tenancy_app::keys::auth::bootstrap_admin(&app.auth, &*store, &opts.data_dir).await? {
        tracing::info!(path = %path.display(), "wrote a generated admin key (use it as TENANCY_TOKEN)");
    }
    app.register_builtin_workflows().await.context("failed to register the built-in workflows")?;
    // Silo passwords sealed before the secret store kept them move into it, before any
    // worker provisions (docs/secrets.md, "Database credentials").
    let adopted = app.adopt_database_credentials().await.context("failed to move database passwords")?;
    if adopted > 0 {
        tracing::info!(tenants = adopted, "moved silo database passwords into the secret store");
    }
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();

    if opts.worker {
        start_event_loops(&secrets, app.services(), &store, &opts, &node_id, &shutdown, &mut tasks);
        let mut engine_opts = tenancy_app::engine::EngineOptions::new(format!("{node_id}/engine"));
        engine_opts.lease = opts.workflow.lease;
        engine_opts.batch = opts.workflow.batch;
        engine_opts.max_in_flight = opts.workflow.max_in_flight;
        engine_opts.lifecycle_slots = opts.workflow.lifecycle_slots;
        tasks.push(tokio::spawn(app.engine().clone().run(engine_opts, shutdown.clone())));
        let reconciler = tenancy_app::reconcile::worker::Reconciler::new(app.clone(), opts.reconcile_interval);
        tasks.push(tokio::spawn(reconciler.run(shutdown.clone())));
        let owner = format!("{node_id}/rotation-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let scheduler = tenancy_app::secrets::scheduler::RotationScheduler::new(
            app.clone(),
            opts.rotation_schedule_interval,
            owner,
        );
        tasks.push(tokio::spawn(scheduler.run(shutdown.clone())));
        // Rollouts (docs/releases.md "Rollouts"): a pass a second, or at once after a
        // change on this replica; leased per rollout across replicas.
        let rollouts = tenancy_app::rollouts::RolloutWorker::new(
            app.clone(),
            format!("{node_id}/rollouts"),
            std::time::Duration::from_millis(500),
        );
        tasks.push(tokio::spawn(rollouts.run(shutdown.clone())));
    }

    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("failed to listen on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    if opts.api {
        let router = tenancy_http::router(ServerState::with_limits(app.clone(), opts.rate_limits, opts.signup.limits));
        let token = shutdown.clone();
        let limits = opts.connections;
        tasks.push(tokio::spawn(tenancy_http::serve(listener, router, limits, async move { token.cancelled().await })));
        tracing::info!(%addr, node_id, "listening");
    }
    Ok(RunningServer { addr, app, shutdown, tasks })
}
