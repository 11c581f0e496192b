//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi;
use utoipa::Modify;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Tenancy", description = "Control plane for multi-tenant SaaS: tenants, plans, API keys, events and audit."),
    modifiers(&BearerAuth),
    tags(
        (name = "plans", description = "Plans: isolation, features and quotas"),
        (name = "tenants", description = "Tenants and their lifecycle"),
        (name = "api-keys", description = "API keys and roles"),
        (name = "events", description = "The event archive"),
        (name = "subscriptions", description = "Event subscriptions, webhook deliveries, retries and replay"),
        (name = "audit", description = "The audit log"),
        (name = "workflows", description = "State machines (ASL), executions and callback tokens"),
        (name = "hooks", description = "Provisioning hooks: product services called by the lifecycle workflows"),
        (name = "queues", description = "Queues: visibility timeouts, dead-letter queues, redrive, long polling"),
        (name = "functions", description = "Functions (the Lambda role): HTTP endpoints Task states invoke, signed like webhooks"),
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

pub(crate) fn document() -> OpenApi {
    let (_, api) = crate::routes::api().split_for_parts();
    let mut doc = <ApiDoc as utoipa::OpenApi>::openapi();
    doc.merge(api);
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// The document as pretty JSON, as served at `/openapi.json` and checked in.
pub fn openapi_json() -> String {
    document().to_pretty_json().expect("the OpenAPI document serializes")
}
