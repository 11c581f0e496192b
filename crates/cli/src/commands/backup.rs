//! `tenancy backup` and `tenancy restore`: an online, consistent copy of a SQLite data
//! directory with a manifest, and its verified restore (docs/backup.md).
//!
//! Decisions:
//! * A CLI command rather than an API route: it opens the data directory next to a
//!   running server (SQLite lets a second process read a WAL database while the server
//!   writes), needs no credential beyond file access, and a backup never competes with
//!   the API for the server's pool.
//! * Each database is copied with `VACUUM INTO`: a transactionally consistent snapshot
//!   taken while writers go on. The control-plane database is copied first: every write
//!   the server acknowledged before `backup` started is in it. Silo tenants' databases
//!   and the blobs follow; a blob a snapshot row points to was written before that row
//!   committed, so it is there when the blobs are copied.
//! * The master key and the generated admin token are not copied by default: a backup
//!   holding the key and the sealed secrets together would defeat the envelope
//!   encryption. `--include-master-key` copies it (keep such a backup as secret as the
//!   key); the manifest records the key's presence either way.
//! * PostgreSQL is backed up with PostgreSQL's tools (pg_dump, pg_basebackup): the
//!   command says so rather than pretend. `tenancy backup verify` checks a manifest
//!   whoever wrote the files it lists.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Row};

use crate::support::CliError;

/// The manifest's name inside a backup.
pub const MANIFEST: &str = "manifest.json";
/// The manifest format this build writes and reads.
pub const FORMAT: &str = "tenancy-backup/1";
/// The control-plane database inside a data directory and a backup.
const CONTROL_DB: &str = "tenancy.db";

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub cmd: Option<BackupCmd>,
    /// Where the backup goes: a directory (created; must be empty) or s3://bucket/prefix
    /// (credentials from the AWS_* variables).
    #[arg(long)]
    pub to: Option<String>,
    #[command(flatten)]
    pub source: Source,
    /// Also copy the master key (`<data dir>/master.key`): the backup then opens its
    /// secrets by itself, and must be kept as secret as the key.
    #[arg(long)]
    pub include_master_key: bool,
}

#[derive(Debug, Subcommand)]
pub enum BackupCmd {
    /// Check a backup's manifest: every file listed is there with its size and SHA-256.
    Verify {
        /// The backup: a directory or s3://bucket/prefix.
        from: String,
    },
}

#[derive(Debug, Args)]
pub struct Source {
    /// The data directory the server runs on.
    #[arg(long, env = "TENANCY_DATA_DIR", default_value = crate::config::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// The server's database URL, when not SQLite in the data directory.
    #[arg(long, env = "TENANCY_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The server's blob store, when not `<data dir>/blobs`: file:///path (copied) or
    /// s3://... (not copied: back the bucket up with its own versioning).
    #[arg(long, env = "TENANCY_BLOB_URL")]
    pub blob_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup: a directory or s3://bucket/prefix.
    #[arg(long)]
    pub from: String,
    /// The new data directory (missing or empty).
    #[arg(long)]
    pub data_dir: PathBuf,
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub tenancy_version: String,
    pub created_at: String,
    pub engine: String,
    /// The last sealed audit record in the control-plane snapshot.
    pub audit_head: Option<AuditHead>,
    /// Audit records not yet sealed into the chain at the snapshot (the restored
    /// server seals them).
    pub audit_unsealed: i64,
    pub master_key_included: bool,
    /// Files relative to the backup's root, `/`-separated.
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

fn other(e: anyhow::Error) -> CliError {
    CliError::Other(e)
}

/// `tenancy backup ...`: prints a summary on stdout.
pub async fn backup(args: BackupArgs) -> Result<(), CliError> {
    if let Some(BackupCmd::Verify { from }) = args.cmd {
        let (dir, _tmp) = fetch(&from).await.map_err(other)?;
        let m = verify_dir(&dir).map_err(other)?;
        println!("backup {from} verifies: {} files, audit head {}", m.files.len(), head_text(&m.audit_head));
        return Ok(());
    }
    let to = args.to.ok_or_else(|| CliError::Usage("tenancy backup needs --to DIR|s3://bucket/prefix".into()))?;
    if let Some(url) = &args.source.database_url {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Err(CliError::Usage(
                "this server runs on PostgreSQL: back it up with PostgreSQL's tools (pg_dump --format=custom for \
                 a logical copy, pg_basebackup with WAL archiving for point-in-time recovery), and the blob store \
                 with its own tools; see docs/backup.md. `tenancy backup verify DIR` checks a manifest written \
                 for such a copy."
                    .into(),
            ));
        }
    }
    let m = if to.starts_with("s3://") {
        let tmp = tempdir_near(&std::env::temp_dir()).map_err(other)?;
        let m = write_backup(&args.source, args.include_master_key, &tmp).await.map_err(other)?;
        upload(&tmp, &to, &m).await.map_err(other)?;
        let _ = std::fs::remove_dir_all(&tmp);
        m
    } else {
        write_backup(&args.source, args.include_master_key, Path::new(&to)).await.map_err(other)?
    };
    let bytes: u64 = m.files.iter().map(|f| f.bytes).sum();
    println!("backup written to {to}: {} files, {bytes} bytes, audit head {}", m.files.len(), head_text(&m.audit_head));
    Ok(())
}

/// `tenancy restore --from ... --data-dir D`.
pub async fn restore(args: RestoreArgs) -> Result<(), CliError> {
    let (dir, _tmp) = fetch(&args.from).await.map_err(other)?;
    let m = restore_dir(&dir, &args.data_dir).await.map_err(other)?;
    println!(
        "restored {} files into {} (audit head {}){}",
        m.files.len(),
        args.data_dir.display(),
        head_text(&m.audit_head),
        if m.master_key_included {
            ""
        } else {
            "; the master key was not in the backup: give the server the same key (TENANCY_MASTER_KEY, \
             --master-key-file, or copy master.key into the data directory)"
        }
    );
    Ok(())
}

fn head_text(h: &Option<AuditHead>) -> String {
    match h {
        Some(h) => format!("seq {} {}", h.seq, h.hash),
        None => "none (no sealed audit record)".into(),
    }
}

/// A fresh directory under `parent` (removed by the caller).
fn tempdir_near(parent: &Path) -> anyhow::Result<PathBuf> {
    let dir = parent.join(format!("tenancy-backup-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    Ok(dir)
}

/// Creates `dir` if missing; refuses one that holds anything.
fn empty_dir(dir: &Path, what: &str) -> anyhow::Result<()> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).with_context(|| format!("failed to read {}", dir.display()))?;
        ensure!(entries.next().is_none(), "{what} {} is not empty: refusing to write into it", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))
}

/// Writes a backup of `source` into the empty directory `to`, manifest last.
pub async fn write_backup(source: &Source, include_master_key: bool, to: &Path) -> anyhow::Result<Manifest> {
    let data = &source.data_dir;
    let control = data.join(CONTROL_DB);
    ensure!(
        control.is_file(),
        "no SQLite database at {}: give the data directory the server runs on (--data-dir, TENANCY_DATA_DIR)",
        control.display()
    );
    empty_dir(to, "the backup directory")?;
    // 1. The control plane: the point every acknowledged write before now is in.
    snapshot(&control, &to.join(CONTROL_DB)).await?;
    let (audit_head, audit_unsealed) = audit_head(&to.join(CONTROL_DB)).await?;
    // 2. Silo tenants' databases: `<data dir>/tenants/<id>/data.db`.
    let tenants = data.join("tenants");
    if tenants.is_dir() {
        let mut ids: Vec<String> = std::fs::read_dir(&tenants)?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("data.db").is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        for id in ids {
            let dest = to.join("tenants").join(&id);
            std::fs::create_dir_all(&dest)?;
            snapshot(&tenants.join(&id).join("data.db"), &dest.join("data.db")).await?;
        }
    }
    // 3. Blobs: a local blob store is copied; an S3 one is the bucket's to keep.
    let blobs = match source.blob_url.as_deref() {
        None => Some(data.join("blobs")),
        Some(url) if url.starts_with("file://") => Some(PathBuf::from(&url["file://".len()..])),
        Some(url) if url.starts_with("s3://") => None,
        Some(url) => bail!("unsupported blob URL {url:?}: use file:///path or s3://bucket/prefix"),
    };
    if let Some(blobs) = blobs.filter(|b| b.is_dir()) {
        copy_tree(&blobs, &to.join("blobs"))?;
    }
    let key = data.join("master.key");
    if include_master_key {
        ensure!(key.is_file(), "--include-master-key: there is no {}", key.display());
        std::fs::copy(&key, to.join("master.key"))?;
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        tenancy_version: env!("CARGO_PKG_VERSION").into(),
        created_at: tenancy_domain::time::Timestamp::now().to_rfc3339(),
        engine: "sqlite".into(),
        audit_head,
        audit_unsealed,
        master_key_included: include_master_key,
        files: list_files(to)?,
    };
    // On disk before the manifest says the backup is complete (`VACUUM INTO` does not
    // sync the file it writes).
    for f in &manifest.files {
        std::fs::File::open(to.join(&f.path))?.sync_all()?;
    }
    let text = serde_json::to_string_pretty(&manifest)? + "\n";
    // Written under another name and renamed: a backup with a manifest is complete.
    let partial = to.join("manifest.json.partial");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&partial)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&partial, to.join(MANIFEST))?;
    Ok(manifest)
}

/// `VACUUM INTO` from the live database `src` to the new file `dest`.
async fn snapshot(src: &Path, dest: &Path) -> anyhow::Result<()> {
    let mut conn = SqliteConnectOptions::new()
        .filename(src)
        .create_if_missing(false)
        .busy_timeout(std::time::Duration::from_secs(30))
        .connect()
        .await
        .with_context(|| format!("failed to open {}", src.display()))?;
    sqlx::query("VACUUM INTO $1")
        .bind(dest.display().to_string())
        .execute(&mut conn)
        .await
        .with_context(|| format!("failed to snapshot {} into {}", src.display(), dest.display()))?;
    conn.close().await?;
    Ok(())
}

/// The last sealed audit record of a control-plane database, and how many are unsealed.
async fn audit_head(db: &Path) -> anyhow::Result<(Option<AuditHead>, i64)> {
    let mut conn = SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .connect()
        .await
        .with_context(|| format!("failed to open {}", db.display()))?;
    let head = sqlx::query("SELECT seq, hash FROM audit_log WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut conn)
        .await
        .with_context(|| format!("failed to read the audit head of {}", db.display()))?
        .map(|r| AuditHead { seq: r.get(0), hash: r.get::<Option<String>, _>(1).unwrap_or_default() });
    let unsealed: i64 =
        sqlx::query("SELECT COUNT(*) FROM audit_log WHERE seq IS NULL").fetch_one(&mut conn).await?.get(0);
    conn.close().await?;
    Ok((head, unsealed))
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("failed to read {}", from.display()))? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let dest = to.join(entry.file_name());
        if ty.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else if ty.is_file() {
            match std::fs::copy(entry.path(), &dest) {
                Ok(_) => {}
                // A blob deleted while copying (a pruned export) is not in the backup.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("failed to copy {}", entry.path().display())),
            }
        }
    }
    Ok(())
}

/// Every file under `root` but the manifest, sorted, with its size and SHA-256.
fn list_files(root: &Path) -> anyhow::Result<Vec<FileEntry>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<FileEntry>) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("failed to read {}", dir.display()))? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                walk(root, &path, out)?;
                continue;
            }
            let rel =
                path.strip_prefix(root)?.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>();
            let rel = rel.join("/");
            if rel == MANIFEST {
                continue;
            }
            let (bytes, sha256) = hash_file(&path)?;
            out.push(FileEntry { path: rel, bytes, sha256 });
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn hash_file(path: &Path) -> anyhow::Result<(u64, String)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        h.update(&buf[..n]);
    }
    Ok((bytes, hex::encode(h.finalize())))
}

/// A relative, `/`-separated path with no `..`, absolute or empty part.
fn safe_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\\'))
}

/// Reads `<dir>/manifest.json` and checks it against the files: each listed file with
/// its size and SHA-256, and no file that the manifest does not list.
pub fn verify_dir(dir: &Path) -> anyhow::Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{} has no readable {MANIFEST}: not a complete backup", dir.display()))?;
    let m: Manifest =
        serde_json::from_str(&text).with_context(|| format!("{} is not a backup manifest", path.display()))?;
    ensure!(m.format == FORMAT, "unsupported backup format {:?} (this build reads {FORMAT})", m.format);
    let mut problems = Vec::new();
    for f in &m.files {
        if !safe_relative(&f.path) {
            problems.push(format!("{}: not a relative path inside the backup", f.path));
            continue;
        }
        match hash_file(&dir.join(&f.path)) {
            Err(_) => problems.push(format!("{}: missing", f.path)),
            Ok((bytes, _)) if bytes != f.bytes => {
                problems.push(format!("{}: {bytes} bytes, the manifest says {}", f.path, f.bytes))
            }
            Ok((_, sha)) if sha != f.sha256 => problems.push(format!("{}: SHA-256 differs from the manifest", f.path)),
            Ok(_) => {}
        }
    }
    let listed: std::collections::HashSet<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
    for f in list_files(dir)? {
        if !listed.contains(f.path.as_str()) {
            problems.push(format!("{}: not in the manifest", f.path));
        }
    }
    if m.engine == "sqlite" && !listed.contains(CONTROL_DB) {
        problems.push(format!("{CONTROL_DB}: the manifest lists no control-plane database"));
    }
    if !problems.is_empty() {
        bail!("the backup at {} does not verify:\n  {}", dir.display(), problems.join("\n  "));
    }
    Ok(m)
}

/// Verifies the backup in `from`, copies it into the empty `data_dir`, and checks the
/// restored control-plane database's audit head against the manifest's. The files are
/// copied into a staging directory beside `data_dir` and renamed into place once all
/// checks pass: a refused restore leaves `data_dir` as it was.
pub async fn restore_dir(from: &Path, data_dir: &Path) -> anyhow::Result<Manifest> {
    let m = verify_dir(from)?;
    ensure!(m.engine == "sqlite", "a {} backup is restored with that engine's tools (docs/backup.md)", m.engine);
    empty_dir(data_dir, "the data directory")?;
    let name = data_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "data".into());
    let parent = data_dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let stage = parent.join(format!(".{name}.restoring-{}", uuid::Uuid::new_v4().simple()));
    let staged = TempDir(stage.clone());
    std::fs::create_dir_all(&stage).with_context(|| format!("failed to create {}", stage.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&stage, std::fs::Permissions::from_mode(0o700))?;
    }
    for f in &m.files {
        let dest = stage.join(&f.path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(from.join(&f.path), &dest).with_context(|| format!("failed to restore {}", f.path))?;
        // The copy is checked too: a disk that corrupts on write is caught here.
        let (bytes, sha) = hash_file(&dest)?;
        ensure!(bytes == f.bytes && sha == f.sha256, "{} changed while restoring it", f.path);
    }
    let (head, _) = audit_head(&stage.join(CONTROL_DB)).await?;
    ensure!(
        head == m.audit_head,
        "the restored database's audit head ({}) is not the manifest's ({}): refusing the backup",
        head_text(&head),
        head_text(&m.audit_head)
    );
    // `data_dir` is empty: rename(2) replaces an empty directory.
    std::fs::rename(&stage, data_dir)
        .with_context(|| format!("failed to move {} to {}", stage.display(), data_dir.display()))?;
    std::mem::forget(staged);
    Ok(m)
}

/// A backup at `from` as a local directory: the directory itself, or an S3 prefix
/// downloaded into a temporary one (returned second, removed on drop).
async fn fetch(from: &str) -> anyhow::Result<(PathBuf, Option<TempDir>)> {
    if !from.starts_with("s3://") {
        return Ok((PathBuf::from(from), None));
    }
    use futures::TryStreamExt;
    let store = tenancy_adapters::blob::BlobStore::s3(from).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tmp = TempDir(tempdir_near(&std::env::temp_dir())?);
    let objects: Vec<_> = store.store.list(None).try_collect().await.context("failed to list the backup")?;
    for o in objects {
        let rel = o.location.to_string();
        ensure!(safe_relative(&rel), "the backup holds an object with an unsafe name {rel:?}");
        let bytes = store.store.get(&o.location).await?.bytes().await?;
        let dest = tmp.0.join(&rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(dest, bytes)?;
    }
    Ok((tmp.0.clone(), Some(tmp)))
}

/// Uploads a backup directory to `to` (s3://...), the manifest last.
async fn upload(dir: &Path, to: &str, m: &Manifest) -> anyhow::Result<()> {
    use object_store::path::Path as ObjectPath;
    let store = tenancy_adapters::blob::BlobStore::s3(to).map_err(|e| anyhow::anyhow!("{e}"))?;
    let existing = {
        use futures::StreamExt;
        store.store.list(None).next().await
    };
    ensure!(existing.is_none(), "{to} is not empty: refusing to write a backup into it");
    for f in m.files.iter().map(|f| f.path.as_str()).chain([MANIFEST]) {
        let bytes = std::fs::read(dir.join(f))?;
        store.store.put(&ObjectPath::from(f), bytes.into()).await.with_context(|| format!("failed to upload {f}"))?;
    }
    Ok(())
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_must_stay_inside_the_backup() {
        assert!(safe_relative("tenants/acme/data.db"));
        for bad in ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a\\..\\b"] {
            assert!(!safe_relative(bad), "{bad}");
        }
    }
}
