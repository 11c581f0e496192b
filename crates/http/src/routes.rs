//! The route table: every endpoint of the v1 API and of OFREP (`/ofrep/v1`), documented
//! for OpenAPI.

mod audit;
mod connections;
mod entitlements;
mod events;
mod flags;
mod functions;
mod hooks;
mod keys;
mod plans;
mod policies;
mod queues;
mod quotas;
mod reconciliation;
mod records;
pub(crate) mod releases;
pub(crate) mod rollouts;
mod secrets;
mod signup;
mod storage;
mod subscriptions;
mod system;
mod tenants;
mod workflows;

use std::sync::Arc;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::server::ServerState;

pub use system::{healthz, metrics, readyz};

pub fn api() -> OpenApiRouter<Arc<ServerState>> {
    OpenApiRouter::new()
        .routes(routes!(plans::list_plans))
        .routes(routes!(plans::put_plan, plans::patch_plan, plans::get_plan, plans::delete_plan))
        .routes(routes!(tenants::create_tenant, tenants::list_tenants))
        .routes(routes!(tenants::get_tenant, tenants::patch_tenant, tenants::delete_tenant))
        .routes(routes!(tenants::suspend_tenant))
        .routes(routes!(tenants::resume_tenant))
        .routes(routes!(tenants::retry_tenant))
        .routes(routes!(tenants::change_plan))
        .routes(routes!(keys::create_key, keys::list_keys))
        .routes(routes!(keys::delete_key))
        .routes(routes!(keys::rotate_key))
        .routes(routes!(records::list_events, events::put_events))
        .routes(routes!(events::test_pattern))
        .routes(routes!(records::list_audit))
        .routes(routes!(subscriptions::create_subscription, subscriptions::list_subscriptions))
        .routes(routes!(
            subscriptions::get_subscription,
            subscriptions::patch_subscription,
            subscriptions::delete_subscription
        ))
        .routes(routes!(subscriptions::rotate_secret))
        .routes(routes!(subscriptions::list_deliveries))
        .routes(routes!(subscriptions::retry_delivery))
        .routes(routes!(subscriptions::replay))
        .routes(routes!(audit::verify_audit))
        .routes(routes!(audit::export_audit))
        .routes(routes!(audit::create_export))
        .merge(workflows_api())
        .merge(queues_api())
        .routes(routes!(hooks::list_hooks))
        .routes(routes!(hooks::put_hook, hooks::get_hook, hooks::delete_hook))
        .routes(routes!(hooks::tenant_resources))
        .routes(routes!(hooks::tenant_database_credentials))
        .routes(routes!(quotas::list_quotas))
        .routes(routes!(quotas::consume_quotas))
        .routes(routes!(quotas::consume_quota))
        .routes(routes!(quotas::release_quota))
        .routes(routes!(entitlements::put_overrides, entitlements::get_overrides, entitlements::delete_overrides))
        .routes(routes!(entitlements::get_entitlements))
        .routes(routes!(flags::evaluate_flag))
        .routes(routes!(flags::evaluate_flags))
        .routes(routes!(policies::list_policies))
        .routes(routes!(policies::put_policy, policies::get_policy, policies::delete_policy))
        .routes(routes!(policies::check_policy))
        .routes(routes!(connections::list_connections))
        .routes(routes!(connections::put_connection, connections::get_connection, connections::delete_connection))
        .routes(routes!(functions::list_functions))
        .routes(routes!(functions::put_function, functions::get_function, functions::delete_function))
        .merge(secrets_api())
        .routes(routes!(reconciliation::last_reconciliation, reconciliation::run_reconciliation))
        .routes(routes!(reconciliation::repair_drift))
        .routes(routes!(storage::storage_report))
        .merge(releases_api())
}

fn releases_api() -> OpenApiRouter<Arc<ServerState>> {
    OpenApiRouter::new()
        .routes(routes!(releases::list_releases))
        .routes(routes!(releases::put_release, releases::get_release))
        .routes(routes!(releases::put_bundle, releases::get_bundle))
        .routes(routes!(releases::pin_tenant, releases::unpin_tenant))
        .routes(routes!(releases::upgrade_tenant))
        .routes(routes!(rollouts::start_rollout, rollouts::list_rollouts))
        .routes(routes!(rollouts::get_rollout))
        .routes(routes!(rollouts::pause_rollout))
        .routes(routes!(rollouts::resume_rollout))
        .routes(routes!(rollouts::abort_rollout))
}

/// The routes that need no credentials (self-service sign-up), served without the
/// access middleware: each has a rule in `access.rs` all the same, naming it public.
pub fn public() -> OpenApiRouter<Arc<ServerState>> {
    OpenApiRouter::new().routes(routes!(signup::signup)).routes(routes!(signup::activate))
}

fn secrets_api() -> OpenApiRouter<Arc<ServerState>> {
    OpenApiRouter::new()
        .routes(routes!(secrets::list_tenant_secrets))
        .routes(routes!(secrets::put_tenant_secret, secrets::get_tenant_secret, secrets::delete_tenant_secret))
        .routes(routes!(secrets::restore_tenant_secret))
        .routes(routes!(secrets::rotate_tenant_secret))
        .routes(routes!(secrets::list_platform_secrets))
        .routes(routes!(secrets::put_platform_secret, secrets::get_platform_secret, secrets::delete_platform_secret))
        .routes(routes!(secrets::restore_platform_secret))
        .routes(routes!(secrets::rotate_platform_secret))
}

fn queues_api() -> OpenApiRouter<Arc<ServerState>> {
    OpenApiRouter::new()
        .routes(routes!(queues::list_queues))
        .routes(routes!(queues::put_queue, queues::get_queue, queues::delete_queue))
        .routes(routes!(queues::send_message, queues::peek_messages))
        .routes(routes!(queues::send_batch))
        .routes(routes!(queues::receive))
        .routes(routes!(queues::delete_message))
        .routes(routes!(queues::delete_batch))
        .routes(routes!(queues::change_visibility))
        .routes(routes!(queues::redrive))
}

fn workflows_api() -> OpenApiRouter<Arc<ServerState>> {
    OpenApiRouter::new()
        .routes(routes!(workflows::list_state_machines))
        .routes(routes!(workflows::put_state_machine, workflows::get_state_machine))
        .routes(routes!(workflows::start_execution, workflows::list_executions))
        .routes(routes!(workflows::get_execution))
        .routes(routes!(workflows::execution_history))
        .routes(routes!(workflows::stop_execution))
        .routes(routes!(workflows::redrive_execution))
        .routes(routes!(workflows::task_success))
        .routes(routes!(workflows::task_failure))
        .routes(routes!(workflows::task_heartbeat))
}
