//! The operations of the workflow API: state machines, executions, callback tokens.

use serde_json::{json, Value};
use tenancy_asl::StateMachine;
use tenancy_domain::apikey::Role;
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_store::{
    status, Effects, ExecutionFilter, ExecutionRecord, HistoryRecord, StateMachineRecord, StepCommit, StepState,
};

use crate::context::Permission as P;
use crate::tenants::lifecycle::{LIFECYCLE_MACHINE_PREFIX, RESERVED_PREFIX};
use crate::{App, OpContext};
use tenancy_engine::{self as engine, Pending};

pub use tenancy_domain::api::{
    ExecutionView, HistoryEventView, StartExecution, StateMachineSpec, StateMachineView, StopExecution, TaskFailure,
    TaskSuccess,
};

/// Filters of `GET /v1/executions`.
#[derive(Debug, Clone, Default)]
pub struct ExecutionQuery {
    pub status: Option<String>,
    pub state_machine: Option<String>,
    pub tenant_id: Option<String>,
    /// Only RUNNING executions without progress for the configured time.
    pub stuck: bool,
}

/// Replaces every task token in the strings of `v` (also inside longer strings, as
/// `States.Format` may put it) with `[redacted]`.
pub fn redact_task_tokens(v: &mut Value) {
    const PREFIX: &str = tenancy_asl::step::TASK_TOKEN_PREFIX;
    match v {
        Value::String(s) if s.contains(PREFIX) => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(i) = rest.find(PREFIX) {
                out.push_str(&rest[..i]);
                let after = &rest[i + PREFIX.len()..];
                let len = after.bytes().take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')).count();
                out.push_str("[redacted]");
                rest = &after[len..];
            }
            out.push_str(rest);
            *s = out;
        }
        Value::Array(items) => items.iter_mut().for_each(redact_task_tokens),
        Value::Object(map) => map.values_mut().for_each(redact_task_tokens),
        _ => {}
    }
}

fn validate_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 80
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!("{kind} {name:?} is invalid: use 1-80 letters, digits, '-', '_' and '.'")))
    }
}

/// Refuses a user definition with a Task on a reserved resource, on a resource no
/// registered handler serves (except a pure callback wait: `<anything>.waitForTaskToken`
/// with no handler for its base just waits for its token), or putting events with a
/// reserved source written in the definition (a source computed at run time is checked
/// when the task runs). Walks Parallel branches and Map processors. Adds to `functions`
/// the `(state, function)` pairs of the tasks naming a function statically, for
/// [`App::check_functions`]. With `lifecycle` (a `tenancy.lifecycle.*` state machine)
/// the reserved lifecycle steps are allowed.
fn check_resources(
    definition: &Value,
    handlers: &engine::Registry,
    lifecycle: bool,
    functions: &mut Vec<(String, String)>,
) -> Result<()> {
    use crate::tenants::lifecycle::{is_reserved_resource, is_reserved_source, PUT_EVENTS_RESOURCES};
    let Some(states) = definition["States"].as_object() else { return Ok(()) };
    for (name, state) in states {
        let resource = state["Resource"].as_str().filter(|_| state["Type"] == "Task");
        if let Some(resource) = resource {
            if !lifecycle && is_reserved_resource(resource) {
                return Err(Error::InvalidRequest {
                    code: ErrorCode::ReservedResource,
                    message: format!(
                        "state {name:?}: the resource {resource:?} is reserved to the lifecycle workflows (the \
                         built-in ones and an admin's {LIFECYCLE_MACHINE_PREFIX}* state machines, see \
                         docs/provisioning.md)"
                    ),
                });
            }
            if let Some(message) = unknown_resource(resource, handlers) {
                return Err(Error::InvalidRequest {
                    code: ErrorCode::UnknownResource,
                    message: format!("state {name:?}: {message}"),
                });
            }
            if let Some(function) = crate::functions::ops::named_function(resource, state) {
                functions.push((name.clone(), function));
            }
            if PUT_EVENTS_RESOURCES.contains(&resource) {
                for args in [&state["Parameters"], &state["Arguments"]] {
                    let entries = args["Entries"].as_array().into_iter().flatten();
                    let sources = entries.filter_map(|e| e["Source"].as_str());
                    if let Some(source) = sources.filter(|s| !s.starts_with("{%")).find(|s| is_reserved_source(s)) {
                        return Err(Error::InvalidRequest {
                            code: ErrorCode::ReservedEventSource,
                            message: format!(
                                "state {name:?}: the event source {source:?} is reserved to Tenancy's own events"
                            ),
                        });
                    }
                }
            }
        }
        for branch in state["Branches"].as_array().into_iter().flatten() {
            check_resources(branch, handlers, lifecycle, functions)?;
        }
        check_resources(&state["Iterator"], handlers, lifecycle, functions)?;
        check_resources(&state["ItemProcessor"], handlers, lifecycle, functions)?;
    }
    Ok(())
}

/// Why no handler serves a Task's `resource` as the engine looks it up when the task
/// runs (`None` when one does): the exact name, suffixes included (`.sync` is not
/// special) or any function ARN (the function handler serves them all, see
/// [`engine::Registry::get`]), except that `<base>.waitForTaskToken` is always accepted (the handler of
/// `<base>` runs first if there is one, otherwise the execution just waits for its
/// token). A resource written as a JSONata expression (`{% ... %}`) is left to the
/// run-time check.
fn unknown_resource(resource: &str, handlers: &engine::Registry) -> Option<String> {
    if resource.ends_with(engine::WAIT_FOR_TASK_TOKEN) || resource.trim_start().starts_with("{%") {
        return None;
    }
    if handlers.get(resource).is_some() {
        return None;
    }
    Some(format!(
        "no task handler serves the resource {resource:?}; see docs/task-handlers.md for the resources there are"
    ))
}

/// What replaces an internal URL in what tenant and viewer keys read.
pub const REDACTED: &str = "[redacted]";

/// Whether the caller reads built-in lifecycle executions without their internals:
/// tenant and viewer keys do not see the provisioning hooks' URLs (internal
/// endpoints of product services) that these executions carry, nor the key that
/// started them.
fn redacts_internals(ctx: &OpContext, state_machine: &str) -> bool {
    use tenancy_domain::apikey::Role;
    crate::tenants::lifecycle::is_builtin_machine(state_machine)
        && matches!(ctx.principal.role, Role::Tenant | Role::Viewer)
}

/// Replaces every `url` string in `v` with [`REDACTED`], and who started a lifecycle
/// execution (`started_by`: an operator's key id).
fn redact_urls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if (k == "url" && x.is_string()) || k == "started_by" {
                    *x = Value::String(REDACTED.into());
                } else {
                    redact_urls(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_urls),
        _ => {}
    }
}

fn redacted_view(ctx: &OpContext, mut view: ExecutionView) -> ExecutionView {
    if redacts_internals(ctx, &view.state_machine) {
        redact_urls(&mut view.input);
        if let Some(o) = &mut view.output {
            redact_urls(o);
        }
    }
    view
}

fn not_running(rec: &ExecutionRecord, what: &str) -> Error {
    Error::Conflict {
        code: ErrorCode::ExecutionNotRunning,
        message: format!("cannot {what} execution {:?}: it is {}", rec.id, rec.status),
    }
}

/// A payload given to the API over Step Functions' 256 KiB: 400 `data-limit-exceeded`.
fn check_payload(what: &str, v: &Value) -> Result<()> {
    let size = tenancy_asl::step::payload_size(v);
    if size > engine::MAX_PAYLOAD_BYTES {
        return Err(Error::InvalidRequest {
            code: ErrorCode::DataLimitExceeded,
            message: format!(
                "the {what} is {size} bytes of JSON, more than the limit of {} (States.DataLimitExceeded)",
                engine::MAX_PAYLOAD_BYTES
            ),
        });
    }
    Ok(())
}

/// Optimistic retries when a worker moved the execution under an API call.
const MOVED_RETRIES: usize = 5;
/// How long a callback for a token not recorded yet waits for the step that records it.
const CALLBACK_RACE: std::time::Duration = std::time::Duration::from_secs(2);

impl App {
    pub(crate) fn scoped_execution(&self, ctx: &OpContext, rec: ExecutionRecord) -> Result<ExecutionRecord> {
        if let Some(own) = &ctx.principal.tenant_id {
            if rec.tenant_id.as_deref() != Some(own.as_str()) {
                return Err(Error::not_found("execution", rec.id));
            }
        }
        Ok(rec)
    }

    /// Refuses a start beyond the caps on RUNNING executions of the state machine and of
    /// the tenant (429 `too-many-requests`). Counted before the insert, so concurrent
    /// starts can pass a cap by their number.
    pub(crate) async fn check_execution_caps(&self, state_machine: &str, tenant_id: Option<&str>) -> Result<()> {
        let (per_machine, per_tenant) = self.execution_caps;
        let wf = self.engine.workflows();
        if wf.execution_running_count(Some(state_machine), None, None, per_machine).await? >= per_machine {
            return Err(Error::TooManyRequests(format!(
                "state machine {state_machine:?} has {per_machine} RUNNING executions, its cap: retry when some finished"
            )));
        }
        if let Some(t) = tenant_id {
            if wf.execution_running_count(None, Some(t), Some(engine::LIFECYCLE_PREFIX), per_tenant).await?
                >= per_tenant
            {
                return Err(Error::TooManyRequests(format!(
                    "tenant {t:?} has {per_tenant} RUNNING executions, its cap: retry when some finished"
                )));
            }
        }
        Ok(())
    }

    /// Creates a state machine or adds a version; returns it and whether it changed.
    pub async fn state_machine_put(
        &self,
        ctx: &OpContext,
        name: &str,
        spec: StateMachineSpec,
    ) -> Result<(StateMachineView, bool)> {
        ctx.authorize(P::WorkflowWrite)?;
        // A lifecycle state machine runs with the lifecycle's privileges: admins only.
        let lifecycle = crate::tenants::lifecycle::is_custom_lifecycle_machine(name);
        if lifecycle && ctx.principal.role != Role::Admin {
            return Err(Error::Forbidden(format!(
                "role {} may not define lifecycle state machines ({LIFECYCLE_MACHINE_PREFIX}*): admins only",
                ctx.principal.role.as_str()
            )));
        }
        validate_name("state machine name", name)?;
        if lifecycle && name.len() == LIFECYCLE_MACHINE_PREFIX.len() {
            return Err(Error::invalid(format!(
                "a lifecycle state machine needs a name after {LIFECYCLE_MACHINE_PREFIX:?}"
            )));
        }
        if name.starts_with(RESERVED_PREFIX) && !lifecycle {
            return Err(Error::InvalidRequest {
                code: ErrorCode::ReservedName,
                message: format!(
                    "state machine names starting with {RESERVED_PREFIX:?} are reserved (except \
                     {LIFECYCLE_MACHINE_PREFIX:?}: an admin's lifecycle state machines)"
                ),
            });
        }
        StateMachine::parse(&spec.definition)
            .map_err(|e| Error::InvalidRequest { code: ErrorCode::InvalidDefinition, message: e.to_string() })?;
        let mut functions = Vec::new();
        check_resources(&spec.definition, self.engine.handlers(), lifecycle, &mut functions)?;
        self.check_functions(&functions).await?;
        crate::retention::check_retention_days(spec.retention_days)?;
        let audit = ctx.audit("state_machine.put", format!("state-machine/{name}"), None, json!({}));
        let (rec, added) = self
            .engine
            .workflows()
            .state_machine_put(name, &spec.definition, &Effects::none().with_audit(audit))
            .await?;
        let retention = self.retention_of(name).await?;
        if retention != spec.retention_days {
            let audit = ctx.audit(
                "state_machine.retention",
                format!("state-machine/{name}"),
                None,
                json!({"retention_days": spec.retention_days}),
            );
            self.store.retention().retention_set(name, spec.retention_days, &Effects::none().with_audit(audit)).await?;
        }
        let mut view: StateMachineView = rec.into();
        view.retention_days = spec.retention_days;
        Ok((view, added))
    }

    pub async fn state_machine_get(&self, ctx: &OpContext, name: &str) -> Result<StateMachineView> {
        ctx.authorize(P::StateMachineRead)?;
        let mut view: StateMachineView = self.engine.workflows().state_machine_get(name, None).await?.into();
        view.retention_days = self.retention_of(name).await?;
        Ok(view)
    }

    pub async fn state_machine_list(&self, ctx: &OpContext, page: &PageRequest) -> Result<Page<StateMachineView>> {
        ctx.authorize(P::StateMachineRead)?;
        let p = self.engine.workflows().state_machine_list(page).await?;
        let own: std::collections::HashMap<String, u32> =
            self.store.retention().retention_list().await?.into_iter().collect();
        let items = p
            .items
            .into_iter()
            .map(|r| {
                let days = own.get(&r.name).copied();
                let mut view: StateMachineView = r.into();
                view.retention_days = days;
                view
            })
            .collect();
        Ok(Page { items, next_cursor: p.next_cursor })
    }

    /// A state machine's own retention in days, if it has one.
    async fn retention_of(&self, name: &str) -> Result<Option<u32>> {
        Ok(self.store.retention().retention_list().await?.into_iter().find(|(n, _)| n == name).map(|(_, d)| d))
    }

    /// Registers (or updates) the built-in lifecycle state machines.
    pub async fn register_builtin_workflows(&self) -> Result<()> {
        for (name, _) in crate::tenants::lifecycle::BUILTIN_MACHINES {
            self.builtin_machine(name).await?;
        }
        Ok(())
    }

    /// The latest stored version of a built-in state machine, storing its definition
    /// when it changed.
    pub(crate) async fn builtin_machine(&self, name: &str) -> Result<StateMachineRecord> {
        if let Some(rec) = self.builtins.lock().expect("builtins lock").get(name) {
            return Ok(rec.clone());
        }
        let (_, text) = crate::tenants::lifecycle::BUILTIN_MACHINES
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| Error::internal(format!("no built-in state machine {name:?}")))?;
        let definition: Value = serde_json::from_str(text).map_err(Error::internal)?;
        StateMachine::parse(&definition).map_err(|e| Error::internal(format!("built-in {name}: {e}")))?;
        // Replicas starting together on a fresh database race to store version 1; the
        // loser's insert conflicts, and its second try finds the winner's equal definition.
        let mut tries = 0;
        let rec = loop {
            match self.engine.workflows().state_machine_put(name, &definition, &Effects::none()).await {
                Err(Error::Conflict { code: ErrorCode::Conflict, .. }) if tries < 3 => tries += 1,
                r => break r?.0,
            }
        };
        self.builtins.lock().expect("builtins lock").insert(name.to_owned(), rec.clone());
        Ok(rec)
    }

    /// Starts an execution; a repeated name returns the existing one (`false`).
    pub async fn execution_start(&self, ctx: &OpContext, req: StartExecution) -> Result<(ExecutionView, bool)> {
        ctx.authorize(P::WorkflowWrite)?;
        if let Some(name) = &req.name {
            validate_name("execution name", name)?;
        }
        if let Some(t) = &req.tenant_id {
            tenancy_domain::ids::validate_slug("tenant", t)?;
        }
        if let Some(input) = &req.input {
            check_payload("input", input)?;
        }
        if req.state_machine.starts_with(RESERVED_PREFIX) {
            return Err(Error::InvalidRequest {
                code: ErrorCode::ReservedName,
                message: "lifecycle state machines (built-in ones and tenancy.lifecycle.*) are started by the \
                          tenant operations"
                    .into(),
            });
        }
        let sm = match self.engine.workflows().state_machine_get(&req.state_machine, None).await {
            Err(Error::NotFound { .. }) => {
                return Err(Error::InvalidRequest {
                    code: ErrorCode::UnknownStateMachine,
                    message: format!("state machine {:?} does not exist", req.state_machine),
                })
            }
            r => r?,
        };
        if let Some(t) = &req.tenant_id {
            match self.store().tenant_get(t).await {
                Err(Error::NotFound { .. }) => {
                    return Err(Error::InvalidRequest {
                        code: ErrorCode::UnknownTenant,
                        message: format!("tenant {t:?} does not exist: an execution's tenant_id names a tenant"),
                    })
                }
                r => r?,
            };
        }
        self.check_execution_caps(&sm.name, req.tenant_id.as_deref()).await?;
        let input = req.input.unwrap_or_else(|| json!({}));
        let new = self.engine.prepare_start(&sm, req.name, input, req.tenant_id).await?;
        let audit = ctx.audit(
            "execution.start",
            format!("execution/{}", new.id),
            new.tenant_id.as_deref(),
            json!({"state_machine": sm.name, "version": sm.version, "name": new.name}),
        );
        let fx = engine::start_effects(&new).with_audit(audit);
        let (rec, created) = self.engine.workflows().execution_start(&new, &fx).await?;
        if created {
            self.engine.notify();
        }
        Ok((rec.into(), created))
    }

    pub async fn execution_get(&self, ctx: &OpContext, id: &str) -> Result<ExecutionView> {
        ctx.authorize(P::ExecutionRead)?;
        let rec = self.engine.workflows().execution_get(id).await?;
        Ok(redacted_view(ctx, self.scoped_execution(ctx, rec)?.into()))
    }

    pub async fn execution_list(
        &self,
        ctx: &OpContext,
        q: ExecutionQuery,
        page: &PageRequest,
    ) -> Result<Page<ExecutionView>> {
        ctx.authorize(P::ExecutionRead)?;
        if let Some(s) = &q.status {
            if !status::ALL.contains(&s.as_str()) {
                return Err(Error::invalid(format!("unknown status {s:?}: use one of {}", status::ALL.join(", "))));
            }
        }
        let mut filter = ExecutionFilter {
            status: q.status,
            state_machine: q.state_machine,
            tenant_id: q.tenant_id,
            updated_before: q.stuck.then(|| Timestamp::now().plus_millis(-(self.stuck_after.as_millis() as i64))),
        };
        if let Some(own) = &ctx.principal.tenant_id {
            if filter.tenant_id.as_ref().is_some_and(|t| t != own) {
                return Ok(Page { items: vec![], next_cursor: None });
            }
            filter.tenant_id = Some(own.clone());
        }
        let p = self.engine.workflows().execution_list(&filter, page).await?;
        let items = p.items.into_iter().map(|r| redacted_view(ctx, r.into())).collect();
        Ok(Page { items, next_cursor: p.next_cursor })
    }

    pub async fn execution_history(
        &self,
        ctx: &OpContext,
        id: &str,
        page: &PageRequest,
    ) -> Result<Page<HistoryEventView>> {
        let execution = self.execution_get(ctx, id).await?;
        let p = self.engine.workflows().execution_history(id, page).await?;
        let redact = redacts_internals(ctx, &execution.state_machine);
        // Task tokens complete tasks: tenant and viewer keys read history, never them.
        let hide_tokens = matches!(ctx.principal.role, Role::Tenant | Role::Viewer);
        let items = p
            .items
            .into_iter()
            .map(|mut h| {
                if hide_tokens {
                    redact_task_tokens(&mut h.details);
                }
                let mut view = HistoryEventView::from(h);
                if redact {
                    redact_urls(&mut view.details);
                }
                view
            })
            .collect();
        Ok(Page { items, next_cursor: p.next_cursor })
    }

    /// Stops a running execution: `ABORTED`.
    pub async fn execution_stop(&self, ctx: &OpContext, id: &str, req: StopExecution) -> Result<ExecutionView> {
        ctx.authorize(P::WorkflowWrite)?;
        for _ in 0..MOVED_RETRIES {
            let rec = self.engine.workflows().execution_get(id).await?;
            if rec.status != status::RUNNING {
                return Err(not_running(&rec, "stop"));
            }
            let cursor = engine::parse_cursor(&rec)?;
            let now = Timestamp::now();
            let event = HistoryRecord {
                event_id: cursor.next_event_id as i64,
                kind: "ExecutionAborted".into(),
                state: None,
                details: json!({"error": req.error, "cause": req.cause}),
                time: now,
            };
            let audit = ctx.audit("execution.stop", format!("execution/{id}"), rec.tenant_id.as_deref(), json!({}));
            let mut c = cursor.clone();
            c.next_event_id += 1;
            let mut commit = StepCommit {
                execution_id: rec.id.clone(),
                expected_seq: rec.seq,
                state: StepState {
                    status: status::ABORTED.into(),
                    cursor: Some(serde_json::to_value(&c).map_err(Error::internal)?),
                    pending: rec.pending.clone(),
                    error: req.error.clone(),
                    cause: req.cause.clone(),
                    stopped_at: Some(now),
                    history: vec![event],
                    ..StepState::default()
                },
                effects: Effects::none().with_audit(audit),
                ..StepCommit::default()
            };
            // A tenant's lifecycle execution stopped before it settled its tenant
            // settles it in the same commit (guarded by the tenant's version).
            crate::tenants::lifecycle::settle_end(&*self.store, &rec, &commit.state, &mut commit.effects).await?;
            match self.commit_one(commit).await {
                Err(Error::Conflict { code: ErrorCode::ExecutionMoved, .. }) => continue,
                Err(Error::PreconditionFailed { .. }) => continue,
                r => r?,
            }
            return self.execution_get(ctx, id).await;
        }
        Err(Error::Unavailable(format!("execution {id:?} kept moving; retry")))
    }

    /// Resumes a failed execution from the step that failed it, keeping its history.
    pub async fn execution_redrive(&self, ctx: &OpContext, id: &str) -> Result<ExecutionView> {
        ctx.authorize(P::WorkflowWrite)?;
        let wf = self.engine.workflows();
        let rec = wf.execution_get(id).await?;
        if rec.status != status::FAILED {
            // A TIMED_OUT execution's TimeoutSeconds counts from its start: it would time
            // out again at once.
            return Err(Error::Conflict {
                code: ErrorCode::NotRedrivable,
                message: format!("execution {id:?} is {}: only FAILED executions can be redriven", rec.status),
            });
        }
        let point = wf.execution_redrive_point(id).await?.ok_or_else(|| Error::Conflict {
            code: ErrorCode::NotRedrivable,
            message: format!("execution {id:?} failed before its first step: start a new execution"),
        })?;
        let last = engine::parse_cursor(&rec)?;
        if engine::failed_at_history_limit(&rec) {
            // It would run into the limit again at once.
            return Err(Error::Conflict {
                code: ErrorCode::NotRedrivable,
                message: format!(
                    "execution {id:?} failed at the limit of {} history events: start a new execution",
                    engine::MAX_HISTORY_EVENTS
                ),
            });
        }
        let mut cursor: tenancy_asl::Cursor = serde_json::from_value(point.cursor).map_err(Error::internal)?;
        let now = Timestamp::now();
        let event_id = last.next_event_id;
        cursor.next_event_id = event_id + 1;
        cursor.retry_counts.iter_mut().for_each(|n| *n = 0);
        let mut pending: Pending = serde_json::from_value(point.pending).map_err(Error::internal)?;
        let mut token = None;
        let mut wake = Some(now);
        if let Pending::Callback { request, token_hash, .. } = pending {
            let timeout_at = request.timeout_seconds.map(|s| now.millis() + s as i64 * 1000);
            let heartbeat_at = request.heartbeat_seconds.map(|s| now.millis() + s as i64 * 1000);
            // The token handed out before the failure completes the redriven task.
            token = token_hash.clone();
            wake = match (timeout_at, heartbeat_at) {
                (Some(a), Some(b)) => Some(Timestamp(a.min(b))),
                (a, b) => a.or(b).map(Timestamp),
            };
            pending = Pending::Callback { request, timeout_at, heartbeat_at, token_hash };
        }
        let audit = ctx.audit("execution.redrive", format!("execution/{id}"), rec.tenant_id.as_deref(), json!({}));
        let commit = StepCommit {
            execution_id: rec.id.clone(),
            expected_seq: rec.seq,
            state: StepState {
                status: status::RUNNING.into(),
                cursor: Some(serde_json::to_value(&cursor).map_err(Error::internal)?),
                pending: Some(serde_json::to_value(&pending).map_err(Error::internal)?),
                task_token: token,
                wake_at: wake,
                history: vec![HistoryRecord {
                    event_id: event_id as i64,
                    kind: "ExecutionRedriven".into(),
                    state: None,
                    details: json!({"redriveCount": rec.redrive_count + 1}),
                    time: now,
                }],
                ..StepState::default()
            },
            redrive_count: Some(rec.redrive_count + 1),
            effects: Effects::none().with_audit(audit),
            ..StepCommit::default()
        };
        self.commit_one(commit).await?;
        self.engine.notify();
        self.execution_get(ctx, id).await
    }

    pub(crate) async fn commit_one(&self, commit: StepCommit) -> Result<()> {
        let mut r = self.engine.workflows().execution_commit(std::slice::from_ref(&commit)).await?;
        r.pop().unwrap_or(Ok(()))
    }

    /// The execution waiting for `token`, with its pending callback.
    ///
    /// A task handler hands the token out (a queue message, an HTTP call) before the
    /// engine commits the step that records it, so a fast worker can call back first.
    /// An unknown token is therefore looked up again for up to [`CALLBACK_RACE`]
    /// before it is 404.
    pub(crate) async fn waiting(&self, ctx: &OpContext, token: &str) -> Result<(ExecutionRecord, Pending)> {
        ctx.authorize(P::TaskCallback)?;
        let deadline = std::time::Instant::now() + CALLBACK_RACE;
        loop {
            let found = match self.engine.workflows().execution_by_token(&engine::token_hash(token)).await {
                Ok(rec) => match engine::parse_pending(&rec) {
                    Some(p @ Pending::Callback { .. }) if rec.status == status::RUNNING => Some((rec, p)),
                    _ => None,
                },
                Err(Error::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
            match found {
                Some(found) => return Ok(found),
                None if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(25)).await
                }
                None => return Err(Error::not_found("task token", token)),
            }
        }
    }

    pub(crate) async fn complete_callback(
        &self,
        ctx: &OpContext,
        token: &str,
        outcome: Result<Value, TaskFailure>,
    ) -> Result<()> {
        if let Ok(output) = &outcome {
            check_payload("output", output)?;
        }
        for _ in 0..MOVED_RETRIES {
            let (rec, _) = self.waiting(ctx, token).await?;
            let machine = self.engine.machine(&rec.state_machine, rec.version).await?;
            let cursor = engine::parse_cursor(&rec)?;
            let ectx = engine::context(&rec);
            let now = Timestamp::now().millis();
            let (m, at, reported) = (machine.clone(), cursor.clone(), outcome.clone());
            // On the blocking pool: the interpreter runs up to a step's transitions.
            let step = engine::interpret(move || match &reported {
                Ok(output) => m.task_succeeded(&ectx, &at, output.clone(), now),
                Err(f) => m.task_failed(
                    &ectx,
                    &at,
                    f.error.as_deref().unwrap_or("States.TaskFailed"),
                    f.cause.as_deref(),
                    now,
                ),
            })
            .await
            .map_err(Error::internal)?
            .map_err(|e| Error::conflict(e.to_string()))?;
            let step = engine::within_history_limit(step, &cursor);
            let mut prepared = self.engine.prepare(step, now);
            prepared.state.wake_at =
                engine::cap_wake(prepared.state.wake_at, engine::execution_deadline(&machine, &rec));
            let action = if outcome.is_ok() { "task.success" } else { "task.failure" };
            let audit = ctx.audit(action, format!("execution/{}", rec.id), rec.tenant_id.as_deref(), json!({}));
            let (mut commit, _) = self.engine.commit_of(&rec, prepared, Effects::none().with_audit(audit));
            commit.keep_lease = false;
            match self.commit_one(commit).await {
                Err(Error::Conflict { code: ErrorCode::ExecutionMoved, .. }) => continue,
                r => r?,
            }
            self.engine.notify();
            return Ok(());
        }
        Err(Error::Unavailable("the execution kept moving; retry".into()))
    }

    pub async fn task_success(&self, ctx: &OpContext, token: &str, output: Value) -> Result<()> {
        self.complete_callback(ctx, token, Ok(output)).await
    }

    pub async fn task_failure(&self, ctx: &OpContext, token: &str, failure: TaskFailure) -> Result<()> {
        self.complete_callback(ctx, token, Err(failure)).await
    }

    /// Pushes a callback task's heartbeat deadline.
    pub async fn task_heartbeat(&self, ctx: &OpContext, token: &str) -> Result<()> {
        for _ in 0..MOVED_RETRIES {
            let (rec, pending) = self.waiting(ctx, token).await?;
            let Pending::Callback { request, timeout_at, token_hash, .. } = pending else {
                return Err(Error::not_found("task token", token));
            };
            let now = Timestamp::now().millis();
            let heartbeat_at = request.heartbeat_seconds.map(|s| now + s as i64 * 1000);
            let wake = match (timeout_at, heartbeat_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let pending = Pending::Callback { request, timeout_at, heartbeat_at, token_hash };
            let machine = self.engine.machine(&rec.state_machine, rec.version).await?;
            let wake = engine::cap_wake(wake.map(Timestamp), engine::execution_deadline(&machine, &rec));
            let commit = StepCommit {
                execution_id: rec.id.clone(),
                expected_seq: rec.seq,
                state: StepState {
                    status: status::RUNNING.into(),
                    cursor: rec.cursor.clone(),
                    pending: Some(serde_json::to_value(&pending).map_err(Error::internal)?),
                    task_token: rec.task_token.clone(),
                    wake_at: wake,
                    ..StepState::default()
                },
                ..StepCommit::default()
            };
            match self.commit_one(commit).await {
                Err(Error::Conflict { code: ErrorCode::ExecutionMoved, .. }) => continue,
                r => return r,
            }
        }
        Err(Error::Unavailable("the execution kept moving; retry".into()))
    }
}
