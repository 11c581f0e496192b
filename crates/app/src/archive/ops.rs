//! Reading the archive back: verifying it against the audit chain
//! (`GET /v1/audit/verify?archive=true`, `tenancy audit verify --archive`) and reading
//! archived events for a replay.

use std::collections::HashSet;

use futures::TryStreamExt;
use object_store::path::Path;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tenancy_adapters::blob::BlobStore;
use tenancy_audit::GENESIS_HASH;
use tenancy_domain::event::Event;
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, Result};
use tenancy_store::Store;

use super::columns::{audit_from_parquet, events_from_parquet};
use super::{day, ArchiveKind, Manifest};

/// The archive's part of `GET /v1/audit/verify?archive=true`.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ArchiveVerification {
    pub ok: bool,
    /// Audit files and the records in them.
    pub audit_files: u64,
    pub audit_records: u64,
    /// The last audit `seq` archived: records `1..=last_seq` are in the archive, each
    /// once, chained, and equal to the database's.
    pub last_seq: Option<i64>,
    /// Event files and the events in them (each file matching its manifest).
    pub event_files: u64,
    pub events: u64,
    /// What did not verify, first found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn unavailable(path: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("failed to read {path} from the blob store: {e}"))
}

async fn get(blobs: &BlobStore, path: &Path) -> Result<bytes::Bytes> {
    let got = blobs.store.get(path).await.map_err(|e| unavailable(path.as_ref(), e))?;
    got.bytes().await.map_err(|e| unavailable(path.as_ref(), e))
}

/// The manifests of one kind, with their paths.
async fn manifests(blobs: &BlobStore, kind: ArchiveKind) -> Result<Vec<(String, Manifest)>> {
    let prefix = Path::from(format!("manifests/{}", kind.prefix()));
    let metas: Vec<_> =
        blobs.store.list(Some(&prefix)).try_collect().await.map_err(|e| unavailable(prefix.as_ref(), e))?;
    let mut out = Vec::new();
    for meta in metas {
        let bytes = get(blobs, &meta.location).await?;
        let path = meta.location.to_string();
        match serde_json::from_slice::<Manifest>(&bytes) {
            Ok(m) => out.push((path, m)),
            Err(e) => {
                out.push((path.clone(), Manifest { file: format!("unreadable manifest {path}: {e}"), ..broken(kind) }))
            }
        }
    }
    Ok(out)
}

fn broken(kind: ArchiveKind) -> Manifest {
    Manifest {
        file: String::new(),
        kind,
        date: String::new(),
        rows: 0,
        bytes: 0,
        sha256: String::new(),
        first_seq: 0,
        last_seq: 0,
        last_hash: None,
        created_at: Timestamp(0),
    }
}

/// A file as its manifest describes it, or why not.
async fn checked_file(
    blobs: &BlobStore,
    path: &str,
    m: &Manifest,
) -> Result<std::result::Result<bytes::Bytes, String>> {
    if m.sha256.is_empty() {
        return Ok(Err(m.file.clone()));
    }
    if !m.file.starts_with(&format!("{}/date={}/", m.kind.prefix(), m.date)) {
        return Ok(Err(format!("manifest {path} names {} outside its partition", m.file)));
    }
    let bytes = match blobs.store.get(&Path::from(m.file.as_str())).await {
        Ok(got) => got.bytes().await.map_err(|e| unavailable(&m.file, e))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(Err(format!("{} is missing", m.file))),
        Err(e) => return Err(unavailable(&m.file, e)),
    };
    if bytes.len() as u64 != m.bytes || hex::encode(Sha256::digest(&bytes)) != m.sha256 {
        return Ok(Err(format!("{} does not match its manifest's size and SHA-256", m.file)));
    }
    Ok(Ok(bytes))
}

/// Verifies every archive file against its manifest, the audit files' records against
/// their own hashes, their chain from `seq` 1 without gap or repeat, and each against
/// the database's record of the same `seq` (the database keeps the whole log).
pub async fn verify(store: &dyn Store, blobs: &BlobStore) -> Result<ArchiveVerification> {
    let mut v = ArchiveVerification::default();
    let fail = |mut v: ArchiveVerification, reason: String| {
        v.ok = false;
        v.reason = Some(reason);
        Ok(v)
    };
    // (seq, prev_hash, hash) of every archived record.
    let mut chain: Vec<(i64, String, String)> = Vec::new();
    for (path, m) in manifests(blobs, ArchiveKind::Audit).await? {
        let bytes = match checked_file(blobs, &path, &m).await? {
            Ok(b) => b,
            Err(reason) => return fail(v, reason),
        };
        let records = match audit_from_parquet(bytes) {
            Ok(r) => r,
            Err(e) => return fail(v, format!("{}: {e}", m.file)),
        };
        let (first, last) = (records.first().map(|r| r.seq), records.last().map(|r| r.seq));
        if records.len() as u64 != m.rows || first != Some(m.first_seq) || last != Some(m.last_seq) {
            return fail(v, format!("{} does not hold the rows its manifest lists", m.file));
        }
        if m.last_hash.as_deref() != records.last().map(|r| r.hash.as_str()) {
            return fail(v, format!("{}: the last record's hash is not the manifest's", m.file));
        }
        for r in records {
            if r.compute_hash() != r.hash {
                return fail(v, format!("{}: record {} does not match its hash", m.file, r.seq));
            }
            if day(r.entry.time) != m.date {
                return fail(v, format!("{}: record {} is not of the file's day", m.file, r.seq));
            }
            chain.push((r.seq, r.prev_hash, r.hash));
        }
        v.audit_files += 1;
    }
    chain.sort_by_key(|c| c.0);
    let mut prev = GENESIS_HASH.to_owned();
    for (i, (seq, prev_hash, _)) in chain.iter().enumerate() {
        if *seq != i as i64 + 1 {
            let what = if *seq <= i as i64 { "archived twice" } else { "missing before it" };
            return fail(v, format!("audit record {seq}: a record is {what}"));
        }
        if *prev_hash != prev {
            return fail(v, format!("audit record {seq} does not chain to the record before it"));
        }
        prev.clone_from(&chain[i].2);
    }
    // The same records as the database's.
    let mut at = 0usize;
    while at < chain.len() {
        let page = store.audit_hashes(at as i64, 1000).await?;
        if page.is_empty() {
            return fail(v, format!("audit record {} is archived but not in the database", at + 1));
        }
        for (seq, hash) in page {
            let Some((_, _, archived)) = chain.get(at) else { break };
            if seq != at as i64 + 1 || *archived != hash {
                return fail(v, format!("audit record {} differs from the database's", at + 1));
            }
            at += 1;
        }
    }
    v.audit_records = chain.len() as u64;
    v.last_seq = chain.last().map(|c| c.0);
    for (path, m) in manifests(blobs, ArchiveKind::Events).await? {
        let bytes = match checked_file(blobs, &path, &m).await? {
            Ok(b) => b,
            Err(reason) => return fail(v, reason),
        };
        match events_from_parquet(bytes) {
            Ok(events) if events.len() as u64 == m.rows => v.events += m.rows,
            Ok(_) => return fail(v, format!("{} does not hold the rows its manifest lists", m.file)),
            Err(e) => return fail(v, format!("{}: {e}", m.file)),
        }
        v.event_files += 1;
    }
    v.ok = true;
    Ok(v)
}

/// Archived events with `from <= time < to`, by `time`, each once (a file written again
/// after a crash may repeat an event). Reads the day partitions (`events/date=...`) that
/// exist within the range, found by one listing, so a wide range costs what is there.
pub async fn events_between(blobs: &BlobStore, from: Timestamp, to: Timestamp) -> Result<Vec<Event>> {
    const DAY: i64 = 86_400_000;
    let first = day(Timestamp(from.millis().div_euclid(DAY) * DAY));
    let last = day(Timestamp((to.millis() - 1).div_euclid(DAY) * DAY));
    let root = Path::from("events");
    let listing = blobs.store.list_with_delimiter(Some(&root)).await.map_err(|e| unavailable(root.as_ref(), e))?;
    // `date=YYYY-MM-DD` sorts as its dates do.
    let mut days: Vec<Path> = listing
        .common_prefixes
        .into_iter()
        .filter(|p| {
            p.filename()
                .and_then(|f| f.strip_prefix("date="))
                .is_some_and(|d| d >= first.as_str() && d <= last.as_str())
        })
        .collect();
    days.sort();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for prefix in days {
        let metas: Vec<_> =
            blobs.store.list(Some(&prefix)).try_collect().await.map_err(|e| unavailable(prefix.as_ref(), e))?;
        for meta in metas {
            for e in events_from_parquet(get(blobs, &meta.location).await?)? {
                if e.event.time >= from && e.event.time < to && seen.insert(e.event.id.clone()) {
                    out.push(e.event);
                }
            }
        }
    }
    out.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)));
    Ok(out)
}
