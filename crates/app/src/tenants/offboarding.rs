//! The offboarding export: before an offboarding deletes anything, the tenant's data
//! goes to the blob store.
//!
//! `tenancy:tenant.export` `{tenant_id, execution_id?}` writes, under the stable prefix
//! `tenants/<tenant id>/offboard-<execution id>/`:
//!
//! * `events.ndjson`: the tenant's events (EventBridge envelopes, oldest first);
//! * `audit.ndjson`: the tenant's audit records (sealed ones with `seq`, `prev_hash`
//!   and `hash`, so each can be checked against the log; unsealed ones with nulls);
//!   with `format: parquet` (`DELETE /v1/tenants/{id}?format=parquet`) these two are
//!   `events.parquet` and `audit.parquet` instead, in the archive's columns
//!   (`crate::archive::columns`; audit records not sealed yet with null `seq` and
//!   hashes). NDJSON stays the default: it is what `tenancy audit verify` reads offline;
//! * `database.<engine>`: a consistent snapshot of the silo database
//!   ([`DatabaseProvisioner::database_export`]), when the tenant has one;
//! * `manifest.json`, written last: the tenant record, its plan, its resources, its API
//!   keys (never their hashes), counts, and the size and SHA-256 of every file.
//!
//! The manifest marks a finished export: a re-run (after a crash, a retry, a redrive)
//! that finds it returns the same result and writes nothing, so one offboarding has
//! exactly one export. A re-run after a crash before the manifest rewrites the files.
//! The result (`{location, manifest, manifest_sha256}`) is recorded as the tenant's
//! `export` resource, which outlives the offboarding, and carried into the
//! `TenantOffboarded` event by the workflow.
//!
//! Secrets stay out: API keys are listed without hashes, resource details lose members
//! that name secrets and passwords inside URLs, and webhook secrets are not exported.

use std::sync::Arc;

use async_trait::async_trait;
use object_store::path::Path as BlobPath;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tenancy_adapters::dataplane::DatabaseProvisioner;
use tenancy_domain::page::PageRequest;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};
use tenancy_store::{AuditFilter, Effects, EventFilter, Store, StoredAudit, TenantResource};

use crate::dataplane::plane::DataPlane;
use crate::services::Services;
use crate::OpContext;
use tenancy_adapters::blob::BlobStore;
use tenancy_engine::Registry;
use tenancy_engine::{app_failure, TaskCall, TaskHandler, TaskOutput, TaskResult};

pub const EXPORT_RESOURCE: &str = "tenancy:tenant.export";
/// The `format` member of every manifest.
pub const MANIFEST_FORMAT: &str = "tenancy.offboard-export/1";
/// The tenant resource that records where the export went.
pub const EXPORT_KIND: &str = "export";

const PAGE: u32 = 1000;
/// Parts of the database upload (object_store's multipart minimum is 5 MiB on S3).
const PART: usize = 8 << 20;

/// The blob prefix of the export of one offboarding execution.
pub fn export_prefix(tenant_id: &str, execution_id: &str) -> String {
    format!("tenants/{tenant_id}/offboard-{execution_id}")
}

/// `tenancy:tenant.export`: see the module documentation. Without a blob store (an
/// embedded `App` that never got one) there is nothing to write to: the result is
/// `null` and a warning is logged; `tenancy serve` always has one.
struct ExportTenant {
    blobs: Option<BlobStore>,
    plane: Option<Arc<DataPlane>>,
}

/// Registers [`EXPORT_RESOURCE`] with the blob store and data plane of `services`.
pub fn register(r: &Registry, services: &Services, plane: Option<&Arc<DataPlane>>) {
    r.register(EXPORT_RESOURCE, ExportTenant { blobs: services.blobs.clone(), plane: plane.cloned() });
}

/// The parameters of [`EXPORT_RESOURCE`].
#[derive(serde::Deserialize)]
struct ExportParams {
    tenant_id: String,
    /// The offboarding's execution (by default the one running the task).
    execution_id: Option<String>,
    /// The execution's input, whose `format` (when present) is the export's.
    #[serde(default)]
    input: Value,
}

/// The format of an offboarding export's events and audit records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// `events.ndjson`, `audit.ndjson`: verifiable offline (`tenancy audit verify`).
    #[default]
    Ndjson,
    /// `events.parquet`, `audit.parquet`: for analysts (Athena, DuckDB).
    Parquet,
}

#[async_trait]
impl TaskHandler for ExportTenant {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        let params: ExportParams = call.params()?;
        let tenant_id = params.tenant_id.as_str();
        let execution_id = params.execution_id.as_deref().unwrap_or(call.execution_id);
        let Some(blobs) = &self.blobs else {
            tracing::warn!(tenant_id, "no blob store: the offboarding export is skipped");
            return Ok(TaskOutput::new(Value::Null));
        };
        let provisioner = self.plane.as_ref().map(|plane| plane.provisioner.as_ref());
        let format = serde_json::from_value(params.input["format"].clone()).unwrap_or_default();
        let export = export_tenant_as(call.store.as_ref(), blobs, provisioner, tenant_id, execution_id, format)
            .await
            .map_err(app_failure)?;
        let result = json!({"location": export.location, "manifest": export.manifest,
                            "manifest_sha256": export.manifest_sha256});
        let r = TenantResource {
            tenant_id: tenant_id.to_owned(),
            kind: EXPORT_KIND.to_owned(),
            detail: json!({"location": export.location, "manifest": export.manifest,
                           "manifest_sha256": export.manifest_sha256, "execution_id": execution_id}),
            created_by: call.idempotency_key.to_owned(),
            created_at: Timestamp::now(),
        };
        call.store.workflows().tenant_resource_put(&r).await.map_err(app_failure)?;
        let audit = OpContext::system().audit(
            "tenant.export",
            format!("tenant/{tenant_id}"),
            Some(tenant_id),
            json!({"execution_id": execution_id, "location": export.location,
                   "manifest_sha256": export.manifest_sha256, "written": export.written}),
        );
        Ok(TaskOutput { result, effects: Effects::none().with_audit(audit) })
    }
}

/// Where an export is and whether this call wrote it.
#[derive(Debug, Clone)]
pub struct Export {
    /// The blob store URL of the export's prefix, ending in `/`.
    pub location: String,
    pub manifest: String,
    pub manifest_sha256: String,
    /// `false` when a finished export was found and left alone.
    pub written: bool,
}

fn blob_err(what: &str, path: &BlobPath, e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("failed to {what} {path} in the blob store: {e}"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes the export of `tenant_id` for `execution_id` unless its manifest exists.
pub async fn export_tenant(
    store: &dyn Store,
    blobs: &BlobStore,
    provisioner: Option<&dyn DatabaseProvisioner>,
    tenant_id: &str,
    execution_id: &str,
) -> Result<Export> {
    export_tenant_as(store, blobs, provisioner, tenant_id, execution_id, ExportFormat::Ndjson).await
}

/// [`export_tenant`] with the events and audit records in `format`.
pub async fn export_tenant_as(
    store: &dyn Store,
    blobs: &BlobStore,
    provisioner: Option<&dyn DatabaseProvisioner>,
    tenant_id: &str,
    execution_id: &str,
    format: ExportFormat,
) -> Result<Export> {
    tenancy_domain::ids::validate_slug("tenant", tenant_id)?;
    let prefix = export_prefix(tenant_id, execution_id);
    let base = format!("{}/{prefix}/", blobs.url.trim_end_matches('/'));
    let manifest_path = BlobPath::from(format!("{prefix}/manifest.json"));
    let done = |bytes: &[u8], written| Export {
        location: base.clone(),
        manifest: format!("{base}manifest.json"),
        manifest_sha256: sha256_hex(bytes),
        written,
    };
    match blobs.store.get(&manifest_path).await {
        Ok(found) => {
            let bytes = found.bytes().await.map_err(|e| blob_err("read", &manifest_path, e))?;
            tracing::debug!(tenant_id, execution_id, "offboarding export already written");
            return Ok(done(&bytes, false));
        }
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(blob_err("read", &manifest_path, e)),
    }

    let tenant = store.tenant_get(tenant_id).await?;
    let plan = match store.plan_get(&tenant.plan).await {
        Ok(p) => serde_json::to_value(p).map_err(Error::internal)?,
        Err(Error::NotFound { .. }) => Value::Null,
        Err(e) => return Err(e),
    };
    let resources: Vec<Value> = store
        .workflows()
        .tenant_resource_list(tenant_id)
        .await?
        .into_iter()
        .filter(|r| r.kind != EXPORT_KIND)
        .map(|r| json!({"kind": r.kind, "detail": redact(r.detail), "created_at": r.created_at}))
        .collect();
    let api_keys = tenant_api_keys(store, tenant_id).await?;

    let mut files = Vec::new();
    let ((events, count_events), (audit, count_audit)) = match format {
        ExportFormat::Ndjson => {
            (put_events(store, blobs, &prefix, tenant_id).await?, put_audit(store, blobs, &prefix, tenant_id).await?)
        }
        ExportFormat::Parquet => parquet::put_both(store, blobs, &prefix, tenant_id).await?,
    };
    files.push(events);
    files.push(audit);
    let mut database = Value::Null;
    if let Some(p) = provisioner {
        if let Some(file) = put_database(p, blobs, &prefix, tenant_id, &resources).await? {
            database = json!({"file": file["name"], "engine": file["engine"]});
            files.push(file);
        }
    }

    let manifest = json!({
        "format": MANIFEST_FORMAT,
        "tenant": tenant,
        "plan": plan,
        "resources": resources,
        "api_keys": api_keys,
        "database": database,
        "execution_id": execution_id,
        "files_format": format,
        "exported_at": Timestamp::now(),
        "counts": {"events": count_events, "audit_records": count_audit,
                   "resources": resources.len(), "api_keys": api_keys.len()},
        "files": files,
    });
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(Error::internal)?;
    blobs
        .store
        .put(&manifest_path, bytes::Bytes::from(bytes.clone()).into())
        .await
        .map_err(|e| blob_err("write", &manifest_path, e))?;
    tracing::info!(tenant_id, execution_id, location = %base, "offboarding export written");
    Ok(done(&bytes, true))
}

/// An NDJSON file streamed to the blob store as its lines come (a multipart upload
/// once it outgrows [`PART`]), hashed on the way: a tenant's events and audit records
/// are never all in memory.
struct NdjsonUpload {
    name: &'static str,
    path: BlobPath,
    upload: object_store::buffered::BufWriter,
    hash: Sha256,
    bytes: u64,
    lines: u64,
    line: Vec<u8>,
}

impl NdjsonUpload {
    fn new(blobs: &BlobStore, prefix: &str, name: &'static str) -> Self {
        let path = BlobPath::from(format!("{prefix}/{name}"));
        let upload = object_store::buffered::BufWriter::with_capacity(blobs.store.clone(), path.clone(), PART);
        NdjsonUpload { name, path, upload, hash: Sha256::new(), bytes: 0, lines: 0, line: Vec::new() }
    }

    async fn line(&mut self, value: &impl serde::Serialize) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        self.line.clear();
        serde_json::to_writer(&mut self.line, value).map_err(Error::internal)?;
        self.line.push(b'\n');
        self.hash.update(&self.line);
        self.bytes += self.line.len() as u64;
        self.lines += 1;
        self.upload.write_all(&self.line).await.map_err(|e| blob_err("write", &self.path, e))
    }

    /// Completes the upload when `written` is `Ok`, else aborts it (no object, no
    /// uploaded part is left); `{name, bytes, sha256}` and the number of lines.
    async fn finish(mut self, written: Result<()>) -> Result<(Value, u64)> {
        let closed = match written {
            Ok(()) => {
                tokio::io::AsyncWriteExt::shutdown(&mut self.upload).await.map_err(|e| blob_err("write", &self.path, e))
            }
            Err(e) => Err(e),
        };
        if let Err(e) = closed {
            let _ = self.upload.abort().await;
            return Err(e);
        }
        let sha256 = hex::encode(self.hash.finalize());
        Ok((json!({"name": self.name, "bytes": self.bytes, "sha256": sha256}), self.lines))
    }
}

/// The silo database's snapshot, streamed to the blob store; `None` without a database.
async fn put_database(
    provisioner: &dyn DatabaseProvisioner,
    blobs: &BlobStore,
    prefix: &str,
    tenant_id: &str,
    resources: &[Value],
) -> Result<Option<Value>> {
    use tokio::io::AsyncReadExt;

    let Some(record) = resources.iter().find(|r| r["kind"] == "database") else {
        return Ok(None);
    };
    let Some(isolation) = crate::dataplane::plane::record_isolation(&record["detail"]) else {
        return Ok(None);
    };
    if !provisioner.provisions(isolation) {
        return Ok(None);
    }
    let engine = record["detail"]["engine"].as_str().unwrap_or("db").to_owned();
    let tmp = tempfile::tempdir().map_err(|e| Error::Unavailable(format!("failed to create a temporary dir: {e}")))?;
    let local = tmp.path().join("database");
    if !provisioner.database_export(tenant_id, isolation, &local).await? {
        return Ok(None);
    }
    let name = format!("database.{engine}");
    let path = BlobPath::from(format!("{prefix}/{name}"));
    let mut file = tokio::fs::File::open(&local)
        .await
        .map_err(|e| Error::Unavailable(format!("failed to open {}: {e}", local.display())))?;
    let upload = blobs.store.put_multipart(&path).await.map_err(|e| blob_err("write", &path, e))?;
    let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, PART);
    let mut hash = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match file.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(Error::Unavailable(format!("failed to read {}: {e}", local.display())));
            }
        };
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        size += n as u64;
        writer.wait_for_capacity(2).await.map_err(|e| blob_err("write", &path, e))?;
        writer.write(&buf[..n]);
    }
    writer.finish().await.map_err(|e| blob_err("write", &path, e))?;
    Ok(Some(json!({"name": name, "bytes": size, "sha256": hex::encode(hash.finalize()), "engine": engine})))
}

/// The Parquet files of an export: written page by page to a temporary file (never
/// the whole tenant in memory), then uploaded whole, hashed.
mod parquet {
    use super::*;
    use crate::archive::columns::{events_batch, events_schema, export_audit_batch, export_audit_schema, writer};

    fn local_err(e: impl std::fmt::Display) -> Error {
        Error::Unavailable(format!("failed to write a temporary export file: {e}"))
    }

    async fn upload(blobs: &BlobStore, prefix: &str, name: &str, local: &std::path::Path) -> Result<Value> {
        let bytes = tokio::fs::read(local).await.map_err(local_err)?;
        let path = BlobPath::from(format!("{prefix}/{name}"));
        let (size, sha256) = (bytes.len(), sha256_hex(&bytes));
        blobs.store.put(&path, bytes::Bytes::from(bytes).into()).await.map_err(|e| blob_err("write", &path, e))?;
        Ok(json!({"name": name, "bytes": size, "sha256": sha256}))
    }

    pub(super) async fn put_both(
        store: &dyn Store,
        blobs: &BlobStore,
        prefix: &str,
        tenant_id: &str,
    ) -> Result<((Value, u64), (Value, u64))> {
        let tmp = tempfile::tempdir().map_err(local_err)?;
        let (events_file, audit_file) = (tmp.path().join("events.parquet"), tmp.path().join("audit.parquet"));
        let mut w = writer(std::fs::File::create(&events_file).map_err(local_err)?, events_schema(), PAGE as usize)?;
        let filter = EventFilter { tenant_id: Some(tenant_id.to_owned()), ..Default::default() };
        let mut page = PageRequest { limit: PAGE, after: None };
        let mut events = 0u64;
        loop {
            let got = store.event_list(&filter, &page).await?;
            events += got.items.len() as u64;
            w.write(&events_batch(&got.items)?).map_err(local_err)?;
            match got.next_cursor {
                Some(c) => page.after = Some(c),
                None => break,
            }
        }
        w.close().map_err(local_err)?;
        let mut w =
            writer(std::fs::File::create(&audit_file).map_err(local_err)?, export_audit_schema(), PAGE as usize)?;
        let filter = AuditFilter { tenant_id: Some(tenant_id.to_owned()), ..Default::default() };
        let mut page = PageRequest { limit: PAGE, after: None };
        let mut audit = 0u64;
        loop {
            let got = store.audit_list(&filter, &page).await?;
            audit += got.items.len() as u64;
            w.write(&export_audit_batch(&got.items)?).map_err(local_err)?;
            match got.next_cursor {
                Some(c) => page.after = Some(c),
                None => break,
            }
        }
        w.close().map_err(local_err)?;
        Ok((
            (upload(blobs, prefix, "events.parquet", &events_file).await?, events),
            (upload(blobs, prefix, "audit.parquet", &audit_file).await?, audit),
        ))
    }
}

/// Streams the tenant's events, oldest first, to `events.ndjson`.
async fn put_events(store: &dyn Store, blobs: &BlobStore, prefix: &str, tenant_id: &str) -> Result<(Value, u64)> {
    let mut out = NdjsonUpload::new(blobs, prefix, "events.ndjson");
    let filter = EventFilter { tenant_id: Some(tenant_id.to_owned()), ..Default::default() };
    let written = async {
        let mut page = PageRequest { limit: PAGE, after: None };
        loop {
            let got = store.event_list(&filter, &page).await?;
            for e in &got.items {
                out.line(&e.event).await?;
            }
            match got.next_cursor {
                Some(c) => page.after = Some(c),
                None => return Ok(()),
            }
        }
    }
    .await;
    out.finish(written).await
}

/// Streams the tenant's audit records (the fourteen members of the log's format) to
/// `audit.ndjson`.
async fn put_audit(store: &dyn Store, blobs: &BlobStore, prefix: &str, tenant_id: &str) -> Result<(Value, u64)> {
    let mut out = NdjsonUpload::new(blobs, prefix, "audit.ndjson");
    let filter = AuditFilter { tenant_id: Some(tenant_id.to_owned()), ..Default::default() };
    let written = async {
        let mut page = PageRequest { limit: PAGE, after: None };
        loop {
            let got = store.audit_list(&filter, &page).await?;
            for a in &got.items {
                out.line(&audit_line(a)?).await?;
            }
            match got.next_cursor {
                Some(c) => page.after = Some(c),
                None => return Ok(()),
            }
        }
    }
    .await;
    out.finish(written).await
}

fn audit_line(a: &StoredAudit) -> Result<Value> {
    serde_json::to_value(a).map_err(Error::internal)
}

/// The tenant's API keys: id, name, role and times, never the hash.
async fn tenant_api_keys(store: &dyn Store, tenant_id: &str) -> Result<Vec<Value>> {
    let mut page = PageRequest { limit: PAGE, after: None };
    let mut out = Vec::new();
    loop {
        let got = store.api_key_list(Some(tenant_id), &page).await?;
        for k in &got.items {
            out.push(json!({"id": k.id, "name": k.name, "role": k.role, "created_at": k.created_at,
                            "expires_at": k.expires_at}));
        }
        match got.next_cursor {
            Some(c) => page.after = Some(c),
            None => return Ok(out),
        }
    }
}

/// A resource detail without secrets: members whose name says secret, password,
/// token, credential or key hash are dropped, and URLs lose their password.
pub fn redact(v: Value) -> Value {
    const SECRET_NAMES: &[&str] = &["secret", "password", "passwd", "token", "credential", "hash", "private"];
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| {
                    let k = k.to_ascii_lowercase();
                    !SECRET_NAMES.iter().any(|s| k.contains(s))
                })
                .map(|(k, v)| (k, redact(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(redact).collect()),
        Value::String(s) => Value::String(strip_url_password(&s)),
        other => other,
    }
}

/// `scheme://user:password@host/...` → `scheme://user@host/...`; anything else as is.
fn strip_url_password(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else { return s.to_owned() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else { return s.to_owned() };
    let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
    format!("{scheme}://{user}@{host}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_drops_secrets_and_url_passwords() {
        let v = json!({
            "engine": "postgres",
            "url": "postgres://tenant_acme:s3cr3t@db.internal:5432/acme?sslmode=require",
            "password": "s3cr3t",
            "nested": {"api_token": "x", "key_hash": "y", "path": "/var/lib/t/acme/data.db"},
            "list": ["https://u:p@h/x", "plain"],
        });
        let r = redact(v);
        let text = r.to_string();
        assert!(!text.contains("s3cr3t") && !text.contains("\"x\"") && !text.contains(":p@"), "{text}");
        assert_eq!(r["url"], "postgres://tenant_acme@db.internal:5432/acme?sslmode=require");
        assert_eq!(r["nested"]["path"], "/var/lib/t/acme/data.db");
        assert_eq!(r["list"], json!(["https://u@h/x", "plain"]));
        assert_eq!(strip_url_password("file:///a/b"), "file:///a/b");
    }
}
