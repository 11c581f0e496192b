//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::Modify;

use crate::problem::Problem;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Tenancy", description = "Control plane for multi-tenant SaaS: tenants, plans, API keys, events and audit."),
    modifiers(&BearerAuth),
    components(schemas(Problem)),
    tags(
        (name = "plans", description = "Plans: isolation, features and quotas"),
        (name = "tenants", description = "Tenants and their lifecycle"),
        (name = "api-keys", description = "API keys and roles"),
        (name = "signup", description = "Self-service sign-up: no credentials; rate limited per client address and email domain (docs/self-service.md)"),
        (name = "events", description = "The event archive"),
        (name = "subscriptions", description = "Event subscriptions, webhook deliveries, retries and replay"),
        (name = "audit", description = "The audit log"),
        (name = "workflows", description = "State machines (ASL), executions and callback tokens"),
        (name = "hooks", description = "Provisioning hooks: product services called by the lifecycle workflows"),
        (name = "queues", description = "Queues: visibility timeouts, dead-letter queues, redrive, long polling"),
        (name = "entitlements", description = "Entitlements: per-tenant overrides of the plan and the effective view"),
        (name = "secrets", description = "The secret store: versions with stages, envelope encryption, deletion with a recovery window"),
        (name = "policies", description = "Policies: operators' Cedar authorization policies, evaluated with the built-in role policies on every request"),
        (name = "connections", description = "Connections: named credentials that http:invoke, hooks and webhook subscriptions use without holding them"),
        (name = "releases", description = "Releases, their bundles, and tenants' upgrades to them (docs/releases.md)"),
        (name = "functions", description = "Functions (the Lambda role): HTTP endpoints Task states invoke, signed like webhooks"),
        (name = "quotas", description = "Quotas: exact consumption of a tenant's plan quotas (docs/entitlements.md)"),
        (name = "storage", description = "Storage: the tables' sizes and the retention's next prune (docs/storage.md)"),
        (name = "flags", description = "Feature flags over the OpenFeature Remote Evaluation Protocol (OFREP, docs/flags.md): OFREP's JSON, not problem+json, for evaluation failures"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// What every documented operation shares, so the route annotations do not repeat it:
/// a `4XX` response with a problem document (codes in docs/api.md) and the bearer
/// security requirement. An operation that declares either itself keeps its own (a
/// more specific `4XX` description; `security(())` for a public route).
struct SharedResponses;

impl Modify for SharedResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for op in operations.into_iter().flatten() {
                op.responses.responses.entry("4XX".to_owned()).or_insert_with(|| {
                    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
                    ResponseBuilder::new()
                        .description("Problem")
                        .content("application/problem+json", content)
                        .build()
                        .into()
                });
                op.security.get_or_insert_with(|| vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
            }
        }
    }
}

/// One link: source operation, target operation, `(parameter, runtime expression)`s.
type Link = (&'static str, &'static str, &'static [(&'static str, &'static str)]);

/// OpenAPI links between operations (`responses.<code>.links`): where a response
/// names a resource, which operations take it next. Clients and tools follow them; the
/// stateful phase of scripts/schemathesis chains calls along them (create a tenant,
/// then get, patch, suspend, delete that tenant), which random calls alone rarely do.
///
/// Each row: the source operation, the operation it links to, and its parameters as
/// runtime expressions. The link is added to every 2xx response of the source.
const LINKS: &[Link] = &[
    // Tenants: the created tenant's id.
    ("create_tenant", "get_tenant", &[("id", "$response.body#/id")]),
    ("create_tenant", "patch_tenant", &[("id", "$response.body#/id")]),
    ("create_tenant", "delete_tenant", &[("id", "$response.body#/id")]),
    ("create_tenant", "suspend_tenant", &[("id", "$response.body#/id")]),
    ("create_tenant", "resume_tenant", &[("id", "$response.body#/id")]),
    ("create_tenant", "change_plan", &[("id", "$response.body#/id")]),
    ("create_tenant", "get_entitlements", &[("id", "$response.body#/id")]),
    ("create_tenant", "put_overrides", &[("id", "$response.body#/id")]),
    ("create_tenant", "list_quotas", &[("id", "$response.body#/id")]),
    ("create_tenant", "consume_quotas", &[("id", "$response.body#/id")]),
    ("create_tenant", "list_tenant_secrets", &[("id", "$response.body#/id")]),
    ("create_tenant", "tenant_resources", &[("id", "$response.body#/id")]),
    ("put_tenant_secret", "get_tenant_secret", &[("id", "$request.path.id"), ("name", "$request.path.name")]),
    ("put_tenant_secret", "rotate_tenant_secret", &[("id", "$request.path.id"), ("name", "$request.path.name")]),
    ("put_tenant_secret", "delete_tenant_secret", &[("id", "$request.path.id"), ("name", "$request.path.name")]),
    // Plans, keys.
    ("put_plan", "get_plan", &[("id", "$request.path.id")]),
    ("put_plan", "patch_plan", &[("id", "$request.path.id")]),
    ("put_plan", "delete_plan", &[("id", "$request.path.id")]),
    ("create_key", "rotate_key", &[("id", "$response.body#/id")]),
    ("create_key", "delete_key", &[("id", "$response.body#/id")]),
    // Queues: create, send, receive, delete what was received.
    ("put_queue", "get_queue", &[("name", "$request.path.name")]),
    ("put_queue", "send_message", &[("name", "$request.path.name")]),
    ("put_queue", "send_batch", &[("name", "$request.path.name")]),
    ("put_queue", "delete_queue", &[("name", "$request.path.name")]),
    ("send_message", "receive", &[("name", "$request.path.name")]),
    ("send_batch", "receive", &[("name", "$request.path.name")]),
    ("receive", "delete_message", &[("name", "$request.path.name"), ("receipt", "$response.body#/messages/0/receipt")]),
    (
        "receive",
        "change_visibility",
        &[("name", "$request.path.name"), ("receipt", "$response.body#/messages/0/receipt")],
    ),
    ("receive", "delete_batch", &[("name", "$request.path.name")]),
    // Subscriptions.
    ("create_subscription", "get_subscription", &[("id", "$response.body#/id")]),
    ("create_subscription", "patch_subscription", &[("id", "$response.body#/id")]),
    ("create_subscription", "delete_subscription", &[("id", "$response.body#/id")]),
    ("create_subscription", "list_deliveries", &[("id", "$response.body#/id")]),
    ("create_subscription", "rotate_secret", &[("id", "$response.body#/id")]),
    ("create_subscription", "replay", &[("id", "$response.body#/id")]),
    // Releases and rollouts.
    ("put_release", "get_release", &[("version", "$request.path.version")]),
    ("put_release", "put_bundle", &[("version", "$request.path.version")]),
    ("put_release", "get_bundle", &[("version", "$request.path.version")]),
    ("start_rollout", "get_rollout", &[("id", "$response.body#/id")]),
    ("start_rollout", "pause_rollout", &[("id", "$response.body#/id")]),
    ("start_rollout", "resume_rollout", &[("id", "$response.body#/id")]),
    ("start_rollout", "abort_rollout", &[("id", "$response.body#/id")]),
    // Workflows.
    ("start_execution", "get_execution", &[("id", "$response.body#/id")]),
    ("start_execution", "execution_history", &[("id", "$response.body#/id")]),
    ("start_execution", "stop_execution", &[("id", "$response.body#/id")]),
    ("put_state_machine", "get_state_machine", &[("name", "$request.path.name")]),
    // Named resources put by name.
    ("put_hook", "get_hook", &[("name", "$request.path.name")]),
    ("put_hook", "delete_hook", &[("name", "$request.path.name")]),
    ("put_connection", "get_connection", &[("name", "$request.path.name")]),
    ("put_connection", "delete_connection", &[("name", "$request.path.name")]),
    ("put_function", "get_function", &[("name", "$request.path.name")]),
    ("put_function", "delete_function", &[("name", "$request.path.name")]),
    ("put_policy", "get_policy", &[("name", "$request.path.name")]),
    ("put_policy", "delete_policy", &[("name", "$request.path.name")]),
    ("put_platform_secret", "get_platform_secret", &[("name", "$request.path.name")]),
    ("put_platform_secret", "rotate_platform_secret", &[("name", "$request.path.name")]),
    ("put_platform_secret", "delete_platform_secret", &[("name", "$request.path.name")]),
    ("delete_platform_secret", "restore_platform_secret", &[("name", "$request.path.name")]),
];

struct Links;

impl Modify for Links {
    fn modify(&self, openapi: &mut OpenApi) {
        for (from, to, parameters) in LINKS {
            let mut found = false;
            for item in openapi.paths.paths.values_mut() {
                let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
                for op in operations.into_iter().flatten() {
                    if op.operation_id.as_deref() != Some(*from) {
                        continue;
                    }
                    found = true;
                    for (code, response) in op.responses.responses.iter_mut() {
                        let RefOr::T(response) = response else { continue };
                        if !code.starts_with('2') {
                            continue;
                        }
                        let mut link = LinkBuilder::new().operation_id(*to);
                        for (name, value) in *parameters {
                            link = link.parameter(*name, *value);
                        }
                        response.links.insert((*to).to_owned(), RefOr::T(link.build()));
                    }
                }
            }
            assert!(found, "an OpenAPI link from {from}, which is no operation");
        }
    }
}

pub(crate) fn document() -> OpenApi {
    let (_, api) = crate::routes::api().split_for_parts();
    let (_, public) = crate::routes::public().split_for_parts();
    let mut doc = <ApiDoc as utoipa::OpenApi>::openapi();
    doc.merge(api);
    doc.merge(public);
    SharedResponses.modify(&mut doc);
    Links.modify(&mut doc);
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// The document as pretty JSON, as served at `/openapi.json` and checked in.
pub fn openapi_json() -> String {
    let mut doc = serde_json::to_value(document()).expect("the OpenAPI document serializes");
    camel_case_links(&mut doc);
    serde_json::to_string_pretty(&doc).expect("the OpenAPI document serializes")
}

/// utoipa 5 writes a link's fields in snake case (`operation_id`), which no OpenAPI
/// tool reads: the specification's names are `operationId`, `operationRef` and
/// `requestBody`.
fn camel_case_links(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else { return };
    for item in paths.values_mut().filter_map(|i| i.as_object_mut()) {
        for op in item.values_mut() {
            let Some(responses) = op.get_mut("responses").and_then(|r| r.as_object_mut()) else { continue };
            for response in responses.values_mut() {
                let Some(links) = response.get_mut("links").and_then(|l| l.as_object_mut()) else { continue };
                for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
                    for (snake, camel) in [
                        ("operation_id", "operationId"),
                        ("operation_ref", "operationRef"),
                        ("request_body", "requestBody"),
                    ] {
                        if let Some(v) = link.remove(snake) {
                            link.insert(camel.to_owned(), v);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// Every link names an operation of the document and fills exactly its path
    /// parameters, so a client following it builds a URL the server routes.
    #[test]
    fn links_name_operations_and_fill_their_path_parameters() {
        let doc: Value = serde_json::from_str(&super::openapi_json()).expect("the document");
        let mut path_params = std::collections::HashMap::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for op in item.as_object().expect("path item").values() {
                let Some(id) = op["operationId"].as_str() else { continue };
                let params: std::collections::BTreeSet<String> = path
                    .split('/')
                    .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                    .map(str::to_owned)
                    .collect();
                path_params.insert(id.to_owned(), params);
            }
        }
        let mut links = 0;
        for item in doc["paths"].as_object().expect("paths").values() {
            for op in item.as_object().expect("path item").values() {
                let Some(responses) = op["responses"].as_object() else { continue };
                for response in responses.values() {
                    let Some(found) = response["links"].as_object() else { continue };
                    for (name, link) in found {
                        let target = link["operationId"].as_str().expect("operationId");
                        let wanted = path_params.get(target).unwrap_or_else(|| panic!("link {name}: no {target}"));
                        let given: std::collections::BTreeSet<String> =
                            link["parameters"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default();
                        assert_eq!(&given, wanted, "link {name} from {}", op["operationId"]);
                        links += 1;
                    }
                }
            }
        }
        assert!(links >= super::LINKS.len(), "{links} links in the document for {} rows", super::LINKS.len());
    }
}
