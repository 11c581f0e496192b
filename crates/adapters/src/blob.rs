//! The blob store: where audit exports, offboarding exports and exported databases
//! go. The port is `object_store`'s `ObjectStore` trait (the field crate's, held as
//! `Arc<dyn ObjectStore>`); the adapters are a local directory (the embedded default)
//! and S3 or an S3-compatible service.

use std::sync::Arc;

use tenancy_domain::{Error, Result};

/// The blob store audit exports are written to, and the URL it is known by.
#[derive(Clone)]
pub struct BlobStore {
    pub store: Arc<dyn object_store::ObjectStore>,
    /// e.g. `file:///var/lib/tenancy/blobs`; prefixes the locations reported.
    pub url: String,
}

impl BlobStore {
    /// A local directory (created if missing).
    pub fn local(dir: &std::path::Path) -> Result<BlobStore> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::internal(format!("failed to create {}: {e}", dir.display())))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| Error::internal(format!("failed to open the blob store at {}: {e}", dir.display())))?;
        Ok(BlobStore { store: Arc::new(fs), url: format!("file://{}", dir.display()) })
    }

    /// An S3 bucket (or an S3-compatible service), `s3://bucket[/prefix]`. Credentials,
    /// region and endpoint come from the usual `AWS_*` environment variables
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT` for a
    /// compatible service, `AWS_ALLOW_HTTP=true` for a plain-HTTP one).
    pub fn s3(url: &str) -> Result<BlobStore> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| Error::invalid(format!("an S3 blob URL starts with s3://, got {url:?}")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::invalid(format!("the S3 blob URL {url:?} names no bucket")));
        }
        let s3 = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| Error::invalid(format!("cannot use the S3 bucket {bucket:?}: {e}")))?;
        let store: Arc<dyn object_store::ObjectStore> = match prefix.trim_matches('/') {
            "" => Arc::new(s3),
            p => Arc::new(object_store::prefix::PrefixStore::new(s3, p)),
        };
        Ok(BlobStore { store, url: url.trim_end_matches('/').to_owned() })
    }
}
