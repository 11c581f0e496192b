//! The store conformance suite on both backends.

tenancy_store::store_conformance_suite!(sqlite, tenancy_store::sql::testing::sqlite());
tenancy_store::store_conformance_suite!(postgres, tenancy_store::sql::testing::postgres());
tenancy_store::workflow_conformance_suite!(workflows_sqlite, tenancy_store::sql::testing::sqlite());
tenancy_store::workflow_conformance_suite!(workflows_postgres, tenancy_store::sql::testing::postgres());
tenancy_store::queue_conformance_suite!(queues_sqlite, tenancy_store::sql::testing::sqlite());
tenancy_store::queue_conformance_suite!(queues_postgres, tenancy_store::sql::testing::postgres());
