//! The guard the engine asks before each task: the policy of which execution may run
//! which resource, kept outside the engine (the app's lifecycle rules implement it).

use async_trait::async_trait;
use serde_json::Value;
use tenancy_asl::Failure;
use tenancy_store::{Effects, ExecutionRecord, StepState, Store};

/// Admits a task before its handler runs and stamps what the handler produced.
#[async_trait]
pub trait TaskGuard: Send + Sync + 'static {
    /// Whether `rec` may run `resource` with `parameters` now; a refusal fails the task
    /// with the returned error (a Catch sees it) and the handler never runs.
    async fn admit(
        &self,
        store: &dyn Store,
        rec: &ExecutionRecord,
        resource: &str,
        parameters: &Value,
    ) -> Result<(), Failure>;

    /// Adjusts a successful task's effects before they commit with its step (the app
    /// records the execution, and the caller who started it, in audit entries).
    fn stamp(&self, _rec: &ExecutionRecord, _effects: &mut Effects) {}

    /// Adds to the commit that ends `rec` (`end`: its final state, SUCCEEDED, FAILED,
    /// TIMED_OUT or ABORTED) what that end means beyond the execution, committed in the
    /// same transaction (the app settles a tenant its lifecycle execution left in a
    /// transitional status). `effects` holds what the commit already carries (the
    /// steps fused into it). An error leaves the end uncommitted: the execution is
    /// claimed again later.
    async fn settle(
        &self,
        _store: &dyn Store,
        _rec: &ExecutionRecord,
        _end: &StepState,
        _effects: &mut Effects,
    ) -> tenancy_domain::Result<()> {
        Ok(())
    }
}

/// A guard that admits every task and stamps nothing (engine tests, benchmarks).
pub struct OpenGuard;

#[async_trait]
impl TaskGuard for OpenGuard {
    async fn admit(&self, _: &dyn Store, _: &ExecutionRecord, _: &str, _: &Value) -> Result<(), Failure> {
        Ok(())
    }
}
