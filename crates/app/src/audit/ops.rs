//! The audit log's sealing, checkpoints, verification and exports.
//!
//! Entries are written unsealed in the transaction of their change (so writers never
//! contend on the chain's head). The [`Sealer`] then assigns `seq`, `prev_hash` and
//! `hash` in `pos` order with `tenancy_audit::AuditRecord::seal`, one sealer at a time,
//! and records a Merkle checkpoint every `checkpoint_every` records or
//! `checkpoint_interval`, whichever comes first.

use std::sync::Arc;

use futures::stream::BoxStream;
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;
use tenancy_audit::chain::ChainVerifier;
use tenancy_audit::{AuditEntry, AuditRecord, ChainStart};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};
use tenancy_store::{Effects, Store};

use crate::context::Permission as P;
use crate::{App, OpContext};
use tenancy_domain::page::{Page, PageRequest};
use tenancy_store::{AuditFilter, StoredAudit};

pub(crate) const PAGE: u32 = 1000;

pub(crate) fn seal_hash(e: &AuditEntry, seq: i64, prev_hash: &str) -> String {
    AuditRecord::seal(e.clone(), seq, prev_hash).hash
}

/// The result of `GET /v1/audit/verify`: the sealed records only; `pending` counts
/// the entries not sealed yet.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditVerification {
    pub ok: bool,
    /// Sealed records verified.
    pub records: u64,
    /// Hash of the last sealed record (64 zeros for an empty log).
    pub head: Option<String>,
    pub pending: u64,
    /// The latest checkpoint and whether its root matches the records.
    pub checkpoint: Option<CheckpointView>,
    /// 0-based index of the first bad record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// With `?archive=true`: the blob store's archive verified against the chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<crate::archive::ops::ArchiveVerification>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CheckpointView {
    pub tree_size: i64,
    pub root: String,
    pub time: Timestamp,
    pub ok: bool,
}

/// Where an export was written.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditExport {
    pub location: String,
    pub records: u64,
    /// Hash of the last exported record.
    pub head: Option<String>,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
}

fn merkle_root_hex(hashes: &[String]) -> Result<String> {
    let entries = hashes.iter().map(|h| record_entry(h)).collect::<Result<Vec<_>>>()?;
    Ok(hex::encode(tenancy_audit::merkle_root(&entries)))
}

/// A record's Merkle entry: its hash as 32 raw bytes.
pub(crate) fn record_entry(hash: &str) -> Result<[u8; 32]> {
    tenancy_audit::merkle::hash_entry(hash).map_err(|_| Error::internal(format!("corrupt audit hash {hash:?}")))
}

impl App {
    /// Verifies the chain of sealed records from `seq` 1 and the latest checkpoint.
    pub async fn audit_verify(&self, ctx: &OpContext) -> Result<AuditVerification> {
        ctx.authorize(P::RecordsRead)?;
        let store = self.store();
        let (_, pending) = store.audit_counts().await?;
        let checkpoint = store.audit_checkpoint_latest().await?;
        let mut verifier = ChainVerifier::new(ChainStart::Genesis);
        let mut hashes = Vec::new();
        let mut after = 0;
        let mut records = 0;
        loop {
            let page = store.audit_sealed(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for r in page {
                if let Err(b) = verifier.push(&r) {
                    return Ok(AuditVerification {
                        ok: false,
                        records,
                        head: None,
                        pending,
                        checkpoint: None,
                        index: Some(b.index),
                        seq: Some(b.seq),
                        reason: Some(b.reason.to_string()),
                        archive: None,
                    });
                }
                records += 1;
                if checkpoint.as_ref().is_some_and(|c| r.seq <= c.tree_size) {
                    hashes.push(r.hash);
                }
            }
        }
        let summary = verifier.finish();
        let checkpoint = match checkpoint {
            Some(c) => {
                let ok = hashes.len() as i64 == c.tree_size && merkle_root_hex(&hashes)? == c.root;
                Some(CheckpointView { tree_size: c.tree_size, root: c.root, time: c.time, ok })
            }
            None => None,
        };
        let ok = checkpoint.as_ref().is_none_or(|c| c.ok);
        Ok(AuditVerification {
            ok,
            records,
            head: Some(summary.head),
            pending,
            reason: (!ok).then(|| "the latest checkpoint's root does not match the records".to_owned()),
            checkpoint,
            index: None,
            seq: None,
            archive: None,
        })
    }

    /// [`App::audit_verify`], and the archive in the blob store verified against the
    /// chain (`crate::archive::ops::verify`): `ok` only when both hold.
    pub async fn audit_verify_archive(&self, ctx: &OpContext) -> Result<AuditVerification> {
        let mut v = self.audit_verify(ctx).await?;
        let blobs = self.services.blobs.clone().ok_or_else(|| Error::Unavailable("no blob store configured".into()))?;
        let archive = crate::archive::ops::verify(&**self.store(), &blobs).await?;
        if !archive.ok && v.ok {
            v.ok = false;
            v.reason = Some(format!("the archive does not verify: {}", archive.reason.as_deref().unwrap_or("")));
        }
        v.archive = Some(archive);
        Ok(v)
    }

    /// Sealed records from the first with `time >= from` to the last with `time < to`
    /// (everything in between, so the range is contiguous and verifies), as NDJSON
    /// chunks of up to 1000 lines.
    pub async fn audit_export(
        &self,
        ctx: &OpContext,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> Result<BoxStream<'static, Result<String>>> {
        ctx.authorize(P::RecordsRead)?;
        let range = self.store().audit_seq_range(from, to).await?;
        Ok(ndjson_pages(self.store().clone(), range))
    }

    /// Writes [`App::audit_export`] to the blob store under `audit/exports/`, streamed
    /// (a multipart upload past 10 MiB, so a long log never sits in memory) and
    /// verified line by line as written: a range that does not verify aborts the
    /// upload and is an error.
    pub async fn audit_export_to_blob(
        &self,
        ctx: &OpContext,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> Result<AuditExport> {
        ctx.authorize(P::AuditExport)?;
        ctx.authorize(P::RecordsRead)?;
        let blobs = self.services.blobs.clone().ok_or_else(|| Error::Unavailable("no blob store configured".into()))?;
        // The range is fixed before anything is written: it names the object, and
        // records sealed meanwhile are not part of it.
        let range = self.store().audit_seq_range(from, to).await?;
        let (first, last) = range.unwrap_or((0, 0));
        let path =
            format!("audit/exports/{}-{first}-{last}.ndjson", Timestamp::now().to_rfc3339().replace([':', '.'], ""));
        let location = object_store::path::Path::from(path.as_str());
        let mut upload = object_store::buffered::BufWriter::new(blobs.store.clone(), location);
        let summary = match write_verified(ndjson_pages(self.store().clone(), range), &mut upload, &path).await {
            Ok(summary) => summary,
            Err(e) => {
                // Drops the parts uploaded so far.
                let _ = upload.abort().await;
                return Err(e);
            }
        };
        tokio::io::AsyncWriteExt::shutdown(&mut upload)
            .await
            .map_err(|e| Error::Unavailable(format!("failed to write {path} to the blob store: {e}")))?;
        let export = AuditExport {
            location: format!("{}/{path}", blobs.url.trim_end_matches('/')),
            records: summary.records,
            head: summary.last_seq.map(|_| summary.head.clone()),
            first_seq: summary.first_seq,
            last_seq: summary.last_seq,
        };
        let audit = ctx.audit(
            "audit.export",
            format!("blob/{path}"),
            None,
            json!({"from": from, "to": to, "records": export.records, "head": export.head}),
        );
        self.store().commit_effects(&Effects::none().with_audit(audit)).await?;
        Ok(export)
    }
}

/// Sealed records `first..=last` as NDJSON chunks of up to [`PAGE`] lines.
fn ndjson_pages(store: Arc<dyn Store>, range: Option<(i64, i64)>) -> BoxStream<'static, Result<String>> {
    let Some((first, last)) = range else {
        return futures::stream::empty().boxed();
    };
    futures::stream::try_unfold(first - 1, move |after| {
        let store = store.clone();
        async move {
            if after >= last {
                return Ok(None);
            }
            let page = store.audit_sealed(after, PAGE.min((last - after) as u32)).await?;
            let Some(next) = page.last().map(|r| r.seq) else { return Ok(None) };
            let mut chunk = String::new();
            for r in &page {
                chunk.push_str(&serde_json::to_string(r).map_err(Error::internal)?);
                chunk.push('\n');
            }
            Ok(Some((chunk, next)))
        }
    })
    .boxed()
}

/// Writes `chunks` to `out`, each verified first as a reader of the file would (the
/// written lines parsed back, the chain checked across chunks); returns what it covers.
async fn write_verified(
    mut chunks: BoxStream<'static, Result<String>>,
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
    path: &str,
) -> Result<tenancy_audit::ChainSummary> {
    use tokio::io::AsyncWriteExt;
    let broken = |e: &dyn std::fmt::Display| Error::internal(format!("the export does not verify: {e}"));
    let mut verifier = ChainVerifier::new(ChainStart::Trusted);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        for line in chunk.lines() {
            let record: AuditRecord = serde_json::from_str(line).map_err(|e| broken(&e))?;
            verifier.push(&record).map_err(|e| broken(&e))?;
        }
        out.write_all(chunk.as_bytes())
            .await
            .map_err(|e| Error::Unavailable(format!("failed to write {path} to the blob store: {e}")))?;
    }
    Ok(verifier.finish())
}

impl App {
    pub async fn audit_list(
        &self,
        ctx: &OpContext,
        filter: AuditFilter,
        page: &PageRequest,
    ) -> Result<Page<StoredAudit>> {
        ctx.authorize(P::RecordsRead)?;
        self.store.audit_list(&filter, page).await
    }
}
