//! [`WorkflowStore`] on SQL: state machines, executions, history.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row, Transaction};
use tenancy_domain::page::{Page, PageRequest};
use tenancy_domain::tenant::Tenant;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};

use super::dialect::Dialect;
use super::effects::{apply_effects_batch, insert_sql, start_executions};
use super::writer::exec;
use super::{db_err, is_unique_violation, json_text, parse_cursor_i64, SqlStore, Where};
use tenancy_store::Effects;
use tenancy_store::*;

const EXECUTION_COLUMNS: &str = "id, name, state_machine, version, tenant_id, status, input, output, error, cause, \
     cursor, pending, task_token, wake_at, redrive_count, seq, started_at, stopped_at, updated_at, trace_context";

fn get<T>(row: &AnyRow, col: &str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(col).map_err(db_err)
}

fn parse_json(text: &str, col: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| Error::internal(format!("corrupt JSON in column {col}: {e}")))
}

fn opt_json(row: &AnyRow, col: &str) -> Result<Option<Value>> {
    get::<Option<String>>(row, col)?.map(|t| parse_json(&t, col)).transpose()
}

fn execution(row: &AnyRow) -> Result<ExecutionRecord> {
    Ok(ExecutionRecord {
        id: get(row, "id")?,
        name: get(row, "name")?,
        state_machine: get(row, "state_machine")?,
        version: get(row, "version")?,
        tenant_id: get(row, "tenant_id")?,
        status: get(row, "status")?,
        input: parse_json(&get::<String>(row, "input")?, "input")?,
        output: opt_json(row, "output")?,
        error: get(row, "error")?,
        cause: get(row, "cause")?,
        cursor: opt_json(row, "cursor")?,
        pending: opt_json(row, "pending")?,
        task_token: get(row, "task_token")?,
        wake_at: get::<Option<i64>>(row, "wake_at")?.map(Timestamp),
        redrive_count: get(row, "redrive_count")?,
        seq: get(row, "seq")?,
        started_at: Timestamp(get(row, "started_at")?),
        stopped_at: get::<Option<i64>>(row, "stopped_at")?.map(Timestamp),
        updated_at: Timestamp(get(row, "updated_at")?),
        trace_context: get(row, "trace_context")?,
    })
}

fn state_machine(row: &AnyRow) -> Result<StateMachineRecord> {
    Ok(StateMachineRecord {
        name: get(row, "name")?,
        version: get(row, "version")?,
        definition: parse_json(&get::<String>(row, "definition")?, "definition")?,
        created_at: Timestamp(get(row, "created_at")?),
    })
}

fn history(row: &AnyRow) -> Result<HistoryRecord> {
    Ok(HistoryRecord {
        event_id: get(row, "event_id")?,
        kind: get(row, "type")?,
        state: get(row, "state")?,
        details: parse_json(&get::<String>(row, "details")?, "details")?,
        time: Timestamp(get(row, "time")?),
    })
}

fn opt_text(v: &Option<Value>) -> Option<String> {
    v.as_ref().map(json_text)
}

async fn insert_history(conn: &mut AnyConnection, execution_id: &str, events: &[HistoryRecord]) -> Result<()> {
    let rows: Vec<(&str, &HistoryRecord)> = events.iter().map(|e| (execution_id, e)).collect();
    insert_history_rows(conn, &rows).await
}

/// History rows of one or many executions, one multi-row INSERT per 100.
async fn insert_history_rows(conn: &mut AnyConnection, rows: &[(&str, &HistoryRecord)]) -> Result<()> {
    let dialect = Dialect::of(conn);
    for chunk in rows.chunks(100) {
        let sql = insert_sql(
            "INSERT INTO execution_history (execution_id, event_id, type, state, details, time)",
            6,
            chunk.len(),
            dialect,
        );
        let mut q = sqlx::query(&sql);
        for (id, e) in chunk {
            q = q
                .bind(*id)
                .bind(e.event_id)
                .bind(e.kind.as_str())
                .bind(e.state.as_deref())
                .bind(json_text(&e.details))
                .bind(e.time.millis());
        }
        q.execute(&mut *conn).await.map_err(|e| {
            if is_unique_violation(&e) {
                Error::Conflict {
                    code: ErrorCode::ExecutionMoved,
                    message: format!("execution {:?}: history event ids already recorded", chunk[0].0),
                }
            } else {
                db_err(e)
            }
        })?;
    }
    Ok(())
}

/// Binds a step's id, expected `seq` and state columns (11 values), in that order.
fn bind_step<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    c: &'q StepCommit,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let s = &c.state;
    q.bind(&c.execution_id)
        .bind(c.expected_seq)
        .bind(&s.status)
        .bind(opt_text(&s.cursor))
        .bind(opt_text(&s.pending))
        .bind(s.task_token.as_deref())
        .bind(s.wake_at.map(Timestamp::millis))
        .bind(opt_text(&s.output))
        .bind(s.error.as_deref())
        .bind(s.cause.as_deref())
        .bind(s.stopped_at.map(Timestamp::millis))
}

/// Inserts a new execution with its first step (also used by [`Effects::executions`]).
pub(super) async fn insert_execution(conn: &mut AnyConnection, n: &NewExecution) -> Result<()> {
    let dialect = Dialect::of(conn);
    insert_executions(conn, &[n], dialect).await
}

/// Inserts new executions with their first steps, 50 per statement, and then their
/// history, in `dialect`'s placeholders (see [`insert_sql`]).
pub(super) async fn insert_executions(conn: &mut AnyConnection, new: &[&NewExecution], dialect: Dialect) -> Result<()> {
    let now = Timestamp::now().millis();
    for chunk in new.chunks(50) {
        let sql = insert_sql(
            "INSERT INTO executions (id, name, state_machine, version, tenant_id, status, input, output, error, cause, \
             cursor, pending, task_token, wake_at, redrive_count, seq, started_at, stopped_at, updated_at, \
             trace_context)",
            20,
            chunk.len(),
            dialect,
        );
        let mut q = sqlx::query(&sql);
        for n in chunk {
            let s = &n.first;
            q = q
                .bind(&n.id)
                .bind(&n.name)
                .bind(&n.state_machine)
                .bind(n.version)
                .bind(n.tenant_id.as_deref())
                .bind(&s.status)
                .bind(json_text(&n.input))
                .bind(opt_text(&s.output))
                .bind(s.error.as_deref())
                .bind(s.cause.as_deref())
                .bind(opt_text(&s.cursor))
                .bind(opt_text(&s.pending))
                .bind(s.task_token.as_deref())
                .bind(s.wake_at.map(Timestamp::millis))
                .bind(0i64)
                .bind(1i64)
                .bind(n.started_at.millis())
                .bind(s.stopped_at.map(Timestamp::millis))
                .bind(now)
                .bind(n.trace_context.as_deref());
        }
        match q.execute(&mut *conn).await {
            Err(e) if is_unique_violation(&e) => {
                let n = chunk[0];
                return Err(Error::AlreadyExists { kind: "execution", id: format!("{}/{}", n.state_machine, n.name) });
            }
            r => r.map_err(db_err)?,
        };
    }
    let history: Vec<(&str, &HistoryRecord)> =
        new.iter().flat_map(|n| n.first.history.iter().map(|h| (n.id.as_str(), h))).collect();
    insert_history_rows(conn, &history).await
}

/// Applies one step; `Ok(false)` when the execution moved on (nothing written).
async fn apply_step(conn: &mut AnyConnection, c: &StepCommit) -> Result<bool> {
    let s = &c.state;
    let now = Timestamp::now().millis();
    let lease = if c.keep_lease { "" } else { ", lease_owner = NULL, lease_expires_at = NULL" };
    let mut sql = format!(
        "UPDATE executions SET status = $3, cursor = $4, pending = $5, task_token = $6, wake_at = $7, output = $8, \
         error = $9, cause = $10, stopped_at = $11, updated_at = $12, seq = seq + 1{lease}"
    );
    let mut extra: Vec<Option<String>> = Vec::new();
    if let Some((cursor, pending)) = &c.redrive_point {
        extra.push(Some(json_text(cursor)));
        sql.push_str(&format!(", redrive_cursor = ${}", 12 + extra.len()));
        extra.push(Some(json_text(pending)));
        sql.push_str(&format!(", redrive_pending = ${}", 12 + extra.len()));
    }
    if let Some(n) = c.redrive_count {
        sql.push_str(&format!(", redrive_count = {n}"));
    }
    sql.push_str(" WHERE id = $1 AND seq = $2");
    let mut q = bind_step(sqlx::query(&sql), c).bind(now);
    for e in extra {
        q = q.bind(e);
    }
    let res = q.execute(&mut *conn).await.map_err(|e| {
        if is_unique_violation(&e) {
            Error::conflict(format!("task token of execution {:?} already in use", c.execution_id))
        } else {
            db_err(e)
        }
    })?;
    if res.rows_affected() == 0 {
        return Ok(false);
    }
    insert_history(conn, &c.execution_id, &s.history).await?;
    apply_effects(conn, &c.effects).await?;
    Ok(true)
}

/// Whether [`apply_steps_together`] can commit these steps: where the dialect has
/// [`Dialect::update_from_values`] (SQLite, where the one writer's round trips are the
/// bottleneck), for plain steps of distinct executions
/// (no redrive bookkeeping, no executions started).
fn batchable(conn: &AnyConnection, commits: &[StepCommit]) -> bool {
    let mut ids = std::collections::HashSet::new();
    Dialect::of(conn).update_from_values()
        && commits.iter().all(|c| {
            c.redrive_point.is_none()
                && c.redrive_count.is_none()
                && c.effects.executions.iter().all(NewExecution::named_by_id)
                && ids.insert(c.execution_id.as_str())
        })
}

/// Commits many steps with a handful of statements instead of two or more per step:
/// one `UPDATE ... FROM (VALUES ...)` per 100 steps guarded by each execution's `seq`
/// (its `RETURNING` says which applied), one multi-row history insert, the effects of
/// the applied steps together. Which steps applied, in order.
async fn apply_steps_together(conn: &mut AnyConnection, commits: &[StepCommit]) -> Result<Vec<bool>> {
    let now = Timestamp::now().millis();
    let mut applied = std::collections::HashSet::new();
    for chunk in commits.chunks(100) {
        let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "WITH v(v_id, v_seq, v_status, v_cursor, v_pending, v_token, v_wake, v_output, v_error, v_cause, \
             v_stopped, v_keep) AS (VALUES {values}) \
             UPDATE executions SET status = v_status, cursor = v_cursor, pending = v_pending, task_token = v_token, \
             wake_at = v_wake, output = v_output, error = v_error, cause = v_cause, stopped_at = v_stopped, \
             updated_at = {now}, seq = seq + 1, \
             lease_owner = CASE WHEN v_keep = 1 THEN lease_owner ELSE NULL END, \
             lease_expires_at = CASE WHEN v_keep = 1 THEN lease_expires_at ELSE NULL END \
             FROM v WHERE id = v_id AND seq = v_seq RETURNING id"
        );
        let mut q = sqlx::query(&sql);
        for c in chunk {
            q = bind_step(q, c).bind(c.keep_lease as i64);
        }
        for row in q.fetch_all(&mut *conn).await.map_err(db_err)? {
            applied.insert(row.try_get::<String, _>(0).map_err(db_err)?);
        }
    }
    let done: Vec<&StepCommit> = commits.iter().filter(|c| applied.contains(&c.execution_id)).collect();
    let history: Vec<(&str, &HistoryRecord)> =
        done.iter().flat_map(|c| c.state.history.iter().map(|h| (c.execution_id.as_str(), h))).collect();
    insert_history_rows(conn, &history).await?;
    let effects: Vec<Effects> = done.iter().map(|c| c.effects.clone()).collect();
    apply_effects_batch(conn, &effects).await?;
    Ok(commits.iter().map(|c| applied.contains(&c.execution_id)).collect())
}

/// The effects of a write done here in its own transaction (not through the batched
/// writer: a step commit is already a batch of the engine's group commit).
async fn apply_effects(conn: &mut AnyConnection, fx: &Effects) -> Result<()> {
    start_executions(conn, fx).await?;
    apply_effects_batch(conn, std::slice::from_ref(fx)).await
}

impl SqlStore {
    async fn begin_write(&self) -> Result<Transaction<'static, Any>> {
        self.write_pool.begin().await.map_err(db_err)
    }
}

fn moved(id: &str) -> Error {
    Error::Conflict { code: ErrorCode::ExecutionMoved, message: format!("execution {id:?} moved on") }
}

#[async_trait]
impl WorkflowStore for SqlStore {
    async fn state_machine_put(
        &self,
        name: &str,
        definition: &Value,
        fx: &Effects,
    ) -> Result<(StateMachineRecord, bool)> {
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "SELECT * FROM state_machines WHERE name = $1 ORDER BY version DESC LIMIT 1{}",
            self.dialect.for_update()
        );
        let latest = sqlx::query(&sql).bind(name).fetch_optional(&mut *tx).await.map_err(db_err)?;
        let latest = latest.as_ref().map(state_machine).transpose()?;
        if let Some(l) = latest.as_ref().filter(|l| l.definition == *definition) {
            return Ok((l.clone(), false));
        }
        let record = StateMachineRecord {
            name: name.to_owned(),
            version: latest.map_or(1, |l| l.version + 1),
            definition: definition.clone(),
            created_at: Timestamp::now(),
        };
        let res =
            sqlx::query("INSERT INTO state_machines (name, version, definition, created_at) VALUES ($1, $2, $3, $4)")
                .bind(&record.name)
                .bind(record.version)
                .bind(json_text(&record.definition))
                .bind(record.created_at.millis())
                .execute(&mut *tx)
                .await;
        match res {
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::conflict(format!("state machine {name:?} was changed concurrently")))
            }
            r => r.map_err(db_err)?,
        };
        apply_effects(&mut tx, fx).await?;
        tx.commit().await.map_err(db_err)?;
        Ok((record, true))
    }

    async fn state_machine_get(&self, name: &str, version: Option<i64>) -> Result<StateMachineRecord> {
        let row = match version {
            Some(v) => sqlx::query("SELECT * FROM state_machines WHERE name = $1 AND version = $2")
                .bind(name)
                .bind(v)
                .fetch_optional(&self.reader)
                .await
                .map_err(db_err)?,
            None => sqlx::query("SELECT * FROM state_machines WHERE name = $1 ORDER BY version DESC LIMIT 1")
                .bind(name)
                .fetch_optional(&self.reader)
                .await
                .map_err(db_err)?,
        };
        row.as_ref().map(state_machine).transpose()?.ok_or_else(|| Error::not_found("state machine", name))
    }

    async fn state_machine_list(&self, page: &PageRequest) -> Result<Page<StateMachineRecord>> {
        let mut w = Where::new("SELECT * FROM state_machines s");
        w.raw("version = (SELECT MAX(version) FROM state_machines m WHERE m.name = s.name)");
        w.gt("name", page.after.as_deref());
        w.sql.push_str(&format!(" ORDER BY name LIMIT {}", page.limit + 1));
        let rows = w.query().fetch_all(&self.reader).await.map_err(db_err)?;
        let items = rows.iter().map(state_machine).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, page.limit, |s| s.name.clone()))
    }

    async fn execution_start(&self, new: &NewExecution, fx: &Effects) -> Result<(ExecutionRecord, bool)> {
        let existing = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE state_machine = $1 AND name = $2");
        if let Some(row) = sqlx::query(&existing)
            .bind(&new.state_machine)
            .bind(&new.name)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
        {
            return Ok((execution(&row)?, false));
        }
        // Through the store's writer: on SQLite, concurrent starts share a commit.
        let insert = new.clone();
        let res =
            self.writer.write(fx, move |conn| Box::pin(async move { insert_execution(conn, &insert).await })).await;
        match res {
            Ok(()) => {}
            Err(Error::AlreadyExists { .. }) => {
                let row = sqlx::query(&existing)
                    .bind(&new.state_machine)
                    .bind(&new.name)
                    .fetch_one(&self.write_pool)
                    .await
                    .map_err(db_err)?;
                return Ok((execution(&row)?, false));
            }
            Err(e) => return Err(e),
        }
        let now = Timestamp::now();
        let s = &new.first;
        Ok((
            ExecutionRecord {
                id: new.id.clone(),
                name: new.name.clone(),
                state_machine: new.state_machine.clone(),
                version: new.version,
                tenant_id: new.tenant_id.clone(),
                status: s.status.clone(),
                input: new.input.clone(),
                output: s.output.clone(),
                error: s.error.clone(),
                cause: s.cause.clone(),
                cursor: s.cursor.clone(),
                pending: s.pending.clone(),
                task_token: s.task_token.clone(),
                wake_at: s.wake_at,
                redrive_count: 0,
                seq: 1,
                started_at: new.started_at,
                stopped_at: s.stopped_at,
                updated_at: now,
                trace_context: new.trace_context.clone(),
            },
            true,
        ))
    }

    async fn execution_get(&self, id: &str) -> Result<ExecutionRecord> {
        let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.reader).await.map_err(db_err)?;
        row.as_ref().map(execution).transpose()?.ok_or_else(|| Error::not_found("execution", id))
    }

    async fn execution_statuses(&self, ids: &[String]) -> Result<Vec<(String, String)>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!("SELECT id, status FROM executions WHERE id IN ({})", marks.join(", "));
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            for row in q.fetch_all(&self.reader).await.map_err(db_err)? {
                out.push((row.try_get(0).map_err(db_err)?, row.try_get(1).map_err(db_err)?));
            }
        }
        Ok(out)
    }

    async fn execution_by_token(&self, token: &str) -> Result<ExecutionRecord> {
        let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE task_token = $1");
        let row = sqlx::query(&sql).bind(token).fetch_optional(&self.reader).await.map_err(db_err)?;
        row.as_ref().map(execution).transpose()?.ok_or_else(|| Error::not_found("task token", token))
    }

    async fn execution_list(&self, filter: &ExecutionFilter, page: &PageRequest) -> Result<Page<ExecutionRecord>> {
        let mut w = Where::new(&format!("SELECT {EXECUTION_COLUMNS} FROM executions"));
        w.eq("status", filter.status.as_deref());
        w.eq("state_machine", filter.state_machine.as_deref());
        w.eq("tenant_id", filter.tenant_id.as_deref());
        if let Some(before) = filter.updated_before {
            // Due before the cutoff and not moved since: a worker should have taken it.
            let b = before.millis();
            w.raw(&format!("status = 'RUNNING' AND updated_at < {b} AND wake_at IS NOT NULL AND wake_at < {b}"));
        }
        w.gt("id", page.after.as_deref());
        w.sql.push_str(&format!(" ORDER BY id LIMIT {}", page.limit + 1));
        let rows = w.query().fetch_all(&self.reader).await.map_err(db_err)?;
        let items = rows.iter().map(execution).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, page.limit, |e| e.id.clone()))
    }

    async fn execution_history(&self, id: &str, page: &PageRequest) -> Result<Page<HistoryRecord>> {
        let after = parse_cursor_i64(page.after.as_deref())?.unwrap_or(0);
        let sql = format!(
            "SELECT * FROM execution_history WHERE execution_id = $1 AND event_id > $2 ORDER BY event_id LIMIT {}",
            page.limit + 1
        );
        let rows = sqlx::query(&sql).bind(id).bind(after).fetch_all(&self.reader).await.map_err(db_err)?;
        let items = rows.iter().map(history).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, page.limit, |h| h.event_id.to_string()))
    }

    async fn execution_redrive_point(&self, id: &str) -> Result<Option<RedrivePoint>> {
        let row = sqlx::query("SELECT redrive_cursor, redrive_pending FROM executions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found("execution", id))?;
        match (opt_json(&row, "redrive_cursor")?, opt_json(&row, "redrive_pending")?) {
            (Some(cursor), Some(pending)) => Ok(Some(RedrivePoint { cursor, pending })),
            _ => Ok(None),
        }
    }

    async fn execution_running_count(
        &self,
        state_machine: Option<&str>,
        tenant_id: Option<&str>,
        except_prefix: Option<&str>,
        up_to: u64,
    ) -> Result<u64> {
        let mut w = Where::new("SELECT 1 AS one FROM executions");
        w.raw("status = 'RUNNING'");
        w.eq("state_machine", state_machine);
        w.eq("tenant_id", tenant_id);
        if let Some(prefix) = except_prefix {
            w.raw(&format!("NOT ({})", prefix_range(prefix)?));
        }
        let sql = format!("SELECT COUNT(*) AS n FROM ({} LIMIT {up_to}) AS running", w.sql);
        w.sql = sql;
        let n: i64 = w.query().fetch_one(&self.reader).await.map_err(db_err)?.try_get("n").map_err(db_err)?;
        Ok(n.max(0) as u64)
    }

    async fn execution_claim(&self, claim: &Claim<'_>) -> Result<Vec<ExecutionRecord>> {
        let mut due =
            "wake_at IS NOT NULL AND wake_at <= $3 AND (lease_expires_at IS NULL OR lease_expires_at < $3)".to_owned();
        if let Some(prefix) = claim.state_machine_prefix {
            // A literal term (the partial index `executions_lifecycle_due` matches it).
            due.push_str(&format!(" AND {}", prefix_range(prefix)?));
        }
        let lock = self.dialect.skip_locked();
        let limit = claim.limit;
        let candidates = if claim.per_tenant == 0 && claim.skip_tenants.is_empty() {
            format!("SELECT id FROM executions WHERE {due} ORDER BY wake_at LIMIT {limit}{lock}")
        } else {
            // A window of the oldest due executions (past the skipped tenants), ranked
            // within each tenant, taken by rank: round-robin across tenants.
            let skip = match claim.skip_tenants.len() {
                0 => String::new(),
                n => format!(
                    " AND (tenant_id IS NULL OR tenant_id NOT IN ({}))",
                    (0..n).map(|i| format!("${}", i + 4)).collect::<Vec<_>>().join(", ")
                ),
            };
            let per_tenant = match claim.per_tenant {
                0 => String::new(),
                n => format!(" WHERE turn <= {n}"),
            };
            let window = (limit * 8).max(256);
            format!(
                "SELECT id FROM (SELECT id, wake_at, ROW_NUMBER() OVER (PARTITION BY COALESCE(tenant_id, id) \
                 ORDER BY wake_at, id) AS turn FROM (SELECT id, tenant_id, wake_at FROM executions \
                 WHERE {due}{skip} ORDER BY wake_at LIMIT {window}{lock}) AS due) AS ranked{per_tenant} \
                 ORDER BY turn, wake_at LIMIT {limit}"
            )
        };
        let sql = format!(
            "UPDATE executions SET lease_owner = $1, lease_expires_at = $2 WHERE id IN ({candidates}) \
             RETURNING {EXECUTION_COLUMNS}"
        );
        let (owner, until, now) = (claim.owner.to_owned(), claim.now.millis() + claim.lease_ms, claim.now.millis());
        let skip = claim.skip_tenants.to_vec();
        if !self.dialect.single_writer() {
            let mut q = sqlx::query(&sql).bind(owner).bind(until).bind(now);
            for t in skip {
                q = q.bind(t);
            }
            let rows = q.fetch_all(&self.write_pool).await.map_err(db_err)?;
            return rows.iter().map(execution).collect();
        }
        // On SQLite through the writer: the claim joins the group commit instead of
        // taking the one write connection for a transaction of its own.
        self.writer
            .write_atomic(&Effects::none(), move |conn| {
                Box::pin(async move {
                    let mut q = sqlx::query(&sql).bind(owner).bind(until).bind(now);
                    for t in skip {
                        q = q.bind(t);
                    }
                    let rows = q.fetch_all(&mut *conn).await.map_err(db_err)?;
                    rows.iter().map(execution).collect()
                })
            })
            .await
    }

    async fn execution_lease_extend(&self, id: &str, owner: &str, until: Timestamp) -> Result<bool> {
        let res = sqlx::query("UPDATE executions SET lease_expires_at = $3 WHERE id = $1 AND lease_owner = $2")
            .bind(id)
            .bind(owner)
            .bind(until.millis())
            .execute(&self.write_pool)
            .await
            .map_err(db_err)?;
        Ok(res.rows_affected() == 1)
    }

    async fn execution_commit(&self, commits: &[StepCommit]) -> Result<Vec<Result<()>>> {
        if commits.is_empty() {
            return Ok(Vec::new());
        }
        // Through the store's writer, so that on SQLite the steps share a transaction
        // with the API writes queued at the same moment instead of taking turns with
        // them for the one write connection.
        // The tenants the steps write, by step, for the cache.
        let written: Vec<(usize, Tenant)> = match &self.tenants {
            Some(_) => commits
                .iter()
                .enumerate()
                .flat_map(|(i, c)| c.effects.tenants.iter().map(move |w| (i, w.tenant.clone())))
                .collect(),
            None => Vec::new(),
        };
        let commits = commits.to_vec();
        let cache = self.tenants.clone();
        // Tenants the committed steps wrote: staged for the cache, published after the COMMIT.
        let after = move |results: &Vec<Result<()>>| {
            if let Some(cache) = cache {
                written.iter().filter(|(i, _)| results[*i].is_ok()).for_each(|(_, t)| cache.stage(t));
            }
        };
        self.writer
            .write_then(
                &Effects::none(),
                move |conn| {
                    Box::pin(async move {
                        if commits.len() > 1 && batchable(conn, &commits) {
                            exec(conn, "SAVEPOINT steps").await?;
                            match apply_steps_together(conn, &commits).await {
                                Ok(applied) => {
                                    exec(conn, "RELEASE steps").await?;
                                    let results = commits.iter().zip(applied);
                                    return Ok(results
                                        .map(|(c, ok)| if ok { Ok(()) } else { Err(moved(&c.execution_id)) })
                                        .collect());
                                }
                                // E.g. a task token in use: one step at a time finds which.
                                Err(_) => {
                                    exec(conn, "ROLLBACK TO steps").await?;
                                    exec(conn, "RELEASE steps").await?;
                                }
                            }
                        }
                        let mut results = Vec::with_capacity(commits.len());
                        for c in &commits {
                            results.push(if apply_step(conn, c).await? { Ok(()) } else { Err(moved(&c.execution_id)) });
                        }
                        Ok(results)
                    })
                },
                after,
            )
            .await
    }

    async fn tenant_resource_put(&self, r: &TenantResource) -> Result<(TenantResource, bool)> {
        // Through the writer: on SQLite the lifecycle steps' records share the group
        // commit instead of queueing for the one write connection on their own.
        // Atomic: the INSERT is the only write (the SELECT runs when it wrote nothing).
        let r = r.clone();
        self.writer
            .write_atomic(&Effects::none(), move |conn| {
                Box::pin(async move {
                    let res = sqlx::query(
                        "INSERT INTO tenant_resources (tenant_id, kind, detail, created_by, created_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, kind) DO NOTHING",
                    )
                    .bind(&r.tenant_id)
                    .bind(&r.kind)
                    .bind(json_text(&r.detail))
                    .bind(&r.created_by)
                    .bind(r.created_at.millis())
                    .execute(&mut *conn)
                    .await
                    .map_err(db_err)?;
                    if res.rows_affected() == 1 {
                        return Ok((r, true));
                    }
                    let row = sqlx::query("SELECT * FROM tenant_resources WHERE tenant_id = $1 AND kind = $2")
                        .bind(&r.tenant_id)
                        .bind(&r.kind)
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(db_err)?;
                    Ok((resource(&row)?, false))
                })
            })
            .await
    }

    async fn tenant_resource_delete(&self, tenant_id: &str, kind: &str) -> Result<bool> {
        let (tenant_id, kind) = (tenant_id.to_owned(), kind.to_owned());
        self.writer
            .write_atomic(&Effects::none(), move |conn| {
                Box::pin(async move {
                    let res = sqlx::query("DELETE FROM tenant_resources WHERE tenant_id = $1 AND kind = $2")
                        .bind(&tenant_id)
                        .bind(&kind)
                        .execute(&mut *conn)
                        .await
                        .map_err(db_err)?;
                    Ok(res.rows_affected() > 0)
                })
            })
            .await
    }

    async fn tenant_resource_list(&self, tenant_id: &str) -> Result<Vec<TenantResource>> {
        let rows = sqlx::query("SELECT * FROM tenant_resources WHERE tenant_id = $1 ORDER BY kind")
            .bind(tenant_id)
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(resource).collect()
    }

    async fn tenant_resource_replace(&self, r: &TenantResource) -> Result<()> {
        sqlx::query(
            "INSERT INTO tenant_resources (tenant_id, kind, detail, created_by, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant_id, kind) DO UPDATE SET detail = excluded.detail, created_by = excluded.created_by, \
             created_at = excluded.created_at",
        )
        .bind(&r.tenant_id)
        .bind(&r.kind)
        .bind(json_text(&r.detail))
        .bind(&r.created_by)
        .bind(r.created_at.millis())
        .execute(&self.write_pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn tenant_secret_put(&self, tenant_id: &str, name: &str, sealed: &str) -> Result<String> {
        sqlx::query(
            "INSERT INTO tenant_secrets (tenant_id, name, sealed, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, name) DO NOTHING",
        )
        .bind(tenant_id)
        .bind(name)
        .bind(sealed)
        .bind(Timestamp::now().millis())
        .execute(&self.write_pool)
        .await
        .map_err(db_err)?;
        sqlx::query_scalar("SELECT sealed FROM tenant_secrets WHERE tenant_id = $1 AND name = $2")
            .bind(tenant_id)
            .bind(name)
            .fetch_one(&self.write_pool)
            .await
            .map_err(db_err)
    }

    async fn tenant_secret_get(&self, tenant_id: &str, name: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT sealed FROM tenant_secrets WHERE tenant_id = $1 AND name = $2")
            .bind(tenant_id)
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)
    }

    async fn tenant_secret_delete(&self, tenant_id: &str, name: &str) -> Result<bool> {
        let res = sqlx::query("DELETE FROM tenant_secrets WHERE tenant_id = $1 AND name = $2")
            .bind(tenant_id)
            .bind(name)
            .execute(&self.write_pool)
            .await
            .map_err(db_err)?;
        Ok(res.rows_affected() > 0)
    }
}

/// `state_machine` starts with `prefix` (letters, digits, `.`, `-`, `_`), compared byte
/// for byte on both engines (a range `>= 'p' AND < 'q'` would follow PostgreSQL's
/// collation, which may ignore punctuation; `LIKE` is case-insensitive on SQLite).
fn prefix_range(prefix: &str) -> Result<String> {
    let plain =
        !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if !plain {
        return Err(Error::internal(format!("invalid state machine prefix {prefix:?}")));
    }
    Ok(format!("substr(state_machine, 1, {}) = '{prefix}'", prefix.len()))
}

fn resource(row: &AnyRow) -> Result<TenantResource> {
    Ok(TenantResource {
        tenant_id: get(row, "tenant_id")?,
        kind: get(row, "kind")?,
        detail: parse_json(&get::<String>(row, "detail")?, "detail")?,
        created_by: get(row, "created_by")?,
        created_at: Timestamp(get(row, "created_at")?),
    })
}
