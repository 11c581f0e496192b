//! The store API's conformance suites on both engines. Their case lists are checked by
//! crates/store/tests/case_lists.rs.

tenancy_store::store_conformance_suite!(sqlite, tenancy_store_sql::testing::sqlite());
tenancy_store::store_conformance_suite!(postgres, tenancy_store_sql::testing::postgres());
tenancy_store::workflow_conformance_suite!(workflows_sqlite, tenancy_store_sql::testing::sqlite());
tenancy_store::workflow_conformance_suite!(workflows_postgres, tenancy_store_sql::testing::postgres());
tenancy_store::queue_conformance_suite!(queues_sqlite, tenancy_store_sql::testing::sqlite());
tenancy_store::queue_conformance_suite!(queues_postgres, tenancy_store_sql::testing::postgres());
