//! Release bundles: bytes streamed into the blob store and back, never held whole in
//! memory.
//!
//! Upload (`PUT /v1/releases/{version}/bundle`): the body is written to a new object
//! `releases/<version>/bundle-<uuid>` in parts while its SHA-256 and size are computed;
//! past the limit ([`App::set_bundle_max_bytes`]) the upload is aborted and the answer
//! is 413. Only when the object is complete is it recorded on the release (with the
//! audit entry and `ReleaseBundleUploaded`, one transaction); the bundle it replaces is
//! deleted afterwards. A failed upload leaves the release's bundle as it was.
//!
//! Download (`GET .../bundle`): the object's size is checked against the record before
//! anything is sent (a mismatch is 500 `bundle-integrity`); then the bytes stream out
//! while being hashed, one chunk held back: the last chunk goes out only once the
//! whole content matched the recorded SHA-256 and size. On a mismatch the stream ends
//! with an error instead, so the connection is cut before the body completes: a client
//! never receives a complete body that is corrupt (and it cannot be mistaken for one:
//! the `Content-Length` is not met, and `Repr-Digest` names the good digest).

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path as BlobPath;
use serde_json::json;
use sha2::{Digest, Sha256};
use tenancy_adapters::blob::BlobStore;
use tenancy_domain::event::names;
use tenancy_domain::release::{self, Bundle, Release};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_store::Effects;

use crate::context::Permission as P;
use crate::releases::ops::release_event;
use crate::{App, OpContext};

/// The default largest bundle: 512 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 512 * 1024 * 1024;
/// The part size of the multipart upload.
const PART: usize = 8 * 1024 * 1024;
/// Parts uploading at once.
const CONCURRENT_PARTS: usize = 2;

/// A stream of body bytes (the request's, or the bundle's going out).
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

fn blob_err(what: &str, location: &str, e: object_store::Error) -> Error {
    Error::internal(format!("failed to {what} the bundle object {location}: {e}"))
}

impl App {
    fn bundle_blobs(&self) -> Result<&BlobStore> {
        self.services
            .blobs
            .as_ref()
            .ok_or_else(|| Error::Unavailable("no blob store is configured: bundles cannot be stored".into()))
    }

    /// Streams `body` into the blob store as `version`'s bundle (the release must
    /// exist), recording its SHA-256, size and `content_type`.
    pub async fn release_bundle_put(
        &self,
        ctx: &OpContext,
        version: &str,
        content_type: Option<String>,
        mut body: ByteStream,
    ) -> Result<Release> {
        ctx.authorize(P::ReleaseAdmin)?;
        release::validate_version(version)?;
        self.store.releases().release_get(version).await?;
        let blobs = self.bundle_blobs()?;
        let max = self.bundle_max_bytes;
        let location = format!("releases/{version}/bundle-{}", uuid::Uuid::now_v7());
        let path = BlobPath::from(location.as_str());
        let upload = blobs.store.put_multipart(&path).await.map_err(|e| blob_err("create", &location, e))?;
        let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, PART);
        let (mut hasher, mut size) = (Sha256::new(), 0u64);
        let refused = loop {
            let chunk = match body.next().await {
                None => break None,
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => break Some(Error::invalid(format!("the bundle upload was cut off: {e}"))),
            };
            size += chunk.len() as u64;
            if size > max {
                break Some(Error::TooLarge(format!("the bundle is larger than the limit of {max} bytes")));
            }
            hasher.update(&chunk);
            if let Err(e) = writer.wait_for_capacity(CONCURRENT_PARTS).await {
                break Some(blob_err("write", &location, e));
            }
            writer.write(&chunk);
        };
        let refused = refused.or_else(|| {
            (size == 0).then(|| Error::InvalidRequest {
                code: ErrorCode::InvalidRelease,
                message: "a bundle must not be empty".into(),
            })
        });
        if let Some(e) = refused {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(location, error = %abort, "failed to abort a refused bundle upload");
            }
            return Err(e);
        }
        writer.finish().await.map_err(|e| blob_err("complete", &location, e))?;
        let bundle = Bundle {
            sha256: hex::encode(hasher.finalize()),
            size,
            content_type: content_type.unwrap_or_else(|| "application/octet-stream".into()),
            location: location.clone(),
            uploaded_at: Timestamp::now(),
        };
        let detail = json!({"sha256": bundle.sha256, "size": bundle.size, "content_type": bundle.content_type});
        let audit = ctx.audit("release.bundle_put", format!("release/{version}"), None, detail.clone());
        let mut shown = self.store.releases().release_get(version).await?;
        shown.bundle = Some(bundle.clone());
        let fx = Effects::none().with_audit(audit).with_event(release_event(
            names::RELEASE_BUNDLE_UPLOADED,
            &shown,
            json!({}),
        ));
        let (stored, old) = match self.store.releases().release_bundle_set(version, &bundle, &fx).await {
            Ok(r) => r,
            Err(e) => {
                let _ = blobs.store.delete(&path).await;
                return Err(e);
            }
        };
        if let Some(old) = old.filter(|o| o.location != location) {
            if let Err(e) = blobs.store.delete(&BlobPath::from(old.location.as_str())).await {
                tracing::warn!(location = %old.location, error = %e, "failed to delete a replaced bundle");
            }
        }
        Ok(stored)
    }

    /// `version`'s bundle record and its bytes, verified as they stream (see the
    /// module docs). 404 when the release has no bundle.
    pub async fn release_bundle_get(&self, ctx: &OpContext, version: &str) -> Result<(Bundle, ByteStream)> {
        ctx.authorize(P::ReleaseRead)?;
        release::validate_version(version)?;
        let r = self.store.releases().release_get(version).await?;
        let bundle = r.bundle.ok_or_else(|| Error::not_found("bundle of release", version))?;
        let blobs = self.bundle_blobs()?;
        let location = bundle.location.clone();
        let got = match blobs.store.get(&BlobPath::from(location.as_str())).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => {
                tracing::error!(version, location, "a release bundle's object is missing from the blob store");
                return Err(Error::Integrity(format!(
                    "the bundle of release {version:?} is missing from the blob store"
                )));
            }
            Err(e) => return Err(blob_err("read", &location, e)),
        };
        if got.meta.size != bundle.size {
            tracing::error!(version, location, recorded = bundle.size, found = got.meta.size, "bundle size mismatch");
            return Err(Error::Integrity(format!(
                "the bundle of release {version:?} in the blob store is {} bytes, {} were uploaded: it is corrupt and \
                 is not served",
                got.meta.size, bundle.size
            )));
        }
        let stream = verified(got.into_stream(), bundle.clone(), version.to_owned());
        Ok((bundle, stream))
    }
}

/// `inner` passed through with one chunk held back until the end, where the content's
/// SHA-256 and size are compared with `bundle`'s: the held chunk goes out on a match,
/// an error (which cuts the response) on a mismatch.
fn verified(inner: BoxStream<'static, object_store::Result<Bytes>>, bundle: Bundle, version: String) -> ByteStream {
    struct State {
        inner: BoxStream<'static, object_store::Result<Bytes>>,
        hasher: Sha256,
        size: u64,
        held: Option<Bytes>,
        done: bool,
    }
    let state = State { inner, hasher: Sha256::new(), size: 0, held: None, done: false };
    futures::stream::unfold((state, bundle, version), |(mut s, bundle, version)| async move {
        if s.done {
            return None;
        }
        loop {
            match s.inner.next().await {
                Some(Ok(chunk)) => {
                    s.hasher.update(&chunk);
                    s.size += chunk.len() as u64;
                    if let Some(prev) = s.held.replace(chunk) {
                        return Some((Ok(prev), (s, bundle, version)));
                    }
                }
                Some(Err(e)) => {
                    s.done = true;
                    let e = std::io::Error::other(format!("failed to read the bundle: {e}"));
                    return Some((Err(e), (s, bundle, version)));
                }
                None => {
                    s.done = true;
                    let digest = hex::encode(std::mem::take(&mut s.hasher).finalize());
                    if digest != bundle.sha256 || s.size != bundle.size {
                        tracing::error!(
                            version,
                            location = %bundle.location,
                            recorded = %bundle.sha256,
                            found = %digest,
                            "bundle-integrity: a release bundle read back does not match its SHA-256; the response is cut"
                        );
                        let e = std::io::Error::other(format!(
                            "{}: the bundle of release {version:?} does not match its recorded SHA-256",
                            ErrorCode::BundleIntegrity
                        ));
                        return Some((Err(e), (s, bundle, version)));
                    }
                    let last = s.held.take()?;
                    return Some((Ok(last), (s, bundle, version)));
                }
            }
        }
    })
    .boxed()
}
