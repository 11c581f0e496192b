//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};
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

pub(crate) fn document() -> OpenApi {
    let (_, api) = crate::routes::api().split_for_parts();
    let (_, public) = crate::routes::public().split_for_parts();
    let mut doc = <ApiDoc as utoipa::OpenApi>::openapi();
    doc.merge(api);
    doc.merge(public);
    SharedResponses.modify(&mut doc);
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// The document as pretty JSON, as served at `/openapi.json` and checked in.
pub fn openapi_json() -> String {
    document().to_pretty_json().expect("the OpenAPI document serializes")
}
