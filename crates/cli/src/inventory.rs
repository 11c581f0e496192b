//! The CLI's coverage of the API: every operation of the OpenAPI document and the
//! command that calls it, or why none does. The tests below fail when an operation is
//! added without a command (or an entry here saying why it needs none), when a command
//! named here no longer exists, and when a command or flag has no help text.

/// `operationId` → the command path that calls it.
pub const COMMANDS: &[(&str, &str)] = &[
    // API keys.
    ("list_keys", "keys list"),
    ("create_key", "keys create"),
    ("delete_key", "keys delete"),
    ("rotate_key", "keys rotate"),
    // Audit.
    ("list_audit", "audit list"),
    ("export_audit", "audit export"),
    ("create_export", "audit archive"),
    ("verify_audit", "audit check"),
    // Connections.
    ("list_connections", "connections list"),
    ("get_connection", "connections get"),
    ("put_connection", "connections put"),
    ("delete_connection", "connections delete"),
    // Events.
    ("list_events", "events list"),
    ("put_events", "events put"),
    ("test_pattern", "events test-pattern"),
    // Executions.
    ("list_executions", "executions list"),
    ("start_execution", "executions start"),
    ("get_execution", "executions show"),
    ("execution_history", "executions history"),
    ("redrive_execution", "executions redrive"),
    ("stop_execution", "executions stop"),
    // Functions.
    ("list_functions", "functions list"),
    ("get_function", "functions get"),
    ("put_function", "functions put"),
    ("delete_function", "functions delete"),
    // Hooks.
    ("list_hooks", "hooks list"),
    ("get_hook", "hooks get"),
    ("put_hook", "hooks put"),
    ("delete_hook", "hooks delete"),
    // Policies.
    ("list_policies", "policies list"),
    ("get_policy", "policies get"),
    ("put_policy", "policies put"),
    ("delete_policy", "policies delete"),
    ("check_policy", "policies check"),
    // Plans.
    ("list_plans", "plans list"),
    ("get_plan", "plans get"),
    ("put_plan", "plans put"),
    ("delete_plan", "plans delete"),
    ("patch_plan", "plans patch"),
    // Queues.
    ("list_queues", "queues list"),
    ("get_queue", "queues get"),
    ("put_queue", "queues put"),
    ("delete_queue", "queues delete"),
    ("send_message", "queues send"),
    ("delete_message", "queues ack"),
    ("change_visibility", "queues visibility"),
    ("receive", "queues receive"),
    ("peek_messages", "queues peek"),
    ("redrive", "queues redrive"),
    // Storage.
    ("storage_report", "storage stats"),
    // Reconciliation.
    ("last_reconciliation", "reconciliation show"),
    ("run_reconciliation", "reconciliation run"),
    ("repair_drift", "reconciliation repair"),
    // Releases.
    ("list_releases", "releases list"),
    ("get_release", "releases get"),
    ("put_release", "releases put"),
    ("get_bundle", "releases download"),
    ("put_bundle", "releases put"),
    // Rollouts.
    ("list_rollouts", "rollouts list"),
    ("start_rollout", "rollouts start"),
    ("get_rollout", "rollouts get"),
    ("abort_rollout", "rollouts abort"),
    ("pause_rollout", "rollouts pause"),
    ("resume_rollout", "rollouts resume"),
    // Secrets (the platform's; `--tenant` for a tenant's).
    ("list_platform_secrets", "secrets list"),
    ("get_platform_secret", "secrets get"),
    ("put_platform_secret", "secrets put"),
    ("delete_platform_secret", "secrets delete"),
    ("restore_platform_secret", "secrets restore"),
    ("rotate_platform_secret", "secrets rotate"),
    ("list_tenant_secrets", "secrets list"),
    ("get_tenant_secret", "secrets get"),
    ("put_tenant_secret", "secrets put"),
    ("delete_tenant_secret", "secrets delete"),
    ("restore_tenant_secret", "secrets restore"),
    ("rotate_tenant_secret", "secrets rotate"),
    // Sign-up.
    ("signup", "signup"),
    ("activate", "signup activate"),
    // State machines.
    ("list_state_machines", "state-machines list"),
    ("get_state_machine", "state-machines get"),
    ("put_state_machine", "state-machines put"),
    // Subscriptions.
    ("list_subscriptions", "subscriptions list"),
    ("create_subscription", "subscriptions create"),
    ("get_subscription", "subscriptions get"),
    ("delete_subscription", "subscriptions delete"),
    ("patch_subscription", "subscriptions update"),
    ("list_deliveries", "subscriptions deliveries"),
    ("retry_delivery", "subscriptions retry"),
    ("replay", "subscriptions replay"),
    ("rotate_secret", "subscriptions rotate-secret"),
    // Task tokens.
    ("task_success", "task-tokens success"),
    ("task_failure", "task-tokens failure"),
    ("task_heartbeat", "task-tokens heartbeat"),
    // Tenants.
    ("list_tenants", "tenants list"),
    ("create_tenant", "tenants create"),
    ("get_tenant", "tenants get"),
    ("delete_tenant", "tenants delete"),
    ("patch_tenant", "tenants update"),
    ("tenant_database_credentials", "tenants database-credentials"),
    ("get_entitlements", "entitlements show"),
    ("get_overrides", "overrides show"),
    ("put_overrides", "overrides set"),
    ("delete_overrides", "overrides clear"),
    ("pin_tenant", "tenants pin"),
    ("unpin_tenant", "tenants unpin"),
    ("change_plan", "tenants change-plan"),
    ("list_quotas", "quotas list"),
    ("consume_quota", "quotas consume"),
    ("release_quota", "quotas release"),
    ("tenant_resources", "tenants resources"),
    ("resume_tenant", "tenants resume"),
    ("retry_tenant", "tenants retry"),
    ("suspend_tenant", "tenants suspend"),
    ("upgrade_tenant", "tenants upgrade"),
];

/// Operations no command calls, and why.
pub const NO_COMMAND: &[(&str, &str)] = &[
    ("evaluate_flag", "the OpenFeature Remote Evaluation Protocol, called by OpenFeature SDKs with a tenant key"),
    ("evaluate_flags", "the OpenFeature Remote Evaluation Protocol, called by OpenFeature SDKs with a tenant key"),
    ("send_batch", "the batch form of `queues send` for workers' SDKs"),
    ("delete_batch", "the batch form of `queues ack` for workers' SDKs"),
    ("consume_quotas", "the all-or-nothing batch form of `quotas consume` for services"),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use clap::CommandFactory;

    use super::*;
    use crate::cli::Cli;

    fn operations() -> BTreeSet<String> {
        let doc: serde_json::Value = serde_json::from_str(&tenancy_http::openapi_json()).unwrap();
        let mut ops = BTreeSet::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                if let Some(id) = op.get("operationId").and_then(|v| v.as_str()) {
                    ops.insert(id.to_owned());
                }
            }
        }
        ops
    }

    fn command_exists(path: &str) -> bool {
        let mut cmd = Cli::command();
        for name in path.split(' ') {
            match cmd.find_subcommand(name) {
                Some(sub) => cmd = sub.clone(),
                None => return false,
            }
        }
        true
    }

    #[test]
    fn every_operation_has_a_command() {
        let ops = operations();
        let mapped: BTreeSet<&str> = COMMANDS.iter().chain(NO_COMMAND).map(|(op, _)| *op).collect();
        let missing: Vec<&String> = ops.iter().filter(|op| !mapped.contains(op.as_str())).collect();
        assert!(
            missing.is_empty(),
            "API operations without a CLI command: {missing:?}; add the command and a row in \
             crates/cli/src/inventory.rs (or a row in NO_COMMAND saying why none is needed)"
        );
        let stale: Vec<&&str> = mapped.iter().filter(|op| !ops.contains(**op)).collect();
        assert!(stale.is_empty(), "inventory rows naming operations the API no longer has: {stale:?}");
        for (op, path) in COMMANDS {
            assert!(command_exists(path), "{op}: no command `tenancy {path}`");
        }
    }

    /// Every command and every argument says what it is (`--help`), so that accepted
    /// values are found without the docs.
    #[test]
    fn every_command_and_flag_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") || arg.is_hide_set() {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} <{id}>"));
                }
            }
            for sub in cmd.get_subcommands() {
                let sub_path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_long_about().is_none() && sub.get_name() != "help" {
                    missing.push(sub_path.clone());
                }
                walk(sub, &sub_path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "tenancy", &mut missing);
        assert!(missing.is_empty(), "commands and arguments without help text:\n{}", missing.join("\n"));
    }

    /// No argument of a subcommand has the id of a global one (`token`, `server`,
    /// `output`): its value would replace the global's (a task token sent as the API key).
    #[test]
    fn no_argument_shadows_a_global_one() {
        fn walk(cmd: &clap::Command, globals: &[String], path: &str, clashes: &mut Vec<String>) {
            for sub in cmd.get_subcommands() {
                let sub_path = format!("{path} {}", sub.get_name());
                for arg in sub.get_arguments().filter(|a| !a.is_global_set()) {
                    if globals.iter().any(|g| g == arg.get_id().as_str()) {
                        clashes.push(format!("{sub_path} <{}>", arg.get_id()));
                    }
                }
                walk(sub, globals, &sub_path, clashes);
            }
        }
        let root = Cli::command();
        let globals: Vec<String> =
            root.get_arguments().filter(|a| a.is_global_set()).map(|a| a.get_id().to_string()).collect();
        assert!(globals.contains(&"token".to_owned()), "{globals:?}");
        let mut clashes = Vec::new();
        walk(&root, &globals, "tenancy", &mut clashes);
        assert!(clashes.is_empty(), "arguments with the id of a global one: {clashes:?}");
    }

    /// The completion scripts name the commands (a smoke test of clap_complete's output
    /// for each shell offered).
    #[test]
    fn completions_cover_the_commands() {
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "tenancy", &mut out);
            let text = String::from_utf8(out).unwrap();
            for name in ["subscriptions", "task-tokens", "tenants", "import", "completions"] {
                assert!(text.contains(name), "{shell:?} completions lack {name}");
            }
        }
    }
}
