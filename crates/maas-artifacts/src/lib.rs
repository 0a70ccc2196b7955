//! Artifact storage: model files kept once per content, addressed by their SHA-256.
//!
//! Uploads first land in a local [`Staging`] area (a spool under the data dir), written and
//! hashed on a blocking thread as the bytes arrive, resumable at the committed offset. Once
//! complete and verified, a staged file is *ingested* into an [`ArtifactStore`]: renamed into
//! place by [`LocalArtifacts`] (no copy), or uploaded in parts by [`S3Artifacts`]. Identical
//! content is stored once because the address is the content's digest.

mod digest;
mod error;
mod local;
mod s3;
mod staging;

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use digest::Digest;
pub use error::ArtifactError;
pub use local::LocalArtifacts;
pub use s3::{S3Artifacts, S3Config};
pub use staging::{Staged, Staging};

/// A stream of a blob's bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes, ArtifactError>>;

/// Where verified blobs live, keyed by digest.
#[async_trait]
pub trait ArtifactStore: Send + Sync + std::fmt::Debug + 'static {
    /// `local` or `s3`, for logs.
    fn backend(&self) -> &'static str;
    /// Whether a blob with this digest is stored.
    async fn contains(&self, digest: &Digest) -> Result<bool, ArtifactError>;
    /// Takes a complete, verified staged file into the store under `digest` (the staged file
    /// is consumed). Storing content that is already present is a no-op.
    async fn ingest(&self, staged: Staged, digest: &Digest) -> Result<(), ArtifactError>;
    /// The blob's bytes, whole or a range.
    async fn get(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<ByteStream, ArtifactError>;
    /// A small range read into memory (headers of model files).
    async fn read_range(&self, digest: &Digest, range: Range<u64>) -> Result<Bytes, ArtifactError>;
    /// The blob's size in bytes.
    async fn size(&self, digest: &Digest) -> Result<u64, ArtifactError>;
    /// Removes the blob (missing is not an error).
    async fn delete(&self, digest: &Digest) -> Result<(), ArtifactError>;
}

#[cfg(test)]
pub(crate) mod contract {
    //! The behaviour every [`ArtifactStore`] must have, run against each implementation.
    use futures::TryStreamExt as _;

    use super::*;

    pub async fn stage(staging: &Staging, data: &[u8]) -> (Staged, Digest) {
        let id = uuid::Uuid::new_v4().to_string();
        let body = futures::stream::iter(data.chunks(7000).map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c))));
        let staged = staging.append(&id, 0, body, u64::MAX).await.unwrap();
        let digest = staged.digest().await.unwrap();
        (staged, digest)
    }

    pub async fn round_trip(store: &dyn ArtifactStore, staging: &Staging) {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (staged, digest) = stage(staging, &data).await;
        assert_eq!(digest, Digest::of(&data));
        assert!(!store.contains(&digest).await.unwrap());
        let staged_path = staged.path().to_owned();
        store.ingest(staged, &digest).await.unwrap();
        assert!(!staged_path.exists(), "the staged file is consumed");
        assert!(store.contains(&digest).await.unwrap());
        assert_eq!(store.size(&digest).await.unwrap(), data.len() as u64);

        let all: Vec<Bytes> = store.get(&digest, None).await.unwrap().try_collect().await.unwrap();
        assert_eq!(all.concat(), data);
        let part: Vec<Bytes> = store.get(&digest, Some(1000..150_000)).await.unwrap().try_collect().await.unwrap();
        assert_eq!(part.concat(), &data[1000..150_000]);
        assert_eq!(store.read_range(&digest, 5..9).await.unwrap().as_ref(), &data[5..9]);

        // Same content again: stored once, still fine.
        let (again, d2) = stage(staging, &data).await;
        assert_eq!(d2, digest);
        store.ingest(again, &d2).await.unwrap();
        assert!(store.contains(&digest).await.unwrap());

        let missing = Digest::of(b"never stored");
        assert!(matches!(store.size(&missing).await, Err(ArtifactError::NotFound)));
        assert!(matches!(store.get(&missing, None).await, Err(ArtifactError::NotFound)));
        store.delete(&digest).await.unwrap();
        assert!(!store.contains(&digest).await.unwrap());
        store.delete(&digest).await.unwrap();
    }
}
