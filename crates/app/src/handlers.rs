//! The one place where every feature area registers its task handlers with the engine,
//! from the [`Services`] the app is built on. A new area adds its `register` call here
//! (docs/task-handlers.md, "Adding a task handler"); nothing else lists the areas.

use std::sync::Arc;

use tenancy_engine::Registry;

use crate::dataplane::plane::DataPlane;
use crate::services::Services;

/// Every task handler: the engine's own, then each feature area's. The one place a new
/// area adds its `register` call (docs/task-handlers.md).
pub fn handlers(services: &Services, plane: Option<&Arc<DataPlane>>) -> Registry {
    let r = Registry::new();
    tenancy_engine::register_builtin(&r);
    crate::tenants::tasks::register(&r, plane);
    crate::tenants::offboarding::register(&r, services, plane);
    crate::dataplane::tasks::register(&r, plane);
    crate::hooks::tasks::register(&r, services);
    crate::queues::tasks::register(&r);
    crate::functions::tasks::register(&r, services);
    crate::workflows::tasks::register(&r, services);
    crate::releases::tasks::register(&r);
    crate::secrets::tasks::register(&r, services);
    r
}
