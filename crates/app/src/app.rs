//! [`App`]: the services, the engine and the settings every feature area's
//! operations share.

use std::sync::Arc;

use secrecy::SecretString;
use tenancy_domain::{Error, Result};
use tenancy_store::Store;

use crate::dataplane::plane::DataPlane;
use crate::keys::auth::Authenticator;
use crate::services::Services;
use tenancy_engine::Engine;

/// The application: the services it is built on plus what operations share.
pub struct App {
    pub(crate) store: Arc<dyn Store>,
    pub auth: Authenticator,
    /// What the app was built on (blob store, master key, data plane, outbound policy).
    pub(crate) services: Services,
    /// The provisioner of tenants' databases with the master key and blob store its
    /// steps need, when the services have one.
    pub(crate) plane: Option<Arc<DataPlane>>,
    /// The workflow engine (its worker runs from `serve`).
    pub(crate) engine: Arc<Engine>,
    /// Stored versions of the built-in state machines, once registered.
    pub(crate) builtins: std::sync::Mutex<std::collections::HashMap<String, tenancy_store::StateMachineRecord>>,
    /// A RUNNING execution without progress for this long is listed as stuck.
    pub(crate) stuck_after: std::time::Duration,
    /// This process among the replicas (see [`App::set_node_id`]).
    pub(crate) node_id: String,
    /// Caps on RUNNING user executions per state machine and per tenant (see
    /// [`App::set_execution_caps`]).
    pub(crate) execution_caps: (u64, u64),
    /// How long an offboarded tenant's id stays taken (see [`App::set_export_retention`]).
    pub(crate) export_retention: std::time::Duration,
    /// The largest release bundle accepted (see [`App::set_bundle_max_bytes`]).
    pub(crate) bundle_max_bytes: u64,
    /// Wakes the rollout worker after a rollout's change (`crate::rollouts`).
    pub(crate) rollouts_notify: Arc<tokio::sync::Notify>,
    /// The active rollouts as this replica's worker last read or saved them, by id: a
    /// pass reads only the stored revision when nobody else changed the record
    /// (`crate::rollouts::worker`).
    pub(crate) rollouts_kept: std::sync::Mutex<std::collections::HashMap<String, tenancy_domain::rollout::Rollout>>,
    /// The kinds of missing resources the reconciler repairs on its own (see
    /// [`App::set_reconcile_repair`]).
    pub(crate) reconcile_repair: std::collections::BTreeSet<crate::reconcile::ops::DriftKind>,
    /// Asks the `validate` hooks, under the outbound policy, with the hooks' secrets.
    pub(crate) validator: crate::hooks::tasks::CallHooks,
    /// Tenants' terms computed from the store, kept while current
    /// (`crate::entitlements::terms`).
    pub(crate) terms: crate::entitlements::terms::TermsMemory,
    /// The features every plan names, for flag evaluation (`flags::catalogue`).
    pub(crate) flag_catalogue: crate::flags::catalogue::Catalogue,
    /// How long sign-up activation tokens work (see [`App::set_signup_token_ttl`]).
    pub(crate) signup_ttl: std::time::Duration,
    /// The last collection of the stored-state gauges (`crate::metrics`).
    pub(crate) metrics: crate::metrics::Collector,
    /// The time of day for calendar decisions (see [`App::set_clock`]).
    pub(crate) clock: crate::clock::Clock,
    /// How long finished executions and events are kept (see [`App::set_retention`]).
    pub(crate) retention: crate::retention::RetentionPolicy,
    /// The authorization policies: schema, policy set in force, decision cache
    /// (`crate::policies`; see [`App::set_policy_actions`]).
    pub(crate) policies: crate::policies::engine::PolicyEngine,
}

/// The default of [`App::set_export_retention`]: 30 days.
pub const DEFAULT_EXPORT_RETENTION_DAYS: u32 = 30;

/// How long a read-modify-write without a demanded version keeps re-reading and
/// retrying while other writers win (64 concurrent PATCHes of one tenant all land).
pub(crate) const OPTIMISTIC_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// Retries `attempt` while it fails with a stale version and no version was demanded,
/// for up to [`OPTIMISTIC_RETRY_FOR`], with a short random pause that grows a little
/// per round, so racing writers spread out instead of colliding again.
pub(crate) async fn retry_stale<T, F, Fut>(if_match: Option<i64>, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = std::time::Instant::now() + OPTIMISTIC_RETRY_FOR;
    let mut round: u64 = 0;
    loop {
        match attempt().await {
            Err(Error::PreconditionFailed { .. }) if if_match.is_none() && std::time::Instant::now() < deadline => {
                round += 1;
                let cap = (round * 2).min(50);
                let pause = rand::Rng::gen_range(&mut rand::thread_rng(), 0..=cap);
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            r => return r,
        }
    }
}

impl App {
    /// The application over `services`: every feature area's task handlers are
    /// registered with the engine here, once ([`crate::handlers::handlers`]). The
    /// settings below have defaults; `serve` sets them before it shares the app.
    pub fn new(services: Services) -> Self {
        let store = services.store.clone();
        let plane = services.plane();
        let handlers = crate::handlers::handlers(&services, plane.as_ref());
        let engine = Engine::new(store.clone(), handlers, Arc::new(crate::tenants::lifecycle::LifecycleGuard));
        let validator = crate::hooks::tasks::CallHooks::new(services.outbound.clone(), services.secrets.clone())
            .with_connector(services.connector.clone());
        App {
            validator,
            auth: Authenticator::new(store.clone(), None),
            engine,
            store,
            services,
            plane,
            builtins: Default::default(),
            stuck_after: std::time::Duration::from_secs(300),
            node_id: "local".to_owned(),
            execution_caps: (tenancy_engine::MAX_RUNNING_PER_STATE_MACHINE, tenancy_engine::MAX_RUNNING_PER_TENANT),
            export_retention: std::time::Duration::from_secs(u64::from(DEFAULT_EXPORT_RETENTION_DAYS) * 86_400),
            bundle_max_bytes: crate::releases::bundle::DEFAULT_MAX_BYTES,
            rollouts_notify: Arc::default(),
            rollouts_kept: Default::default(),
            reconcile_repair: crate::reconcile::ops::DriftKind::DEFAULT_REPAIR.iter().copied().collect(),
            terms: Default::default(),
            flag_catalogue: Default::default(),
            signup_ttl: std::time::Duration::from_secs(tenancy_domain::signup::DEFAULT_TOKEN_TTL_S),
            metrics: Default::default(),
            clock: Default::default(),
            retention: Default::default(),
            policies: crate::policies::engine::PolicyEngine::new(vec![]),
        }
    }

    /// The clock that calendar decisions read (a rollout's maintenance windows): the
    /// system's by default; tests inject theirs (`ServeOptions::clock`).
    pub fn set_clock(&mut self, clock: crate::clock::Clock) {
        self.clock = clock;
    }

    /// The token of the built-in admin (`serve --admin-token`), if any.
    pub fn set_admin_token(&mut self, token: Option<SecretString>) {
        self.auth = Authenticator::new(self.store.clone(), token);
    }

    /// How long an offboarded tenant's export is kept before its id may be released
    /// (`DELETE /v1/tenants/{id}?purge=true`, `serve --export-retention-days`); counted
    /// from the end of the offboarding.
    pub fn set_export_retention(&mut self, d: std::time::Duration) {
        self.export_retention = d;
    }

    /// The retention the storage report previews (`serve --execution-retention`,
    /// `--event-retention-days`); the pruner is given the same.
    pub fn set_retention(&mut self, policy: crate::retention::RetentionPolicy) {
        self.retention = policy;
    }

    /// The largest release bundle `PUT /v1/releases/{version}/bundle` accepts (413
    /// past it; `serve --bundle-max-mib`, 512 MiB by default).
    pub fn set_bundle_max_bytes(&mut self, max: u64) {
        self.bundle_max_bytes = max;
    }

    /// The largest release bundle accepted.
    pub fn bundle_max_bytes(&self) -> u64 {
        self.bundle_max_bytes
    }

    /// Names this process among the replicas (`serve --node-id`, or a random one), in
    /// what it records for the others (the reconciliation pass it made); `local` by
    /// default.
    pub fn set_node_id(&mut self, id: impl Into<String>) {
        self.node_id = id.into();
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The workflow engine (its handler registry, its worker's `run`).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// How long a RUNNING execution may go without progress before `stuck=true` lists it.
    pub fn set_stuck_after(&mut self, d: std::time::Duration) {
        self.stuck_after = d;
    }

    /// Caps on the RUNNING user executions of one state machine and of one tenant: a
    /// start beyond either is 429 `too-many-requests` (defaults
    /// [`tenancy_engine::MAX_RUNNING_PER_STATE_MACHINE`] and
    /// [`tenancy_engine::MAX_RUNNING_PER_TENANT`]; at least 1).
    pub fn set_execution_caps(&mut self, per_state_machine: u64, per_tenant: u64) {
        self.execution_caps = (per_state_machine.max(1), per_tenant.max(1));
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The master key's box, when the services have one: the HTTP layer seals the
    /// responses it keeps for idempotency keys with it.
    pub fn secrets(&self) -> Option<&Arc<tenancy_adapters::keys::SecretBox>> {
        self.services.secrets.as_ref()
    }

    /// What the app was built on.
    pub fn services(&self) -> &Services {
        &self.services
    }
}
